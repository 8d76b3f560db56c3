// The home page (/): every bot the caller's key may see, with its conversations and
// last activity, and a box to open a bot by id.
//
// Owns: #view while the route is home.

import { api } from "./api.js";
import { fmtN } from "./format.js";
import { BOT_RE, current, enc, go } from "./router.js";
import { $, fill, h, timeEl } from "./shared.js";

/** Renders the home page. */
export async function renderHome() {
  current.page = "home";
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
  if (current.page !== "home") return;
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
