// The conversation list: search box, range, sort, the table with paging and keyboard
// selection, and the filter sidebar beside it (panel.js).
//
// Owns: #view while the route is a list, the applied filters and search context read
// from the URL, the loaded rows and the selected row.

import { api, apiDownload } from "./api.js";
import { bulkEnabled, clearSelection, ensureBulkLabels, mountBulk, renderBulkBar, selectAllCell, selectCell, toggleRow } from "./bulk.js";
import { fmtDate, fmtN } from "./format.js";
import { startLive, stopLive } from "./live.js";
import { ensureNodes, followApplied, listFailed, listLoaded, mountPanel } from "./panel.js";
import { resolveRange } from "./range.js";
import { convUrl, current, enc, go, listQS, listUrl } from "./router.js";
import { $, $$, chanBadge, chip, fill, h, icon, rangePicker, richText, saveBlob, timeEl, toast } from "./shared.js";

const PAGE_SIZE = 50;
/** Live messages kept on the page, newest first. */
const LIVE_KEEP = 200;

let model = null;
/** The list: its URL key, search context, applied filters, rows, paging and selection. */
const L = { key: null, ctx: null, applied: null, items: [], total: 0, cursor: null, facets: null, loading: false, more: false, error: null, sel: -1, abort: null };

/** Uses the filter model (filters.js) of the server's descriptor. */
export function configureList(filterModel) {
  model = filterModel;
}

/** Forgets the loaded list, so the next render loads it again. */
export function resetList() {
  L.key = null;
}

function mountList(bot) {
  current.page = "list:" + bot;
  const searchIn = h("input", { type: "search", id: "q", name: "q", placeholder: "Search messages…", "aria-label": "Search messages", autocomplete: "off", spellcheck: "false", "aria-describedby": "q-help", title: 'Words (with their inflections), "phrases", refu* prefixes, refnud~ typos, AND OR NOT, -exclude, (groups), user:/bot:/agent:/intent:/node:/flow: prefixes. Click ? for details.' });
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
        h("li", null, h("code", null, "refu*"), " words starting with it (2+ letters); ", h("code", null, "refnud~"), " one typo away, ", h("code", null, "refnud~2"), " two"),
        h("li", null, h("code", null, "intent:greeting"), ", ", h("code", null, "node:n_12"), ", ", h("code", null, "flow:checkout"), " messages with that intent, node or flow"),
        h("li", null, "Words match their inflections in the message's language (", h("code", null, "refunds"), " finds “refunded”), ignoring case and accents (", h("code", null, "cafe"), " = café). Chinese, Japanese, Korean and Thai match any part of 2+ characters. ", h("code", null, "AND OR NOT"), " only in capitals."),
      ),
      h("p", { class: "muted" }, "Press / to jump to the search box."),
    ),
  );
  const searchForm = h("form", { class: "search", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams(current.params);
    const q = searchIn.value.trim();
    if (q) p.set("q", q);
    else p.delete("q");
    if (q && !p.get("sort")) p.set("sort", "relevance");
    if (!q && p.get("sort") === "relevance") p.delete("sort");
    go(listUrl(bot, p));
  } }, searchIn, help, h("button", { type: "submit", class: "primary" }, "Search"));

  const sortSel = h("select", { id: "sort", "aria-label": "Sort", onchange: () => {
    const p = new URLSearchParams(current.params);
    if (sortSel.value === "last_message_at") p.delete("sort");
    else p.set("sort", sortSel.value);
    go(listUrl(bot, p));
  } },
  h("option", { value: "last_message_at" }, "Sort: last activity"),
  h("option", { value: "started_at" }, "Sort: start time"),
  h("option", { value: "relevance" }, "Sort: relevance"));

  const liveToggle = h("button", { type: "button", id: "live-toggle", class: "live-toggle", "aria-pressed": "false", title: "Show new messages matching these filters as they arrive", onclick: () => {
    const p = new URLSearchParams(current.params);
    if (p.get("live") === "1") p.delete("live");
    else p.set("live", "1");
    go(listUrl(bot, p), { replace: true });
  } }, h("span", { class: "live-dot", "aria-hidden": "true" }), "Live");

  const exportMenu = h("details", { class: "menu", id: "export-menu" },
    h("summary", { class: "button", id: "export-btn", title: "Download the conversations of this view" }, "Export"),
    h("div", { class: "menu-pop", role: "menu" },
      h("button", { type: "button", role: "menuitem", id: "export-csv", onclick: () => exportView("csv") }, "Conversations (CSV)"),
      h("button", { type: "button", role: "menuitem", id: "export-ndjson", onclick: () => exportView("ndjson") }, "Messages (NDJSON)"),
      h("p", { class: "muted small" }, "Every conversation matching the filters, search and range of this view.")));

  const filtersToggle = h("button", { type: "button", class: "filters-toggle", id: "filters-toggle", "aria-expanded": "false", "aria-controls": "filters", onclick: () => {
    const on = !document.body.classList.contains("show-filters");
    document.body.classList.toggle("show-filters", on);
    filtersToggle.setAttribute("aria-expanded", String(on));
  } }, "Filters");

  const view = $("#view");
  fill(view,
    h("div", { class: "listpage" },
      h("div", { class: "toolbar" }, searchForm, h("div", { class: "toolbar-row" }, h("div", { id: "range-slot", class: "range-slot" }), sortSel, liveToggle, exportMenu, filtersToggle)),
      h("div", { class: "cols" },
        h("aside", { class: "filters", id: "filters", "aria-label": "Filters" }),
        h("section", { class: "results", id: "results", "aria-label": "Conversations" },
          h("div", { class: "summary", id: "summary" }, h("span", { id: "total" }, " "), h("span", { class: "busy", id: "busy", "aria-hidden": "true" })),
          h("div", { class: "error", id: "list-error", role: "alert", hidden: true }),
          h("section", { class: "live", id: "live", "aria-label": "Live messages", hidden: true },
            h("div", { class: "live-head" }, h("strong", null, "Live"), " ", h("span", { id: "live-status", class: "muted", role: "status" }, "connecting…")),
            h("ol", { class: "live-feed", id: "live-feed" })),
          h("div", { class: "bulkbar", id: "bulkbar", "aria-label": "Bulk actions", hidden: true }),
          h("table", { class: "convs", id: "convs" },
            h("colgroup", null,
              bulkEnabled() ? h("col", { class: "w-sel" }) : null,
              h("col", { class: "w-user" }), h("col", { class: "w-chan" }), h("col", { class: "w-time" }), h("col", { class: "w-time" }),
              h("col", { class: "w-num" }), h("col", { class: "w-tags" }), h("col", { class: "w-labels" }), h("col", { class: "w-flag" })),
            h("thead", null, h("tr", null,
              selectAllCell(),
              h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Channel"), h("th", { scope: "col" }, "Started"),
              h("th", { scope: "col" }, "Last activity"), h("th", { scope: "col", class: "num" }, "Msgs"), h("th", { scope: "col" }, "Tags"),
              h("th", { scope: "col" }, "Labels"), h("th", { scope: "col", class: "c-flag" }, h("span", { class: "sr" }, "Flagged"), icon("flag", "th-flag")))),
            h("tbody", { id: "rows" })),
          h("div", { class: "empty", id: "empty", hidden: true }),
          h("div", { class: "more", id: "more" }),
          h("p", { class: "kbd-hint" }, "Keys: ", h("kbd", null, "j"), "/", h("kbd", null, "k"), " move, ", h("kbd", null, "Enter"), " opens, ", h("kbd", null, "l"), " labels, ", h("kbd", null, "f"), " flags, ", h("kbd", null, "/"), " searches, ", h("kbd", null, "?"), " shows them all."),
        ),
      ),
    ),
  );
  mountPanel($("#filters"), model, L);
  mountBulk(L, model, patchRow);
  ensureBulkLabels(bot);
}

/** Downloads every conversation of the view (`csv`) or their messages (`ndjson`). */
async function exportView(format) {
  $("#export-menu").open = false;
  const params = model.searchParams(L.applied, L.ctx, { sort: false });
  params.set("format", format);
  toast(format === "csv" ? "Exporting the conversations…" : "Exporting the messages…");
  try {
    const { blob, name } = await apiDownload(`/v1/bots/${enc(L.ctx.bot)}/conversations/export`, { params, fallbackName: `convlog.${format}` });
    saveBlob(blob, name);
    toast(`Downloaded ${name}.`);
  } catch (e) {
    toast(e.message, true);
  }
}

/** Renders the list of the current URL: mounts it, reflects the URL in the controls, loads when the URL's list changed. */
export function renderList() {
  const bot = current.route.bot;
  if (current.page !== "list:" + bot) {
    L.key = null;
    mountList(bot);
  }
  const p = current.params;
  // Controls reflect the URL.
  const q = $("#q");
  if (document.activeElement !== q) q.value = p.get("q") || "";
  $("#sort").value = p.get("sort") || "last_message_at";
  fill($("#range-slot"), rangePicker(p, "24h", (np) => go(listUrl(bot, np))));
  ensureNodes(bot);
  syncLive(bot, p);

  const key = bot + "|" + listQS(p);
  if (L.key !== key) {
    L.key = key;
    const range = resolveRange(p, "24h", { formatDate: fmtDate });
    L.ctx = { bot, from: range.from, to: range.to, label: range.label, q: p.get("q") || "", sort: p.get("sort") || "" };
    L.applied = model.fromParams(p);
    clearSelection();
    window.scrollTo(0, 0);
    followApplied(model.fromParams(p));
    const n = model.count(L.applied);
    $("#filters-toggle").textContent = n ? `Filters (${n})` : "Filters";
    loadList();
  } else {
    syncSelectionToRoute();
  }
}

async function loadList({ more = false } = {}) {
  if (L.abort) L.abort.abort();
  const ctrl = new AbortController();
  L.abort = ctrl;
  const ctx = L.ctx;
  const params = model.searchParams(L.applied, ctx);
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
    }
    L.total = r.total;
    L.cursor = r.next_cursor;
    L.loading = false;
    renderRows(appended);
    listLoaded(r, { more });
    syncSelectionToRoute();
  } catch (e) {
    if (e.name === "AbortError") return;
    L.loading = false;
    L.error = e;
    if (!more) {
      L.items = [];
      L.total = 0;
      L.cursor = null;
      listFailed(e);
    }
    renderRows();
  } finally {
    if (L.abort === ctrl) L.abort = null;
    renderListStatus();
  }
}

function renderListStatus() {
  const res = $("#results");
  if (!res) return;
  res.classList.toggle("loading", L.loading);
  res.setAttribute("aria-busy", String(L.loading));
  const tbody = $("#rows");
  if (L.loading && !L.more && !L.items.length && tbody && !tbody.children.length) {
    // Placeholder rows of the real height, so nothing jumps when the answer arrives.
    for (let i = 0; i < 12; i++) {
      tbody.append(h("tr", { class: "skel-row", "aria-hidden": "true" }, bulkEnabled() ? h("td") : null, [0, 1, 2, 3, 4, 5, 6, 7].map((k) => h("td", null, k < 6 ? h("span", { class: "skel", style: { width: `${[70, 60, 80, 80, 30, 50][k]}%` } }, " ") : null))));
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
    fill(empty,
      h("p", null, h("strong", null, "No conversations match.")),
      h("p", { class: "muted" }, model.count(L.applied) || L.ctx.q ? "Try fewer filters, another query or a longer date range." : "Nothing was logged for this bot in this date range. Try a longer range, or check the bot id."),
    );
  }
  const more = $("#more");
  fill(more,
    L.items.length ? h("span", { class: "muted", id: "shown" }, `Showing ${fmtN(L.items.length)} of ${fmtN(L.total)}`) : null,
    L.cursor ? h("button", { type: "button", id: "load-more", disabled: L.loading, onclick: () => loadList({ more: true }) }, L.loading && L.more ? "Loading…" : "Load more") : null,
  );
  updateSelection();
  renderBulkBar();
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
  // What was said: the search's snippets when searching, else the first user message.
  const said = snippets.length
    ? h("div", { class: "snips" }, snippets.map((sn) => h("div", { class: "snip" }, richText(sn))))
    : c.preview ? h("div", { class: "preview", title: c.preview }, c.preview) : null;
  return h("tr", {
    "data-id": c.id, "data-i": String(i),
    onclick: (e) => {
      if (e.target.closest("a,button,input")) return;
      L.sel = i;
      go(href);
    },
  },
  selectCell(c),
  h("td", { class: "c-user" },
    h("a", { href, "data-nav": "", class: "ulink", tabindex: "-1" }, c.user),
    said),
  h("td", { class: "c-chan" }, chanBadge(c.channel)),
  h("td", { class: "c-start" }, timeEl(c.started_at)),
  h("td", { class: "c-last" }, timeEl(c.last_message_at)),
  h("td", { class: "c-count num" }, fmtN(c.message_count)),
  chipsCell("c-tags", c.tags || [], "tag", 3),
  chipsCell("c-labels", c.labels || [], "label", 1),
  h("td", { class: "c-flag" },
    c.flagged ? h("span", { class: "flagged", title: "Flagged" }, icon("flag"), h("span", { class: "sr" }, "flagged")) : null,
    c.debug ? h("span", { class: "debugged", title: "Debug logging on" }, icon("bug"), h("span", { class: "sr" }, "debug on")) : null),
  );
}

/** Opens or closes the live feed as the URL says (`live=1`), for the list's filters. */
function syncLive(bot, p) {
  const on = p.get("live") === "1";
  const toggle = $("#live-toggle");
  toggle.setAttribute("aria-pressed", String(on));
  toggle.classList.toggle("on", on);
  const box = $("#live");
  if (!on) {
    stopLive();
    box.hidden = true;
    $("#live-feed").replaceChildren();
    return;
  }
  box.hidden = false;
  // The list's filters and query, not its date range: new messages are what is live.
  const params = model.searchParams(model.fromParams(p), { q: p.get("q") || "" }, { sort: false });
  const key = bot + "|" + params.toString();
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.dataset.count = "0";
    $("#live-feed").replaceChildren();
  }
  startLive(bot, params, (event) => onLive(bot, event));
}

function onLive(bot, event) {
  const box = $("#live");
  if (!box || box.hidden) return;
  const status = $("#live-status");
  const feed = $("#live-feed");
  if (event.type === "status") {
    const { state, message } = event.data;
    status.textContent = state === "live" ? liveCount(box) : state === "reconnecting" ? "reconnecting…" : message;
    box.classList.toggle("failed", state === "error");
    return;
  }
  if (event.type === "dropped") {
    feed.prepend(h("li", { class: "live-dropped muted" }, `${fmtN(event.data.dropped)} messages skipped: they arrived faster than this page could take them.`));
    return;
  }
  const m = event.data;
  box.dataset.count = String(Number(box.dataset.count || 0) + 1);
  status.textContent = liveCount(box);
  feed.prepend(h("li", { class: "live-msg role-" + m.role, "data-id": m.id },
    timeEl(m.timestamp), " ", chanBadge(m.channel), " ",
    h("span", { class: "live-role" }, m.role), " ",
    h("a", { href: convUrl(m.conversation_id, bot), "data-nav": "", class: "live-text" }, m.text || "(empty)")));
  while (feed.children.length > LIVE_KEEP) feed.lastElementChild.remove();
}

function liveCount(box) {
  const n = Number(box.dataset.count || 0);
  return n ? `${fmtN(n)} new ${n === 1 ? "message" : "messages"} since switched on` : "waiting for new messages…";
}

/** Shows a changed conversation (after a review action) in its row. */
export function patchRow(conv) {
  const i = L.items.findIndex((c) => c.id === conv.id);
  if (i < 0) return;
  L.items[i] = { ...L.items[i], ...conv, snippets: L.items[i].snippets, preview: L.items[i].preview };
  const old = $(`#rows tr[data-id="${CSS.escape(conv.id)}"]`);
  if (old) old.replaceWith(rowEl(L.items[i], i));
  updateSelection();
}

function syncSelectionToRoute() {
  const id = current.route.id;
  if (!id) return updateSelection();
  const i = L.items.findIndex((c) => c.id === id);
  if (i >= 0) L.sel = i;
  updateSelection();
}

function updateSelection() {
  for (const tr of $$("#rows tr")) {
    const i = Number(tr.dataset.i);
    tr.classList.toggle("sel", i === L.sel);
    tr.classList.toggle("open", tr.dataset.id === current.route.id);
    if (i === L.sel) tr.setAttribute("aria-selected", "true");
    else tr.removeAttribute("aria-selected");
  }
}

/** Moves the selection by `delta` rows (loading the next page at the end); with `open`, opens it. */
export async function moveSelection(delta, { open = false } = {}) {
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
  if (open) go(convUrl(L.items[i].id, current.route.bot, current.params, current.params.get("tab")));
}

/** Ticks or unticks the selected row for a bulk action. */
export function tickSelected() {
  const c = L.items[L.sel];
  if (c) toggleRow(c.id);
}

/** The selected conversation, if any. */
export function selectedConversation() {
  return L.items[L.sel] || null;
}
