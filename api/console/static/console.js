// Runwatch console: progressive enhancement only. Every page works without this script.
// A live run's page polls its JSON twin and updates its status line in place; once the run
// completes, the page reloads once to show the full timeline and reconciliation.
(function () {
  "use strict";
  var POLL_MS = 5000;
  var SYMBOLS = { fresh_active: "\u25cf fresh", likely_stale: "\u25b2 likely stale",
                  reconciled_failed: "\u2716 reconciled failed", terminal_normal: "\u25a0 finished" };

  function setText(root, field, value) {
    var el = root.querySelector('[data-field="' + field + '"]');
    if (el) { el.textContent = value; }  // textContent: job-provided text is never parsed as HTML
  }

  function when(value) { return value ? value.replace("T", " ").replace(/\.\d+Z$/, "Z") : "\u2014"; }

  function poll(root) {
    var url = root.getAttribute("data-poll");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (run) {
        var badge = root.querySelector('[data-field="freshness"] .badge');
        if (badge) {
          badge.className = "badge badge-" + run.freshness_state;
          badge.textContent = SYMBOLS[run.freshness_state] || run.freshness_state;
        }
        setText(root, "status", run.status + " / " + run.outcome);
        setText(root, "operator_message", run.operator_message || "\u2014");
        setText(root, "started_at", when(run.started_at));
        setText(root, "completed_at", when(run.completed_at));
        var p = run.progress || {};
        if (p.processed !== null && p.processed !== undefined) {
          setText(root, "progress", p.total ? Math.round(p.processed) + " / " + Math.round(p.total) : String(Math.round(p.processed)));
        }
        setText(root, "live-note", "updated " + new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"));
        if (run.status === "completed") { window.location.reload(); return; }
        window.setTimeout(function () { poll(root); }, POLL_MS);
      })
      .catch(function () {
        setText(root, "live-note", "live updates paused (reload to retry)");
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("run");
    if (root && root.getAttribute("data-live") === "true" && window.fetch) {
      window.setTimeout(function () { poll(root); }, POLL_MS);
    }
  });
})();
