/* Draw every <canvas data-chart="ID"> with Chart.js from the JSON block <script id="ID"
   type="application/json"> (Django's json_script): the page's data stays in the page, no
   inline script, and a chart is drawn again when htmx swaps it in. */
(function () {
  "use strict";

  function draw(root) {
    if (!window.Chart) return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var previous = window.Chart.getChart(canvas);
      if (previous) previous.destroy();
      new window.Chart(canvas, JSON.parse(source.textContent));
      canvas.dataset.drawn = "yes";
    });
  }

  window.smartswitchCharts = { draw: draw };
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
