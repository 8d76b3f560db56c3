// DOM building blocks every view uses: element builders, icons, chips, times, the
// toast, the clipboard and the date-range picker.
//
// Owns: how elements are made (`h` for HTML, `s` for SVG) and how server-made HTML is
// made safe (`richText`). Touches the DOM only when called.

import { fmtDate, fmtFull, hashHue, toLocalInput } from "./format.js";
import { RANGES, resolveRange } from "./range.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const SVGNS = "http://www.w3.org/2000/svg";

/** Builds an element: h("a", {href, class, onclick}, ...children). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, kids);
  return el;
}

/** Builds an SVG element; every prop is an attribute (or a listener for on*). */
export function s(tag, props, ...kids) {
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
export function fill(el, ...kids) {
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
export function richText(html) {
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

/** A <time> with the full date as tooltip. */
export function timeEl(iso, fmt = fmtDate) {
  return h("time", { datetime: iso || "", title: iso ? fmtFull(iso) : "" }, fmt(iso));
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

/** One of the UI's icons as inline SVG. */
export function icon(name, cls = "") {
  return s("svg", { viewBox: "0 0 24 24", class: "icon " + cls, "aria-hidden": "true", focusable: "false" }, s("path", { d: ICONS[name] }));
}

/** A coloured chip (a tag or a label). */
export function chip(text, cls, title) {
  return h("span", { class: "chip " + cls, title: title || text, style: { "--h": hashHue(text) } }, text);
}

/** A channel's badge. */
export function chanBadge(ch) {
  return h("span", { class: "chan chan-" + ch.replace(/[^a-z0-9]/g, ""), style: { "--h": hashHue(ch) } }, ch);
}

let toastTimer;
/** A short message at the bottom of the screen; errors stay longer. */
export function toast(text, isError = false) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.toggle("err", isError);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, isError ? 6000 : 3000);
}

/** Copies `text` to the clipboard; false if the browser wouldn't. */
export async function copyText(text) {
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

/** The range picker: a preset select plus a custom from/to pair. `onchange(params)` gets the new params. */
export function rangePicker(params, fallback, onchange) {
  const cur = resolveRange(params, fallback, { formatDate: fmtDate });
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

/** Saves `blob` as a file named `name` (the browser's download). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
