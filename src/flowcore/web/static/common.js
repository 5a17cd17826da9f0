// Shared helpers of the flowcore dashboard. Data is only ever put in the page with
// textContent / attributes, never parsed as HTML.
"use strict";

var flowcore = (function () {
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  async function api(path, options) {
    var opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    var response = await fetch(path, opts);
    var data = await response.json().catch(function () { return null; });
    if (!response.ok) {
      var message = data && data.error ? data.error : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return data;
  }

  function showError(error) {
    var box = document.getElementById("error");
    if (!box) { return; }
    box.hidden = !error;
    box.textContent = error ? String(error.message || error) : "";
  }

  function when(iso) {
    if (!iso) { return "-"; }
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function seconds(value) {
    if (value === null || value === undefined) { return ""; }
    return value < 60 ? value.toFixed(3) + " s" : (value / 60).toFixed(1) + " min";
  }

  function statusBadge(status) {
    return el("span", { "class": "status s-" + status, "data-status": status }, status);
  }

  return { el: el, api: api, showError: showError, when: when, seconds: seconds,
           statusBadge: statusBadge };
})();
