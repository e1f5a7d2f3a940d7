/* Marketing → Leads: the stacked chart of new leads per day by channel (mounted through sfCharts, app.js).
   uPlot has no stacking of its own: each channel is drawn as bars up to the running total of the channels
   below it, tallest first, so each bar paints over the one beneath; the legend shows each channel's own count. */
(function () {
  "use strict";

  var charts = window.sfCharts;

  function paintSwatches(root) {
    root.querySelectorAll(".swatch[data-color]").forEach(function (el) {
      el.style.background = el.getAttribute("data-color");
    });
  }

  function draw(figure, data) {
    var el = figure.querySelector('[data-chart="leads"]');
    if (!el) { return []; }
    var x = data.daily.day.map(charts.dayToUnix);
    var channels = data.channels.map(function (c) { return c.channel; });
    var own = channels.map(function (ch) { return data.daily.leads[ch]; });
    var stacked = [];
    var running = x.map(function () { return 0; });
    own.forEach(function (values) {
      running = running.map(function (v, i) { return v + values[i]; });
      stacked.push(running.slice());
    });
    var bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.75, 48] }) : undefined;
    var series = [];
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
    el.textContent = "";
    return [new uPlot(charts.dailyOptions(el, x.length, 260, series, charts.wholeTicks, 48), values, el)];
  }

  charts.mount("[data-leads-chart]", 260, draw, paintSwatches);
})();
