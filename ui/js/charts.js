// SVG charts of the dashboards: a frame with a y axis, stacked bars, lines.
//
// Owns: chart geometry. `niceMax` (the axis top) is pure and unit-tested
// (ui/test/); the drawing touches the DOM only when called.

import { fmtN } from "./format.js";
import { fill, s } from "./shared.js";

/** The top of a y axis: the smallest round number (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8 × 10^k) at or above `v`, at least 4. */
export function niceMax(v) {
  if (v <= 4) return 4;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function chartFrame(box, n, max, height = 240) {
  const width = Math.max(300, Math.floor(box.clientWidth || 600));
  const m = { l: 44, r: 10, t: 12, b: 30 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const top = niceMax(max);
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "svgchart", role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i;
    const y = m.t + H - (v / top) * H;
    svg.append(s("line", { x1: m.l, x2: m.l + W, y1: y, y2: y, class: i ? "grid" : "axis" }), s("text", { x: m.l - 6, y: y + 4, class: "ylab", "text-anchor": "end" }, fmtN(Math.round(v * 10) / 10)));
  }
  const step = W / Math.max(1, n);
  const every = Math.ceil(n / Math.max(1, Math.floor(W / 56)));
  return { svg, m, W, H, top, step, every, width, height };
}

/** Bars per day stacked by series ({key, color, values}); each segment links to `hrefOf(day, key)`. */
export function drawStacked(box, days, series, hrefOf, totals) {
  const max = Math.max(1, ...days.map((_, i) => series.reduce((n, sr) => n + sr.values[i], 0)));
  const F = chartFrame(box, days.length, max);
  const bw = Math.max(4, Math.min(48, F.step * 0.7));
  days.forEach((d, i) => {
    const x = F.m.l + i * F.step + (F.step - bw) / 2;
    let y = F.m.t + F.H;
    for (const sr of series) {
      const v = sr.values[i];
      if (!v) continue;
      const hgt = (v / F.top) * F.H;
      y -= hgt;
      F.svg.append(s("a", { href: hrefOf(i, sr.key), "data-nav": "", class: "seg" },
        s("rect", { x, y, width: bw, height: Math.max(0.5, hgt), fill: sr.color }, s("title", null, `${d.label}: ${fmtN(v)} on ${sr.key}`))));
    }
    if (i % F.every === 0) F.svg.append(s("text", { x: x + bw / 2, y: F.m.t + F.H + 18, class: "xlab", "text-anchor": "middle" }, d.label));
    if (totals && totals[i] && bw >= 18) F.svg.append(s("text", { x: x + bw / 2, y: F.m.t + F.H - (series.reduce((n, sr) => n + sr.values[i], 0) / F.top) * F.H - 4, class: "vlab", "text-anchor": "middle" }, fmtN(totals[i])));
  });
  F.svg.setAttribute("aria-label", "Conversations per day, stacked by channel");
  if (!series.length) F.svg.append(s("text", { x: F.width / 2, y: F.height / 2, "text-anchor": "middle", class: "nodata" }, "No conversations in this range"));
  fill(box, F.svg);
}

/** One line per series over the days; each point links to `hrefOf(day, key)`. */
export function drawLines(box, days, series, hrefOf) {
  const max = Math.max(1, ...series.flatMap((sr) => sr.values));
  const F = chartFrame(box, days.length, max);
  const xOf = (i) => F.m.l + i * F.step + F.step / 2;
  const yOf = (v) => F.m.t + F.H - (v / F.top) * F.H;
  days.forEach((d, i) => {
    if (i % F.every === 0) F.svg.append(s("text", { x: xOf(i), y: F.m.t + F.H + 18, class: "xlab", "text-anchor": "middle" }, d.label));
  });
  for (const sr of series) {
    const pts = sr.values.map((v, i) => `${xOf(i).toFixed(1)},${yOf(v).toFixed(1)}`).join(" ");
    const g = s("g", { class: "line" }, s("polyline", { points: pts, fill: "none", stroke: sr.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    sr.values.forEach((v, i) => g.append(s("a", { href: hrefOf(i, sr.key), "data-nav": "" }, s("circle", { cx: xOf(i), cy: yOf(v), r: 3.5, fill: sr.color }, s("title", null, `${days[i].label}: ${fmtN(v)} × ${sr.key}`)))));
    F.svg.append(g);
  }
  F.svg.setAttribute("aria-label", "Conversations per tag per day");
  if (!series.length) F.svg.append(s("text", { x: F.width / 2, y: F.height / 2, "text-anchor": "middle", class: "nodata" }, "No tagged conversations in this range"));
  fill(box, F.svg);
}
