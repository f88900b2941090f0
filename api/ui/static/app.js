// Gigafactory web control plane: dialogs, and keeping live panels calm.
// No build step; htmx (htmx.min.js, 0BSD) does the requests.
(function () {
  "use strict";

  // Buttons with data-dialog open the <dialog> they name; data-close closes the one they
  // are in. A <dialog> closes on Escape by itself and keeps focus inside while open.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog && !dialog.open) {
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden]), select, textarea, button[type=submit]");
        if (first) first.focus();
      }
      return;
    }
    var closer = event.target.closest("[data-close]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open) open.close();
    }
  });

  function openMarkedDialogs(root) {
    root.querySelectorAll("dialog[data-open]").forEach(function (dialog) {
      if (!dialog.open) dialog.showModal();
    });
  }

  // A live panel is not replaced while someone works in it (an open dialog or edit form,
  // a focused field), nor when it answers what it already shows (same ETag).
  function busy(target) {
    if (target.querySelector("dialog[open], details.edit[open]")) return true;
    var active = document.activeElement;
    return !!(active && target.contains(active) && active.matches("input, select, textarea"));
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var target = detail.target;
    var etag = detail.xhr && detail.xhr.getResponseHeader("ETag");
    var polled = detail.requestConfig && detail.requestConfig.verb === "get";
    if (!polled) return;
    if (etag && target.getAttribute("data-etag") === etag) {
      detail.shouldSwap = false;
    } else if (busy(target)) {
      detail.shouldSwap = false;
    } else if (etag) {
      target.setAttribute("data-etag", etag);
    }
  });

  // The log keeps following its end while the box is ticked.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var log = document.getElementById("log-text");
    var follow = document.getElementById("follow");
    if (log && event.detail.target === log && follow && follow.checked) {
      log.scrollTop = log.scrollHeight;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    openMarkedDialogs(document);
    var log = document.getElementById("log-text");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
