// shoudan back office: the live monitor (server-sent events) and the receipt's print button.
(function () {
  var print = document.getElementById("print");
  if (print) print.addEventListener("click", function () { window.print(); });
  var table = document.getElementById("monitor");
  if (!table || !window.EventSource) return;
  var body = document.getElementById("monitor-rows"), live = document.getElementById("live");
  var es = new EventSource(table.getAttribute("data-events"));
  es.addEventListener("rows", function (e) {
    var seen = {};
    body.querySelectorAll("tr").forEach(function (tr) { seen[tr.getAttribute("data-id")] = true; });
    body.innerHTML = e.data;
    body.querySelectorAll("tr").forEach(function (tr) { if (!seen[tr.getAttribute("data-id")]) tr.classList.add("flash-new"); });
    live.classList.remove("off");
  });
  es.addEventListener("expired", function () { es.close(); location.href = "/login?next=/monitor"; });
  es.onerror = function () { live.classList.add("off"); };
})();
