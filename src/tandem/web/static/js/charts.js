// Line charts of the status history, drawn as inline SVG: no chart library, nothing loaded
// from elsewhere, no inline style (the page's Content-Security-Policy allows neither).
// Colours and strokes come from classes in app.css.

import { formatNumber, h } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 360;
const HEIGHT = 130;
const PAD = { left: 40, right: 8, top: 8, bottom: 18 };

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) element.append(child);
  return element;
}

/** The smallest 1, 2 or 5 × 10^k at or above `value` (a readable axis top). */
export function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value * (1 - 1e-9)) return step * power;
  }
  return 10 * power;
}

function isValue(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** "M x y L x y …" per run of consecutive values: a missing sample breaks the line. */
function linePath(points) {
  const runs = [];
  let run = [];
  for (const point of points) {
    if (point === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push(point);
    }
  }
  if (run.length) runs.push(run);
  return runs
    .map((r) => r.map(([x, y], i) => `${i === 0 ? "M" : "L"}${x.toFixed(1)} ${y.toFixed(1)}`).join(" "))
    .join(" ");
}

/** The newest number under `key` in `samples`, or null. */
export function latestValue(samples, key) {
  for (let i = samples.length - 1; i >= 0; i -= 1) {
    if (isValue(samples[i][key])) return samples[i][key];
  }
  return null;
}

/**
 * A chart card: `series` = [{key, label, className}] read from each sample, plotted over
 * the last `windowSeconds` ending at the newest sample (the API server's clock).
 */
export function lineChart({ id, title, unit, digits = 1, series, samples, windowSeconds }) {
  const end = samples.length ? samples[samples.length - 1].at : 0;
  const start = end - windowSeconds;
  const values = series.flatMap(({ key }) => samples.map((s) => s[key]).filter(isValue));
  const top = niceCeiling(Math.max(0, ...values));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const x = (at) => PAD.left + ((at - start) / windowSeconds) * plotWidth;
  const y = (value) => PAD.top + plotHeight - (value / top) * plotHeight;

  const grid = [0, 0.5, 1].map((fraction) =>
    svg(
      "g",
      { class: "grid" },
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top * fraction), y2: y(top * fraction) }),
      svg("text", { x: PAD.left - 4, y: y(top * fraction) + 3, "text-anchor": "end" }, formatNumber(top * fraction, 2)),
    ),
  );
  const minutes = Math.round(windowSeconds / 60);
  const axis = [
    svg("text", { class: "axis", x: PAD.left, y: HEIGHT - 4 }, `${minutes} min ago`),
    svg("text", { class: "axis", x: WIDTH - PAD.right, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
  ];
  const lines = [];
  let plotted = 0;
  for (const { key, className } of series) {
    const points = samples.map((s) => (isValue(s[key]) && s.at >= start ? [x(s.at), y(s[key])] : null));
    const count = points.filter((p) => p !== null).length;
    plotted = Math.max(plotted, count);
    lines.push(svg("path", { class: `series ${className}`, d: linePath(points), "data-points": count }));
    // A lone point between gaps has no line to show it: mark every point.
    for (const point of points) {
      if (point) lines.push(svg("circle", { class: `dot ${className}`, cx: point[0].toFixed(1), cy: point[1].toFixed(1), r: 1.8 }));
    }
  }
  const empty = plotted === 0
    ? [svg("text", { class: "empty", x: PAD.left + plotWidth / 2, y: PAD.top + plotHeight / 2, "text-anchor": "middle" }, "no samples yet")]
    : [];
  const latest = series.map(({ key, label, className }) => {
    const value = latestValue(samples, key);
    return h(
      "li",
      { dataset: { series: key } },
      h("span", { class: `swatch ${className}` }),
      `${label} `,
      h("strong", {}, value === null ? "–" : `${formatNumber(value, digits)} ${unit}`),
    );
  });
  const description = series
    .map(({ key, label }) => `${label} ${latestValue(samples, key) ?? "no value"}`)
    .join(", ");
  const chart = svg(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": `${title}, last ${minutes} minutes: ${description}`,
      "data-points": plotted,
    },
    ...grid,
    ...axis,
    ...lines,
    ...empty,
  );
  return h("figure", { class: "chart", id }, h("figcaption", {}, title), chart, h("ul", { class: "legend" }, latest));
}
