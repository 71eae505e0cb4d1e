// embodia console: CSRF header on every htmx request, live job logs over SSE, uPlot charts from JSON in the page.
(function () {
  "use strict";
  function csrf() { var m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ""; }
  document.addEventListener("htmx:configRequest", function (e) { e.detail.headers["X-CSRF-Token"] = csrf(); });

  function followLog(pre) {
    var source = new EventSource(pre.dataset.stream);
    var status = document.getElementById(pre.dataset.statusId);
    source.addEventListener("log", function (e) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += JSON.parse(e.data).text;
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    });
    source.addEventListener("status", function (e) { if (status) { status.textContent = JSON.parse(e.data).status; status.className = "state " + JSON.parse(e.data).status; } });
    source.addEventListener("end", function () { source.close(); });
    source.onerror = function () { source.close(); };
  }

  var PALETTE = ["#0b57d0", "#c5221f", "#188038", "#e37400", "#8430ce", "#007b83", "#b80672", "#5f6368",
                 "#1e8e3e", "#d93025", "#1a73e8", "#f29900"];

  function chartSeries(spec) {
    var series = [{ label: spec.x_label || "x" }];
    var bands = [];
    spec.series.forEach(function (s, i) {
      var color = PALETTE[i % PALETTE.length];
      series.push({ label: s.label, stroke: color, width: 1.5, value: function (u, v) { return v == null ? "–" : v.toPrecision(4); } });
      if (s.band) {
        var lo = series.length, hi = lo + 1;
        series.push({ label: s.label + " min", stroke: color, width: 0, alpha: 0.0, fill: null, points: { show: false } });
        series.push({ label: s.label + " max", stroke: color, width: 0, points: { show: false } });
        bands.push({ series: [hi, lo], fill: color + "33" });
      }
    });
    return { series: series, bands: bands };
  }

  function drawChart(el) {
    var spec = JSON.parse(el.querySelector("script[type='application/json']").textContent);
    var parts = chartSeries(spec);
    var width = Math.max(280, el.clientWidth);
    var opts = { width: width, height: 240, series: parts.series, bands: parts.bands,
                 scales: { x: { time: false } }, legend: { live: true },
                 axes: [{ label: spec.x_label }, { label: spec.y_label || "" }] };
    el.uplot = new uPlot(opts, spec.data, el.querySelector(".plot"));
  }

  function init(root) {
    root.querySelectorAll("pre.log[data-stream]").forEach(followLog);
    if (window.uPlot) { root.querySelectorAll(".chart[data-chart]").forEach(drawChart); }
    root.querySelectorAll("input[type=file][data-into]").forEach(function (input) {
      input.addEventListener("change", function () {
        var file = input.files[0]; if (!file) { return; }
        file.text().then(function (text) { document.getElementById(input.dataset.into).value = text; });
      });
    });
  }
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
        if (el.uplot) { el.uplot.setSize({ width: Math.max(280, el.clientWidth), height: 240 }); }
      });
    }, 150);
  });
  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    document.body.addEventListener("htmx:afterSwap", function (e) {
      init(e.detail.target);
      var heading = e.detail.target.querySelector("h2[tabindex]");
      if (heading) { heading.focus(); }
    });
  });
})();
