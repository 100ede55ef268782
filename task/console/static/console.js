// taskfleet console: progressive enhancement only. Every page works without
// this script; with it, a task page refreshes its statistics and results.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10);
  if (!(every > 0)) { return; }
  var src = live.getAttribute("data-src") + window.location.search;
  var busy = false;
  function refresh() {
    // Keep the administrator's device selection: no refresh while a
    // device is ticked, and none in a hidden tab.
    if (busy || document.hidden || live.querySelector("input[name=device]:checked")) { return; }
    busy = true;
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          live.setAttribute("data-updated", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every);
})();
