// One workflow: its status, a Gantt-style timeline kept live by the SSE stream, and steering.
"use strict";

(function () {
  var wid = new URLSearchParams(location.search).get("id") || "";
  var base = "api/workflows/" + encodeURIComponent(wid);
  var finished = false;
  var pending = null;
  var last = null;
  var asked = 0;  // timeline requests made, and the latest of them whose answer is shown
  var shown = 0;
  document.getElementById("title").textContent = wid || "(no id given)";
  document.title = "flowcore: " + wid;

  function summary(status) {
    var dl = document.getElementById("summary");
    dl.replaceChildren();
    var fields = [["workflow", status.name + " v" + status.version], ["status", null],
                  ["current activity", status.current_activity],
                  ["custom status", status.custom_status],
                  ["created", flowcore.when(status.created_at)],
                  ["updated", flowcore.when(status.updated_at)], ["parent", status.parent_id],
                  ["output", status.output], ["error", status.error]];
    fields.forEach(function (f) {
      if (f[0] !== "status" && (f[1] === null || f[1] === undefined || f[1] === "")) { return; }
      dl.appendChild(flowcore.el("dt", {}, f[0]));
      var dd = flowcore.el("dd", { "data-field": f[0] });
      if (f[0] === "status") {
        dd.appendChild(flowcore.statusBadge(status.status));
      } else if (f[0] === "parent") {
        dd.appendChild(flowcore.el("a", { href: "workflow?id=" + encodeURIComponent(f[1]) }, f[1]));
      } else {
        dd.textContent = typeof f[1] === "string" ? f[1] : JSON.stringify(f[1]);
      }
      dl.appendChild(dd);
    });
    var done = ["completed", "failed", "canceled", "terminated"].indexOf(status.status) >= 0;
    document.querySelectorAll("#steer button, #steer input").forEach(function (n) {
      n.disabled = done;
    });
  }

  function bar(track, start, end, t0, span, classes, title) {
    var left = Math.max(0, (start - t0) / span * 100);
    var width = Math.max(0, (end - start) / span * 100);
    var node = flowcore.el("div", { "class": "bar " + classes, title: title });
    node.style.left = left + "%";
    node.style.width = width + "%";
    track.appendChild(node);
    return node;
  }

  function label(item) {
    var text = item.what + (item.name ? " " + item.name : "") +
               (item.step !== null ? " #" + item.step : "");
    var cell = flowcore.el("div", { "class": "label", title: text });
    if (item.what === "child" && item.detail) {
      cell.appendChild(flowcore.el("a", { href: "workflow?id=" + encodeURIComponent(item.detail) },
                                   text));
    } else {
      cell.textContent = text;
    }
    return cell;
  }

  function describe(item, now) {
    var parts = [item.state];
    if (item.ended !== null) { parts.push(flowcore.seconds(item.ended - item.at)); }
    else if (item.what !== "started" && item.state) {
      parts.push(flowcore.seconds(now - item.at) + " so far");
    }
    if (item.attempts.length > 1) { parts.push(item.attempts.length + " attempts"); }
    if (item.what === "timer" && item.next_at && item.ended === null) {
      parts.push("until " + new Date(item.next_at * 1000).toLocaleTimeString());
    }
    if (item.detail && item.what !== "child") { parts.push(item.detail); }
    return parts.filter(Boolean).join(" · ");
  }

  function timeline(data) {
    var box = document.getElementById("timeline");
    box.replaceChildren();
    var items = data.items;
    if (!items.length) { return; }
    var now = Date.now() / 1000;
    var t0 = items[0].at;
    var tEnd = t0;
    items.forEach(function (i) { tEnd = Math.max(tEnd, i.ended || i.at); });
    if (!finished) { tEnd = Math.max(tEnd, now); }
    var span = Math.max(tEnd - t0, 0.001);
    document.getElementById("legend").textContent =
      "0 s … " + flowcore.seconds(tEnd - t0) + " (grid: tenths)";
    items.forEach(function (item) {
      var row = flowcore.el("div", { "class": "row", "data-what": item.what,
                                     "data-state": item.state || "" });
      row.appendChild(label(item));
      var track = flowcore.el("div", { "class": "track" });
      var scheduled = ["activity", "timer", "wait_event", "child"].indexOf(item.what) >= 0;
      var text = describe(item, now);
      if (scheduled) {
        var end = item.ended !== null ? item.ended : (finished ? tEnd : now);
        bar(track, item.at, end, t0, span, item.what + " " + (item.state || ""), text);
        item.attempts.forEach(function (a) {
          if (a.error) {
            bar(track, a.began, a.ended, t0, span, "attempt-failed",
                "attempt " + a.attempt + " failed: " + a.error);
          }
        });
      } else {
        bar(track, item.at, item.at, t0, span, "marker", item.what + " " + text);
      }
      row.appendChild(track);
      var line = flowcore.el("div", { "class": "row" });
      line.appendChild(flowcore.el("div"));
      line.appendChild(flowcore.el("div", { "class": "when" }, text));
      box.appendChild(row);
      box.appendChild(line);
    });
  }

  async function refresh() {
    pending = null;
    var mine = ++asked;
    try {
      var data = await flowcore.api(base + "/timeline");
      if (mine < shown) { return; }  // a later request's answer is already on the page
      shown = mine;
      finished = ["completed", "failed", "canceled", "terminated"].indexOf(data.status.status) >= 0;
      last = data;
      summary(data.status);
      timeline(data);
      flowcore.showError(null);
    } catch (error) {
      flowcore.showError(error);
    }
  }

  function soon() {
    if (pending === null) { pending = setTimeout(refresh, 100); }
  }

  function follow() {
    var live = document.getElementById("live");
    var source = new EventSource(base + "/stream");
    source.onopen = function () { live.textContent = "live"; };
    source.onmessage = function (message) {
      var row = JSON.parse(message.data);
      var li = flowcore.el("li", { value: row.seq, "data-kind": row.kind },
                           row.kind + " " + new Date(row.at * 1000).toISOString() + " " +
                           JSON.stringify(row.data));
      document.getElementById("journal").appendChild(li);
      soon();
    };
    source.addEventListener("reset", function () {
      document.getElementById("journal").replaceChildren();
      soon();
    });
    source.addEventListener("end", function () {
      source.close();
      live.textContent = "finished";
      refresh();
    });
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) { live.textContent = "reconnecting…"; }
    };
  }

  async function steer(path, body, what) {
    var out = document.getElementById("steer-result");
    try {
      await flowcore.api(base + path, { json: body });
      out.textContent = what + ": committed";
      soon();
    } catch (error) {
      out.textContent = what + " failed: " + error.message;
    }
  }

  document.getElementById("send-event").addEventListener("submit", function (event) {
    event.preventDefault();
    var name = document.getElementById("event-name").value.trim();
    var text = document.getElementById("event-payload").value.trim();
    var payload = null;
    if (text) {
      try { payload = JSON.parse(text); } catch (error) {
        document.getElementById("steer-result").textContent =
          "the payload is not valid JSON: " + error.message;
        return;
      }
    }
    steer("/events", { name: name, payload: payload }, "event " + name);
  });
  document.getElementById("cancel").addEventListener("submit", function (event) {
    event.preventDefault();
    var reason = document.getElementById("cancel-reason").value.trim() || null;
    if (window.confirm("Cancel workflow " + wid + "?")) {
      steer("/cancel", { reason: reason }, "cancel");
    }
  });
  refresh().then(follow);
  // Running bars grow with the clock; the data itself changes only through the stream.
  setInterval(function () { if (last && !finished && !document.hidden) { timeline(last); } }, 1000);
})();
