// Draws the operations overview's charts from the figures in the page (Chart.js is served by the product).
// A click on a bar opens the admin list of the sagas, or dead letters, it counts.
(function () {
  const data = JSON.parse(document.getElementById("overview-charts").textContent);
  const colours = ["#417690", "#2e7d32", "#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63", "#5c6bc0"];
  const named = { started: "#417690", completed: "#2e7d32", failed: "#c62828", cancelled: "#ef6c00" };

  // The admin list of what a bar counts: the series' list narrowed to the bar's minute (Series.url_at).
  function link(dataset, index) {
    const range = new URLSearchParams({
      [dataset.timeField + "__gte"]: data.minutes[index],
      [dataset.timeField + "__lt"]: data.minutes[index + 1],
    });
    return dataset.url + (dataset.url.includes("?") ? "&" : "?") + range.toString();
  }
  window.overviewLink = (id, datasetIndex, index) => link(Chart.getChart(id).data.datasets[datasetIndex], index);

  // type "line": one line per series; "bar": the series stacked in each minute's bar.
  function draw(id, series, type) {
    const canvas = document.getElementById(id);
    const stacked = type === "bar";
    const chart = new Chart(canvas, {
      type: type,
      data: {
        labels: data.labels,
        datasets: series.map((s, i) => ({
          label: s.label,
          data: s.values,
          backgroundColor: named[s.label] || colours[i % colours.length],
          borderColor: named[s.label] || colours[i % colours.length],
          borderWidth: stacked ? 0 : 1.5,
          pointRadius: 0,
          url: s.url,
          timeField: s.time_field,
        })),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { stacked: stacked, ticks: { maxTicksLimit: 12 } },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: { legend: { position: "bottom" } },
        onClick: (event, elements) => {
          if (elements.length) {
            const { datasetIndex, index } = elements[0];
            window.location.href = link(chart.data.datasets[datasetIndex], index);
          }
        },
      },
    });
    canvas.dataset.drawn = "true"; // for the browser test: the chart has been built
  }

  draw("chart-flow", data.flow, "line");
  draw("chart-failures", data.failures, "bar");
  draw("chart-dead-letters", data.dead_letters, "bar");
})();
