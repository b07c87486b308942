// kennel dashboard: live regions. The page names its JSON endpoint (data-live-url); every few
// seconds this fetches it and swaps in each region whose HTML changed. A region someone is
// using (focus, or text typed into a field) is not swapped whole: its top-level parts that hold
// no such field are, and the status line says the rest waits. The status line (aria-live) is
// only rewritten when what it says changes; the time of the last update sits beside it, outside
// the live region, so a screen reader is not told the time every few seconds.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status) return;
  var stamp = document.getElementById("live-updated");
  var url = status.getAttribute("data-live-url");
  var every = Math.max(1, Number(status.getAttribute("data-live-every")) || 5) * 1000;
  var normal = status.textContent;
  var busy = false;

  function inUse(node) {
    if (node.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    if (!node.querySelectorAll) return false;
    var fields = node.querySelectorAll("input:not([type=hidden]), textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.value !== f.defaultValue) return true;
    }
    return false;
  }

  function say(text) {
    if (status.textContent !== text) status.textContent = text;
  }

  // the parts of ``region`` nobody is using, replaced by their new versions; false when the
  // new HTML does not line up part for part (then the whole region waits)
  function swapIdle(region, html) {
    var fresh = document.createElement("template");
    fresh.innerHTML = html;
    var olds = region.children, news = fresh.content.children;
    if (olds.length !== news.length) return false;
    var pairs = [];
    for (var i = 0; i < olds.length; i++) {
      if (olds[i].tagName !== news[i].tagName || olds[i].id !== news[i].id) return false;
      if (!inUse(olds[i]) && olds[i].outerHTML !== news[i].outerHTML) pairs.push([olds[i], news[i]]);
    }
    pairs.forEach(function (p) { region.replaceChild(document.importNode(p[1], true), p[0]); });
    return true;
  }

  function apply(data) {
    var regions = data.regions || {};
    var waiting = false;
    Object.keys(regions).forEach(function (id) {
      var region = document.getElementById(id);
      if (!region || region.getAttribute("data-hash") === data.hashes[id]) return;
      if (inUse(region)) {
        swapIdle(region, regions[id]);
        waiting = true;  // data-hash stays old: the next tick tries again
        return;
      }
      region.innerHTML = regions[id];
      region.setAttribute("data-hash", data.hashes[id]);
    });
    say(waiting ? "live: paused where you are editing \u2014 reload to see changes there" : normal);
    if (stamp) {
      stamp.textContent = "updated " + data.at;
      stamp.setAttribute("data-updated", data.at);
    }
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
      .catch(function (err) { say("live updates paused (" + err.message + ")"); })
      .then(function () { busy = false; });
  }

  window.setInterval(tick, every);
})();
