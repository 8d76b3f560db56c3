// What the bot misses (/bots/{bot}/misses?range=…&channel=…): the inputs the bot
// answered with a fallback, in clusters of similar ones, largest first, with
// examples, a click-through to their conversations and a bulk label.
//
// Owns: #view while the route is this page, and its loaded clusters. The whole view
// is in the URL: the range and any search filter (channel, tag, q…) apply.

import { api, auth } from "./api.js";
import { fmtDate, fmtN } from "./format.js";
import { resolveRange } from "./range.js";
import { convUrl, current, enc, go, missesUrl } from "./router.js";
import { $, chip, fill, h, rangePicker, toast } from "./shared.js";

/** Clusters asked for. */
const CLUSTERS = 100;

/** The page's URL key, the answer, an error. */
const M = { key: null, data: null, error: null };

/** Forgets the loaded clusters, so the next render loads them again. */
export function resetMisses() {
  M.key = null;
}

/** The search filters of the URL with its range resolved (the API's parameters). */
function filterParams(p) {
  const range = resolveRange(p, "24h", { formatDate: fmtDate });
  const out = new URLSearchParams();
  for (const [k, v] of p) if (k !== "range" && k !== "from" && k !== "to") out.append(k, v);
  if (range.from) out.set("from", range.from);
  if (range.to) out.set("to", range.to);
  return { params: out, label: range.label };
}

/**
 * The conversations a cluster points to, as a search of the list: its label's words
 * in the users' messages, in conversations with an unidentified answer, under the
 * page's own filters.
 */
function clusterSearch(cluster, p) {
  const q = new URLSearchParams(p);
  const words = cluster.label.split(/\s+/).filter(Boolean);
  if (words.length && !words.some((w) => /["():*~]/.test(w))) q.set("q", words.map((w) => "user:" + w).join(" "));
  else q.set("q", `user:"${cluster.label.replace(/"/g, "")}"`);
  q.append("tag", "unidentified_response");
  q.delete("tab");
  return q;
}

function mount(bot) {
  current.page = "misses:" + bot;
  fill($("#view"), h("div", { class: "misses" },
    h("div", { class: "toolbar" }, h("h1", null, "What the bot misses"), h("div", { id: "misses-range", class: "range-slot" }), h("span", { class: "busy", id: "misses-busy", "aria-hidden": "true" })),
    h("p", { class: "muted small" }, "What users wrote that the bot answered with a fallback, grouped with its paraphrases and near duplicates, the most frequent first: candidates for new intents and flows."),
    h("div", { class: "summary", id: "misses-summary" }, " "),
    h("div", { class: "error", id: "misses-error", role: "alert", hidden: true }),
    h("ol", { class: "clusters", id: "clusters" })));
}

/** Renders the page of the current URL, loading when its filters changed. */
export async function renderMisses() {
  const bot = current.route.bot;
  if (current.page !== "misses:" + bot) {
    M.key = null;
    mount(bot);
  }
  const p = current.params;
  fill($("#misses-range"), rangePicker(p, "24h", (np) => go(missesUrl(bot, np))));
  const key = bot + "|" + p.toString();
  if (M.key === key) return;
  M.key = key;
  const { params, label } = filterParams(p);
  params.set("limit", String(CLUSTERS));
  $("#misses-busy").classList.add("on");
  try {
    const data = await api("GET", `/v1/bots/${enc(bot)}/insights/unidentified`, { params });
    if (M.key !== key) return;
    M.data = { ...data, label };
    M.error = null;
  } catch (e) {
    if (M.key !== key) return;
    M.data = null;
    M.error = e;
  } finally {
    if (M.key === key) $("#misses-busy")?.classList.remove("on");
  }
  draw(bot);
}

function draw(bot) {
  const err = $("#misses-error");
  err.hidden = !M.error;
  err.textContent = M.error ? "Couldn't load what the bot misses: " + M.error.message : "";
  const list = $("#clusters");
  if (!M.data) {
    fill($("#misses-summary"), " ");
    list.replaceChildren();
    return;
  }
  const { total_inputs: inputs, total_clusters: clusters, label } = M.data;
  fill($("#misses-summary"),
    h("strong", { id: "misses-total" }, fmtN(inputs)), inputs === 1 ? " unidentified input" : " unidentified inputs",
    h("span", { class: "muted" }, ` in ${fmtN(clusters)} ${clusters === 1 ? "cluster" : "clusters"} · ${label}`),
    clusters > M.data.clusters.length ? h("span", { class: "muted" }, ` · the ${fmtN(M.data.clusters.length)} largest shown`) : null);
  if (!M.data.clusters.length) {
    list.replaceChildren(h("li", { class: "empty" }, h("p", null, h("strong", null, "Nothing missed.")), h("p", { class: "muted" }, "No fallback answers in this range and these filters.")));
    return;
  }
  const top = M.data.clusters[0].inputs || 1;
  list.replaceChildren(...M.data.clusters.map((c, i) => clusterEl(bot, c, i, top)));
}

function clusterEl(bot, c, i, top) {
  const search = clusterSearch(c, current.params);
  const listHref = `/bots/${enc(bot)}?${search}`;
  const labelBox = h("form", { class: "cluster-label", hidden: true, onsubmit: (e) => {
    e.preventDefault();
    bulkLabel(bot, search, labelBox);
  } },
  h("input", { type: "text", name: "label", placeholder: "Label, e.g. new-intent", "aria-label": "Label for these conversations", maxlength: "64", required: true }),
  h("button", { type: "submit", class: "primary" }, "Count"),
  h("span", { class: "muted small confirm-line" }));
  return h("li", { class: "cluster card", "data-rank": String(i + 1) },
    h("div", { class: "cluster-head" },
      h("h2", null, h("span", { class: "rank" }, `${i + 1}.`), " ", h("span", { class: "cluster-name" }, c.label || "—")),
      h("span", { class: "cluster-counts" },
        h("strong", { class: "inputs" }, fmtN(c.inputs)), c.inputs === 1 ? " input" : " inputs",
        h("span", { class: "muted" }, ` · ${fmtN(c.conversations)} ${c.conversations === 1 ? "conversation" : "conversations"}`))),
    h("div", { class: "bar", "aria-hidden": "true" }, h("i", { style: { width: `${Math.max(2, (100 * c.inputs) / top)}%` } })),
    c.terms.length ? h("div", { class: "chipline terms" }, c.terms.map((t) => chip(t, "term"))) : null,
    h("ul", { class: "examples" }, c.examples.map((x) => h("li", null,
      h("a", { href: convUrl(x.conversation_id, bot, new URLSearchParams(search)), "data-nav": "", class: "example" }, "“", x.text, "”")))),
    h("div", { class: "cluster-actions" },
      h("a", { href: listHref, "data-nav": "", class: "button open-list" }, "Show conversations"),
      auth.canEdit ? h("button", { type: "button", class: "label-btn", onclick: () => {
        labelBox.hidden = !labelBox.hidden;
        if (!labelBox.hidden) labelBox.querySelector("input").focus();
      } }, "Label…") : null),
    labelBox);
}

/** Labels the conversations of a cluster: a dry run first, then the change once confirmed. */
async function bulkLabel(bot, search, form) {
  const label = form.querySelector("input").value.trim();
  const button = form.querySelector("button");
  const line = form.querySelector(".confirm-line");
  const { params } = filterParams(search);
  const path = `/v1/bots/${enc(bot)}/conversations/bulk`;
  try {
    if (form.dataset.confirm !== label) {
      const dry = await api("POST", path, { params, body: { add_labels: [label], dry_run: true } });
      form.dataset.confirm = label;
      button.textContent = `Label ${fmtN(dry.matched)}`;
      line.textContent = `${fmtN(dry.matched)} conversations will get “${label}”.`;
      return;
    }
    const done = await api("POST", path, { params, body: { add_labels: [label] } });
    delete form.dataset.confirm;
    button.textContent = "Count";
    line.textContent = `Labelled ${fmtN(done.changed)} of ${fmtN(done.matched)} conversations “${label}”.`;
    toast(`Labelled ${fmtN(done.changed)} conversations “${label}”.`);
  } catch (e) {
    delete form.dataset.confirm;
    button.textContent = "Count";
    line.textContent = "";
    toast(e.message, true);
  }
}
