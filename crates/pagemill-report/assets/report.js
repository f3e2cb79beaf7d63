// pagemill report: sortable tables, legend toggles, entity-type filters. Everything shown is
// already in the page; this only rearranges it, so the page reads the same without it.
(function () {
  "use strict";

  function cellValue(row, i) {
    var cell = row.cells[i];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(Number(v))) return Number(v);
    return cell.textContent.trim().toLowerCase();
  }

  function sortBy(table, th, i) {
    var body = table.tBodies[0];
    if (!body) return;
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, i), y = cellValue(b, i);
      if (typeof x === "number" && typeof y === "number") return asc ? x - y : y - x;
      x = String(x); y = String(y);
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) return;
    Array.prototype.forEach.call(head.cells, function (th, i) {
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () { sortBy(table, th, i); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, i); }
      });
    });
  });

  document.querySelectorAll("figure.chart").forEach(function (fig) {
    fig.querySelectorAll(".legend .key").forEach(function (key) {
      key.addEventListener("click", function () {
        var on = key.getAttribute("aria-pressed") !== "false";
        key.setAttribute("aria-pressed", on ? "false" : "true");
        var i = key.getAttribute("data-series");
        fig.querySelectorAll("svg g.series").forEach(function (g) {
          if (g.getAttribute("data-series") === i) g.classList.toggle("hidden", on);
        });
      });
    });
  });

  document.querySelectorAll(".filters input[data-type]").forEach(function (box) {
    box.disabled = false;
    box.addEventListener("change", function () {
      document.body.classList.toggle("hide-t-" + box.getAttribute("data-type"), !box.checked);
    });
  });

  document.documentElement.setAttribute("data-ready", "1");
})();
