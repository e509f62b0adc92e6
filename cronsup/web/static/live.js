// The run page: follows a running run's output, and loads a long output's further parts.
// Output arrives as [text, classes] pairs from /api/runs/ID/output and is set with
// textContent, never as HTML, so no output can become markup.
(function () {
  "use strict";
  var pre = document.getElementById("output");
  if (!pre) return;
  var run = pre.dataset.run;
  var next = parseInt(pre.dataset.next, 10) || 0;
  var running = pre.dataset.running === "1";

  function append(segments) {
    var frag = document.createDocumentFragment();
    segments.forEach(function (seg) {
      if (seg[1]) {
        var span = document.createElement("span");
        span.className = seg[1];
        span.textContent = seg[0];
        frag.appendChild(span);
      } else {
        frag.appendChild(document.createTextNode(seg[0]));
      }
    });
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(frag);
    if (running && atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function get(offset) {
    return fetch("/api/runs/" + run + "/output?offset=" + offset, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
  }

  function setStatus(status) {
    var el = document.getElementById("run-status");
    if (el && el.textContent !== status) {
      el.textContent = status;
      el.className = "status s-" + status;
    }
  }

  function follow() {
    get(next).then(function (part) {
      if (part.truncated && part.running) {
        // Past output_limit the run log keeps the first and last halves, and the last half
        // moves with every flush: offsets into it mean nothing, so stop following here.
        var note = document.getElementById("live");
        if (note) note.textContent = "The output passed output_limit: its middle is cut while it runs. Reload the page for its latest part.";
        setStatus(part.status);
        return;
      }
      if (part.restart) {  // the middle of a long output was cut: show it again from the start
        pre.textContent = "";
        next = 0;
      } else {
        append(part.segments);
        next = part.next;
      }
      pre.dataset.next = String(next);
      var bytes = document.getElementById("output-bytes");
      if (bytes) bytes.textContent = String(part.size);
      setStatus(part.status);
      if (part.running || part.next < part.size) {
        setTimeout(follow, part.running ? 1000 : 0);
      } else {
        var live = document.getElementById("live");
        if (live) live.textContent = "The run ended (" + part.status + "); reload the page for its exit code and times.";
      }
    }).catch(function () { setTimeout(follow, 3000); });
  }

  var more = document.getElementById("more");
  if (more) {
    more.addEventListener("click", function (event) {
      event.preventDefault();
      get(next).then(function (part) {
        append(part.segments);
        next = part.next;
        pre.dataset.next = String(next);
        if (part.done) document.getElementById("more-row").hidden = true;
      });
    });
  }
  if (running) setTimeout(follow, 1000);
})();
