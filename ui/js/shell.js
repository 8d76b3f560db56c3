// The page around the views: the header (bot picker, view tabs), rendering the view
// of the current URL, in-page links, and the keyboard shortcuts.
//
// Owns: #top, the choice of view for a route, and the recent bots (local storage).
// A new view gets a module of its own and one line in render() here.

import { auth } from "./api.js";
import { closeDrawer, keyAction, renderDrawer, resetConversation } from "./conversation.js";
import { redrawDash, renderDash, resetDash } from "./dashboards.js";
import { debounce } from "./format.js";
import { renderHome } from "./home.js";
import { moveSelection, renderList, resetList, selectedConversation, tickSelected } from "./list.js";
import { stopLive } from "./live.js";
import { renderMisses, resetMisses } from "./misses.js";
import { resetNodes } from "./panel.js";
import { BOT_RE, convUrl, current, dashUrl, enc, go, listUrl, missesUrl, parseRoute } from "./router.js";
import { probeRole, requireSignIn } from "./session.js";
import { renderShared } from "./sharepage.js";
import { $, fill, h, toast } from "./shared.js";

let renderSeq = 0;

/** Renders the page for the current URL. */
export async function render() {
  const seq = ++renderSeq;
  current.route = parseRoute(location.pathname);
  current.params = new URLSearchParams(location.search);
  renderHeader();
  const r = current.route;
  // Only the logs page has a live feed.
  if (r.kind !== "list") stopLive();
  if (r.kind === "shared") {
    fill($("#who"), h("span", { class: "role role-viewer" }, "read-only"));
    return renderShared();
  }
  if (!auth.checked) {
    auth.checked = true;
    const ok = await probeRole();
    if (seq !== renderSeq) return;
    if (!ok) {
      requireSignIn("");
      showMessage("Sign in to see the conversation logs.");
      return;
    }
  }
  if (r.kind === "home") {
    closeDrawer();
    return renderHome();
  }
  if (!BOT_RE.test(r.bot)) {
    showMessage(`"${r.bot}" is not a valid bot id: use letters, digits, ".", "_" or "-", at most 64 characters.`);
    return;
  }
  rememberBot(r.bot);
  document.title = `${r.bot} · convlog`;
  if (r.kind === "dash") {
    closeDrawer();
    return renderDash();
  }
  if (r.kind === "misses") {
    closeDrawer();
    return renderMisses();
  }
  renderList();
  renderDrawer();
}

/** Forgets everything loaded (the key changed) and renders again. */
export function startOver() {
  resetList();
  resetConversation();
  resetDash();
  resetMisses();
  resetNodes();
  render();
}

/** A message instead of a view. */
export function showMessage(text) {
  current.page = null;
  fill($("#view"), h("div", { class: "center-msg" }, h("p", null, text)));
  closeDrawer();
}

function renderHeader() {
  const r = current.route;
  const input = $("#bot-input");
  if (r.bot && document.activeElement !== input) input.value = r.bot;
  const nav = $("#mainnav");
  if (r.bot) {
    fill(nav,
      h("a", { href: `/bots/${enc(r.bot)}`, "data-nav": "", class: r.kind === "list" ? "on" : "", "aria-current": r.kind === "list" ? "page" : null }, "Conversations"),
      h("a", { href: dashUrl(r.bot), "data-nav": "", class: r.kind === "dash" ? "on" : "", "aria-current": r.kind === "dash" ? "page" : null }, "Dashboards"),
      h("a", { href: missesUrl(r.bot), "data-nav": "", class: r.kind === "misses" ? "on" : "", "aria-current": r.kind === "misses" ? "page" : null }, "What the bot misses"),
    );
  } else nav.replaceChildren();
  $("#botpick").hidden = r.kind === "shared";
  document.body.dataset.page = r.kind;
}

function recentBots() {
  try {
    return JSON.parse(localStorage.getItem("convlog.bots") || "[]");
  } catch {
    return [];
  }
}

function rememberBot(bot) {
  localStorage.setItem("convlog.bot", bot);
  const recent = [bot, ...recentBots().filter((b) => b !== bot)].slice(0, 12);
  localStorage.setItem("convlog.bots", JSON.stringify(recent));
  fill($("#bots-recent"), ...recent.map((b) => h("option", { value: b })));
}

function typing(el) {
  if (!el) return false;
  const tag = el.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
}

function onKey(e) {
  if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
  if ($("#signin").open || $("#keys-sheet")?.open) return;
  const r = current.route;
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
  /** Runs a review key on the open conversation, opening the selected one first. */
  const review = (kind) => {
    e.preventDefault();
    if (!drawerOpen) {
      const c = selectedConversation();
      if (!c) return toast("Select a conversation first (j/k).");
      go(convUrl(c.id));
    }
    keyAction(kind);
  };
  switch (e.key) {
    case "?":
      e.preventDefault();
      showKeys();
      break;
    case "l":
      review("label");
      break;
    case "f":
      review("flag");
      break;
    case "x":
      e.preventDefault();
      tickSelected();
      break;
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
      const c = selectedConversation();
      if (c) {
        e.preventDefault();
        go(convUrl(c.id));
      }
      break;
    }
    default:
  }
}

/** The keys of the logs page, for the sheet `?` opens. */
const KEYS = [
  ["j / ↓", "next conversation"],
  ["k / ↑", "previous conversation"],
  ["Enter", "open the selected conversation"],
  ["l", "label it (the label box of the open conversation)"],
  ["f", "flag it, or remove its flag"],
  ["x", "tick it for a bulk action"],
  ["/", "search messages"],
  ["Esc", "close the conversation, this sheet or a box"],
  ["?", "this sheet"],
];

function showKeys() {
  let sheet = $("#keys-sheet");
  if (!sheet) {
    sheet = h("dialog", { id: "keys-sheet", class: "keys-sheet", "aria-labelledby": "keys-title" },
      h("h2", { id: "keys-title" }, "Keyboard shortcuts"),
      h("table", null, h("tbody", null, KEYS.map(([k, what]) => h("tr", null, h("td", null, h("kbd", null, k)), h("td", null, what))))),
      h("form", { method: "dialog", class: "row end" }, h("button", { type: "submit", id: "keys-close" }, "Close")));
    // A click on the backdrop closes it.
    sheet.addEventListener("click", (e) => {
      if (e.target === sheet) sheet.close();
    });
    document.body.append(sheet);
  }
  if (!sheet.open) sheet.showModal();
}

/** Wires the header, links, keys and history; fills the recent bots. */
export function installShell() {
  document.addEventListener("keydown", onKey);
  // In-page links: no reload.
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-nav]");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/")) return;
    e.preventDefault();
    go(href);
  });
  // A click elsewhere closes the query syntax help.
  document.addEventListener("click", (e) => {
    const tip = $("#q-help");
    if (tip && !tip.hidden && !e.target.closest(".help-wrap")) {
      tip.hidden = true;
      $("#q-help-btn")?.setAttribute("aria-expanded", "false");
    }
  });
  window.addEventListener("popstate", render);
  window.addEventListener("resize", debounce(redrawDash, 150));
  $("#botpick").addEventListener("submit", (e) => {
    e.preventDefault();
    const bot = $("#bot-input").value.trim();
    if (!BOT_RE.test(bot)) {
      toast("A bot id is 1–64 letters, digits, '.', '_' or '-'.", true);
      return;
    }
    $("#bot-input").blur();
    const kind = current.route.kind;
    go(kind === "dash" ? dashUrl(bot) : kind === "misses" ? missesUrl(bot) : `/bots/${enc(bot)}`);
  });
  // The page restores its own state from the URL; the browser must not jump to an old scroll position.
  history.scrollRestoration = "manual";
  fill($("#bots-recent"), ...recentBots().map((b) => h("option", { value: b })));
}
