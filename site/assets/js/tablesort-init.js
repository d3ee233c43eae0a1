// Make every plain Markdown table in the article sortable by clicking its header.
// Runs on each (instant) page load; `document$` is Material's page observable.
document$.subscribe(function () {
  document.querySelectorAll("article table:not([class])").forEach(function (table) {
    new Tablesort(table);
  });
});
