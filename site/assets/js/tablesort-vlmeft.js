// A numeric sort for the site's number formats, registered before tablesort's own "number"
// sort (extensions are tried in order) so that it wins: "8,192", "45.1 ± 2.0", "45.1*", and
// "–" for a missing value, which sorts below every number. (tablesort's number sort strips
// every non-digit, so it reads "45.1 ± 2.0" as 45.12 and "–" as 0.)
(function () {
  var NUMBER = /^[-+]?\d[\d,]*(\.\d+)?(\s*±\s*\d+(\.\d+)?)?\*?$/;
  var MISSING = /^[–—-]$/;
  function value(text) {
    text = text.trim();
    return MISSING.test(text) ? -Infinity : parseFloat(text.replace(/,/g, ""));
  }
  Tablesort.extend("vlmeft-number", function (text) {
    text = text.trim();
    return NUMBER.test(text) || MISSING.test(text);
  }, function (a, b) {
    var x = value(a), y = value(b);
    return x === y ? 0 : (y > x ? 1 : -1);
  });
})();
