// The dashboards (/bots/{bot}/dashboards): conversations per day by channel, tags
// over time, and a funnel per flow whose drop-offs link to their conversations.
//
// Owns: #view while the route is the dashboards, and their loaded data. Drawing is
// charts.js's; the days come from range.js.

import { api } from "./api.js";
import { drawLines, drawStacked } from "./charts.js";
import { fmtDate, fmtDay, fmtN } from "./format.js";
import { dayBuckets } from "./range.js";
import { current, dashUrl, enc, go } from "./router.js";
import { $, fill, h, rangePicker, s } from "./shared.js";

const PALETTE = ["#3b6fd4", "#2a9d8f", "#e76f51", "#8e5bd4", "#e9a23b", "#5aa7e0", "#d45b8e", "#6b8e23", "#a0522d", "#708090"];
const CHANNEL_COLORS = { web: "#3b6fd4", whatsapp: "#2a9d8f", facebook: "#8e5bd4", telegram: "#5aa7e0", skype: "#e9a23b", sms: "#e76f51" };
/** Funnels shown at first and added per "Show more". */
const FLOWS_STEP = 6;

/** The dashboards' URL key, data (per day and flows) and funnel list state. */
const D = { key: null, data: null, error: null, flowsShown: FLOWS_STEP, flowSearch: "" };

function colorFor(key, i, fixed = {}) {
  return fixed[key] || PALETTE[i % PALETTE.length];
}

/** Forgets the loaded data, so the next render loads it again. */
export function resetDash() {
  D.key = null;
}

function mountDash(bot) {
  current.page = "dash:" + bot;
  fill($("#view"), h("div", { class: "dash" },
    h("div", { class: "toolbar" }, h("h1", null, "Dashboards"), h("div", { id: "dash-range", class: "range-slot" }), h("span", { class: "busy", id: "dash-busy", "aria-hidden": "true" })),
    h("div", { class: "error", id: "dash-error", role: "alert", hidden: true }),
    h("section", { class: "card", id: "card-days" }, h("h2", null, "Conversations per day by channel"), h("div", { class: "chart", id: "chart-days" }, h("div", { class: "chart-ph" })), h("div", { class: "legend", id: "legend-days" })),
    h("section", { class: "card", id: "card-tags" }, h("h2", null, "Tags over time"), h("div", { class: "chart", id: "chart-tags" }, h("div", { class: "chart-ph" })), h("div", { class: "legend", id: "legend-tags" })),
    h("section", { class: "card", id: "card-funnels" },
      h("div", { class: "card-head" }, h("h2", null, "Flow funnels"),
        h("input", { type: "search", id: "flow-search", placeholder: "Find a flow…", "aria-label": "Find a flow", oninput: (e) => { D.flowSearch = e.target.value; renderFunnels(); } })),
      h("p", { class: "muted small" }, "Per step: conversations that reached it and, in red, those that dropped off there. Click a drop-off to see those conversations."),
      h("div", { id: "funnels" }, h("div", { class: "chart-ph" }))),
  ));
}

/** Renders the dashboards of the current URL, loading when its range changed. */
export async function renderDash() {
  const bot = current.route.bot;
  if (current.page !== "dash:" + bot) {
    D.key = null;
    mountDash(bot);
  }
  const p = current.params;
  fill($("#dash-range"), rangePicker(p, "7d", (np) => go(dashUrl(bot, np))));
  const key = bot + "|" + p.toString();
  if (D.key === key) return;
  D.key = key;
  const buckets = dayBuckets(p, { formatDate: fmtDate });
  const range = buckets.range;
  const days = buckets.days.map((d) => ({ ...d, label: fmtDay(d.date) }));
  D.error = null;
  $("#dash-busy").classList.add("on");
  const rangeParams = new URLSearchParams();
  if (range.from) rangeParams.set("from", range.from);
  if (range.to) rangeParams.set("to", range.to);
  try {
    const perDay = await Promise.all(days.map((d) => api("GET", `/v1/bots/${enc(bot)}/conversations`, { params: new URLSearchParams({ from: d.from, to: d.to, limit: "1" }) })));
    const flows = await api("GET", `/v1/bots/${enc(bot)}/flows`, { params: rangeParams });
    if (D.key !== key) return;
    D.data = { bot, range, days, perDay, flows: flows.flows || [] };
    D.flowsShown = FLOWS_STEP;
  } catch (e) {
    if (D.key !== key) return;
    D.error = e;
    D.data = null;
  } finally {
    if (D.key === key) $("#dash-busy")?.classList.remove("on");
  }
  drawDash();
}

/** Draws the charts again (the window was resized). */
export function redrawDash() {
  if (current.route.kind === "dash" && D.data) drawDash();
}

function drawDash() {
  const err = $("#dash-error");
  if (!err) return;
  err.hidden = !D.error;
  err.textContent = D.error ? "Couldn't load the dashboards: " + D.error.message : "";
  if (!D.data) {
    for (const id of ["chart-days", "chart-tags", "funnels"]) $("#" + id).replaceChildren(h("p", { class: "muted" }, D.error ? "No data." : "Loading…"));
    return;
  }
  const { days, perDay, bot } = D.data;
  // Conversations per day by channel.
  const channels = [...new Set(perDay.flatMap((r) => Object.keys(r.facets.channel || {})))].sort();
  const chSeries = channels.map((c, i) => ({ key: c, color: colorFor(c, i, CHANNEL_COLORS), values: perDay.map((r) => (r.facets.channel || {})[c] || 0) }));
  const dayHref = (i, param, value) => {
    const q = new URLSearchParams({ from: days[i].from, to: days[i].to });
    if (param) q.set(param, value);
    return `/bots/${enc(bot)}?${q}`;
  };
  drawStacked($("#chart-days"), days, chSeries, (i, key) => dayHref(i, "channel", key), perDay.map((r) => r.total));
  fill($("#legend-days"), ...legend(chSeries));
  // Tags over time.
  const sum = (rows, t) => rows.reduce((n, r) => n + ((r.facets.tag || {})[t] || 0), 0);
  const tags = [...new Set(perDay.flatMap((r) => Object.keys(r.facets.tag || {})))].sort((a, b) => sum(perDay, b) - sum(perDay, a));
  const tagSeries = tags.map((t, i) => ({ key: t, color: colorFor(t, i), values: perDay.map((r) => (r.facets.tag || {})[t] || 0) }));
  drawLines($("#chart-tags"), days, tagSeries, (i, key) => dayHref(i, "tag", key));
  fill($("#legend-tags"), ...legend(tagSeries));
  renderFunnels();
}

function legend(series) {
  return series.map((sr) => h("span", { class: "lg" }, h("i", { style: { background: sr.color } }), sr.key, h("span", { class: "muted" }, " " + fmtN(sr.values.reduce((a, b) => a + b, 0)))));
}

function renderFunnels() {
  const box = $("#funnels");
  if (!box || !D.data) return;
  const term = D.flowSearch.trim().toLowerCase();
  let flows = D.data.flows.slice().sort((a, b) => b.conversations - a.conversations);
  if (term) flows = flows.filter((f) => f.flow.toLowerCase().includes(term));
  const shown = flows.slice(0, D.flowsShown);
  const kids = shown.map((f) => funnel(f));
  if (!flows.length) kids.push(h("p", { class: "muted" }, term ? "No flow matches." : "No flows in this range."));
  if (flows.length > shown.length) kids.push(h("button", { type: "button", id: "more-flows", onclick: () => { D.flowsShown += FLOWS_STEP; renderFunnels(); } }, `Show more flows (${fmtN(flows.length - shown.length)} more)`));
  fill(box, ...kids);
}

function funnel(f) {
  const bot = D.data.bot;
  const box = $("#funnels");
  const width = Math.max(300, Math.floor((box && box.clientWidth) || 600));
  const narrow = width < 520;
  const labelW = narrow ? 0 : 150;
  const numW = narrow ? 0 : 170;
  const rowH = narrow ? 44 : 28;
  const barH = 16;
  const W = width - labelW - numW - 8;
  const steps = f.steps || [];
  const max = Math.max(1, f.conversations, ...steps.map((st) => st.reached));
  const height = steps.length * rowH + 6;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "svgchart funnel", role: "img", "aria-label": `Funnel of ${f.flow}` });
  const rangeQ = () => {
    const q = new URLSearchParams();
    if (D.data.range.from) q.set("from", D.data.range.from);
    if (D.data.range.to) q.set("to", D.data.range.to);
    return q;
  };
  steps.forEach((st, i) => {
    const y = i * rowH + (narrow ? 18 : 4);
    const x0 = labelW;
    const wReached = (st.reached / max) * W;
    const wDrop = (st.dropped_off / max) * W;
    const stepName = st.step ?? "(no step)";
    svg.append(s("text", { x: narrow ? 0 : labelW - 8, y: narrow ? y - 4 : y + 12, class: "flab", "text-anchor": narrow ? "start" : "end" }, stepName,
      narrow ? ` — ${fmtN(st.reached)} reached` : null));
    const reachQ = rangeQ();
    reachQ.set("flow", f.flow);
    if (st.step != null) reachQ.set("step", st.step);
    svg.append(s("a", { href: `/bots/${enc(bot)}?${reachQ}`, "data-nav": "", class: "reach" },
      s("rect", { x: x0, y, width: Math.max(1, wReached - wDrop), height: barH, class: "bar-reached" }, s("title", null, `${stepName}: ${fmtN(st.reached)} reached, ${fmtN(st.reached - st.dropped_off)} went on`))));
    if (st.dropped_off > 0) {
      const dq = rangeQ();
      dq.set("flow", f.flow);
      if (st.step != null) dq.set("step", st.step);
      dq.set("dropoff", "true");
      const href = `/bots/${enc(bot)}?${dq}`;
      svg.append(s("a", { href, "data-nav": "", class: "drop", "data-flow": f.flow, "data-step": st.step ?? "" },
        s("rect", { x: x0 + Math.max(0, wReached - wDrop), y, width: Math.max(2, wDrop), height: barH, class: "bar-drop" }, s("title", null, `${stepName}: ${fmtN(st.dropped_off)} dropped off here — click to see them`))));
      const tx = narrow ? x0 + wReached + 6 : labelW + W + 10;
      svg.append(s("a", { href, "data-nav": "", class: "drop dropoff-link", "data-flow": f.flow, "data-step": st.step ?? "" },
        s("text", { x: tx, y: y + 12, class: "dlab" }, narrow ? `−${fmtN(st.dropped_off)}` : `${fmtN(st.reached)} · ${fmtN(st.dropped_off)} dropped off`)));
    } else if (!narrow) {
      svg.append(s("text", { x: labelW + W + 10, y: y + 12, class: "nlab" }, `${fmtN(st.reached)} reached`));
    }
  });
  const pct = f.conversations ? Math.round((f.dropped_off / f.conversations) * 100) : 0;
  return h("div", { class: "funnel-card", "data-flow": f.flow },
    h("h3", null, h("span", { class: "mono" }, f.flow), h("span", { class: "muted small" }, ` ${fmtN(f.conversations)} conversations · ${fmtN(f.dropped_off)} dropped off (${pct}%)`)),
    steps.length ? svg : h("p", { class: "muted small" }, "No steps recorded."));
}
