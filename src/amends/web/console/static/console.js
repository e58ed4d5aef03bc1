// Conveniences only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Due times and dates: the exact time in the reader's own time zone on hover.
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const element of document.querySelectorAll("time[datetime]")) {
    const when = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) element.title = format.format(when);
  }
  // Password fields: a button that shows what was typed, and hides it again (ASVS 2.1.12).
  for (const input of document.querySelectorAll("input[data-reveal]")) {
    const wrap = document.createElement("div");
    wrap.className = "reveal-wrap";
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary reveal";
    button.setAttribute("aria-controls", input.id);
    // Its name says what it does to which field ("Show new password"); the field's name stays visually hidden.
    const label = document.querySelector(`label[for="${input.id}"]`);
    const verb = document.createElement("span");
    const what = document.createElement("span");
    what.className = "visually-hidden";
    what.textContent = ` ${label ? label.textContent.trim().toLowerCase() : "password"}`;
    verb.textContent = "Show";
    button.append(verb, what);
    button.addEventListener("click", () => {
      const showing = input.type === "password";
      input.type = showing ? "text" : "password";
      verb.textContent = showing ? "Hide" : "Show";
      input.focus();
    });
    wrap.appendChild(button);
    // Never submit a password as plain text: a browser might keep it in its form history.
    input.form?.addEventListener("submit", () => { input.type = "password"; });
  }
  // A new password's strength as it is typed: estimated by the server (the same check that refuses weak ones).
  for (const input of document.querySelectorAll("input[data-strength]")) {
    const out = document.getElementById(input.dataset.strength);
    const csrf = input.form && input.form.querySelector('input[name="csrf"]');
    if (!out || !csrf) continue;
    let timer = 0;
    let asked = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const mine = ++asked;
        if (!input.value) { out.dataset.score = ""; out.textContent = ""; return; }
        const body = new URLSearchParams({ csrf: csrf.value, password: input.value });
        try {
          const response = await fetch("/console/account/strength", { method: "POST", body, credentials: "same-origin" });
          if (!response.ok || mine !== asked) return;
          const estimate = await response.json();
          out.dataset.score = String(estimate.score);
          const advice = [estimate.warning, ...estimate.suggestions].filter(Boolean).join(" ");
          out.textContent = `Strength: ${estimate.words}${estimate.enough ? "" : " (not enough)"}. ${advice}`.trim();
        } catch (_) { /* the form still works: the server checks it when sent */ }
      }, 300);
    });
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
