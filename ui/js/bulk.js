// Bulk actions on the conversation list: the rows ticked, or every conversation the
// list's filters match. A dry run counts them first and the count is confirmed; the
// change runs with its progress shown; the last action can be undone.
//
// Owns: the selection of the list (ids ticked, or "all matching"), #bulkbar, and the
// last action of this page (what its rows were before, to show them as they were
// again after an undo).

import { api, auth } from "./api.js";
import { fmtN } from "./format.js";
import { enc } from "./router.js";
import { $, $$, fill, h, toast } from "./shared.js";

/** How often the progress of a running action is asked for. */
const POLL_MS = 300;

let L = null;
let model = null;
let patchRows = () => {};
/** Ticked ids, or every conversation matching (`all`); the pending confirmation; the last action. */
const B = { ids: new Set(), all: false, confirm: null, running: null, last: null, labels: [], draft: "" };

/** Binds the list's state `list`, its filter model and how to redraw changed rows. */
export function mountBulk(list, filterModel, onRowsChanged) {
  L = list;
  model = filterModel;
  patchRows = onRowsChanged;
  B.ids = new Set();
  B.all = false;
  B.confirm = null;
}

/** The list shows another search: the selection is of the old one. */
export function clearSelection() {
  B.ids.clear();
  B.all = false;
  B.confirm = null;
  renderBulkBar();
}

/** Whether bulk actions are offered (editors). */
export function bulkEnabled() {
  return auth.canEdit;
}

/** The header cell: ticks every row loaded. */
export function selectAllCell() {
  if (!bulkEnabled()) return null;
  return h("th", { scope: "col", class: "c-sel" },
    h("input", { type: "checkbox", id: "sel-page", "aria-label": "Select every conversation shown", onchange: (e) => {
      B.all = false;
      for (const c of L.items) {
        if (e.target.checked) B.ids.add(c.id);
        else B.ids.delete(c.id);
      }
      B.confirm = null;
      syncTicks();
      renderBulkBar();
    } }));
}

/** A row's tick box. */
export function selectCell(c) {
  if (!bulkEnabled()) return null;
  return h("td", { class: "c-sel" },
    h("input", { type: "checkbox", class: "sel-row", "aria-label": `Select ${c.user}`, checked: B.all || B.ids.has(c.id), onchange: (e) => toggleRow(c.id, e.target.checked) }));
}

/** Ticks or unticks a row (the `x` key on the selected row). */
export function toggleRow(id, on = !B.ids.has(id)) {
  if (!bulkEnabled()) return;
  if (B.all) {
    // Unticking one of "all matching" leaves the rows loaded, minus it.
    B.all = false;
    B.ids = new Set(L.items.map((c) => c.id));
  }
  if (on) B.ids.add(id);
  else B.ids.delete(id);
  B.confirm = null;
  syncTicks();
  renderBulkBar();
}

function syncTicks() {
  for (const box of $$("#rows tr")) {
    const tick = box.querySelector(".sel-row");
    if (tick) tick.checked = B.all || B.ids.has(box.dataset.id);
  }
  const page = $("#sel-page");
  if (page) {
    const n = L.items.filter((c) => B.ids.has(c.id)).length;
    page.checked = B.all || (n > 0 && n === L.items.length);
    page.indeterminate = !B.all && n > 0 && n < L.items.length;
  }
}

/** How many conversations the selection holds. */
function selectedCount() {
  return B.all ? L.total : B.ids.size;
}

/** The request of an action on the selection: the filters of the list, or the ids. */
function target(body) {
  if (B.all) return { params: model.searchParams(L.applied, L.ctx, { sort: false }), body };
  return { params: undefined, body: { ...body, conversation_ids: [...B.ids] } };
}

/** What a change does, in words. */
function describe(change) {
  if (change.add_labels) return `Add label “${change.add_labels[0]}” to`;
  if (change.remove_labels) return `Remove label “${change.remove_labels[0]}” from`;
  return change.flag ? "Flag" : "Unflag";
}

/** Renders the bar over the table: the selection, the actions, a confirmation, progress, the last action. */
export function renderBulkBar() {
  const bar = $("#bulkbar");
  if (!bar || !L) return;
  const n = selectedCount();
  const pageTicked = L.items.length > 0 && L.items.every((c) => B.ids.has(c.id));
  bar.hidden = !bulkEnabled() || (n === 0 && !B.running && !B.last);
  if (bar.hidden) return bar.replaceChildren();
  const busy = !!(B.running || B.confirm);
  const label = h("input", { id: "bulk-label", list: "bulk-labels", placeholder: "Label…", "aria-label": "Label to add or remove", maxlength: "64", autocomplete: "off", disabled: busy, value: B.draft, oninput: (e) => {
    B.draft = e.target.value;
  } });
  const act = (change) => () => prepare(change);
  const withLabel = (key) => () => {
    const v = label.value.trim();
    if (!v) {
      label.focus();
      return toast("Type the label first.", true);
    }
    prepare({ [key]: [v] });
  };
  fill(bar,
    n ? h("div", { class: "bulk-sel" },
      h("strong", { id: "bulk-count" }, B.all ? `All ${fmtN(n)} matching` : `${fmtN(n)} selected`),
      !B.all && pageTicked && L.total > L.items.length
        ? h("button", { type: "button", class: "link", id: "bulk-all", disabled: busy, onclick: () => {
          B.all = true;
          B.confirm = null;
          syncTicks();
          renderBulkBar();
        } }, `Select all ${fmtN(L.total)} matching`)
        : null,
      h("button", { type: "button", class: "link", id: "bulk-clear", disabled: busy, onclick: clearSelection }, "Clear selection"),
    ) : null,
    n ? h("div", { class: "bulk-actions" },
      label, h("datalist", { id: "bulk-labels" }, B.labels.map((name) => h("option", { value: name }))),
      h("button", { type: "button", id: "bulk-add-label", disabled: busy, onclick: withLabel("add_labels") }, "Add label"),
      h("button", { type: "button", id: "bulk-remove-label", disabled: busy, onclick: withLabel("remove_labels") }, "Remove label"),
      h("button", { type: "button", id: "bulk-flag", disabled: busy, onclick: act({ flag: true }) }, "Flag"),
      h("button", { type: "button", id: "bulk-unflag", disabled: busy, onclick: act({ flag: false }) }, "Unflag"),
    ) : null,
    B.confirm ? h("div", { class: "bulk-confirm", id: "bulk-confirm", role: "alertdialog", "aria-label": "Confirm the bulk action" },
      h("span", null, `${describe(B.confirm.change)} `, h("strong", { id: "bulk-matched" }, fmtN(B.confirm.matched)), B.confirm.matched === 1 ? " conversation?" : " conversations?"),
      h("button", { type: "button", class: "primary", id: "bulk-go", disabled: B.confirm.matched === 0, onclick: run }, "Confirm"),
      h("button", { type: "button", id: "bulk-cancel", onclick: () => {
        B.confirm = null;
        renderBulkBar();
      } }, "Cancel"),
    ) : null,
    B.running ? h("div", { class: "bulk-progress", id: "bulk-progress", role: "status" },
      h("progress", { max: String(Math.max(1, B.running.matched)), value: String(B.running.done) }),
      h("span", null, `${describe(B.running.change)} ${fmtN(B.running.matched)}: `, h("span", { id: "bulk-done" }, fmtN(B.running.done)), " done…"),
    ) : null,
    !B.running && B.last ? h("div", { class: "bulk-last", id: "bulk-last", role: "status" },
      h("span", null, B.last.text),
      B.last.undoable ? h("button", { type: "button", id: "bulk-undo", disabled: busy, onclick: undo }, "Undo") : null,
    ) : null,
  );
}

/** Counts what `change` would touch (a dry run) and asks to confirm. */
async function prepare(change) {
  const { params, body } = target({ ...change, dry_run: true });
  try {
    const r = await api("POST", `/v1/bots/${enc(L.ctx.bot)}/conversations/bulk`, { params, body });
    B.confirm = { change, matched: r.matched };
  } catch (e) {
    toast(e.message, true);
  }
  renderBulkBar();
}

/** Runs the confirmed change, showing its progress until it answers. */
async function run() {
  const { change } = B.confirm;
  const bot = L.ctx.bot;
  const { params, body } = target(change);
  const before = snapshot();
  const chosen = B.all ? null : new Set(B.ids);
  B.confirm = null;
  B.running = { change, matched: selectedCount(), done: 0 };
  renderBulkBar();
  let polling = true;
  const poll = async () => {
    while (polling) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (!polling) return;
      try {
        const r = await api("GET", `/v1/bots/${enc(bot)}/conversations/bulk`);
        const a = (r.actions || [])[0];
        if (polling && a && a.state === "running") {
          B.running = { ...B.running, matched: a.matched, done: a.done };
          renderBulkBar();
        }
      } catch {
        /* progress is a nicety; the answer still comes */
      }
    }
  };
  poll();
  try {
    const r = await api("POST", `/v1/bots/${enc(bot)}/conversations/bulk`, { params, body });
    applyLocally(change, before, chosen);
    B.last = {
      id: r.action_id, bot, before, undoable: r.changed > 0,
      text: `${describe(change)} ${fmtN(r.matched)} ${r.matched === 1 ? "conversation" : "conversations"}: ${fmtN(r.changed)} changed.`,
    };
    B.ids.clear();
    B.all = false;
    syncTicks();
    ensureBulkLabels(bot, true);
  } catch (e) {
    toast(e.message, true);
  } finally {
    polling = false;
    B.running = null;
    renderBulkBar();
  }
}

/** Undoes the last action and shows its rows as they were. */
async function undo() {
  const last = B.last;
  try {
    const r = await api("POST", `/v1/bots/${enc(last.bot)}/conversations/bulk/${last.id}/undo`);
    for (const [id, was] of last.before) patchRows({ id, ...was });
    B.last = { ...last, undoable: false, text: `Undone: ${fmtN(r.restored)} ${r.restored === 1 ? "conversation" : "conversations"} put back.` };
  } catch (e) {
    toast(e.message, true);
  }
  renderBulkBar();
}

/** The loaded rows' labels and flag, to show them as they were after an undo. */
function snapshot() {
  return new Map(L.items.map((c) => [c.id, { labels: c.labels || [], flagged: !!c.flagged }]));
}

/**
 * Shows the change in the loaded rows it applied to (`chosen`, or all of them), as the
 * search will within its refresh interval.
 */
function applyLocally(change, before, chosen) {
  for (const c of [...L.items]) {
    if ((chosen && !chosen.has(c.id)) || !before.has(c.id)) continue;
    let labels = [...(c.labels || [])];
    const has = (l) => labels.some((x) => x.toLowerCase() === l.toLowerCase());
    for (const l of change.add_labels || []) if (!has(l)) labels.push(l);
    for (const l of change.remove_labels || []) labels = labels.filter((x) => x.toLowerCase() !== l.toLowerCase());
    const flagged = change.flag === undefined ? c.flagged : change.flag;
    patchRows({ id: c.id, labels, flagged });
  }
}

/** The bot's label names, for the label box's suggestions. */
export async function ensureBulkLabels(bot, force = false) {
  if (!bulkEnabled() || (B.labelsFor === bot && !force)) return;
  B.labelsFor = bot;
  try {
    const r = await api("GET", `/v1/bots/${enc(bot)}/labels`);
    B.labels = (r.labels || []).map((l) => l.name);
  } catch {
    B.labels = [];
  }
  const dl = $("#bulk-labels");
  if (dl) fill(dl, ...B.labels.map((name) => h("option", { value: name })));
}
