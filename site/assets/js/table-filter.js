// Filter the rows of the table that follows an <input class="vx-filter"> (the home page's
// "which method?" overview): a row stays when every word typed occurs in its text,
// case-insensitively. Runs on each page load; `document$` is Material's page observable.
document$.subscribe(function () {
  document.querySelectorAll("article input.vx-filter").forEach(function (input) {
    var table = Array.prototype.find.call(document.querySelectorAll("article table"), function (t) {
      return input.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING;
    });
    if (!table || !table.tBodies.length) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var count = document.createElement("span");
    count.className = "vx-filter-count";
    count.setAttribute("aria-live", "polite");
    input.insertAdjacentElement("afterend", count);
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        var keep = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      count.textContent = words.length ? shown + " of " + rows.length + " shown" : rows.length + " entries";
    }
    input.addEventListener("input", apply);
    apply();
  });
});
