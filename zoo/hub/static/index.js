// The index's one script: filter the rows already on the page as you type (the form still works
// without it: it submits the same query to the server). No inline script: the page's CSP forbids it.
(function () {
  "use strict";
  var box = document.getElementById("q");
  var form = document.getElementById("filters");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#repos tbody tr[data-search]"));
  var shown = document.getElementById("shown");
  if (!box || !rows.length) return;
  function apply() {
    var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);  // data-search: lower-cased alike
    var n = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-search");
      var match = words.every(function (w) { return text.indexOf(w) !== -1; });
      row.hidden = !match;
      if (match) n += 1;
    });
    shown.textContent = String(n);
    var url = new URL(window.location.href);
    if (box.value) url.searchParams.set("q", box.value); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url.toString());
  }
  box.addEventListener("input", apply);
  form.querySelectorAll("select").forEach(function (select) {
    select.addEventListener("change", function () { form.submit(); });
  });
  document.body.setAttribute("data-instant-search", "on");
})();
