// The search-quality report: fetches /v1/admin/report and draws one small SVG chart per
// metric (a line per A/B arm over the days, its 95% interval as a band) and the table.
"use strict";

const COLORS = { all: "#5f6b7a", control: "#2f6fde", candidate: "#d9480f" };
const METRICS = [["ctr", "CTR"], ["mrr", "MRR"], ["ndcg", "NDCG@10"]];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

async function load(key) {
  const headers = key ? { "X-API-Key": key } : {};
  const response = await fetch("v1/admin/report?days=14", { headers });
  if (response.status === 401) {
    $("key-form").hidden = false;
    $("status").textContent = "This report needs the API key.";
    return;
  }
  const body = await response.json();
  if (!response.ok) {
    $("status").textContent = body.error ? body.error.message : `error ${response.status}`;
    return;
  }
  $("key-form").hidden = true;
  draw(body.arms || []);
}

function draw(rows) {
  const daily = rows.filter((row) => row.day !== "all");
  const days = [...new Set(daily.map((row) => row.day))].sort();
  const arms = [...new Set(daily.map((row) => row.arm))];
  $("status").textContent = days.length
    ? `${days.length} day(s), arms: ${arms.join(", ")}`
    : "No searches logged with their hits yet.";
  const charts = $("charts");
  charts.replaceChildren();
  for (const [field, title] of METRICS) {
    charts.appendChild(chart(field, title, daily, days, arms));
  }
  const body = $("arms").querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "arm-row";
    const cells = [row.day, row.arm, row.searches, fmt(row.ctr), fmt(row.mrr), fmt(row.ndcg),
      row.rankers];
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $("arms").hidden = rows.length === 0;
}

function fmt(value) {
  return value ? `${value.mean.toFixed(3)} [${value.low.toFixed(3)}, ${value.high.toFixed(3)}]` : "-";
}

function chart(field, title, rows, days, arms) {
  const width = 320, height = 180, pad = 28;
  const box = document.createElement("figure");
  box.className = "chart";
  box.dataset.testid = `chart-${field}`;
  const heading = document.createElement("h2");
  heading.textContent = title;
  box.appendChild(heading);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title} by day and arm`);
  const x = (i) => pad + (days.length > 1 ? (i * (width - 2 * pad)) / (days.length - 1) : (width - 2 * pad) / 2);
  const y = (v) => height - pad - Math.max(0, Math.min(1, v)) * (height - 2 * pad);
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("d", `M${pad},${pad} V${height - pad} H${width - pad}`);
  axis.setAttribute("stroke", "#dfe3e8");
  axis.setAttribute("fill", "none");
  svg.appendChild(axis);
  for (const arm of arms) {
    const points = days
      .map((day, i) => [i, rows.find((row) => row.day === day && row.arm === arm)])
      .filter(([, row]) => row && row[field]);
    if (!points.length) continue;
    const color = COLORS[arm] || "#2b8a3e";
    const band = document.createElementNS(SVG, "path");
    const upper = points.map(([i, row]) => `${x(i)},${y(row[field].high)}`);
    const lower = points.slice().reverse().map(([i, row]) => `${x(i)},${y(row[field].low)}`);
    band.setAttribute("d", `M${upper.join(" L")} L${lower.join(" L")} Z`);
    band.setAttribute("fill", color);
    band.setAttribute("fill-opacity", "0.15");
    svg.appendChild(band);
    const line = document.createElementNS(SVG, "path");
    line.setAttribute("d", "M" + points.map(([i, row]) => `${x(i)},${y(row[field].mean)}`).join(" L"));
    line.setAttribute("stroke", color);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke-width", "2");
    line.dataset.arm = arm;
    line.classList.add("arm-line");
    svg.appendChild(line);
    for (const [i, row] of points) {
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", x(i));
      dot.setAttribute("cy", y(row[field].mean));
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", color);
      svg.appendChild(dot);
    }
  }
  box.appendChild(svg);
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const arm of arms) {
    const item = document.createElement("span");
    item.style.setProperty("--swatch", COLORS[arm] || "#2b8a3e");
    item.textContent = arm;
    legend.appendChild(item);
  }
  box.appendChild(legend);
  return box;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load($("api-key").value);
});
load("");
