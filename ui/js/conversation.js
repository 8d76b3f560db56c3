// The conversation drawer over the list: header with flag, debug switch and share
// link, the tabs (transcript, debugger, logs), the user details with labels; and the
// transcript and details the shared page reuses.
//
// Owns: #drawer-root, the open conversation, the review actions on it, and the
// bot's label names (suggestions). The trace tabs are debugger.js's.

import { api, auth } from "./api.js";
import { loadTrace, resetTrace, traceIdle, traceView } from "./debugger.js";
import { fmtDateOnly, fmtFull, fmtN, fmtTime, hashHue } from "./format.js";
import { patchRow } from "./list.js";
import { convTab, convUrl, current, enc, go, listUrl } from "./router.js";
import { $, chanBadge, chip, copyText, fill, h, icon, richText, timeEl, toast } from "./shared.js";

/** The open conversation: its key (bot|id|q), data, share link, actions in flight, and a keyboard action waiting for it to load. */
const C = { key: null, id: null, bot: null, q: "", data: null, error: null, busy: new Set(), waiting: null };
const labels = { bot: null, names: [] };

/** Forgets what was loaded (another key may see something else). */
export function resetConversation() {
  C.id = null;
  labels.bot = null;
}

/** Closes the drawer. */
export function closeDrawer() {
  $("#drawer-root").replaceChildren();
  document.body.classList.remove("drawer-open");
  C.key = null;
}

/** Opens, updates or closes the drawer for the current URL. */
export function renderDrawer() {
  const r = current.route;
  if (!r.id) {
    if (C.key) {
      const id = C.id;
      closeDrawer();
      const tr = id && $(`#rows tr[data-id="${CSS.escape(id)}"]`);
      if (tr) tr.scrollIntoView({ block: "nearest" });
    }
    return;
  }
  const q = current.params.get("q") || "";
  const key = `${r.bot}|${r.id}|${q}`;
  if (C.key !== key) {
    C.key = key;
    C.bot = r.bot;
    C.id = r.id;
    C.q = q;
    C.data = null;
    C.error = null;
    C.waiting = null;
    resetTrace(key, r.bot, r.id, {
      debugOn: () => !!(C.data && C.data.debug),
      onChange: () => {
        if (convTab() !== "transcript") renderConvBody();
      },
    });
    mountDrawer();
    loadConversation();
  } else {
    renderConvTabs();
    renderConvBody();
  }
}

function mountDrawer() {
  document.body.classList.add("drawer-open");
  const root = $("#drawer-root");
  const close = () => go(listUrl());
  fill(root,
    h("div", { class: "scrim", onclick: close }),
    h("aside", { class: "drawer", id: "drawer", role: "dialog", "aria-modal": "false", "aria-labelledby": "conv-title" },
      h("header", { class: "dhead" },
        h("button", { type: "button", class: "icon-btn", id: "conv-close", "aria-label": "Close conversation", title: "Close (Esc)", onclick: close }, icon("back")),
        h("div", { class: "dtitle" }, h("h2", { id: "conv-title" }, h("span", { class: "skel w12" }, " ")), h("div", { class: "dsub muted", id: "conv-sub" }, " ")),
        h("div", { class: "dactions", id: "conv-actions" })),
      h("div", { class: "share-box", id: "share-box", hidden: true }),
      h("nav", { class: "tabs", id: "conv-tabs", role: "tablist" }),
      h("div", { class: "dbody", id: "conv-body" },
        h("div", { class: "dmain", id: "conv-main" }, skeletonMessages()),
        h("aside", { class: "details", id: "conv-details", "aria-label": "User details" }))),
  );
  renderConvTabs();
}

/** Grey bubbles while a transcript loads. */
export function skeletonMessages() {
  return h("div", { class: "transcript skeleton" }, [0, 1, 2, 3, 4].map((i) => h("div", { class: "msg " + (i % 2 ? "m-bot" : "m-user") }, h("div", { class: "bubble skel" }, " "))));
}

async function loadConversation() {
  const key = C.key;
  const params = new URLSearchParams();
  if (C.q) params.set("q", C.q);
  try {
    const data = await api("GET", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}`, { params });
    if (C.key !== key) return;
    C.data = data;
  } catch (e) {
    if (C.key !== key) return;
    C.error = e;
  }
  renderConvHeader();
  renderConvDetails();
  renderConvBody();
  if (convTab() !== "transcript") loadTrace();
  ensureLabels(C.bot);
  const waiting = C.waiting;
  C.waiting = null;
  if (waiting && C.data) keyAction(waiting);
}

/**
 * A review key on the open conversation (`label`: to the label box; `flag`: flag or
 * unflag), once it has loaded.
 */
export function keyAction(kind) {
  if (!C.data) {
    C.waiting = kind;
    return;
  }
  if (!auth.canEdit) return toast("Your key may not change conversations (editor role needed).", true);
  if (kind === "label") $("#label-input")?.focus();
  else if (kind === "flag") toggleFlag();
}

/** The bot's label names (for suggestions), loaded once per bot unless `force`d. */
async function ensureLabels(bot, force = false) {
  if (labels.bot === bot && !force) return labels.names;
  labels.bot = bot;
  try {
    const r = await api("GET", `/v1/bots/${enc(bot)}/labels`);
    labels.names = (r.labels || []).map((l) => l.name);
  } catch {
    labels.names = [];
  }
  const dl = $("#label-suggestions");
  if (dl) fill(dl, ...labels.names.map((n) => h("option", { value: n })));
  return labels.names;
}

function renderConvHeader() {
  const d = C.data;
  const title = $("#conv-title");
  if (!title) return;
  if (!d) {
    title.textContent = C.error ? "Conversation" : " ";
    $("#conv-sub").textContent = C.error ? C.id : " ";
    $("#conv-actions").replaceChildren();
    return;
  }
  title.textContent = d.user;
  fill($("#conv-sub"), chanBadge(d.channel), " ", timeEl(d.started_at), " – ", timeEl(d.last_message_at, fmtTime), ` · ${fmtN(d.message_count)} messages`);
  const busy = C.busy;
  const flagBtn = h("button", {
    type: "button", class: "icon-btn flag-btn" + (d.flagged ? " on" : ""), id: "flag-toggle",
    "aria-pressed": String(!!d.flagged), disabled: !auth.canEdit || busy.has("flag"),
    title: auth.canEdit ? (d.flagged ? "Flagged — click to unflag" : "Flag this conversation") : d.flagged ? "Flagged" : "Not flagged",
    "aria-label": d.flagged ? "Unflag" : "Flag",
    onclick: () => toggleFlag(),
  }, icon("flag"));
  const dbg = h("label", { class: "switch" + (d.debug ? " on" : ""), title: "Debug logging: keep the bot's trace events for this conversation" },
    h("input", { type: "checkbox", role: "switch", id: "debug-toggle", checked: !!d.debug, disabled: !auth.canEdit || busy.has("debug"), onchange: (e) => setDebug(e.target.checked) }),
    h("span", { class: "knob", "aria-hidden": "true" }), h("span", null, "Debug"));
  const shareBtn = h("button", { type: "button", class: "edit-only share-btn", id: "share-btn", disabled: busy.has("share"), onclick: shareLink }, icon("link"), h("span", null, "Copy link"));
  fill($("#conv-actions"), flagBtn, dbg, shareBtn);
}

function renderConvTabs() {
  const nav = $("#conv-tabs");
  if (!nav) return;
  const cur = convTab();
  const tabs = [["transcript", "Transcript"], ["debug", "Debugger"], ["logs", "Logs"]];
  fill(nav, ...tabs.map(([t, label]) => h("a", {
    href: convUrl(current.route.id, current.route.bot, current.params, t), role: "tab", "aria-selected": String(cur === t), class: cur === t ? "on" : "", id: "tab-" + t,
    onclick: (e) => {
      e.preventDefault();
      go(convUrl(current.route.id, current.route.bot, current.params, t), { replace: true });
    },
  }, label)));
}

function renderConvBody() {
  const main = $("#conv-main");
  if (!main) return;
  if (C.error) {
    const msg = C.error.status === 404 ? "This conversation does not exist (any more). It may have been merged into another one or archived." : C.error.message;
    fill(main, h("div", { class: "error", role: "alert" }, h("strong", null, "Couldn't open the conversation: "), msg));
    return;
  }
  if (!C.data) return;
  const tab = convTab();
  if (tab === "transcript") fill(main, transcript(C.data, { q: C.q }));
  else {
    if (traceIdle()) loadTrace();
    fill(main, traceView(tab));
  }
  main.scrollTop = 0;
}

/** The transcript of a conversation (also used by the shared page). */
export function transcript(d, { q } = {}) {
  const triggers = new Map(); // message id -> [tag_detail]
  for (const td of d.tag_details || []) for (const mid of td.message_ids || []) {
    if (!triggers.has(mid)) triggers.set(mid, []);
    triggers.get(mid).push(td);
  }
  const wrap = h("div", { class: "transcript", id: "transcript" });
  if ((d.tag_details || []).length) {
    wrap.append(h("div", { class: "tagsum" }, h("h3", null, "Why it was tagged"), h("ul", null, d.tag_details.map((td) => h("li", null,
      chip(td.tag, "tag"), " ", h("span", null, td.reason || td.rule),
      (td.message_ids || []).length ? h("button", { type: "button", class: "link small showmsg", onclick: () => {
        const el = document.getElementById("msg-" + td.message_ids[0]);
        if (el) {
          el.scrollIntoView({ block: "center", behavior: "smooth" });
          el.classList.add("flash");
          setTimeout(() => el.classList.remove("flash"), 1200);
        }
      } }, `show ${td.message_ids.length === 1 ? "message" : td.message_ids.length + " messages"}`) : null)))));
  }
  if (q) {
    const hits = d.messages.filter((m) => m.highlight).length;
    wrap.append(h("p", { class: "muted small hits" }, `${hits} ${hits === 1 ? "message matches" : "messages match"} `, h("q", null, q)));
  }
  let lastFlow = null;
  for (const m of d.messages) {
    const trig = triggers.get(m.id) || [];
    const cls = ["msg", "m-" + m.role];
    if (m.unidentified) cls.push("unidentified");
    if (trig.length) cls.push("triggered");
    if (m.highlight) cls.push("hit");
    if (m.flow && m.flow !== lastFlow) {
      wrap.append(h("div", { class: "flowmark" }, h("span", null, "flow ", h("strong", null, m.flow))));
      lastFlow = m.flow;
    }
    const meta = [];
    meta.push(h("time", { datetime: m.timestamp, title: fmtFull(m.timestamp) }, fmtTime(m.timestamp)));
    if (m.role === "agent" || m.role === "system") meta.push(h("span", { class: "role-tag" }, m.role));
    if (m.flow || m.step) meta.push(h("span", { class: "ann", title: "flow › step" }, [m.flow, m.step].filter(Boolean).join(" › ")));
    if (m.node_id) meta.push(h("span", { class: "ann node", title: `node ${m.node_id}${m.node_type ? " (" + m.node_type + ")" : ""}` }, m.node_name || m.node_id, m.node_type ? h("small", null, " " + m.node_type) : null));
    if (m.intent) meta.push(h("span", { class: "ann intent", title: "intent (confidence)" }, m.intent, m.confidence != null ? ` ${Math.round(m.confidence * 100)}%` : ""));
    if (m.flow_completed) meta.push(h("span", { class: "badge ok" }, "flow completed"));
    const badges = [];
    if (m.unidentified) badges.push(h("span", { class: "badge warn" }, "unidentified response"));
    for (const td of trig) badges.push(h("span", { class: "badge trig", title: td.reason || td.rule }, chip(td.tag, "tag"), " ", td.reason || td.rule));
    const text = m.highlight ? richText(m.highlight) : m.text;
    wrap.append(h("div", { class: cls.join(" "), id: "msg-" + m.id, "data-mid": m.id },
      h("div", { class: "bubble" }, text === "" ? h("em", { class: "muted" }, "(empty)") : text),
      h("div", { class: "meta" }, meta),
      badges.length ? h("div", { class: "badges" }, badges) : null));
  }
  if (!d.messages.length) wrap.append(h("p", { class: "muted" }, "No messages."));
  return wrap;
}

function renderConvDetails({ focusLabel = false } = {}) {
  const box = $("#conv-details");
  if (!box) return;
  const d = C.data;
  if (!d) {
    box.replaceChildren();
    return;
  }
  fill(box, userDetails(d, { editable: true, history: true }));
  if (focusLabel) $("#label-input")?.focus();
}

/** The user details box: facts, labels (editable for editors), earlier conversations. */
export function userDetails(d, { editable, history }) {
  const rows = [
    ["User", h("strong", { id: "ud-user" }, d.user)],
    ["Channel", chanBadge(d.channel)],
    ["Started", timeEl(d.started_at, fmtFull)],
    ["Last activity", timeEl(d.last_message_at, fmtFull)],
    ["Messages", fmtN(d.message_count)],
  ];
  if ((d.flows || []).length) rows.push(["Flows", h("span", null, d.flows.map((f, i) => [i ? ", " : "", h("span", { class: "mono" }, f)]))]);
  if (d.dropoff) rows.push(["Dropped off", h("span", { class: "mono" }, d.dropoff.flow, d.dropoff.step ? " › " + d.dropoff.step : "")]);
  if (d.flagged && d.flag_note) rows.push(["Flag note", d.flag_note]);
  const open = !window.matchMedia("(max-width: 760px)").matches;
  const details = h("details", { class: "udetails", open },
    h("summary", null, h("h3", null, "User details")),
    h("dl", null, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
    h("h4", null, "Labels"),
    labelsEditor(d, editable && auth.canEdit),
  );
  if (history) {
    const hist = d.history || [];
    details.append(h("h4", null, "Earlier conversations"),
      hist.length ? h("ul", { class: "history", id: "history" }, hist.map((c) => h("li", null,
        h("a", { href: convUrl(c.id, d.bot_id), "data-nav": "" }, timeEl(c.started_at)),
        " ", chanBadge(c.channel), ` ${fmtN(c.message_count)} msgs`,
        c.tags && c.tags.length ? h("div", { class: "chips" }, c.tags.map((t) => chip(t, "tag"))) : null)))
        : h("p", { class: "muted small" }, "None in the last days."));
  }
  return details;
}

function labelsEditor(d, editable) {
  const chips = h("ul", { class: "labels", id: "labels" }, (d.labels || []).map((l) => h("li", { class: "chip label", "data-label": l, style: { "--h": hashHue(l) } },
    h("span", null, l),
    editable ? h("button", { type: "button", class: "x", "aria-label": `Remove label ${l}`, title: "Remove", disabled: C.busy.has("label"), onclick: () => removeLabel(l) }, "×") : null)));
  if (!(d.labels || []).length) chips.append(h("li", { class: "muted small none" }, "No labels."));
  if (!editable) return chips;
  const input = h("input", { id: "label-input", list: "label-suggestions", placeholder: "Add a label…", "aria-label": "Add a label", maxlength: "64", autocomplete: "off" });
  const form = h("form", { class: "label-add", onsubmit: (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) addLabel(v);
  } }, input, h("button", { type: "submit", id: "label-add", disabled: C.busy.has("label") }, "Add"),
  h("datalist", { id: "label-suggestions" }, labels.names.filter((n) => !(d.labels || []).some((l) => l.toLowerCase() === n.toLowerCase())).map((n) => h("option", { value: n }))));
  input.addEventListener("focus", () => ensureLabels(C.bot));
  return h("div", null, chips, form, h("p", { class: "error small", id: "label-error", role: "alert", hidden: true }));
}

// ----- review actions

/** Runs a review action; applies the returned conversation object. */
async function review(kind, method, path, body) {
  const key = C.key;
  C.busy.add(kind);
  renderConvHeader();
  try {
    const r = await api(method, path, { body });
    if (C.key === key && r && C.data) {
      C.data = { ...C.data, ...pickConv(r) };
      patchRow(r);
    }
    return r;
  } catch (e) {
    toast(e.status === 403 ? "Your key may not change conversations (editor role needed)." : e.message, true);
    throw e;
  } finally {
    C.busy.delete(kind);
    if (C.key === key) renderConvHeader();
  }
}

/** The fields of a review answer that change what the drawer shows. */
function pickConv(r) {
  const out = {};
  for (const k of ["labels", "flagged", "flagged_at", "flag_note", "debug", "tags", "message_count", "last_message_at"]) if (k in r) out[k] = r[k];
  return out;
}

async function addLabel(label) {
  if (label.length > 64) return toast("A label has at most 64 characters.", true);
  try {
    await review("label", "PUT", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/labels/${enc(label)}`);
    renderConvDetails({ focusLabel: true });
    ensureLabels(C.bot, true);
  } catch {
    renderConvDetails();
  }
}

async function removeLabel(label) {
  try {
    await review("label", "DELETE", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/labels/${enc(label)}`);
  } catch {
    /* toast shown */
  }
  renderConvDetails();
}

async function toggleFlag() {
  if (!C.data) return;
  try {
    await review("flag", C.data.flagged ? "DELETE" : "PUT", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/flag`);
    toast(C.data.flagged ? "Flagged." : "Flag removed.");
  } catch {
    /* toast shown */
  }
  renderConvDetails();
}

async function setDebug(on) {
  try {
    await review("debug", on ? "PUT" : "DELETE", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/debug`);
    toast(on ? "Debug logging is on: the bot's trace events for this conversation are kept from now on." : "Debug logging is off.");
  } catch {
    /* toast shown */
  }
  if (convTab() !== "transcript") loadTrace();
}

async function shareLink() {
  const box = $("#share-box");
  try {
    const r = await review("share", "POST", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/share`);
    const link = location.origin + r.url;
    const copied = await copyText(link);
    const input = h("input", { id: "share-link", readonly: true, value: link, "aria-label": "Share link", onfocus: (e) => e.target.select() });
    fill(box,
      h("span", { id: "share-status" }, copied ? "Link copied to the clipboard." : "Copy this link:"),
      input,
      h("span", { class: "muted small" }, r.expires_at ? ` Read-only; expires ${fmtDateOnly(new Date(r.expires_at))}.` : " Read-only."),
      h("button", { type: "button", class: "icon-btn", "aria-label": "Hide link", onclick: () => { box.hidden = true; } }, icon("close")));
    box.hidden = false;
    if (!copied) input.select();
  } catch {
    /* toast shown */
  }
}
