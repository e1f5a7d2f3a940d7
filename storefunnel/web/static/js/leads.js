/* Marketing → Leads: the stacked chart of new leads per day by channel; runs again after every HTMX swap.
   uPlot has no stacking of its own: each channel is drawn as bars up to the running total of the channels
   below it, tallest first, so each bar paints over the one beneath; the legend shows each channel's own count. */
(function () {
  "use strict";

  var plots = [];

  function dayToUnix(day) {
    var p = day.split("-");
    return Date.UTC(+p[0], +p[1] - 1, +p[2]) / 1000;
  }

  function isoDay(ts) {
    return ts == null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10);
  }

  function dayAxis(days) {
    var opts = days > 120 ? { month: "short", year: "numeric" } : { day: "numeric", month: "short" };
    var fmt = new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: "UTC" }, opts));
    return function (u, splits) { return splits.map(function (ts) { return fmt.format(new Date(ts * 1000)); }); };
  }

  function paintSwatches(root) {
    root.querySelectorAll(".swatch[data-color]").forEach(function (el) {
      el.style.background = el.getAttribute("data-color");
    });
  }

  function draw(figure, data) {
    var el = figure.querySelector('[data-chart="leads"]');
    if (!el) { figure.setAttribute("data-state", "ready"); return; }
    var x = data.daily.day.map(dayToUnix);
    var channels = data.channels.map(function (c) { return c.channel; });
    var own = channels.map(function (ch) { return data.daily.leads[ch]; });
    var stacked = [];
    var running = x.map(function () { return 0; });
    own.forEach(function (values) {
      running = running.map(function (v, i) { return v + values[i]; });
      stacked.push(running.slice());
    });
    var bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.75, 48] }) : undefined;
    var series = [{ label: "Day", value: function (u, ts) { return isoDay(ts); } }];
    var values = [x];
    for (var k = channels.length - 1; k >= 0; k--) {
      (function (j) {
        var color = data.colors[channels[j]] || "#94a3b8";
        series.push({
          label: channels[j], stroke: color, fill: color, width: 0, paths: bars, points: { show: false },
          value: function (u, v, si, idx) { return idx == null ? "–" : own[j][idx].toLocaleString(); }
        });
        values.push(stacked[j]);
      })(k);
    }
    var halfDay = 43200;
    el.textContent = "";
    var plot = new uPlot({
      width: Math.max(280, el.clientWidth),
      height: 260,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - halfDay, max + halfDay]; } },
        y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } }
      },
      axes: [
        { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#e3e7ec" }, values: dayAxis(x.length), space: 60 },
        { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#e3e7ec" }, size: 48,
          values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? v.toLocaleString() : ""; }); } }
      ],
      cursor: { drag: { x: false, y: false } },
      series: series
    }, values, el);
    plots.push(plot);
    figure.setAttribute("data-state", "ready");
  }

  function load(figure) {
    figure.setAttribute("data-state", "loading");
    fetch(figure.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("the chart data could not be loaded (HTTP " + r.status + ")"); }
        return r.json();
      })
      .then(function (data) { draw(figure, data); })
      .catch(function (err) {
        figure.setAttribute("data-state", "error");
        var msg = document.createElement("div");
        msg.className = "chart-error";
        msg.textContent = String(err.message || err);
        figure.appendChild(msg);
      });
  }

  function init(root) {
    plots = plots.filter(function (p) {
      if (document.body.contains(p.root)) { return true; }
      p.destroy();
      return false;
    });
    if (!root.querySelectorAll) { return; }
    paintSwatches(root);
    var found = Array.prototype.slice.call(root.querySelectorAll("[data-leads-chart]"));
    if (root.matches && root.matches("[data-leads-chart]")) { found.unshift(root); }
    found.forEach(load);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      plots.forEach(function (p) { p.setSize({ width: Math.max(280, p.root.parentNode.clientWidth), height: 260 }); });
    }, 120);
  });

  function start() {
    if (window.htmx) { window.htmx.onLoad(init); } else { init(document); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
