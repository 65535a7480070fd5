/* Keep a live panel (live/_figures.html) current from ws/live/: the server pushes the
   figures of the page's own scope when they change; nothing here asks for data. */
(function () {
  "use strict";

  var panel = document.getElementById("live");
  if (!panel || panel.dataset.started) { return; }
  panel.dataset.started = "1";
  var retry = 1000;

  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function time(iso) {
    if (!iso) { return ""; }
    return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  }

  function pick(data, path) {
    return path.split(".").reduce(function (value, key) { return value == null ? null : value[key]; }, data);
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function fill(body, rows, columns, makeRow) {
    if (!body) { return; }
    body.textContent = "";
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "live-empty";
      var td = cell(panel.dataset.labelNone);
      td.colSpan = columns;
      empty.appendChild(td);
      body.appendChild(empty);
      return;
    }
    rows.forEach(function (row) { body.appendChild(makeRow(row)); });
  }

  function row(values, className) {
    var tr = document.createElement("tr");
    if (className) { tr.className = className; }
    values.forEach(function (value) { tr.appendChild(cell(value)); });
    return tr;
  }

  function show(message) {
    var figures = message.figures;
    cps = parseFloat(figures.cps);
    panel.querySelectorAll("[data-live]").forEach(function (el) {
      var key = el.dataset.live;
      if (key === "status" || key === "at") { return; }
      var value = pick(figures, key);
      el.textContent = value == null ? "–" : value + (el.dataset.suffix || "");
    });
    panel.querySelector('[data-live="at"]').textContent = time(message.at);
    status(panel.dataset.labelLive, false);
    fill(panel.querySelector('[data-live-list="nodes"]'), figures.nodes, 2, function (node) {
      return row([node.name, node.calls]);
    });
    fill(panel.querySelector('[data-live-list="alerts"]'), figures.alerts.latest, 2, function (alert) {
      return row([time(alert.started_at), alert.subject]);
    });
    if (figures.calls) {
      fill(panel.querySelector('[data-live-list="calls"]'), figures.calls, 6, function (call) {
        var tr = row([call.caller, call.callee, call.destination, time(call.started_at),
          call.answered_at ? time(call.answered_at) : "–", clock(call.duration)], "live-call");
        tr.dataset.answered = call.answered_at || "";
        tr.lastChild.className = "live-duration";
        return tr;
      });
    }
  }

  function status(text, bad) {
    panel.querySelector('[data-live="status"]').textContent = text;
    panel.classList.toggle("live-stale", !!bad);
  }

  // The duration of an answered call grows between pushes (a push comes only on a change).
  setInterval(function () {
    panel.querySelectorAll("tr.live-call").forEach(function (tr) {
      if (tr.dataset.answered) {
        tr.querySelector(".live-duration").textContent = clock((Date.now() - new Date(tr.dataset.answered)) / 1000);
      }
    });
  }, 1000);

  // Calls per second sampled every second (pushes come only on a change), the last SAMPLES.
  var SAMPLES = 180, chart = null;
  var cps = parseFloat(panel.querySelector('[data-live="cps"]').textContent);
  if (isNaN(cps)) { cps = null; }
  var canvas = document.getElementById("live-cps-chart");
  if (canvas && window.Chart) {
    chart = new window.Chart(canvas, {
      type: "line",
      data: {labels: [], datasets: [{data: [], borderColor: "#2e7dc0", borderWidth: 1.5,
        pointRadius: 0, fill: true, backgroundColor: "rgba(46, 125, 192, 0.12)", tension: 0.2}]},
      options: {animation: false, responsive: true, maintainAspectRatio: false,
        plugins: {legend: {display: false}, tooltip: {enabled: false}},
        scales: {x: {display: false}, y: {beginAtZero: true, ticks: {maxTicksLimit: 3}}}}
    });
  }
  setInterval(function () {
    if (!chart || cps === null) { return; }
    var data = chart.data.datasets[0].data;
    chart.data.labels.push("");
    data.push(cps);
    if (data.length > SAMPLES) { data.shift(); chart.data.labels.shift(); }
    chart.update("none");
  }, 1000);

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + panel.dataset.socket);
    socket.onopen = function () { retry = 1000; panel.dataset.connected = "1"; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "figures") { show(message); }
      if (message.type === "stale") { status(panel.dataset.labelStale + " " + time(message.since), true); }
    };
    socket.onclose = function () {
      delete panel.dataset.connected;
      status(panel.dataset.labelOffline, true);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  connect();
})();
