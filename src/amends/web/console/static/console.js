// Conveniences only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Due times and dates: the exact time in the reader's own time zone on hover.
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const element of document.querySelectorAll("time[datetime]")) {
    const when = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) element.title = format.format(when);
  }
  // The dashboard's charts: each figure is a JSON block beside its chart (the page has no inline script).
  if (window.Plotly) {
    for (const chart of document.querySelectorAll(".chart[data-figure]")) {
      const source = document.getElementById(chart.dataset.figure);
      if (!source) continue;
      const figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(chart, figure.data, figure.layout, { displayModeBar: false, responsive: true })
        .then(() => chart.setAttribute("data-drawn", "true"));
    }
  }
});
