// The workflow list: status filters with counts, a name filter, keyset pages, auto-refresh.
"use strict";

(function () {
  var STATES = ["running", "pending", "suspended", "parked", "completed", "failed", "canceled",
                "terminated"];
  var state = { status: "", name: "", cursor: null };
  // Requests are numbered: an answer older than the one shown (a reload still in flight when
  // a filter was clicked) is dropped instead of drawn over the newer one.
  var asked = { counts: 0, page: 0 };
  var shown = { counts: 0, page: 0 };

  function newest(kind, mine) {
    if (mine < shown[kind]) { return false; }
    shown[kind] = mine;
    return true;
  }
  var params = new URLSearchParams(location.search);
  state.status = params.get("status") || "";
  state.name = params.get("name") || "";
  document.getElementById("name").value = state.name;

  function query(extra) {
    var q = new URLSearchParams();
    if (state.status) { q.set("status", state.status); }
    if (state.name) { q.set("name", state.name); }
    Object.keys(extra || {}).forEach(function (k) { q.set(k, extra[k]); });
    return q.toString();
  }

  async function loadCounts() {
    var q = state.name ? "?name=" + encodeURIComponent(state.name) : "";
    var mine = ++asked.counts;
    var counts = await flowcore.api("api/counts" + q);
    if (!newest("counts", mine)) { return; }
    var nav = document.getElementById("filters");
    nav.replaceChildren();
    var total = STATES.reduce(function (n, s) { return n + (counts[s] || 0); }, 0);
    [""].concat(STATES).forEach(function (s) {
      var label = (s || "all") + " " + (s ? (counts[s] || 0) : total);
      var button = flowcore.el("button", { type: "button", "data-filter": s || "all" }, label);
      if (s === state.status) { button.classList.add("active"); }
      button.addEventListener("click", function () {
        state.status = s;
        history.replaceState(null, "", "?" + query());
        refresh();
      });
      nav.appendChild(button);
    });
  }

  function row(item) {
    var tr = flowcore.el("tr", { "data-id": item.id });
    var link = flowcore.el("a", { href: "workflow?id=" + encodeURIComponent(item.id) }, item.id);
    var id = flowcore.el("td");
    id.appendChild(link);
    tr.appendChild(id);
    tr.appendChild(flowcore.el("td", {}, item.name));
    tr.appendChild(flowcore.el("td", {}, item.version));
    var st = flowcore.el("td");
    st.appendChild(flowcore.statusBadge(item.status));
    tr.appendChild(st);
    tr.appendChild(flowcore.el("td", {}, item.current_activity || ""));
    tr.appendChild(flowcore.el("td", {}, flowcore.when(item.created_at)));
    tr.appendChild(flowcore.el("td", {}, flowcore.when(item.updated_at)));
    return tr;
  }

  async function loadPage(append) {
    var extra = { limit: 50 };
    if (append && state.cursor) { extra.cursor = state.cursor; }
    var mine = ++asked.page;
    var page = await flowcore.api("api/workflows?" + query(extra));
    if (!newest("page", mine)) { return; }
    var body = document.querySelector("#workflows tbody");
    if (!append) { body.replaceChildren(); }
    page.items.forEach(function (item) { body.appendChild(row(item)); });
    state.cursor = page.next_cursor;
    document.getElementById("more").hidden = !page.next_cursor;
    document.getElementById("empty").hidden = body.children.length > 0;
  }

  async function refresh() {
    try {
      await Promise.all([loadCounts(), loadPage(false)]);
      flowcore.showError(null);
    } catch (error) {
      flowcore.showError(error);
    }
  }

  document.getElementById("search").addEventListener("submit", function (event) {
    event.preventDefault();
    state.name = document.getElementById("name").value.trim();
    history.replaceState(null, "", "?" + query());
    refresh();
  });
  document.getElementById("more").addEventListener("click", function () {
    loadPage(true).catch(flowcore.showError);
  });
  refresh();
  // The list refreshes itself while only the first page is shown.
  setInterval(function () {
    if (!document.hidden && document.querySelector("#workflows tbody").children.length <= 50) {
      refresh();
    }
  }, 2000);
})();
