// kennel dashboard: live regions. The page names its JSON endpoint (data-live-url); every few
// seconds this fetches it and swaps in each region whose HTML changed, unless someone is using
// a control inside it (focus, or text typed into a note). No library, no inline script.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status) return;
  var url = status.getAttribute("data-live-url");
  var every = Math.max(1, Number(status.getAttribute("data-live-every")) || 5) * 1000;
  var busy = false;

  function inUse(region) {
    if (region.contains(document.activeElement)) return true;
    var fields = region.querySelectorAll("input:not([type=hidden]), textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.value !== f.defaultValue) return true;
    }
    return false;
  }

  function apply(data) {
    var regions = data.regions || {};
    Object.keys(regions).forEach(function (id) {
      var region = document.getElementById(id);
      if (!region || region.getAttribute("data-hash") === data.hashes[id]) return;
      if (inUse(region)) return;
      region.innerHTML = regions[id];
      region.setAttribute("data-hash", data.hashes[id]);
    });
    status.textContent = "live: updated " + data.at;
    status.setAttribute("data-updated", data.at);
  }

  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/login?next=" +
            encodeURIComponent(window.location.pathname + window.location.search));
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) { if (data) apply(data); })
      .catch(function (err) { status.textContent = "live updates paused (" + err.message + ")"; })
      .then(function () { busy = false; });
  }

  window.setInterval(tick, every);
})();
