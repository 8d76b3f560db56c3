// The shared page (/shared/{token}): a read-only copy of one conversation, for people
// without a key.
//
// Owns: #view while the route is a shared link. Reuses the drawer's transcript and
// user details, without editing.

import { api } from "./api.js";
import { closeDrawer, skeletonMessages, transcript, userDetails } from "./conversation.js";
import { fmtN, fmtTime } from "./format.js";
import { current, enc } from "./router.js";
import { $, chanBadge, chip, fill, h, icon, timeEl } from "./shared.js";

/** Renders the shared conversation of the current URL's token. */
export async function renderShared() {
  closeDrawer();
  const token = current.route.token;
  current.page = "shared";
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
