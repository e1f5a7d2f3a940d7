/* The dashboard's daily charts: shared helpers (window.sfCharts) and the Overview charts.
   Every chart page mounts its charts through sfCharts.mount, which fetches the JSON, reports load errors in
   the page, resizes with the window and runs again after every HTMX swap. */
(function () {
  "use strict";

  var COLORS = { leads: "#2563eb", orders: "#16a34a", revenue: "#7c3aed" };
  var HALF_DAY = 43200;

  function dayToUnix(day) {
    var p = day.split("-");
    return Date.UTC(+p[0], +p[1] - 1, +p[2]) / 1000;
  }

  function isoDay(ts) {
    return ts == null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10);
  }

  function moneyFormatter(currency, decimals) {
    var fmt;
    try {
      fmt = new Intl.NumberFormat(undefined, {
        style: "currency", currency: currency, minimumFractionDigits: decimals, maximumFractionDigits: decimals
      });
    } catch (e) {
      fmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
    }
    return function (v) { return v == null ? "–" : fmt.format(v); };
  }

  function countFmt(v) { return v == null ? "–" : Math.round(v).toLocaleString(); }

  function wholeTicks(u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? v.toLocaleString() : ""; }); }

  function dayAxis(days) {
    // Long ranges get month labels, short ones day labels; dates are formatted in UTC because they are
    // already the store's calendar days.
    var opts = days > 120 ? { month: "short", year: "numeric" } : { day: "numeric", month: "short" };
    var fmt = new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: "UTC" }, opts));
    return function (u, splits) { return splits.map(function (ts) { return fmt.format(new Date(ts * 1000)); }); };
  }

  /* uPlot options for a chart of calendar days: a day axis, a y axis from 0, the day in the legend. */
  function dailyOptions(el, days, height, series, yValues, ySize) {
    return {
      width: Math.max(280, el.clientWidth),
      height: height,
      // Days are calendar days in the store's timezone: label them as such, whatever the browser's zone.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - HALF_DAY, max + HALF_DAY]; } },
        y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [
        { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#e3e7ec" }, values: dayAxis(days), space: 60 },
        { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, ticks: { stroke: "#e3e7ec" }, size: ySize || 64, values: yValues }
      ],
      cursor: { drag: { x: false, y: false } },
      series: [{ label: "Day", value: function (u, ts) { return isoDay(ts); } }].concat(series)
    };
  }

  /* Charts of every element matching `selector`: fetch its data-src, then draw(element, data) returns the
     uPlot instances it made. `prepare(root)` runs on every swapped-in fragment first. */
  function mount(selector, height, draw, prepare) {
    var plots = [];

    function load(el) {
      el.setAttribute("data-state", "loading");
      fetch(el.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("the chart data could not be loaded (HTTP " + r.status + ")"); }
          return r.json();
        })
        .then(function (data) {
          plots = plots.concat(draw(el, data));
          el.setAttribute("data-state", "ready");
        })
        .catch(function (err) {
          el.setAttribute("data-state", "error");
          var msg = document.createElement("div");
          msg.className = "chart-error";
          msg.textContent = String(err.message || err);
          el.prepend(msg);
        });
    }

    function init(root) {
      plots = plots.filter(function (p) {
        if (document.body.contains(p.root)) { return true; }
        p.destroy();
        return false;
      });
      if (!root.querySelectorAll) { return; }
      if (prepare) { prepare(root); }
      var found = Array.prototype.slice.call(root.querySelectorAll(selector));
      if (root.matches && root.matches(selector)) { found.unshift(root); }
      found.forEach(load);
    }

    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        plots.forEach(function (p) { p.setSize({ width: Math.max(280, p.root.parentNode.clientWidth), height: height }); });
      }, 120);
    });

    function start() {
      if (window.htmx) { window.htmx.onLoad(init); } else { init(document); }
    }
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
  }

  window.sfCharts = {
    dayToUnix: dayToUnix, isoDay: isoDay, countFmt: countFmt, wholeTicks: wholeTicks,
    dailyOptions: dailyOptions, mount: mount
  };

  function drawOverview(container, data) {
    var currency = container.getAttribute("data-currency");
    var decimals = parseInt(container.getAttribute("data-decimals"), 10) || 0;
    var money = moneyFormatter(currency, decimals);
    var scale = Math.pow(10, decimals);
    var x = data.daily.day.map(dayToUnix);
    var revenue = data.daily.revenue.map(function (v) { return v / scale; });
    var countsEl = container.querySelector('[data-chart="counts"]');
    var revenueEl = container.querySelector('[data-chart="revenue"]');
    var bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;

    countsEl.textContent = "";
    revenueEl.textContent = "";
    var counts = new uPlot(dailyOptions(countsEl, x.length, 240, [
      { label: "Leads", stroke: COLORS.leads, width: x.length > 120 ? 1 : 2, fill: "rgba(37, 99, 235, .07)", value: function (u, v) { return countFmt(v); } },
      { label: "Orders", stroke: COLORS.orders, width: x.length > 120 ? 1 : 2, value: function (u, v) { return countFmt(v); } }
    ], wholeTicks), [x, data.daily.leads, data.daily.orders], countsEl);
    var rev = new uPlot(dailyOptions(revenueEl, x.length, 240, [
      { label: "Revenue", stroke: COLORS.revenue, fill: "rgba(124, 58, 237, .55)", width: 1, paths: bars, points: { show: false },
        value: function (u, v) { return money(v); } }
    ], function (u, vals) { return vals.map(function (v) { return money(v).replace(/[.,]00$/, ""); }); }),
      [x, revenue], revenueEl);
    return [counts, rev];
  }

  mount("[data-overview-charts]", 240, drawOverview);
})();
