// The session: what the current key (or no key) may do, the sign-in dialog, sign-out
// and the role badge in the header.
//
// Owns: #signin, #who and the body's `readonly` / `needs-signin` classes. Tells the
// page to start over (`onSessionChange`) when the key changes.

import { api, apiHooks, auth, useKey } from "./api.js";
import { BOT_RE, current, enc } from "./router.js";
import { $, fill, h } from "./shared.js";

let changed = () => {};
let signinOpen = false;

/** Wires the sign-in dialog and the API's refusals; `onChange` runs after a sign-in or sign-out. */
export function installSession(onChange) {
  changed = onChange;
  apiHooks.unauthorized = requireSignIn;
  apiHooks.roleChanged = applyRole;
  $("#signin-form").addEventListener("submit", submitSignIn);
  $("#signin").addEventListener("cancel", (e) => e.preventDefault());
}

/** Finds out what the current key (or no key) may do. Returns false when a sign-in is needed. */
export async function probeRole() {
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
      const r = current.route;
      const bot = r && r.bot && BOT_RE.test(r.bot) ? r.bot : "probe";
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

/** Shows the role and the sign-out button; hides edit controls from viewers. */
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

/** Opens the sign-in dialog; `message` says why a key given was refused. */
export function requireSignIn(message) {
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
  useKey(key);
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
    useKey("");
    input.select();
    return;
  }
  signinOpen = false;
  document.body.classList.remove("needs-signin");
  $("#signin").close();
  input.value = "";
  changed();
}

function signOut() {
  useKey("");
  auth.role = null;
  auth.checked = false;
  changed();
}
