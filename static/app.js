/* OneTrainer Web: the little behaviour htmx has no attribute for. No framework, no build.
   - live elapsed timers ([data-elapsed] = seconds when the server rendered it)
   - a start notice ([data-transient]) goes once the live state shows that run
   - browser notifications (the Notifications page asks; every open page then shows them) */
(function () {
  "use strict";

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + "h " + pad(m) + "m" : m ? m + "m " + pad(s) + "s" : s + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-elapsed]").forEach(function (el) {
      if (!el.dataset.seenAt) { el.dataset.seenAt = String(now); }
      var seconds = parseFloat(el.dataset.elapsed) + (now - parseInt(el.dataset.seenAt, 10)) / 1000;
      el.textContent = duration(seconds);
    });
  }

  function dropTransientNotices() {
    var shown = document.querySelector("#state [data-run-id]");
    if (!shown) { return; }
    document.querySelectorAll("#flash [data-transient]").forEach(function (notice) {
      if (notice.dataset.transient === shown.dataset.runId) { notice.remove(); }
    });
  }

  // a <time data-relative> reads "3 min ago"; on hover, the date and time in this browser's zone
  function localTitles() {
    document.querySelectorAll("time[data-relative]:not([data-local])").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) { el.title = date.toLocaleString(); el.dataset.local = "1"; }
    });
  }

  // a sample form's buttons (inside it, or pointing at it with form=) wait for a prompt; only
  // the ones this script disabled are enabled again (the server disables them when nothing runs)
  function syncPromptButtons() {
    document.querySelectorAll("form[data-needs-prompt]").forEach(function (form) {
      var prompt = form.querySelector("[data-prompt]");
      var empty = !prompt || !prompt.value.trim();
      var buttons = Array.prototype.slice.call(form.querySelectorAll("button[type=submit]"));
      if (form.id) {
        buttons = buttons.concat(Array.prototype.slice.call(document.querySelectorAll('button[form="' + form.id + '"]')));
      }
      buttons.forEach(function (button) {
        if (empty && !button.disabled) {
          button.disabled = true; button.dataset.noPrompt = "1"; button.title = "Type a prompt first";
        } else if (!empty && button.dataset.noPrompt) {
          button.disabled = false; delete button.dataset.noPrompt; button.removeAttribute("title");
        }
      });
    });
  }
  document.addEventListener("input", function (event) {
    if (!event.target.matches) { return; }
    if (event.target.matches("[data-prompt]")) { syncPromptButtons(); }
    if (event.target.matches("input[type=range][data-output]")) {  // a slider shows its number
      document.getElementById(event.target.dataset.output).textContent = parseFloat(event.target.value).toFixed(2);
    }
  });

  // a sample on its way (samples/_pending.html): the oldest pending tile shows the live progress
  // and gives way to the image when it arrives
  function pendingTiles() { return document.querySelectorAll("#samples .sample.pending"); }
  document.addEventListener("htmx:sseMessage", function (event) {
    var kind = event.detail && event.detail.type;
    var tiles = pendingTiles();
    if (!tiles.length) { return; }
    var oldest = tiles[tiles.length - 1];
    if (kind === "sample_progress") {
      var bar = document.querySelector("#sample-progress progress");
      oldest.querySelector(".pending-progress").textContent = bar
        ? "step " + bar.value + " of " + bar.max : "finishing…";
    } else if (kind === "sample") {
      var newest = document.querySelector("#samples > .sample:not(.pending)");
      if (newest && newest.querySelector(".kind-custom")) { oldest.remove(); }  // not a scheduled one
    }
  });

  document.addEventListener("htmx:afterSettle", function () { tick(); dropTransientNotices(); localTitles(); syncPromptButtons(); });
  document.addEventListener("DOMContentLoaded", syncPromptButtons);
  document.addEventListener("DOMContentLoaded", localTitles);

  // the config editor: a mark while it holds changes not saved, and a warning before leaving them
  function markUnsaved(event) {
    var form = event.target.closest && event.target.closest("form[data-watch-changes]");
    if (form && event.target.name !== "tab" && event.target.name !== "save_as_name") {
      form.setAttribute("data-unsaved", "");
    }
  }
  document.addEventListener("input", markUnsaved);
  document.addEventListener("change", markUnsaved);
  var leaving = false;
  document.addEventListener("submit", function (event) {
    if (event.target.matches("form[data-watch-changes]") && !event.target.getAttribute("hx-post")) { leaving = true; }
  });
  window.addEventListener("beforeunload", function (event) {
    if (!leaving && document.querySelector("form[data-watch-changes][data-unsaved]")) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // know without looking: a page that shows a run (the dashboard, a run page) puts its state and
  // percent in the tab's title and icon, like a CI page: "▶ 37 % demo", "✓ demo"
  var baseTitle = document.title;
  var SYMBOLS = {running: "▶", queued: "…", completed: "✓", failed: "✗", stopped: "■", interrupted: "!", canceled: "–"};
  var COLOURS = {running: "#3355cc", queued: "#9a6700", completed: "#1a7f37", failed: "#c62828",
                 stopped: "#9a6700", interrupted: "#c62828", canceled: "#667085"};
  function runGlance() {
    var head = document.querySelector("#state [data-run-id], #run-status [data-run-id]");
    if (!head) { return; }
    var badge = head.querySelector(".badge[data-state]");
    var state = badge ? badge.dataset.state : "";
    var name = (head.querySelector("h1 small") || {}).textContent || "";
    var bar = document.querySelector("#progress progress");
    var percent = state === "running" && bar && bar.max ? Math.floor(100 * bar.value / bar.max) : null;
    document.title = (SYMBOLS[state] || "") + (percent !== null ? " " + percent + " %" : "") + " " + name.trim() +
      " · " + baseTitle;
    favicon(COLOURS[state] || "#3355cc", percent);
  }
  function favicon(colour, percent) {
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    var g = canvas.getContext("2d");
    if (!g) { return; }
    g.fillStyle = colour;
    g.beginPath(); g.arc(16, 16, 14, 0, 2 * Math.PI); g.fill();
    if (percent !== null) {  // the part done, as a white pie slice
      g.fillStyle = "#fff";
      g.beginPath(); g.moveTo(16, 16);
      g.arc(16, 16, 10, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * percent / 100); g.fill();
    }
    var link = document.querySelector("link[rel=icon]");
    if (link) { link.href = canvas.toDataURL("image/png"); link.type = "image/png"; }
  }
  document.addEventListener("DOMContentLoaded", runGlance);
  document.addEventListener("htmx:afterSettle", runGlance);
  document.addEventListener("htmx:sseMessage", runGlance);

  // the phone's folded menu
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest(".nav-toggle");
    if (!toggle) { return; }
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    document.getElementById(toggle.getAttribute("aria-controls")).classList.toggle("open", open);
  });
  // the runs list: Compare is enabled while 2 to 5 runs are ticked
  function syncCompare() {
    var form = document.querySelector("form[data-compare]");
    if (!form) { return; }
    var ticked = document.querySelectorAll('input[name=run][form="' + form.id + '"]:checked').length;
    form.querySelector("button").disabled = ticked < 2 || ticked > 5;
    form.querySelector("[data-compare-count]").textContent =
      ticked ? ticked + " ticked" + (ticked > 5 ? " (at most 5)" : "") : "tick 2 to 5 runs to compare them";
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("input[name=run][form]")) { syncCompare(); }
  });
  document.addEventListener("DOMContentLoaded", syncCompare);

  // before / after: the slider moves where the top image is clipped
  document.addEventListener("input", function (event) {
    if (!event.target.matches("[data-split]")) { return; }
    var box = document.querySelector("[data-before-after]");
    if (box) { box.style.setProperty("--split", event.target.value + "%"); }
  });

  // the prompt × step grid opens at its newest steps (the right end), once per grid drawn
  function newestSteps() {
    document.querySelectorAll(".sample-grid-scroll:not([data-opened])").forEach(function (el) {
      el.scrollLeft = el.scrollWidth;
      el.setAttribute("data-opened", "");
    });
  }
  document.addEventListener("DOMContentLoaded", newestSteps);
  document.addEventListener("htmx:afterSettle", newestSteps);

  // a checksum shortened on the page: a click copies the whole of it
  document.addEventListener("click", function (event) {
    var sha = event.target.closest("[data-copy]");
    if (!sha || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(sha.getAttribute("data-copy")).then(function () {
      sha.setAttribute("data-copied", "copied");
      setTimeout(function () { sha.removeAttribute("data-copied"); }, 1500);
    });
  });
  // browser notifications: asked for only by a click on the Notifications page's button, never on
  // load; once allowed, every open page asks for this user's new notices (the server matched them
  // to the user's subscriptions) and shows each as a system notification that opens its run. The
  // last one seen is shared by the tabs (localStorage), and a notice's tag keeps one per notice
  var NOTICE_EVERY_MS = 3000, noticeTimer = null;
  function noticeUrl(after) {
    var url = document.body.dataset.notices;
    return after === null ? url : url + "?after=" + encodeURIComponent(after);
  }
  function showNotice(notice) {
    var options = {body: notice.body, tag: "otweb-notice-" + notice.id};
    if (notice.image) { options.image = notice.image; options.icon = notice.image; }
    var shown = new Notification(notice.title, options);
    shown.onclick = function () { window.focus(); window.location.href = notice.link; };
  }
  function pollNotices() {
    var last = localStorage.getItem("otweb-notice-last");
    fetch(noticeUrl(last), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (!answer) { return; }
        var seen = parseInt(localStorage.getItem("otweb-notice-last") || "-1", 10);
        answer.notices.forEach(function (notice) { if (notice.id > seen) { showNotice(notice); } });
        if (answer.last > seen) { localStorage.setItem("otweb-notice-last", String(answer.last)); }
      })
      .catch(function () { /* the next turn asks again */ });
  }
  function startNotices() {
    var state = document.querySelector("[data-notify-state]");
    if (state) { state.textContent = !("Notification" in window) ? "this browser has no notifications"
      : Notification.permission === "granted" ? "allowed in this browser" : Notification.permission === "denied"
      ? "blocked in this browser's settings" : ""; }
    if (noticeTimer || !("Notification" in window) || Notification.permission !== "granted"
        || !document.body.dataset.notices) { return; }
    pollNotices();
    noticeTimer = setInterval(pollNotices, NOTICE_EVERY_MS);
  }
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-notify-permission]") || !("Notification" in window)) { return; }
    Notification.requestPermission().then(startNotices);
  });
  document.addEventListener("DOMContentLoaded", startNotices);
  document.addEventListener("htmx:sseMessage", function () { tick(); dropTransientNotices(); syncPromptButtons(); });
  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
})();
