// The open conversation's trace: the Debugger tab (what the bot did for each user
// input) and the Logs tab (every event in time order, filtered by level).
//
// Owns: the trace of the open conversation (loaded on demand, refreshable). The
// conversation drawer (conversation.js) says which conversation and renders the tab.

import { api, auth } from "./api.js";
import { fmtFull, fmtMs, fmtTime } from "./format.js";
import { enc } from "./router.js";
import { $$, h, icon } from "./shared.js";

const LEVELS = ["debug", "info", "warn", "error"];

/** The trace of the conversation `key` (bot, id), and what to call when it changes. */
const T = { key: null, bot: null, id: null, data: null, error: null, loading: false, debugOn: () => false, onChange: () => {} };

/**
 * Another conversation is open: forget the trace. `debugOn()` tells whether its debug
 * logging is on; `onChange()` runs when the trace starts or ends loading.
 */
export function resetTrace(key, bot, id, { debugOn, onChange }) {
  Object.assign(T, { key, bot, id, data: null, error: null, loading: false, debugOn, onChange });
}

/** Whether the trace was neither loaded nor asked for. */
export function traceIdle() {
  return !T.data && !T.error && !T.loading;
}

/** Loads (or reloads) the trace of the open conversation. */
export async function loadTrace() {
  const key = T.key;
  T.loading = true;
  T.onChange();
  try {
    const r = await api("GET", `/v1/bots/${enc(T.bot)}/conversations/${enc(T.id)}/trace`);
    if (T.key !== key) return;
    T.data = r;
    T.error = null;
  } catch (e) {
    if (T.key !== key) return;
    T.error = e;
  } finally {
    if (T.key === key) T.loading = false;
  }
  T.onChange();
}

/** The "debug" or "logs" tab. */
export function traceView(tab) {
  return tab === "debug" ? debuggerView() : logsView();
}

function maxLevel(events) {
  let m = -1;
  for (const e of events) m = Math.max(m, LEVELS.indexOf(e.level || "info"));
  return m < 0 ? null : LEVELS[m];
}

function traceHeader() {
  const on = T.debugOn();
  return h("div", { class: "trace-head" },
    h("span", { class: "dbg-state " + (on ? "on" : "off") }, on ? "Debug logging is on" : "Debug logging is off"),
    h("span", { class: "spacer" }),
    h("button", { type: "button", class: "icon-btn", "aria-label": "Refresh trace", title: "Refresh", id: "trace-refresh", onclick: () => loadTrace() }, icon("refresh")));
}

function traceEmpty() {
  const on = T.debugOn();
  return h("div", { class: "empty", id: "trace-empty" },
    h("p", null, h("strong", null, "No trace events for this conversation.")),
    h("p", { class: "muted" }, on
      ? "Debug logging is on: events that the bot runtime sends to POST /v1/traces for this user will show here. Refresh to look again."
      : auth.canEdit ? "Turn on debug logging (the Debug switch above) to keep what the bot does for each user input; events sent while it is off are dropped."
        : "Debug logging is off for this conversation; an editor can turn it on."));
}

function debuggerView() {
  const wrap = h("div", { class: "trace", id: "trace" }, traceHeader());
  if (T.error) {
    wrap.append(h("div", { class: "error", role: "alert" }, "Couldn't load the trace: ", T.error.message));
    return wrap;
  }
  if (!T.data) {
    wrap.append(h("p", { class: "muted" }, "Loading trace…"));
    return wrap;
  }
  const inputs = T.data.inputs || [];
  const total = inputs.reduce((n, i) => n + i.events.length, 0);
  if (!total) {
    wrap.append(traceEmpty());
    return wrap;
  }
  wrap.querySelector(".spacer").after(
    h("button", { type: "button", class: "link", onclick: () => $$("#trace details.tinput").forEach((d) => { d.open = true; }) }, "Expand all"),
    h("button", { type: "button", class: "link", onclick: () => $$("#trace details.tinput").forEach((d) => { d.open = false; }) }, "Collapse all"));
  const maxDur = Math.max(1, ...inputs.flatMap((i) => i.events.map((e) => e.duration_ms || 0)));
  for (const inp of inputs) {
    const m = inp.message;
    const lvl = maxLevel(inp.events);
    const base = m ? new Date(m.timestamp).getTime() : inp.events.length ? new Date(inp.events[0].timestamp).getTime() : 0;
    const det = h("details", { class: "tinput", open: inp.events.length > 0 && (lvl === "warn" || lvl === "error" || inputs.length <= 6) },
      h("summary", null,
        h("span", { class: "ttime" }, m ? fmtTime(m.timestamp) : ""),
        h("span", { class: "ttext" }, m ? h("q", null, m.text) : h("em", null, "Before the first user input")),
        h("span", { class: "tcount muted" }, `${inp.events.length} ${inp.events.length === 1 ? "action" : "actions"}`),
        h("span", { class: "tdur" }, inp.events.length ? fmtMs(inp.total_duration_ms) : "–"),
        lvl ? h("span", { class: "lvl lvl-" + lvl }, lvl) : null),
      inp.events.length ? h("ol", { class: "events" }, inp.events.map((ev) => {
        const off = new Date(ev.timestamp).getTime() - base;
        return h("li", { class: "ev lvl-" + (ev.level || "info") },
          h("div", { class: "evrow" },
            h("span", { class: "evoff muted", title: fmtFull(ev.timestamp) }, (off >= 0 ? "+" : "") + fmtMs(off)),
            h("span", { class: "lvl lvl-" + (ev.level || "info") }, ev.level || "info"),
            h("span", { class: "evaction mono" }, ev.action),
            h("span", { class: "evbar", "aria-hidden": "true" }, h("span", { style: { width: `${Math.max(1, ((ev.duration_ms || 0) / maxDur) * 100)}%` } })),
            h("span", { class: "evdur" }, fmtMs(ev.duration_ms))),
          ev.detail && Object.keys(ev.detail).length ? h("details", { class: "evdetail" }, h("summary", null, "detail"), h("pre", null, JSON.stringify(ev.detail, null, 2))) : null);
      })) : h("p", { class: "muted small pad" }, "No actions recorded for this input."));
    wrap.append(det);
  }
  return wrap;
}

function logsView() {
  const wrap = h("div", { class: "trace logs", id: "logs" }, traceHeader());
  if (T.error) {
    wrap.append(h("div", { class: "error", role: "alert" }, "Couldn't load the logs: ", T.error.message));
    return wrap;
  }
  if (!T.data) {
    wrap.append(h("p", { class: "muted" }, "Loading logs…"));
    return wrap;
  }
  const rows = [];
  for (const inp of T.data.inputs || []) for (const ev of inp.events) rows.push({ ev, input: inp.message });
  rows.sort((a, b) => a.ev.timestamp.localeCompare(b.ev.timestamp));
  if (!rows.length) {
    wrap.append(traceEmpty());
    return wrap;
  }
  const shown = new Set(LEVELS);
  const table = h("table", { class: "logtable" },
    h("thead", null, h("tr", null, h("th", null, "Time"), h("th", null, "Level"), h("th", null, "Action"), h("th", { class: "num" }, "Duration"), h("th", null, "Detail"))),
    h("tbody", null, rows.map(({ ev, input }) => h("tr", { class: "lvl-" + (ev.level || "info"), "data-level": ev.level || "info" },
      h("td", { class: "mono nowrap", title: fmtFull(ev.timestamp) }, fmtTime(ev.timestamp)),
      h("td", null, h("span", { class: "lvl lvl-" + (ev.level || "info") }, ev.level || "info")),
      h("td", { class: "mono" }, ev.action, input ? h("div", { class: "muted small", title: input.text }, "↳ ", input.text.length > 60 ? input.text.slice(0, 60) + "…" : input.text) : null),
      h("td", { class: "num nowrap" }, fmtMs(ev.duration_ms)),
      h("td", { class: "mono small detail" }, ev.detail ? JSON.stringify(ev.detail) : "")))));
  const filters = h("div", { class: "levelfilter", role: "group", "aria-label": "Levels" }, LEVELS.map((l) => h("label", { class: "lvlchk" },
    h("input", { type: "checkbox", checked: true, onchange: (e) => {
      if (e.target.checked) shown.add(l);
      else shown.delete(l);
      for (const tr of $$("tbody tr", table)) tr.hidden = !shown.has(tr.dataset.level);
    } }), h("span", { class: "lvl lvl-" + l }, l), " ", String(rows.filter((r) => (r.ev.level || "info") === l).length))));
  wrap.append(filters, h("div", { class: "tablewrap" }, table));
  return wrap;
}
