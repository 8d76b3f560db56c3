// convlog web UI: one ES module, no framework, no build step, no network beyond this server.
//
// Routes (every page path serves the same document, this script routes on the URL):
//   /                                  -> the last bot used, or a bot picker
//   /bots/{bot}?filters                -> conversation logs (filters, query, range, sort in the query string)
//   /bots/{bot}/conversations/{id}?…   -> the same list with that conversation open (tab=debug|logs)
//   /bots/{bot}/dashboards?range=…     -> charts
//   /shared/{token}                    -> a read-only shared conversation
// The whole state of a page is in its URL, so copying the URL shares what one sees.

// ---------------------------------------------------------------- helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const enc = encodeURIComponent;
const SVGNS = "http://www.w3.org/2000/svg";
const BOT_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** Builds an element: h("a", {href, class, onclick}, ...children). */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, kids);
  return el;
}

/** Builds an SVG element; every prop is an attribute (or a listener for on*). */
function s(tag, props, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.setAttribute("class", v);
      else el.setAttribute(k, String(v));
    }
  }
  append(el, kids);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") {
      for (const [sk, sv] of Object.entries(v)) {
        if (sk.startsWith("--")) el.style.setProperty(sk, String(sv));
        else el.style[sk] = sv;
      }
    }
    else if (typeof v === "boolean" || typeof v === "number") {
      if (k in el) el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    } else el.setAttribute(k, v);
  }
}

/** Replaces an element's children (null, false and "" are skipped). */
function fill(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false || kid === "") continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

/**
 * Server-made HTML (`highlight`, `snippets`): escaped text with <b> around matches.
 * Parsed in an inert <template>; only text and <b> survive, rebuilt as text nodes and <mark>.
 */
function richText(html) {
  const t = document.createElement("template");
  t.innerHTML = String(html ?? "");
  const out = document.createDocumentFragment();
  const walk = (node) => {
    for (const n of node.childNodes) {
      if (n.nodeType === Node.TEXT_NODE) out.append(document.createTextNode(n.data));
      else if (n.nodeType === Node.ELEMENT_NODE && n.tagName === "B") out.append(h("mark", null, n.textContent));
      else if (n.nodeType === Node.ELEMENT_NODE) walk(n);
    }
  };
  walk(t.content);
  return out;
}

const nf = new Intl.NumberFormat("en-US");
const fmtN = (n) => nf.format(n ?? 0);
const dtf = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const tf = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const dayf = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });
const fullf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" });
const datef = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : dtf.format(d);
}
function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : tf.format(d);
}
function fmtFull(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : fullf.format(d);
}
function fmtMs(ms) {
  if (ms == null) return "";
  if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 2) + " s";
  if (ms >= 10) return Math.round(ms) + " ms";
  return (Math.round(ms * 10) / 10) + " ms";
}
/** A <time> with the full date as tooltip. */
function timeEl(iso, fmt = fmtDate) {
  return h("time", { datetime: iso || "", title: iso ? fmtFull(iso) : "" }, fmt(iso));
}
/** Local "YYYY-MM-DDTHH:mm" for <input type=datetime-local>. */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
function hashHue(text) {
  let x = 0;
  for (const ch of String(text)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

const ICONS = {
  flag: "M5 21V4h11l-1.5 4L16 12H7v9z",
  bug: "M12 4a3 3 0 0 1 3 3v1h2l2-2 1 1-2 2v2h3v1.5h-3V14l2 2-1 1-2-2h-.2A5 5 0 0 1 12 20a5 5 0 0 1-4.8-5H7l-2 2-1-1 2-2v-1.5H3V11h3V9L4 7l1-1 2 2h2V7a3 3 0 0 1 3-3z",
  link: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1 1.4 1.4 1-1a2 2 0 0 1 2.9 2.9l-3 3a2 2 0 0 1-2.9 0zM14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1-1.4-1.4-1 1a2 2 0 0 1-2.9-2.9l3-3a2 2 0 0 1 2.9 0z",
  close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
  back: "M20 11H7.8l5.6-5.6L12 4l-8 8 8 8 1.4-1.4L7.8 13H20z",
  help: "M11 18h2v-2h-2zm1-16a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16zm0-14a4 4 0 0 0-4 4h2a2 2 0 1 1 4 0c0 2-3 1.8-3 5h2c0-2.3 3-2.5 3-5a4 4 0 0 0-4-4z",
  refresh: "M17.7 6.3A8 8 0 1 0 20 12h-2a6 6 0 1 1-1.8-4.2L13 11h7V4z",
};
function icon(name, cls = "") {
  return s("svg", { viewBox: "0 0 24 24", class: "icon " + cls, "aria-hidden": "true", focusable: "false" }, s("path", { d: ICONS[name] }));
}

// ---------------------------------------------------------------- API client and access control

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KEY_STORE = "convlog.key";
const auth = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  /** "open" (no keys on the server), "admin", "editor", "viewer", or null before probing. */
  role: null,
  canEdit: true,
};

async function api(method, path, { params, body, signal, probe = false } = {}) {
  let url = path;
  if (params) {
    const qs = params.toString();
    if (qs) url += "?" + qs;
  }
  const headers = { Accept: "application/json" };
  if (auth.key) headers.Authorization = "Bearer " + auth.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server could not be reached. Check that convlog is running, then try again.");
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = data && data.error;
    let message = (err && err.message) || `The server answered ${res.status} ${res.statusText}.`;
    if (res.status === 429) message += ` Try again in ${res.headers.get("retry-after") || "a few"} s.`;
    const e = new ApiError(res.status, (err && err.code) || "http_" + res.status, message);
    if (!probe && res.status === 401) requireSignIn(message);
    if (!probe && res.status === 403 && method !== "GET" && auth.canEdit) {
      auth.canEdit = false;
      if (auth.role === "editor" || auth.role === "open") auth.role = "viewer";
      applyRole();
    }
    throw e;
  }
  return data;
}

/** Finds out what the current key (or no key) may do. Returns false when a sign-in is needed. */
async function probeRole() {
  try {
    await api("GET", "/v1/admin/keys", { probe: true });
    auth.role = auth.key ? "admin" : "open";
    auth.canEdit = true;
  } catch (e) {
    if (e.status === 401) {
      auth.role = null;
      return false;
    }
    if (e.status !== 403) {
      // Unreachable or odd: assume the best, actions will tell.
      auth.role = auth.key ? "editor" : "open";
      auth.canEdit = true;
    } else {
      // Not an admin. An edit route on a conversation that can't exist: the role check comes
      // first (403 for viewers), an editor gets 404 and nothing changes.
      const bot = state.route && state.route.bot && BOT_RE.test(state.route.bot) ? state.route.bot : "probe";
      try {
        await api("PUT", `/v1/bots/${enc(bot)}/conversations/role-probe/flag`, { probe: true });
        auth.role = "editor";
        auth.canEdit = true;
      } catch (e2) {
        auth.canEdit = e2.status !== 403;
        auth.role = auth.canEdit ? "editor" : "viewer";
      }
    }
  }
  applyRole();
  return true;
}

function applyRole() {
  document.body.classList.toggle("readonly", !auth.canEdit);
  const who = $("#who");
  const kids = [];
  if (auth.role) {
    const label = auth.role === "open" ? "open mode" : auth.role;
    const title = auth.role === "open" ? "The server has no API keys: everything is allowed from this machine." : `Signed in with a ${auth.role} key`;
    kids.push(h("span", { class: "role role-" + auth.role, title, id: "role-badge" }, label));
  }
  if (auth.key) kids.push(h("button", { type: "button", class: "link", id: "signout", onclick: signOut }, "Sign out"));
  fill(who, ...kids);
}

let signinOpen = false;
function requireSignIn(message) {
  const dlg = $("#signin");
  const err = $("#signin-error");
  const hadKey = !!auth.key;
  err.hidden = !hadKey;
  err.textContent = hadKey ? `That key was not accepted: ${message}` : "";
  if (!signinOpen) {
    signinOpen = true;
    document.body.classList.add("needs-signin");
    if (!dlg.open) dlg.showModal();
    setTimeout(() => $("#signin-key").focus(), 0);
  }
}

async function submitSignIn(ev) {
  ev.preventDefault();
  const input = $("#signin-key");
  const key = input.value.trim();
  if (!key) return;
  const btn = $("#signin-submit");
  btn.disabled = true;
  btn.textContent = "Checking…";
  auth.key = key;
  sessionStorage.setItem(KEY_STORE, key);
  let ok = false;
  try {
    ok = await probeRole();
  } finally {
    btn.disabled = false;
    btn.textContent = "Sign in";
  }
  if (!ok) {
    const err = $("#signin-error");
    err.hidden = false;
    err.textContent = "That key was not accepted (unknown or revoked).";
    auth.key = "";
    sessionStorage.removeItem(KEY_STORE);
    input.select();
    return;
  }
  signinOpen = false;
  document.body.classList.remove("needs-signin");
  $("#signin").close();
  input.value = "";
  resetCaches();
  render();
}

function signOut() {
  auth.key = "";
  auth.role = null;
  sessionStorage.removeItem(KEY_STORE);
  resetCaches();
  state.roleChecked = false;
  render();
}

function resetCaches() {
  state.list.key = null;
  state.conv.id = null;
  state.dash.key = null;
  state.nodes.bot = null;
  state.labels.bot = null;
}

// ---------------------------------------------------------------- state and routing

const state = {
  route: { kind: "home" },
  params: new URLSearchParams(),
  roleChecked: false,
  page: null, // which skeleton is mounted in #view: "list:<bot>" | "dash:<bot>" | "home" | "shared"
  list: { key: null, ctx: null, items: [], total: 0, cursor: null, facets: null, loading: false, more: false, error: null, sel: -1, abort: null },
  panel: { pending: null, facets: null, total: null, steps: null, stepsFor: null, error: null, expanded: new Set(), search: {}, seq: 0 },
  conv: { key: null, id: null, bot: null, data: null, error: null, trace: null, traceError: null, traceLoading: false, share: null, shareError: null, busy: new Set() },
  nodes: { bot: null, map: new Map() },
  labels: { bot: null, names: [] },
  dash: { key: null, data: null, error: null, flowsShown: 6, flowSearch: "" },
  shared: { token: null, data: null, error: null },
};

function parseRoute() {
  const parts = location.pathname.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === "shared" && parts[1]) return { kind: "shared", token: parts[1] };
  if (parts[0] === "bots" && parts[1]) {
    const bot = parts[1];
    if (parts[2] === "conversations" && parts[3]) return { kind: "list", bot, id: parts[3] };
    if (parts[2] === "dashboards") return { kind: "dash", bot };
    return { kind: "list", bot };
  }
  return { kind: "home" };
}

function go(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

const LIST_ONLY_KEYS = ["tab"];
/** The list's query string (without the conversation tab). */
function listQS(params = state.params) {
  const p = new URLSearchParams(params);
  for (const k of LIST_ONLY_KEYS) p.delete(k);
  const qs = p.toString();
  return qs ? "?" + qs : "";
}
function listUrl(bot = state.route.bot, params = state.params) {
  return `/bots/${enc(bot)}${listQS(params)}`;
}
function convUrl(id, bot = state.route.bot, params = state.params, tab) {
  const p = new URLSearchParams(listQS(params));
  if (tab && tab !== "transcript") p.set("tab", tab);
  const qs = p.toString();
  return `/bots/${enc(bot)}/conversations/${enc(id)}${qs ? "?" + qs : ""}`;
}

function rememberBot(bot) {
  localStorage.setItem("convlog.bot", bot);
  let recent = [];
  try {
    recent = JSON.parse(localStorage.getItem("convlog.bots") || "[]");
  } catch {
    recent = [];
  }
  recent = [bot, ...recent.filter((b) => b !== bot)].slice(0, 12);
  localStorage.setItem("convlog.bots", JSON.stringify(recent));
  fill($("#bots-recent"), ...recent.map((b) => h("option", { value: b })));
}

function renderHeader() {
  const r = state.route;
  const input = $("#bot-input");
  if (r.bot && document.activeElement !== input) input.value = r.bot;
  const nav = $("#mainnav");
  if (r.bot) {
    fill(nav, 
      h("a", { href: `/bots/${enc(r.bot)}`, "data-nav": "", class: r.kind === "list" ? "on" : "", "aria-current": r.kind === "list" ? "page" : null }, "Conversations"),
      h("a", { href: `/bots/${enc(r.bot)}/dashboards`, "data-nav": "", class: r.kind === "dash" ? "on" : "", "aria-current": r.kind === "dash" ? "page" : null }, "Dashboards"),
    );
  } else nav.replaceChildren();
  $("#botpick").hidden = r.kind === "shared";
  document.body.dataset.page = r.kind;
}

let renderSeq = 0;
async function render() {
  const seq = ++renderSeq;
  state.route = parseRoute();
  state.params = new URLSearchParams(location.search);
  renderHeader();
  const r = state.route;
  if (r.kind === "shared") {
    fill($("#who"), h("span", { class: "role role-viewer" }, "read-only"));
    return renderShared();
  }
  if (!state.roleChecked) {
    state.roleChecked = true;
    const ok = await probeRole();
    if (seq !== renderSeq) return;
    if (!ok) {
      requireSignIn("");
      mountMessage("Sign in to see the conversation logs.");
      return;
    }
  }
  if (r.kind === "home") return renderHome();
  if (!BOT_RE.test(r.bot)) {
    mountMessage(`"${r.bot}" is not a valid bot id: use letters, digits, ".", "_" or "-", at most 64 characters.`);
    return;
  }
  rememberBot(r.bot);
  document.title = `${r.bot} · convlog`;
  if (r.kind === "dash") {
    closeDrawer();
    return renderDash();
  }
  renderList();
  renderDrawer();
}

function mountMessage(text) {
  state.page = null;
  fill($("#view"), h("div", { class: "center-msg" }, h("p", null, text)));
  closeDrawer();
}

/** The home page: every bot the caller's key may see, with its conversations and last activity. */
async function renderHome() {
  state.page = "home";
  closeDrawer();
  document.title = "convlog";
  const view = $("#view");
  fill(view, h("div", { class: "center-msg" }, h("h1", null, "Conversation logs"), h("p", { class: "muted" }, "Loading the bots…")));
  let d;
  try {
    d = await api("GET", "/v1/bots");
  } catch (e) {
    fill(view, h("div", { class: "center-msg" }, h("h1", null, "Conversation logs"), h("p", { class: "error", role: "alert" }, e.message)));
    return;
  }
  if (state.page !== "home") return;
  const last = localStorage.getItem("convlog.bot");
  const input = h("input", { name: "bot", id: "home-bot", placeholder: "bot id", required: true, pattern: "[A-Za-z0-9._\\-]{1,64}", spellcheck: "false", autocomplete: "off" });
  const rows = d.bots.map((b) =>
    h("tr", { "data-bot": b.id, class: b.id === last ? "last" : "" },
      h("td", null, h("a", { href: `/bots/${enc(b.id)}`, "data-nav": "", class: "mono" }, b.id), b.id === last ? h("span", { class: "muted" }, " · last opened") : null),
      h("td", { class: "num", "data-count": String(b.conversations) }, fmtN(b.conversations)),
      h("td", null, timeEl(b.last_message_at))));
  fill(view,
    h("div", { class: "home", id: "home" },
      h("h1", null, "Conversation logs"),
      rows.length
        ? h("table", { class: "bots", id: "bots" },
            h("thead", null, h("tr", null, h("th", null, "Bot"), h("th", { class: "num" }, "Conversations"), h("th", null, "Last message"))),
            h("tbody", null, rows))
        : h("p", { class: "muted", id: "no-bots" }, "No bot has sent messages yet. Post some to /v1/messages, or run convlog ingest."),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); if (BOT_RE.test(input.value)) go(`/bots/${enc(input.value)}`); } },
        h("label", { for: "home-bot" }, "Open a bot by id"), input, h("button", { class: "primary", type: "submit" }, "Open")),
    ),
  );
}

// ---------------------------------------------------------------- time ranges

const RANGES = {
  "24h": { label: "Last 24 hours", ms: 24 * 3600e3 },
  "7d": { label: "Last 7 days", ms: 7 * 24 * 3600e3 },
  "30d": { label: "Last 30 days", ms: 30 * 24 * 3600e3 },
};

/** {from, to, label, preset} for the URL's range; presets are relative to now. */
function resolveRange(p, fallback = "24h") {
  const from = p.get("from");
  const to = p.get("to");
  if (from || to) {
    const label = `${from ? fmtDate(from) : "…"} – ${to ? fmtDate(to) : "now"}`;
    return { from: from || null, to: to || null, label, preset: "custom" };
  }
  const key = RANGES[p.get("range")] ? p.get("range") : fallback;
  const r = RANGES[key];
  return { from: new Date(Date.now() - r.ms).toISOString(), to: null, label: r.label, preset: key };
}

/** The range picker: a preset select plus a custom from/to pair. `onchange(params)` gets the new params. */
function rangePicker(params, fallback, onchange) {
  const cur = resolveRange(params, fallback);
  const sel = h("select", { "aria-label": "Date range", id: "range-select" });
  for (const [k, r] of Object.entries(RANGES)) sel.append(h("option", { value: k }, r.label));
  sel.append(h("option", { value: "custom" }, "Custom range…"));
  sel.value = cur.preset;
  const fromIn = h("input", { type: "datetime-local", id: "range-from", "aria-label": "From", value: cur.from ? toLocalInput(cur.from) : "" });
  const toIn = h("input", { type: "datetime-local", id: "range-to", "aria-label": "To", value: cur.to ? toLocalInput(cur.to) : "" });
  const custom = h("span", { class: "custom-range", hidden: cur.preset !== "custom" },
    fromIn, h("span", { class: "dash-sep" }, "–"), toIn,
    h("button", { type: "button", id: "range-apply", onclick: () => {
      const p = new URLSearchParams(params);
      p.delete("range");
      p.delete("from");
      p.delete("to");
      if (fromIn.value) p.set("from", new Date(fromIn.value).toISOString());
      if (toIn.value) p.set("to", new Date(toIn.value).toISOString());
      if (p.get("from") && p.get("to") && p.get("from") >= p.get("to")) {
        toast("The start of the range must be before its end.", true);
        return;
      }
      onchange(p);
    } }, "Set"));
  sel.addEventListener("change", () => {
    if (sel.value === "custom") {
      custom.hidden = false;
      if (!fromIn.value) fromIn.value = toLocalInput(cur.from || new Date(Date.now() - 864e5).toISOString());
      if (!toIn.value) toIn.value = toLocalInput(new Date().toISOString());
      fromIn.focus();
      return;
    }
    const p = new URLSearchParams(params);
    p.delete("from");
    p.delete("to");
    if (sel.value === fallback) p.delete("range");
    else p.set("range", sel.value);
    onchange(p);
  });
  return h("div", { class: "range" }, sel, custom);
}

// ---------------------------------------------------------------- filters

const MULTI_KEYS = ["channel", "tag", "label", "flow", "node"];
const FILTER_KEYS = [...MULTI_KEYS, "flagged", "step", "dropoff"];
const DIMS = [
  { key: "channel", title: "Source", facet: "channel" },
  { key: "tag", title: "Tags", facet: "tag" },
  { key: "flagged", title: "Flagged", facet: "flagged" },
  { key: "label", title: "Labels", facet: "label", empty: "No labels in this range yet." },
  { key: "flow", title: "Flows", facet: "flow", searchable: true },
  { key: "node", title: "Nodes", facet: "node", searchable: true, hint: "prompt nodes" },
];

function filtersFromParams(p) {
  const f = { flagged: p.get("flagged") || "", step: p.get("step") || "", dropoff: p.get("dropoff") === "true" };
  for (const k of MULTI_KEYS) f[k] = [...new Set(p.getAll(k))];
  return f;
}
function writeFilters(f, p) {
  for (const k of FILTER_KEYS) p.delete(k);
  for (const k of MULTI_KEYS) for (const v of f[k]) p.append(k, v);
  if (f.flagged) p.set("flagged", f.flagged);
  if (f.step && f.flow.length) p.set("step", f.step);
  if (f.dropoff) p.set("dropoff", "true");
  return p;
}
function filtersKey(f) {
  return JSON.stringify([...MULTI_KEYS.map((k) => [...f[k]].sort()), f.flagged, f.flow.length ? f.step : "", f.dropoff]);
}
function countFilters(f) {
  return MULTI_KEYS.reduce((n, k) => n + f[k].length, 0) + (f.flagged ? 1 : 0) + (f.step ? 1 : 0) + (f.dropoff ? 1 : 0);
}

/** API parameters for a search with filters `f` in the list context (range, q, sort). */
function searchParams(f, ctx, { sort = true } = {}) {
  const p = new URLSearchParams();
  if (ctx.from) p.set("from", ctx.from);
  if (ctx.to) p.set("to", ctx.to);
  if (ctx.q) p.set("q", ctx.q);
  writeFilters(f, p);
  if (sort && ctx.sort) p.set("sort", ctx.sort);
  return p;
}

async function ensureNodes(bot) {
  if (state.nodes.bot === bot) return;
  state.nodes.bot = bot;
  state.nodes.map = new Map();
  try {
    const r = await api("GET", `/v1/bots/${enc(bot)}/nodes`);
    const list = Array.isArray(r) ? r : r.nodes || [];
    for (const n of list) state.nodes.map.set(n.id, n);
    renderDim("node");
  } catch {
    /* names are a nicety: ids still show */
  }
}

async function ensureLabels(bot, force = false) {
  if (state.labels.bot === bot && !force) return state.labels.names;
  state.labels.bot = bot;
  try {
    const r = await api("GET", `/v1/bots/${enc(bot)}/labels`);
    state.labels.names = (r.labels || []).map((l) => l.name);
  } catch {
    state.labels.names = [];
  }
  const dl = $("#label-suggestions");
  if (dl) fill(dl, ...state.labels.names.map((n) => h("option", { value: n })));
  return state.labels.names;
}

// ---------------------------------------------------------------- list page

const PAGE_SIZE = 50;

function mountList(bot) {
  state.page = "list:" + bot;
  const searchIn = h("input", { type: "search", id: "q", name: "q", placeholder: "Search messages…", "aria-label": "Search messages", autocomplete: "off", spellcheck: "false", "aria-describedby": "q-help", title: 'Words, "phrases", AND OR NOT, -exclude, (groups), user:/bot:/agent: prefixes. Click ? for details.' });
  const help = h("div", { class: "help-wrap" },
    h("button", { type: "button", class: "icon-btn help-btn", "aria-label": "Query syntax", "aria-expanded": "false", id: "q-help-btn", onclick: (e) => {
      const tip = $("#q-help");
      tip.hidden = !tip.hidden;
      e.currentTarget.setAttribute("aria-expanded", String(!tip.hidden));
    } }, icon("help")),
    h("div", { class: "tooltip", role: "tooltip", id: "q-help", hidden: true },
      h("strong", null, "Query syntax"),
      h("ul", null,
        h("li", null, h("code", null, "refund order"), " both words (AND), in any messages of the conversation"),
        h("li", null, h("code", null, '"phone number"'), " a phrase, within one message"),
        h("li", null, h("code", null, "refund OR return"), ", ", h("code", null, "NOT spam"), ", ", h("code", null, "-spam"), ", ", h("code", null, "+must")),
        h("li", null, h("code", null, "(a OR b) c"), " parentheses group"),
        h("li", null, h("code", null, "user:refund"), ", ", h("code", null, 'bot:"did not understand"'), ", ", h("code", null, "agent:"), " limit to one side"),
        h("li", null, "Case-insensitive, matches whole words (letters and digits). ", h("code", null, "AND OR NOT"), " only in capitals."),
      ),
      h("p", { class: "muted" }, "Press / to jump to the search box."),
    ),
  );
  const searchForm = h("form", { class: "search", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams(state.params);
    const q = searchIn.value.trim();
    if (q) p.set("q", q);
    else p.delete("q");
    if (q && !p.get("sort")) p.set("sort", "relevance");
    if (!q && p.get("sort") === "relevance") p.delete("sort");
    go(listUrl(bot, p));
  } }, searchIn, help, h("button", { type: "submit", class: "primary" }, "Search"));

  const sortSel = h("select", { id: "sort", "aria-label": "Sort", onchange: () => {
    const p = new URLSearchParams(state.params);
    if (sortSel.value === "last_message_at") p.delete("sort");
    else p.set("sort", sortSel.value);
    go(listUrl(bot, p));
  } },
  h("option", { value: "last_message_at" }, "Sort: last activity"),
  h("option", { value: "started_at" }, "Sort: start time"),
  h("option", { value: "relevance" }, "Sort: relevance"));

  const filtersToggle = h("button", { type: "button", class: "filters-toggle", id: "filters-toggle", "aria-expanded": "false", "aria-controls": "filters", onclick: () => {
    const on = !document.body.classList.contains("show-filters");
    document.body.classList.toggle("show-filters", on);
    filtersToggle.setAttribute("aria-expanded", String(on));
  } }, "Filters");

  const view = $("#view");
  fill(view, 
    h("div", { class: "listpage" },
      h("div", { class: "toolbar" }, searchForm, h("div", { class: "toolbar-row" }, h("div", { id: "range-slot", class: "range-slot" }), sortSel, filtersToggle)),
      h("div", { class: "cols" },
        h("aside", { class: "filters", id: "filters", "aria-label": "Filters" }),
        h("section", { class: "results", id: "results", "aria-label": "Conversations" },
          h("div", { class: "summary", id: "summary" }, h("span", { id: "total" }, " "), h("span", { class: "busy", id: "busy", "aria-hidden": "true" })),
          h("div", { class: "error", id: "list-error", role: "alert", hidden: true }),
          h("table", { class: "convs", id: "convs" },
            h("colgroup", null,
              h("col", { class: "w-user" }), h("col", { class: "w-chan" }), h("col", { class: "w-time" }), h("col", { class: "w-time" }),
              h("col", { class: "w-num" }), h("col", { class: "w-tags" }), h("col", { class: "w-labels" }), h("col", { class: "w-flag" })),
            h("thead", null, h("tr", null,
              h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Channel"), h("th", { scope: "col" }, "Started"),
              h("th", { scope: "col" }, "Last activity"), h("th", { scope: "col", class: "num" }, "Msgs"), h("th", { scope: "col" }, "Tags"),
              h("th", { scope: "col" }, "Labels"), h("th", { scope: "col", class: "c-flag" }, h("span", { class: "sr" }, "Flagged"), icon("flag", "th-flag")))),
            h("tbody", { id: "rows" })),
          h("div", { class: "empty", id: "empty", hidden: true }),
          h("div", { class: "more", id: "more" }),
          h("p", { class: "kbd-hint" }, "Keys: ", h("kbd", null, "j"), "/", h("kbd", null, "k"), " or ", h("kbd", null, "↑"), "/", h("kbd", null, "↓"), " move, ", h("kbd", null, "Enter"), " opens, ", h("kbd", null, "Esc"), " closes, ", h("kbd", null, "/"), " searches."),
        ),
      ),
    ),
  );
  buildPanel();
}

function renderList() {
  const bot = state.route.bot;
  if (state.page !== "list:" + bot) {
    state.list.key = null;
    state.panel = { pending: null, facets: null, total: null, steps: null, stepsFor: null, error: null, expanded: new Set(), search: {}, seq: 0 };
    mountList(bot);
  }
  const p = state.params;
  // Controls reflect the URL.
  const q = $("#q");
  if (document.activeElement !== q) q.value = p.get("q") || "";
  $("#sort").value = p.get("sort") || "last_message_at";
  fill($("#range-slot"), rangePicker(p, "24h", (np) => go(listUrl(bot, np))));
  ensureNodes(bot);

  const key = bot + "|" + listQS(p);
  if (state.list.key !== key) {
    state.list.key = key;
    const range = resolveRange(p, "24h");
    state.list.ctx = { bot, from: range.from, to: range.to, label: range.label, q: p.get("q") || "", sort: p.get("sort") || "" };
    state.list.applied = filtersFromParams(p);
    window.scrollTo(0, 0);
    state.panel.pending = filtersFromParams(p);
    state.panel.steps = null;
    const n = countFilters(state.list.applied);
    $("#filters-toggle").textContent = n ? `Filters (${n})` : "Filters";
    renderPanel();
    loadList();
  } else {
    syncSelectionToRoute();
  }
}

async function loadList({ more = false } = {}) {
  const L = state.list;
  if (L.abort) L.abort.abort();
  const ctrl = new AbortController();
  L.abort = ctrl;
  const ctx = L.ctx;
  const params = searchParams(L.applied, ctx);
  params.set("limit", String(PAGE_SIZE));
  if (more && L.cursor) params.set("cursor", L.cursor);
  L.loading = true;
  L.more = more;
  L.error = null;
  renderListStatus();
  try {
    const r = await api("GET", `/v1/bots/${enc(ctx.bot)}/conversations`, { params, signal: ctrl.signal });
    if (ctrl.signal.aborted) return;
    const appended = more ? r.conversations : null;
    if (more) L.items = L.items.concat(r.conversations);
    else {
      L.items = r.conversations;
      L.sel = -1;
      L.facets = r.facets;
      // The panel shows the applied filters' facets until the user changes something.
      if (filtersKey(state.panel.pending) === filtersKey(L.applied)) {
        state.panel.facets = r.facets;
        state.panel.total = r.total;
      }
    }
    L.total = r.total;
    L.cursor = r.next_cursor;
    L.loading = false;
    renderRows(appended);
    renderPanel();
    if (!more && state.panel.pending.flow.length === 1) refreshSteps();
    syncSelectionToRoute();
  } catch (e) {
    if (e.name === "AbortError") return;
    L.loading = false;
    L.error = e;
    if (!more) {
      L.items = [];
      L.total = 0;
      L.cursor = null;
    }
    renderRows();
  } finally {
    if (L.abort === ctrl) L.abort = null;
    renderListStatus();
  }
}

function renderListStatus() {
  const L = state.list;
  const res = $("#results");
  if (!res) return;
  res.classList.toggle("loading", L.loading);
  res.setAttribute("aria-busy", String(L.loading));
  const tbody = $("#rows");
  if (L.loading && !L.more && !L.items.length && tbody && !tbody.children.length) {
    // Placeholder rows of the real height, so nothing jumps when the answer arrives.
    for (let i = 0; i < 12; i++) {
      tbody.append(h("tr", { class: "skel-row", "aria-hidden": "true" }, [0, 1, 2, 3, 4, 5, 6, 7].map((k) => h("td", null, k < 6 ? h("span", { class: "skel", style: { width: `${[70, 60, 80, 80, 30, 50][k]}%` } }, " ") : null))));
    }
  }
  const err = $("#list-error");
  if (L.error) {
    err.hidden = false;
    fill(err, h("strong", null, L.error.code === "invalid_query" ? "The search query is not valid: " : "Couldn't load conversations: "), L.error.message);
  } else err.hidden = true;
}

/** Renders the table; with `appended`, only adds those rows (paging stays cheap). */
function renderRows(appended = null) {
  const L = state.list;
  const tbody = $("#rows");
  if (!tbody) return;
  fill($("#total"), 
    L.error ? h("span", null, "—") : h("span", null, h("strong", { id: "total-count" }, fmtN(L.total)), L.total === 1 ? " conversation" : " conversations"),
    h("span", { class: "muted" }, " · ", L.ctx.label),
    L.ctx.q ? h("span", { class: "muted" }, " · matching ", h("q", null, L.ctx.q)) : null,
  );
  if (appended) {
    const start = L.items.length - appended.length;
    tbody.append(...appended.map((c, k) => rowEl(c, start + k)));
  } else tbody.replaceChildren(...L.items.map((c, i) => rowEl(c, i)));
  const empty = $("#empty");
  empty.hidden = L.items.length > 0 || L.error != null;
  if (!empty.hidden) {
    const f = L.applied;
    fill(empty, 
      h("p", null, h("strong", null, "No conversations match.")),
      h("p", { class: "muted" }, countFilters(f) || L.ctx.q ? "Try fewer filters, another query or a longer date range." : "Nothing was logged for this bot in this date range. Try a longer range, or check the bot id."),
    );
  }
  const more = $("#more");
  fill(more, 
    L.items.length ? h("span", { class: "muted", id: "shown" }, `Showing ${fmtN(L.items.length)} of ${fmtN(L.total)}`) : null,
    L.cursor ? h("button", { type: "button", id: "load-more", disabled: L.loading, onclick: () => loadList({ more: true }) }, L.loading && L.more ? "Loading…" : "Load more") : null,
  );
  updateSelection();
}

function chip(text, cls, title) {
  return h("span", { class: "chip " + cls, title: title || text, style: { "--h": hashHue(text) } }, text);
}
function chanBadge(ch) {
  return h("span", { class: "chan chan-" + ch.replace(/[^a-z0-9]/g, ""), style: { "--h": hashHue(ch) } }, ch);
}

/** A table cell with at most `max` chips and a "+N" for the rest, so rows keep one height. */
function chipsCell(cls, values, kind, max) {
  const shown = values.length > max ? values.slice(0, max) : values;
  const rest = values.length - shown.length;
  return h("td", { class: cls, title: values.join(", "), "data-values": JSON.stringify(values) },
    values.length ? h("div", { class: "chipline" }, shown.map((v) => chip(v, kind)), rest ? h("span", { class: "chip more-chip" }, `+${rest}`) : null) : null);
}

function rowEl(c, i) {
  const href = convUrl(c.id);
  const snippets = (c.snippets || []).slice(0, 2);
  return h("tr", {
    "data-id": c.id, "data-i": String(i),
    onclick: (e) => {
      if (e.target.closest("a,button,input")) return;
      state.list.sel = i;
      go(href);
    },
  },
  h("td", { class: "c-user" },
    h("a", { href, "data-nav": "", class: "ulink", tabindex: "-1" }, c.user),
    snippets.length ? h("div", { class: "snips" }, snippets.map((sn) => h("div", { class: "snip" }, richText(sn)))) : null),
  h("td", { class: "c-chan" }, chanBadge(c.channel)),
  h("td", { class: "c-start" }, timeEl(c.started_at)),
  h("td", { class: "c-last" }, timeEl(c.last_message_at)),
  h("td", { class: "c-count num" }, fmtN(c.message_count)),
  chipsCell("c-tags", c.tags || [], "tag", 2),
  chipsCell("c-labels", c.labels || [], "label", 1),
  h("td", { class: "c-flag" },
    c.flagged ? h("span", { class: "flagged", title: "Flagged" }, icon("flag"), h("span", { class: "sr" }, "flagged")) : null,
    c.debug ? h("span", { class: "debugged", title: "Debug logging on" }, icon("bug"), h("span", { class: "sr" }, "debug on")) : null),
  );
}

function patchRow(conv) {
  const L = state.list;
  const i = L.items.findIndex((c) => c.id === conv.id);
  if (i < 0) return;
  L.items[i] = { ...L.items[i], ...conv, snippets: L.items[i].snippets };
  const old = $(`#rows tr[data-id="${CSS.escape(conv.id)}"]`);
  if (old) old.replaceWith(rowEl(L.items[i], i));
  updateSelection();
}

function syncSelectionToRoute() {
  const id = state.route.id;
  if (!id) return updateSelection();
  const i = state.list.items.findIndex((c) => c.id === id);
  if (i >= 0) state.list.sel = i;
  updateSelection();
}

function updateSelection() {
  const L = state.list;
  for (const tr of $$("#rows tr")) {
    const i = Number(tr.dataset.i);
    tr.classList.toggle("sel", i === L.sel);
    tr.classList.toggle("open", tr.dataset.id === state.route.id);
    if (i === L.sel) tr.setAttribute("aria-selected", "true");
    else tr.removeAttribute("aria-selected");
  }
}

async function moveSelection(delta, { open = false } = {}) {
  const L = state.list;
  if (!L.items.length) return;
  let i = L.sel < 0 ? (delta > 0 ? 0 : L.items.length - 1) : L.sel + delta;
  if (i >= L.items.length) {
    if (L.cursor && !L.loading) {
      await loadList({ more: true });
      if (i >= L.items.length) return;
    } else return;
  }
  if (i < 0) i = 0;
  L.sel = i;
  updateSelection();
  const tr = $(`#rows tr[data-i="${i}"]`);
  if (tr) tr.scrollIntoView({ block: "nearest" });
  if (open) go(convUrl(L.items[i].id, state.route.bot, state.params, state.params.get("tab")));
}

// ----- filter panel

function buildPanel() {
  const root = $("#filters");
  const sections = DIMS.map((d) => h("section", { class: "fsec", "data-dim": d.key },
    h("h3", null, d.title, d.hint ? h("span", { class: "hint" }, " · " + d.hint) : null),
    d.searchable ? h("input", { type: "search", class: "fsearch", id: "fs-" + d.key, placeholder: `Find ${d.title.toLowerCase()}…`, "aria-label": `Find ${d.title.toLowerCase()}`, oninput: (e) => {
      state.panel.search[d.key] = e.target.value;
      renderDim(d.key);
    } }) : null,
    h("ul", { class: "fvals", id: "fv-" + d.key }),
    d.key === "flow" ? h("div", { class: "fsteps", id: "fv-steps" }) : null,
  ));
  fill(root, 
    h("div", { class: "fhead" }, h("h2", null, "Filters"), h("span", { class: "fpreview muted", id: "f-preview" })),
    h("div", { class: "error small", id: "f-error", role: "alert", hidden: true }),
    ...sections,
    h("div", { class: "fapply" },
      h("button", { type: "button", class: "primary", id: "f-apply", onclick: applyFilters }, "Apply filter"),
      h("button", { type: "button", id: "f-clear", onclick: clearFilters }, "Clear")),
  );
}

function renderPanel() {
  if (!$("#filters") || !state.panel.pending) return;
  for (const d of DIMS) renderDim(d.key);
  renderSteps();
  const P = state.panel;
  const dirty = filtersKey(P.pending) !== filtersKey(state.list.applied);
  const btn = $("#f-apply");
  btn.disabled = !dirty;
  btn.textContent = dirty && P.total != null ? `Apply filter (${fmtN(P.total)})` : "Apply filter";
  $("#f-clear").disabled = countFilters(P.pending) === 0 && countFilters(state.list.applied) === 0;
  $("#f-preview").textContent = dirty ? "not applied yet" : "";
  const err = $("#f-error");
  err.hidden = !P.error;
  err.textContent = P.error ? P.error.message : "";
}

function nodeLabel(id) {
  const n = state.nodes.map.get(id);
  return n && n.name ? n.name : id;
}

function renderDim(key) {
  const d = DIMS.find((x) => x.key === key);
  const ul = $("#fv-" + key);
  const P = state.panel;
  if (!ul || !P.pending) return;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.fkey : null;
  const counts = (P.facets && P.facets[d.facet]) || {};
  const items = [];
  if (key === "flagged") {
    const t = counts["true"] || 0;
    const f = counts["false"] || 0;
    for (const [val, label, n] of [["", "Any", t + f], ["true", "Flagged", t], ["false", "Not flagged", f]]) {
      items.push(h("li", null, h("label", { class: "fval" },
        h("input", { type: "radio", name: "f-flagged", value: val, checked: P.pending.flagged === val, "data-fkey": "flagged:" + val, onchange: () => setPending({ flagged: val }) }),
        h("span", { class: "fname" }, label), h("span", { class: "fcount" }, P.facets ? fmtN(n) : ""))));
    }
    fill(ul, ...items);
  } else {
    const selected = new Set(P.pending[key]);
    let entries = Object.entries(counts);
    for (const v of selected) if (!(v in counts)) entries.push([v, 0]);
    entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0], "en", { numeric: true }));
    const label = key === "node" ? nodeLabel : (v) => v;
    const term = (P.search[key] || "").trim().toLowerCase();
    // A search narrows the list; ticked values always stay in view.
    if (term) entries = entries.filter(([v]) => selected.has(v) || (v + " " + label(v)).toLowerCase().includes(term));
    const LIMIT = 8;
    const expanded = P.expanded.has(key) || term;
    let shown = expanded ? entries : entries.slice(0, LIMIT);
    if (!expanded) for (const e of entries.slice(LIMIT)) if (selected.has(e[0])) shown.push(e);
    for (const [v, n] of shown) {
      const id = "fv-" + key + "-" + hashHue(v) + "-" + v.length;
      items.push(h("li", null, h("label", { class: "fval" + (n === 0 ? " zero" : ""), title: key === "node" ? `${label(v)} (${v})` : v },
        h("input", { type: "checkbox", value: v, checked: selected.has(v), "data-fkey": key + ":" + v, id, onchange: (e) => toggleValue(key, v, e.target.checked) }),
        h("span", { class: "fname" }, label(v), key === "node" && label(v) !== v ? h("small", null, " " + v) : null),
        h("span", { class: "fcount" }, fmtN(n)))));
    }
    if (!entries.length) items.push(h("li", { class: "none muted" }, term ? "No match." : P.facets ? d.empty || "None in this range." : "…"));
    if (entries.length > LIMIT && !term) {
      items.push(h("li", { class: "fmore" }, h("button", { type: "button", class: "link", onclick: () => {
        if (P.expanded.has(key)) P.expanded.delete(key);
        else P.expanded.add(key);
        renderDim(key);
      } }, P.expanded.has(key) ? "Show fewer" : `Show all ${fmtN(entries.length)}`)));
    }
    fill(ul, ...items);
  }
  if (focused && focused.startsWith(key + ":")) {
    const el = ul.querySelector(`[data-fkey="${CSS.escape(focused)}"]`);
    if (el) el.focus();
  }
}

function renderSteps() {
  const box = $("#fv-steps");
  const P = state.panel;
  if (!box || !P.pending) return;
  const flows = P.pending.flow;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.fkey : null;
  const kids = [];
  let dropCount = null;
  if (flows.length === 1) {
    const info = P.stepsFor === flows[0] ? P.steps : null;
    kids.push(h("h4", null, "Step of ", h("span", { class: "mono" }, flows[0])));
    const steps = info ? info.steps : null;
    const list = h("ul", { class: "fvals", id: "fv-step" });
    const opts = [["", "Any step", info ? info.conversations : null, info ? info.dropped_off : null]];
    if (steps) for (const st of steps) opts.push([st.step ?? "", st.step ?? "(no step)", st.reached, st.dropped_off]);
    for (const [val, label, reached, dropped] of opts) {
      if (val === "" && label !== "Any step") continue; // a drop-off without step can't be picked as a step
      list.append(h("li", null, h("label", { class: "fval" },
        h("input", { type: "radio", name: "f-step", value: val, checked: P.pending.step === val, "data-fkey": "step:" + val, onchange: () => setPending({ step: val }) }),
        h("span", { class: "fname" }, label),
        h("span", { class: "fcount", title: "reached · dropped off" }, reached == null ? "" : `${fmtN(reached)} · ${fmtN(dropped)}`))));
      if (P.pending.step === val) dropCount = dropped;
    }
    if (!steps) list.append(h("li", { class: "muted none" }, "Loading steps…"));
    kids.push(list);
  } else if (flows.length > 1) {
    kids.push(h("p", { class: "muted small" }, "Pick a single flow to choose a step."));
  }
  const dropLabel = !flows.length ? "Dropped off (any flow)" : flows.length === 1 && P.pending.step ? "Dropped off at this step" : "Dropped off in this flow";
  kids.push(h("label", { class: "fval dropoff" },
    h("input", { type: "checkbox", id: "f-dropoff", checked: P.pending.dropoff, "data-fkey": "dropoff:", onchange: (e) => setPending({ dropoff: e.target.checked }) }),
    h("span", { class: "fname" }, dropLabel, h("span", { class: "sr" }, " (dropped off here)")),
    h("span", { class: "fcount" }, dropCount == null ? "" : fmtN(dropCount))));
  fill(box, ...kids);
  if (focused && (focused.startsWith("step:") || focused === "dropoff:")) {
    const el = box.querySelector(`[data-fkey="${CSS.escape(focused)}"]`);
    if (el) el.focus();
  }
}

function toggleValue(key, v, on) {
  const cur = new Set(state.panel.pending[key]);
  if (on) cur.add(v);
  else cur.delete(v);
  const patch = { [key]: [...cur] };
  if (key === "flow" && cur.size !== 1) patch.step = "";
  setPending(patch);
}

function setPending(patch) {
  const P = state.panel;
  const before = P.pending.flow.join("\n");
  P.pending = { ...P.pending, ...patch };
  if (P.pending.flow.join("\n") !== before) {
    P.steps = null;
    P.stepsFor = null;
    if (P.pending.flow.length !== 1) P.pending.step = "";
  }
  renderPanel();
  refreshPreview();
}

/** Counts for the pending (not yet applied) filters: the facets update as the user clicks. */
const refreshPreview = debounce(async () => {
  const P = state.panel;
  const L = state.list;
  const seq = ++P.seq;
  if (filtersKey(P.pending) === filtersKey(L.applied) && L.facets) {
    P.facets = L.facets;
    P.total = L.total;
    P.error = null;
    renderPanel();
    if (P.pending.flow.length === 1) refreshSteps();
    return;
  }
  $("#filters").classList.add("loading");
  try {
    const params = searchParams(P.pending, L.ctx, { sort: false });
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
  if (P.pending.flow.length === 1) refreshSteps();
}, 120);

async function refreshSteps() {
  const P = state.panel;
  const L = state.list;
  const flow = P.pending.flow[0];
  const f = { ...P.pending, step: "", dropoff: false };
  const params = searchParams(f, L.ctx, { sort: false });
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

function applyFilters() {
  const p = writeFilters(state.panel.pending, new URLSearchParams(state.params));
  p.delete("tab");
  document.body.classList.remove("show-filters");
  go(listUrl(state.route.bot, p));
}

function clearFilters() {
  const empty = filtersFromParams(new URLSearchParams());
  state.panel.search = {};
  for (const el of $$(".fsearch")) el.value = "";
  const p = writeFilters(empty, new URLSearchParams(state.params));
  p.delete("tab");
  state.panel.pending = empty;
  go(listUrl(state.route.bot, p));
}

// ---------------------------------------------------------------- conversation drawer

function closeDrawer() {
  $("#drawer-root").replaceChildren();
  document.body.classList.remove("drawer-open");
  state.conv.key = null;
}

function convTab() {
  const t = state.params.get("tab");
  return t === "debug" || t === "logs" ? t : "transcript";
}

function renderDrawer() {
  const r = state.route;
  if (!r.id) {
    if (state.conv.key) {
      const id = state.conv.id;
      closeDrawer();
      const tr = id && $(`#rows tr[data-id="${CSS.escape(id)}"]`);
      if (tr) tr.scrollIntoView({ block: "nearest" });
    }
    return;
  }
  const q = state.params.get("q") || "";
  const key = `${r.bot}|${r.id}|${q}`;
  const C = state.conv;
  if (C.key !== key) {
    C.key = key;
    C.bot = r.bot;
    C.id = r.id;
    C.q = q;
    C.data = null;
    C.error = null;
    C.trace = null;
    C.traceError = null;
    C.share = null;
    C.shareError = null;
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

function skeletonMessages() {
  return h("div", { class: "transcript skeleton" }, [0, 1, 2, 3, 4].map((i) => h("div", { class: "msg " + (i % 2 ? "m-bot" : "m-user") }, h("div", { class: "bubble skel" }, " "))));
}

async function loadConversation() {
  const C = state.conv;
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
}

function renderConvHeader() {
  const C = state.conv;
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
    href: convUrl(state.route.id, state.route.bot, state.params, t), role: "tab", "aria-selected": String(cur === t), class: cur === t ? "on" : "", id: "tab-" + t,
    onclick: (e) => {
      e.preventDefault();
      go(convUrl(state.route.id, state.route.bot, state.params, t), { replace: true });
    },
  }, label)));
}

function renderConvBody() {
  const C = state.conv;
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
    if (!C.trace && !C.traceError && !C.traceLoading) loadTrace();
    fill(main, tab === "debug" ? debuggerView() : logsView());
  }
  main.scrollTop = 0;
}

/** The transcript of a conversation (also used by the shared page). */
function transcript(d, { q } = {}) {
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
  const C = state.conv;
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

function userDetails(d, { editable, history }) {
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
  const C = state.conv;
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
  h("datalist", { id: "label-suggestions" }, state.labels.names.filter((n) => !(d.labels || []).some((l) => l.toLowerCase() === n.toLowerCase())).map((n) => h("option", { value: n }))));
  input.addEventListener("focus", () => ensureLabels(C.bot));
  return h("div", null, chips, form, h("p", { class: "error small", id: "label-error", role: "alert", hidden: true }));
}

/** Runs a review action; applies the returned conversation object. */
async function review(kind, method, path, body) {
  const C = state.conv;
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
function pickConv(r) {
  const out = {};
  for (const k of ["labels", "flagged", "flagged_at", "flag_note", "debug", "tags", "message_count", "last_message_at"]) if (k in r) out[k] = r[k];
  return out;
}

async function addLabel(label) {
  const C = state.conv;
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
  const C = state.conv;
  try {
    await review("label", "DELETE", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/labels/${enc(label)}`);
  } catch {
    /* toast shown */
  }
  renderConvDetails();
}
async function toggleFlag() {
  const C = state.conv;
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
  const C = state.conv;
  try {
    await review("debug", on ? "PUT" : "DELETE", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/debug`);
    toast(on ? "Debug logging is on: the bot's trace events for this conversation are kept from now on." : "Debug logging is off.");
  } catch {
    /* toast shown */
  }
  if (convTab() !== "transcript") loadTrace();
}

async function shareLink() {
  const C = state.conv;
  const box = $("#share-box");
  try {
    const r = await review("share", "POST", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/share`);
    const link = location.origin + r.url;
    const copied = await copyText(link);
    const input = h("input", { id: "share-link", readonly: true, value: link, "aria-label": "Share link", onfocus: (e) => e.target.select() });
    fill(box, 
      h("span", { id: "share-status" }, copied ? "Link copied to the clipboard." : "Copy this link:"),
      input,
      h("span", { class: "muted small" }, r.expires_at ? ` Read-only; expires ${datef.format(new Date(r.expires_at))}.` : " Read-only."),
      h("button", { type: "button", class: "icon-btn", "aria-label": "Hide link", onclick: () => { box.hidden = true; } }, icon("close")));
    box.hidden = false;
    if (!copied) input.select();
  } catch {
    /* toast shown */
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h("textarea", { style: { position: "fixed", opacity: "0", top: "0" } }, text);
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

// ----- debugger

async function loadTrace() {
  const C = state.conv;
  const key = C.key;
  C.traceLoading = true;
  if (convTab() !== "transcript") renderConvBody();
  try {
    const r = await api("GET", `/v1/bots/${enc(C.bot)}/conversations/${enc(C.id)}/trace`);
    if (C.key !== key) return;
    C.trace = r;
    C.traceError = null;
  } catch (e) {
    if (C.key !== key) return;
    C.traceError = e;
  } finally {
    if (C.key === key) C.traceLoading = false;
  }
  if (convTab() !== "transcript") renderConvBody();
}

const LEVELS = ["debug", "info", "warn", "error"];
function maxLevel(events) {
  let m = -1;
  for (const e of events) m = Math.max(m, LEVELS.indexOf(e.level || "info"));
  return m < 0 ? null : LEVELS[m];
}

function traceHeader() {
  const C = state.conv;
  const on = C.data && C.data.debug;
  return h("div", { class: "trace-head" },
    h("span", { class: "dbg-state " + (on ? "on" : "off") }, on ? "Debug logging is on" : "Debug logging is off"),
    h("span", { class: "spacer" }),
    h("button", { type: "button", class: "icon-btn", "aria-label": "Refresh trace", title: "Refresh", id: "trace-refresh", onclick: loadTrace }, icon("refresh")));
}

function traceEmpty() {
  const C = state.conv;
  const on = C.data && C.data.debug;
  return h("div", { class: "empty", id: "trace-empty" },
    h("p", null, h("strong", null, "No trace events for this conversation.")),
    h("p", { class: "muted" }, on
      ? "Debug logging is on: events that the bot runtime sends to POST /v1/traces for this user will show here. Refresh to look again."
      : auth.canEdit ? "Turn on debug logging (the Debug switch above) to keep what the bot does for each user input; events sent while it is off are dropped."
        : "Debug logging is off for this conversation; an editor can turn it on."));
}

function debuggerView() {
  const C = state.conv;
  const wrap = h("div", { class: "trace", id: "trace" }, traceHeader());
  if (C.traceError) {
    wrap.append(h("div", { class: "error", role: "alert" }, "Couldn't load the trace: ", C.traceError.message));
    return wrap;
  }
  if (!C.trace) {
    wrap.append(h("p", { class: "muted" }, "Loading trace…"));
    return wrap;
  }
  const inputs = C.trace.inputs || [];
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
  const C = state.conv;
  const wrap = h("div", { class: "trace logs", id: "logs" }, traceHeader());
  if (C.traceError) {
    wrap.append(h("div", { class: "error", role: "alert" }, "Couldn't load the logs: ", C.traceError.message));
    return wrap;
  }
  if (!C.trace) {
    wrap.append(h("p", { class: "muted" }, "Loading logs…"));
    return wrap;
  }
  const rows = [];
  for (const inp of C.trace.inputs || []) for (const ev of inp.events) rows.push({ ev, input: inp.message });
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

// ---------------------------------------------------------------- shared page

async function renderShared() {
  closeDrawer();
  const token = state.route.token;
  state.page = "shared";
  document.title = "Shared conversation · convlog";
  const view = $("#view");
  fill(view, h("div", { class: "shared" }, h("p", { class: "muted" }, "Loading the shared conversation…"), skeletonMessages()));
  let d;
  try {
    d = await api("GET", `/v1/shared/${enc(token)}`, { probe: true });
  } catch (e) {
    fill(view, h("div", { class: "center-msg" }, h("h1", null, "This link does not work"),
      h("p", { class: "error", role: "alert" }, e.status === 404 ? "The shared conversation was not found: the link has expired or was revoked." : e.message)));
    return;
  }
  fill(view, h("div", { class: "shared", id: "shared" },
    h("div", { class: "shared-head" },
      h("h1", null, d.user),
      h("p", { class: "muted" }, chanBadge(d.channel), " ", timeEl(d.started_at), " – ", timeEl(d.last_message_at, fmtTime), ` · ${fmtN(d.message_count)} messages · bot `, h("span", { class: "mono" }, d.bot_id)),
      h("p", { class: "notice" }, "A read-only copy shared from convlog."),
      h("div", { class: "chips" }, (d.tags || []).map((t) => chip(t, "tag")), d.flagged ? h("span", { class: "flagged" }, icon("flag"), " flagged") : null)),
    h("div", { class: "dbody" }, h("div", { class: "dmain" }, transcript(d)), h("aside", { class: "details" }, userDetails(d, { editable: false, history: false })))));
}

// ---------------------------------------------------------------- dashboards

const PALETTE = ["#3b6fd4", "#2a9d8f", "#e76f51", "#8e5bd4", "#e9a23b", "#5aa7e0", "#d45b8e", "#6b8e23", "#a0522d", "#708090"];
const CHANNEL_COLORS = { web: "#3b6fd4", whatsapp: "#2a9d8f", facebook: "#8e5bd4", telegram: "#5aa7e0", skype: "#e9a23b", sms: "#e76f51" };
function colorFor(key, i, fixed = {}) {
  return fixed[key] || PALETTE[i % PALETTE.length];
}

function dayBuckets(p) {
  const r = resolveRange(p, "7d");
  if (r.preset !== "custom") {
    // Whole calendar days, today included.
    const n = Math.max(2, Math.round(RANGES[r.preset].ms / 864e5));
    const now = new Date();
    r.from = new Date(now.getFullYear(), now.getMonth(), now.getDate() - n + 1).toISOString();
  }
  const start = new Date(r.from || Date.now() - 7 * 864e5);
  const end = r.to ? new Date(r.to) : new Date();
  const d0 = new Date(start.getFullYear(), start.getMonth(), start.getDate());
  const days = [];
  for (let d = d0; d < end && days.length < 62; d = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1)) {
    const next = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
    days.push({ from: d.toISOString(), to: next.toISOString(), label: dayf.format(d), date: d });
  }
  return { range: r, days };
}

function mountDash(bot) {
  state.page = "dash:" + bot;
  fill($("#view"), h("div", { class: "dash" },
    h("div", { class: "toolbar" }, h("h1", null, "Dashboards"), h("div", { id: "dash-range", class: "range-slot" }), h("span", { class: "busy", id: "dash-busy", "aria-hidden": "true" })),
    h("div", { class: "error", id: "dash-error", role: "alert", hidden: true }),
    h("section", { class: "card", id: "card-days" }, h("h2", null, "Conversations per day by channel"), h("div", { class: "chart", id: "chart-days" }, h("div", { class: "chart-ph" })), h("div", { class: "legend", id: "legend-days" })),
    h("section", { class: "card", id: "card-tags" }, h("h2", null, "Tags over time"), h("div", { class: "chart", id: "chart-tags" }, h("div", { class: "chart-ph" })), h("div", { class: "legend", id: "legend-tags" })),
    h("section", { class: "card", id: "card-funnels" },
      h("div", { class: "card-head" }, h("h2", null, "Flow funnels"),
        h("input", { type: "search", id: "flow-search", placeholder: "Find a flow…", "aria-label": "Find a flow", oninput: (e) => { state.dash.flowSearch = e.target.value; renderFunnels(); } })),
      h("p", { class: "muted small" }, "Per step: conversations that reached it and, in red, those that dropped off there. Click a drop-off to see those conversations."),
      h("div", { id: "funnels" }, h("div", { class: "chart-ph" }))),
  ));
}

async function renderDash() {
  const bot = state.route.bot;
  if (state.page !== "dash:" + bot) {
    state.dash.key = null;
    mountDash(bot);
  }
  const p = state.params;
  fill($("#dash-range"), rangePicker(p, "7d", (np) => go(`/bots/${enc(bot)}/dashboards${np.toString() ? "?" + np : ""}`)));
  const key = bot + "|" + p.toString();
  if (state.dash.key === key) return;
  state.dash.key = key;
  const { range, days } = dayBuckets(p);
  const D = state.dash;
  D.error = null;
  $("#dash-busy").classList.add("on");
  const rangeParams = new URLSearchParams();
  if (range.from) rangeParams.set("from", range.from);
  if (range.to) rangeParams.set("to", range.to);
  try {
    const perDay = await Promise.all(days.map((d) => api("GET", `/v1/bots/${enc(bot)}/conversations`, { params: new URLSearchParams({ from: d.from, to: d.to, limit: "1" }) })));
    const flows = await api("GET", `/v1/bots/${enc(bot)}/flows`, { params: rangeParams });
    if (state.dash.key !== key) return;
    D.data = { bot, range, days, perDay, flows: flows.flows || [] };
    D.flowsShown = 6;
  } catch (e) {
    if (state.dash.key !== key) return;
    D.error = e;
    D.data = null;
  } finally {
    if (state.dash.key === key) $("#dash-busy")?.classList.remove("on");
  }
  drawDash();
}

function drawDash() {
  const D = state.dash;
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
  const tags = [...new Set(perDay.flatMap((r) => Object.keys(r.facets.tag || {})))].sort((a, b) => sum(perDay, b) - sum(perDay, a));
  function sum(rows, t) {
    return rows.reduce((n, r) => n + ((r.facets.tag || {})[t] || 0), 0);
  }
  const tagSeries = tags.map((t, i) => ({ key: t, color: colorFor(t, i), values: perDay.map((r) => (r.facets.tag || {})[t] || 0) }));
  drawLines($("#chart-tags"), days, tagSeries, (i, key) => dayHref(i, "tag", key));
  fill($("#legend-tags"), ...legend(tagSeries));
  renderFunnels();
}

function legend(series) {
  return series.map((sr) => h("span", { class: "lg" }, h("i", { style: { background: sr.color } }), sr.key, h("span", { class: "muted" }, " " + fmtN(sr.values.reduce((a, b) => a + b, 0)))));
}

function niceMax(v) {
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

function drawStacked(box, days, series, hrefOf, totals) {
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

function drawLines(box, days, series, hrefOf) {
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

function renderFunnels() {
  const D = state.dash;
  const box = $("#funnels");
  if (!box || !D.data) return;
  const term = D.flowSearch.trim().toLowerCase();
  let flows = D.data.flows.slice().sort((a, b) => b.conversations - a.conversations);
  if (term) flows = flows.filter((f) => f.flow.toLowerCase().includes(term));
  const shown = flows.slice(0, D.flowsShown);
  const kids = shown.map((f) => funnel(f));
  if (!flows.length) kids.push(h("p", { class: "muted" }, term ? "No flow matches." : "No flows in this range."));
  if (flows.length > shown.length) kids.push(h("button", { type: "button", id: "more-flows", onclick: () => { D.flowsShown += 6; renderFunnels(); } }, `Show more flows (${fmtN(flows.length - shown.length)} more)`));
  fill(box, ...kids);
}

function funnel(f) {
  const D = state.dash;
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

// ---------------------------------------------------------------- toast, keyboard, boot

let toastTimer;
function toast(text, isError = false) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.toggle("err", isError);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, isError ? 6000 : 3000);
}

function typing(el) {
  if (!el) return false;
  const tag = el.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
}

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
  if ($("#signin").open) return;
  const r = state.route;
  if (e.key === "Escape") {
    const tip = $("#q-help");
    if (tip && !tip.hidden) {
      tip.hidden = true;
      return;
    }
    if (typing(document.activeElement)) {
      document.activeElement.blur();
      return;
    }
    if (r.kind === "list" && r.id) {
      e.preventDefault();
      go(listUrl());
    }
    return;
  }
  if (typing(document.activeElement) || r.kind !== "list") return;
  const drawerOpen = !!r.id;
  switch (e.key) {
    case "/":
      e.preventDefault();
      $("#q")?.focus();
      break;
    case "j":
      e.preventDefault();
      moveSelection(1, { open: drawerOpen });
      break;
    case "k":
      e.preventDefault();
      moveSelection(-1, { open: drawerOpen });
      break;
    case "ArrowDown":
      if (drawerOpen) return;
      e.preventDefault();
      moveSelection(1);
      break;
    case "ArrowUp":
      if (drawerOpen) return;
      e.preventDefault();
      moveSelection(-1);
      break;
    case "Enter": {
      if (document.activeElement && document.activeElement.closest("a,button")) return;
      const c = state.list.items[state.list.sel];
      if (c) {
        e.preventDefault();
        go(convUrl(c.id));
      }
      break;
    }
    default:
  }
});

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/")) return;
  e.preventDefault();
  go(href);
});

document.addEventListener("click", (e) => {
  const tip = $("#q-help");
  if (tip && !tip.hidden && !e.target.closest(".help-wrap")) {
    tip.hidden = true;
    $("#q-help-btn")?.setAttribute("aria-expanded", "false");
  }
});

window.addEventListener("popstate", render);
window.addEventListener("resize", debounce(() => {
  if (state.route.kind === "dash" && state.dash.data) drawDash();
}, 150));

$("#botpick").addEventListener("submit", (e) => {
  e.preventDefault();
  const bot = $("#bot-input").value.trim();
  if (!BOT_RE.test(bot)) {
    toast("A bot id is 1–64 letters, digits, '.', '_' or '-'.", true);
    return;
  }
  $("#bot-input").blur();
  go(state.route.kind === "dash" ? `/bots/${enc(bot)}/dashboards` : `/bots/${enc(bot)}`);
});
$("#signin-form").addEventListener("submit", submitSignIn);
$("#signin").addEventListener("cancel", (e) => e.preventDefault());

// The script restores its own state from the URL; the browser must not jump to an old scroll position.
history.scrollRestoration = "manual";

// Recent bots for the picker.
try {
  const recent = JSON.parse(localStorage.getItem("convlog.bots") || "[]");
  fill($("#bots-recent"), ...recent.map((b) => h("option", { value: b })));
} catch {
  /* ignore */
}

render();
