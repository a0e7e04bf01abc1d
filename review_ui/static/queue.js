// The queue's "select every session on this page" box: it ticks or clears each row's box, and shows whether all,
// some or none are ticked. Without JavaScript it stays hidden and each row is ticked on its own; the bulk form
// works either way (a plain POST).
(function () {
  "use strict";
  const all = document.getElementById("select-all");
  if (!all) return;
  const rows = () => Array.from(document.querySelectorAll("input.select-row"));
  if (rows().length === 0) return;
  all.hidden = false;
  all.addEventListener("change", () => {
    rows().forEach((box) => { box.checked = all.checked; });
  });
  rows().forEach((box) => box.addEventListener("change", () => {
    const ticked = rows().filter((row) => row.checked).length;
    all.checked = ticked === rows().length;
    all.indeterminate = ticked > 0 && !all.checked;
  }));
})();
