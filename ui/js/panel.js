// The filter sidebar of the conversation list: one section per filter with a section
// in the descriptor, their facet counts, and the pending (not yet applied) choice.
//
// Owns: #filters and the pending filter set, whose counts update as the user clicks
// (a search with limit 1). Sections come from the filter model (filters.js); what is
// keyed by name here is presentation only: node ids shown with their names, and the
// flow section's funnel (`step` of one flow, `dropoff`), which needs /flows.

import { api } from "./api.js";
import { debounce, fmtN, hashHue } from "./format.js";
import { current, enc, go, listUrl } from "./router.js";
import { $, $$, fill, h } from "./shared.js";

/** Values shown per section before "Show all". */
const LIMIT = 8;

let model = null;
/** The list's state (applied filters, context, its facets and total), read-only here. */
let L = null;
let P = freshPanel();
const nodes = { bot: null, map: new Map() };

function freshPanel() {
  return { pending: null, facets: null, total: null, steps: null, stepsFor: null, stepsKey: null, error: null, expanded: new Set(), search: {}, seq: 0 };
}

const flowsOf = (f) => f.flow || [];
const stepOf = (f) => (f.step && f.step.length ? f.step[0] : "");

/** Builds the sidebar into `root` for the filter `filterModel`, reading the list's state `list`. */
export function mountPanel(root, filterModel, list) {
  model = filterModel;
  L = list;
  P = freshPanel();
  const sections = model.sections.map((d) => h("section", { class: "fsec", "data-dim": d.param },
    h("h3", null, d.title, d.hint ? h("span", { class: "hint" }, " · " + d.hint) : null),
    d.searchable ? h("input", { type: "search", class: "fsearch", id: "fs-" + d.param, placeholder: `Find ${d.title.toLowerCase()}…`, "aria-label": `Find ${d.title.toLowerCase()}`, oninput: (e) => {
      P.search[d.param] = e.target.value;
      renderSection(d.param);
    } }) : null,
    h("ul", { class: "fvals", id: "fv-" + d.param }),
    d.param === "flow" ? h("div", { class: "fsteps", id: "fv-steps" }) : null,
  ));
  fill(root,
    h("div", { class: "fhead" }, h("h2", null, "Filters"), h("span", { class: "fpreview muted", id: "f-preview" })),
    // Above the sections (and sticky): in view at any height, however long the lists.
    h("div", { class: "fapply" },
      h("button", { type: "button", class: "primary", id: "f-apply", onclick: applyFilters }, "Apply filter"),
      h("button", { type: "button", id: "f-clear", onclick: clearFilters }, "Clear")),
    h("div", { class: "error small", id: "f-error", role: "alert", hidden: true }),
    ...sections,
  );
}

/** The list applied filters `f` (from the URL): the sidebar starts over from them. */
export function followApplied(f) {
  P.pending = f;
  P.steps = null;
  renderPanel();
}

/** A search of the list answered `r`: its facets are the sidebar's while nothing is pending. */
export function listLoaded(r, { more }) {
  if (!more && model.key(P.pending) === model.key(L.applied)) {
    P.facets = r.facets;
    P.total = r.total;
  }
  renderPanel();
  if (!more && flowsOf(P.pending).length === 1) refreshSteps();
}

/** The applied search failed (a bad query): no counts to show until it is fixed. */
export function listFailed(e) {
  if (model.key(P.pending) === model.key(L.applied)) {
    P.facets = null;
    P.total = null;
    P.error = e;
  }
  renderPanel();
}

/** What an empty section says: why it is empty, not a placeholder that never fills. */
function emptyText(d, term) {
  if (term) return "No match.";
  if (!P.facets) return P.error ? "No counts: the search has an error." : "…";
  // Values may exist in the range but not with the other filters.
  if (model.count(P.pending) > 0) return "None with these filters.";
  return d.empty || "None in this range.";
}

/** Forgets the node names (another key may see other bots). */
export function resetNodes() {
  nodes.bot = null;
}

/** Loads the names of `bot`'s nodes once, for the Nodes section. */
export async function ensureNodes(bot) {
  if (nodes.bot === bot) return;
  nodes.bot = bot;
  nodes.map = new Map();
  try {
    const r = await api("GET", `/v1/bots/${enc(bot)}/nodes`);
    const list = Array.isArray(r) ? r : r.nodes || [];
    for (const n of list) nodes.map.set(n.id, n);
    renderSection("node");
  } catch {
    /* names are a nicety: ids still show */
  }
}

function nodeLabel(id) {
  const n = nodes.map.get(id);
  return n && n.name ? n.name : id;
}

/** Renders every section, the funnel and the Apply/Clear buttons. */
function renderPanel() {
  if (!$("#filters") || !P.pending) return;
  for (const d of model.sections) renderSection(d.param);
  renderSteps();
  const dirty = model.key(P.pending) !== model.key(L.applied);
  const btn = $("#f-apply");
  btn.disabled = !dirty;
  btn.textContent = dirty && P.total != null ? `Apply filter (${fmtN(P.total)})` : "Apply filter";
  $("#f-clear").disabled = model.count(P.pending) === 0 && model.count(L.applied) === 0;
  $("#f-preview").textContent = dirty ? "not applied yet" : "";
  const err = $("#f-error");
  err.hidden = !P.error;
  err.textContent = P.error ? P.error.message : "";
}

function focusedKey() {
  return document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.fkey : null;
}

function renderSection(param) {
  const d = model.sections.find((x) => x.param === param);
  const ul = $("#fv-" + param);
  if (!d || !ul || !P.pending) return;
  const focused = focusedKey();
  const counts = (P.facets && P.facets[d.facet]) || {};
  fill(ul, ...(d.kind === "bool" ? boolValues(d, counts) : multiValues(d, counts)));
  if (focused && focused.startsWith(param + ":")) {
    const el = ul.querySelector(`[data-fkey="${CSS.escape(focused)}"]`);
    if (el) el.focus();
  }
}

/** Any / yes / no, with counts. */
function boolValues(d, counts) {
  const t = counts["true"] || 0;
  const f = counts["false"] || 0;
  const key = d.param;
  const choices = [["", "Any", t + f], ["true", d.title, t], ["false", "Not " + d.title.toLowerCase(), f]];
  return choices.map(([val, label, n]) => h("li", null, h("label", { class: "fval" },
    h("input", { type: "radio", name: "f-" + key, value: val, checked: P.pending[key] === val, "data-fkey": key + ":" + val, onchange: () => setPending({ [key]: val }) }),
    h("span", { class: "fname" }, label), h("span", { class: "fcount" }, P.facets ? fmtN(n) : ""))));
}

/** Checkboxes for the values with counts, most frequent first; chosen ones always stay. */
function multiValues(d, counts) {
  const key = d.param;
  const items = [];
  const selected = new Set(P.pending[key]);
  let entries = Object.entries(counts);
  for (const v of selected) if (!(v in counts)) entries.push([v, 0]);
  entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0], "en", { numeric: true }));
  const named = key === "node";
  const label = named ? nodeLabel : (v) => v;
  const term = (P.search[key] || "").trim().toLowerCase();
  // A search narrows the list; ticked values always stay in view.
  if (term) entries = entries.filter(([v]) => selected.has(v) || (v + " " + label(v)).toLowerCase().includes(term));
  const expanded = P.expanded.has(key) || term;
  const shown = expanded ? entries : entries.slice(0, LIMIT);
  if (!expanded) for (const e of entries.slice(LIMIT)) if (selected.has(e[0])) shown.push(e);
  for (const [v, n] of shown) {
    const id = "fv-" + key + "-" + hashHue(v) + "-" + v.length;
    items.push(h("li", null, h("label", { class: "fval" + (n === 0 ? " zero" : ""), title: named ? `${label(v)} (${v})` : v },
      h("input", { type: "checkbox", value: v, checked: selected.has(v), "data-fkey": key + ":" + v, id, onchange: (e) => toggleValue(key, v, e.target.checked) }),
      h("span", { class: "fname" }, label(v), named && label(v) !== v ? h("small", null, " " + v) : null),
      h("span", { class: "fcount" }, fmtN(n)))));
  }
  if (!entries.length) items.push(h("li", { class: "none muted" }, emptyText(d, term)));
  if (entries.length > LIMIT && !term) {
    items.push(h("li", { class: "fmore" }, h("button", { type: "button", class: "link", onclick: () => {
      if (P.expanded.has(key)) P.expanded.delete(key);
      else P.expanded.add(key);
      renderSection(key);
    } }, P.expanded.has(key) ? "Show fewer" : `Show all ${fmtN(entries.length)}`)));
  }
  return items;
}

// ----- the flow section's funnel: the step of one flow, and drop-offs

function renderSteps() {
  const box = $("#fv-steps");
  if (!box || !P.pending) return;
  const flows = flowsOf(P.pending);
  const chosen = stepOf(P.pending);
  const focused = focusedKey();
  const kids = [];
  let dropCount = null;
  if (flows.length === 1 && model.available("step", P.pending)) {
    const info = P.stepsFor === flows[0] ? P.steps : null;
    kids.push(h("h4", null, "Step of ", h("span", { class: "mono" }, flows[0])));
    kids.push(h("p", { class: "fsteps-legend muted", id: "fsteps-legend" }, "Conversations that reached each step · dropped off there"));
    const steps = info ? info.steps : null;
    const list = h("ul", { class: "fvals", id: "fv-step" });
    const opts = [["", "Any step", info ? info.conversations : null, info ? info.dropped_off : null]];
    if (steps) for (const st of steps) opts.push([st.step ?? "", st.step ?? "(no step)", st.reached, st.dropped_off]);
    for (const [val, label, reached, dropped] of opts) {
      if (val === "" && label !== "Any step") continue; // a drop-off without step can't be picked as a step
      list.append(h("li", null, h("label", { class: "fval" },
        h("input", { type: "radio", name: "f-step", value: val, checked: chosen === val, "data-fkey": "step:" + val, onchange: () => setPending({ step: val ? [val] : [] }) }),
        h("span", { class: "fname" }, label),
        h("span", { class: "fcount", title: reached == null ? "" : `${fmtN(reached)} reached this step, ${fmtN(dropped)} dropped off here` }, reached == null ? "" : `${fmtN(reached)} · ${fmtN(dropped)}`))));
      if (chosen === val) dropCount = dropped;
    }
    if (!steps) list.append(h("li", { class: "muted none" }, "Loading steps…"));
    kids.push(list);
  } else if (flows.length > 1) {
    kids.push(h("p", { class: "muted small" }, "Pick a single flow to choose a step."));
  }
  if (model.available("dropoff", P.pending)) {
    const dropLabel = !flows.length ? "Dropped off (any flow)" : flows.length === 1 && chosen ? "Dropped off at this step" : "Dropped off in this flow";
    kids.push(h("label", { class: "fval dropoff" },
      h("input", { type: "checkbox", id: "f-dropoff", checked: P.pending.dropoff === "true", "data-fkey": "dropoff:", onchange: (e) => setPending({ dropoff: e.target.checked ? "true" : "" }) }),
      h("span", { class: "fname" }, dropLabel, h("span", { class: "sr" }, " (dropped off here)")),
      h("span", { class: "fcount" }, dropCount == null ? "" : fmtN(dropCount))));
  }
  fill(box, ...kids);
  if (focused && (focused.startsWith("step:") || focused === "dropoff:")) {
    const el = box.querySelector(`[data-fkey="${CSS.escape(focused)}"]`);
    if (el) el.focus();
  }
}

/** The funnel of the one pending flow, counted with the other pending filters. */
async function refreshSteps() {
  const flow = flowsOf(P.pending)[0];
  const f = { ...P.pending, step: [], dropoff: "" };
  const params = model.searchParams(f, L.ctx, { sort: false });
  const key = params.toString();
  if (P.stepsKey === key && P.steps) return;
  P.stepsKey = key;
  try {
    const r = await api("GET", `/v1/bots/${enc(L.ctx.bot)}/flows`, { params });
    if (P.stepsKey !== key) return;
    P.steps = (r.flows || []).find((x) => x.flow === flow) || { flow, conversations: 0, dropped_off: 0, steps: [] };
    P.stepsFor = flow;
  } catch (e) {
    P.steps = { flow, conversations: null, dropped_off: null, steps: [] };
    P.stepsFor = flow;
    P.error = e;
  }
  renderPanel();
}

// ----- changing the pending choice, applying it

function toggleValue(key, v, on) {
  const cur = new Set(P.pending[key]);
  if (on) cur.add(v);
  else cur.delete(v);
  const patch = { [key]: [...cur] };
  // A step belongs to one flow.
  if (key === "flow" && cur.size !== 1) patch.step = [];
  setPending(patch);
}

function setPending(patch) {
  const before = flowsOf(P.pending).join("\n");
  P.pending = { ...P.pending, ...patch };
  if (flowsOf(P.pending).join("\n") !== before) {
    P.steps = null;
    P.stepsFor = null;
    if (flowsOf(P.pending).length !== 1 && P.pending.step) P.pending.step = [];
  }
  renderPanel();
  refreshPreview();
}

/** Counts for the pending (not yet applied) filters: the facets update as the user clicks. */
const refreshPreview = debounce(async () => {
  const seq = ++P.seq;
  if (model.key(P.pending) === model.key(L.applied) && L.facets) {
    P.facets = L.facets;
    P.total = L.total;
    P.error = null;
    renderPanel();
    if (flowsOf(P.pending).length === 1) refreshSteps();
    return;
  }
  $("#filters").classList.add("loading");
  try {
    const params = model.searchParams(P.pending, L.ctx, { sort: false });
    params.set("limit", "1");
    const r = await api("GET", `/v1/bots/${enc(L.ctx.bot)}/conversations`, { params });
    if (seq !== P.seq) return;
    P.facets = r.facets;
    P.total = r.total;
    P.error = null;
  } catch (e) {
    if (seq !== P.seq) return;
    P.error = e;
    P.total = null;
  } finally {
    if (seq === P.seq) $("#filters")?.classList.remove("loading");
  }
  renderPanel();
  if (flowsOf(P.pending).length === 1) refreshSteps();
}, 120);

function applyFilters() {
  const p = model.write(P.pending, new URLSearchParams(current.params));
  p.delete("tab");
  document.body.classList.remove("show-filters");
  go(listUrl(current.route.bot, p));
}

function clearFilters() {
  const empty = model.empty();
  P.search = {};
  for (const el of $$(".fsearch")) el.value = "";
  const p = model.write(empty, new URLSearchParams(current.params));
  p.delete("tab");
  P.pending = empty;
  go(listUrl(current.route.bot, p));
}
