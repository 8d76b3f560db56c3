#!/usr/bin/env node
// Browser tests of the convlog web UI: headless Chromium (the system's /usr/bin/chromium)
// driven by playwright-core. Every check compares what the page shows with what the API
// answers for the same question.
//
//   node tests/ui/run.mjs http://127.0.0.1:7700 [--bot demo] [--fixture FILE]
//                         [--screenshots DIR] [--auth] [--chromium PATH]
//
// --fixture   JSON written by tests/it/ui.rs: a conversation with debug traces already
//             stored, and one whose raw user id is known so that this script can post
//             trace events for it after turning debug logging on in the page.
// --auth      last step: creates API keys (the server leaves open mode for good) and checks
//             sign-in and what viewers, editors and admins are shown. Only on a throwaway server.
// Screenshots go to docs/screenshots/ unless --screenshots says otherwise.
// Exits non-zero when a check fails; prints "N passed, N failed" last.

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BASE = (argv.find((a) => /^https?:\/\//.test(a)) || "").replace(/\/$/, "");
if (!BASE) {
  console.error("usage: node tests/ui/run.mjs http://HOST:PORT [--bot demo] [--fixture FILE] [--screenshots DIR] [--auth]");
  process.exit(2);
}
const BOT = opt("--bot", "demo");
const SHOTS = path.resolve(opt("--screenshots", path.join(here, "..", "..", "docs", "screenshots")));
const FIXTURE = opt("--fixture") ? JSON.parse(fs.readFileSync(opt("--fixture"), "utf8")) : null;
const WITH_AUTH = argv.includes("--auth");
const CHROMIUM = opt("--chromium", process.env.CHROMIUM || "/usr/bin/chromium");
fs.mkdirSync(SHOTS, { recursive: true });

// A fixed range that covers the generated data (the last two days) for exact comparisons.
const NOW = Date.now();
const FROM = new Date(NOW - 3 * 864e5).toISOString().replace(/\.\d+Z$/, "Z");
const TO = new Date(NOW + 864e5).toISOString().replace(/\.\d+Z$/, "Z");
const RANGE = `from=${encodeURIComponent(FROM)}&to=${encodeURIComponent(TO)}`;
const LIST = `/bots/${BOT}?${RANGE}`;

// ------------------------------------------------------------------ plumbing

let passed = 0;
let failed = 0;
const failures = [];
let apiKey = "";

async function api(method, p, body, key = apiKey) {
  const headers = { "content-type": "application/json" };
  if (key) headers.authorization = "Bearer " + key;
  const res = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return json;
}
const get = (p) => api("GET", p);
const search = (qs) => get(`/v1/bots/${BOT}/conversations?${RANGE}&limit=50${qs ? "&" + qs : ""}`);

function assert(cond, message) {
  if (!cond) throw new Error(message);
}
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}
async function eventually(fn, { timeout = 15000, every = 200 } = {}) {
  const start = Date.now();
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() - start > timeout) throw e;
      await new Promise((r) => setTimeout(r, every));
    }
  }
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    failures.push(name);
    console.log(`FAIL ${name}\n     ${String(e && e.stack ? e.stack : e).split("\n").slice(0, 6).join("\n     ")}`);
    if (page) {
      try {
        await page.screenshot({ path: path.join(SHOTS, `failure-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`) });
      } catch {
        /* ignore */
      }
    }
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
async function newPage({ width = 1280, height = 800, mobile = false } = {}) {
  // Each context is fresh: its own profile, storage and clipboard permissions.
  const context = await browser.newContext({ viewport: { width, height }, isMobile: mobile, hasTouch: mobile, timezoneId: "UTC", locale: "en-US" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const p = await context.newPage();
  p.setDefaultTimeout(15000);
  p.on("pageerror", (e) => pageErrors.push(`${e.message}`));
  p.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  return p;
}
let page = await newPage();

const shot = (name, p = page, full = false) => p.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: full });

/** Waits until the list finished loading and returns {total, ids}. */
async function listState(p = page) {
  await p.waitForSelector("#results[aria-busy=false]");
  await p.waitForSelector("#total-count, #list-error:not([hidden])");
  const total = await p.$eval("#total-count", (e) => Number(e.textContent.replace(/,/g, ""))).catch(() => null);
  const ids = await p.$$eval("#rows tr", (rows) => rows.map((r) => r.dataset.id));
  return { total, ids };
}
async function gotoList(url = LIST, p = page) {
  await p.goto(BASE + url);
  return listState(p);
}
/** The count shown next to a facet value in the panel. */
async function facetCount(key, value, p = page) {
  const sel = `[data-fkey="${key}:${value}"]`;
  return p.$eval(sel, (el) => Number(el.closest("label").querySelector(".fcount").textContent.replace(/,/g, "")));
}
const pick = (facet) => Object.entries(facet || {}).sort((a, b) => b[1] - a[1]).filter(([, n]) => n > 0);
async function noHorizontalOverflow(p = page) {
  const [sw, cw] = await p.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert(sw <= cw + 1, `the page scrolls sideways: ${sw} > ${cw}`);
}

/**
 * Ticks one filter value in the panel, checks the preview count, applies, and checks the
 * table (ids of the first page, in order) and the total against the API.
 */
async function applyFilter(key, value, apiQs, { search: find } = {}) {
  await gotoList();
  if (find) await page.fill(`#fs-${key}`, find);
  const box = page.locator(`[data-fkey="${key}:${value}"]`);
  if (!(await box.count())) {
    // Beyond the first values: expand the list.
    await page.click(`.fsec[data-dim="${key}"] .fmore button`);
  }
  await box.check();
  const expected = await search(apiQs);
  await page.waitForFunction((n) => document.querySelector("#f-apply").textContent.includes(`(${n})`), expected.total.toLocaleString("en-US"));
  await page.click("#f-apply");
  await page.waitForURL((u) => u.searchParams.getAll(key).includes(value));
  const st = await listState();
  eq(st.total, expected.total, `total for ${apiQs}`);
  eq(st.ids, expected.conversations.map((c) => c.id), `rows for ${apiQs}`);
  return expected;
}

// ------------------------------------------------------------------ data from the API

const base = await search("");
assert(base.total > 0, `no conversations for bot ${BOT} in ${FROM}..${TO}: load data first`);
const first = base.conversations[0];

// ------------------------------------------------------------------ list and filters

await step("list: default (last 24 h) loads conversations", async () => {
  await page.goto(BASE + `/bots/${BOT}`);
  const st = await listState();
  const api24 = await get(`/v1/bots/${BOT}/conversations?limit=1`);
  assert(st.total > 0, "no conversations in the last 24 h");
  assert(Math.abs(st.total - api24.total) <= 2, `24 h total ${st.total} vs API ${api24.total}`);
  assert(st.ids.length === Math.min(50, st.total), `${st.ids.length} rows`);
  eq(await page.$eval("#range-select", (e) => e.value), "24h", "range preset");
  const remembered = await page.evaluate(() => localStorage.getItem("convlog.bot"));
  eq(remembered, BOT, "remembered bot");
});

await step("home: lists the bots the key may see, with their conversation counts", async () => {
  const api = await get(`/v1/bots`);
  assert(api.bots.some((b) => b.id === BOT), `GET /v1/bots lacks ${BOT}`);
  await page.goto(BASE + "/");
  await page.waitForSelector("#bots");
  const shown = await page.$$eval("#bots tbody tr", (rows) => rows.map((r) => [r.dataset.bot, Number(r.querySelector("[data-count]").dataset.count)]));
  eq(shown, api.bots.map((b) => [b.id, b.conversations]), "bots and counts");
  await shot("home");
  await page.click(`#bots tr[data-bot="${BOT}"] a`);
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}`);
});

await step("list: totals, rows and facet counts match the API", async () => {
  const st = await gotoList();
  eq(st.total, base.total, "total");
  eq(st.ids, base.conversations.map((c) => c.id), "first page");
  for (const dim of ["channel", "tag"]) {
    for (const [v, n] of pick(base.facets[dim]).slice(0, 5)) eq(await facetCount(dim, v), n, `${dim} facet ${v}`);
  }
  const row = page.locator(`#rows tr[data-id="${first.id}"]`);
  eq((await row.locator(".c-user").innerText()).split("\n")[0], first.user, "user cell");
  eq(await row.locator(".c-chan").innerText(), first.channel, "channel cell");
  eq(Number(await row.locator(".c-count").innerText()), first.message_count, "message count");
  eq(JSON.parse(await row.locator(".c-tags").getAttribute("data-values")), first.tags, "tags cell");
  eq(await page.$eval("#range-select", (e) => e.value), "custom", "range picker shows the custom range");
  await noHorizontalOverflow();
});

await step("range: a preset and a custom range from the picker", async () => {
  await page.goto(BASE + `/bots/${BOT}`);
  await listState();
  await page.selectOption("#range-select", "7d");
  await page.waitForURL((u) => u.searchParams.get("range") === "7d");
  eq((await listState()).total, base.total, "last 7 days holds all the generated data");
  // Custom: minutes in the page's time zone (UTC here).
  const minute = (ms) => new Date(Math.floor(ms / 60000) * 60000).toISOString();
  const from = minute(NOW - 12 * 3600e3);
  const to = minute(NOW - 6 * 3600e3);
  await page.selectOption("#range-select", "custom");
  await page.fill("#range-from", from.slice(0, 16));
  await page.fill("#range-to", to.slice(0, 16));
  await page.click("#range-apply");
  await page.waitForURL((u) => u.searchParams.get("from") === from && u.searchParams.get("to") === to && !u.searchParams.has("range"));
  const st = await listState();
  const expected = await get(`/v1/bots/${BOT}/conversations?from=${from}&to=${to}&limit=50`);
  eq(st.total, expected.total, "total in the custom range");
  eq(st.ids, expected.conversations.map((c) => c.id), "rows in the custom range");
});

await step("list: pages through every result with Load more", async () => {
  await gotoList();
  let guard = 0;
  while ((await page.locator("#load-more").count()) && guard++ < 1000) {
    const before = await page.locator("#rows tr").count();
    await page.click("#load-more");
    await page.waitForFunction((n) => document.querySelectorAll("#rows tr").length > n, before);
  }
  const ids = await page.$$eval("#rows tr", (rows) => rows.map((r) => r.dataset.id));
  eq(ids.length, base.total, "rows after paging");
  eq(new Set(ids).size, ids.length, "distinct rows");
});

await step("filter: Source (channel)", async () => {
  const [ch] = pick(base.facets.channel)[1] || pick(base.facets.channel)[0];
  const r = await applyFilter("channel", ch, `channel=${ch}`);
  const cells = await page.$$eval("#rows .c-chan", (tds) => tds.map((t) => t.textContent));
  assert(cells.every((c) => c === ch), `a row of another channel: ${cells}`);
  // Disjunctive: the other channels keep their counts next to the chosen one.
  for (const [v, n] of pick(r.facets.channel)) eq(await facetCount("channel", v), n, `channel facet ${v}`);
  for (const [v, n] of pick(r.facets.tag).slice(0, 4)) eq(await facetCount("tag", v), n, `tag facet ${v} under channel`);
});

await step("filter: Tags", async () => {
  const [tag] = pick(base.facets.tag)[0];
  await applyFilter("tag", tag, `tag=${tag}`);
  const ok = await page.$$eval("#rows tr", (rows, t) => rows.every((r) => JSON.parse(r.querySelector(".c-tags").dataset.values).includes(t)), tag);
  assert(ok, "a row without the tag");
});

await step("filter: Flows, then Step and dropped off here", async () => {
  const flows = (await get(`/v1/bots/${BOT}/flows?${RANGE}`)).flows;
  const flow = flows.find((f) => f.steps.some((s) => s.dropped_off > 0 && s.step != null));
  assert(flow, "no flow with a drop-off");
  const st = flow.steps.find((s) => s.dropped_off > 0 && s.step != null);
  const enc = encodeURIComponent;
  await applyFilter("flow", flow.flow, `flow=${enc(flow.flow)}`, { search: flow.flow });
  // Steps of the chosen flow, with reached · dropped off counts.
  await page.waitForSelector(`[data-fkey="step:${st.step}"]`);
  const shown = await page.$eval(`[data-fkey="step:${st.step}"]`, (el) => el.closest("label").querySelector(".fcount").textContent);
  eq(shown, `${st.reached.toLocaleString("en-US")} · ${st.dropped_off.toLocaleString("en-US")}`, "step counts");
  await page.check(`[data-fkey="step:${st.step}"]`);
  await page.check("#f-dropoff");
  const expected = await search(`flow=${enc(flow.flow)}&step=${enc(st.step)}&dropoff=true`);
  eq(expected.total, st.dropped_off, "API: drop-offs at the step");
  await page.waitForFunction((n) => document.querySelector("#f-apply").textContent.includes(`(${n})`), String(expected.total));
  await page.click("#f-apply");
  await page.waitForURL((u) => u.searchParams.get("step") === st.step && u.searchParams.get("dropoff") === "true");
  const ls = await listState();
  eq(ls.total, expected.total, "total at the step");
  eq(ls.ids, expected.conversations.map((c) => c.id), "rows at the step");
});

await step("filter: Nodes (prompt nodes, multi-select)", async () => {
  const nodes = pick(base.facets.node);
  assert(nodes.length >= 2, "fewer than two prompt nodes");
  const [[n1], [n2]] = nodes;
  const catalogue = await get(`/v1/bots/${BOT}/nodes`);
  const list = Array.isArray(catalogue) ? catalogue : catalogue.nodes;
  for (const [id] of nodes) {
    const n = list.find((x) => x.id === id);
    eq(n && n.type, "prompt", `node ${id} type`);
  }
  await applyFilter("node", n1, `node=${n1}`, { search: n1 });
  await page.fill("#fs-node", n2);
  await page.check(`[data-fkey="node:${n2}"]`);
  const expected = await search(`node=${n1}&node=${n2}`);
  await page.waitForFunction((n) => document.querySelector("#f-apply").textContent.includes(`(${n})`), expected.total.toLocaleString("en-US"));
  await page.click("#f-apply");
  await page.waitForURL((u) => u.searchParams.getAll("node").length === 2);
  const ls = await listState();
  eq(ls.total, expected.total, "total for two nodes");
  eq(ls.ids, expected.conversations.map((c) => c.id), "rows for two nodes");
  const name = list.find((x) => x.id === n1).name;
  if (name) assert((await page.locator(`[data-fkey="node:${n1}"]`).locator("..").innerText()).includes(name), "node shown by name");
});

await step("filter: Clear resets every filter", async () => {
  await gotoList(`${LIST}&channel=web&tag=dropoff&flagged=false`);
  await page.click("#f-clear");
  await page.waitForURL((u) => !u.searchParams.has("channel") && !u.searchParams.has("tag") && !u.searchParams.has("flagged"));
  const st = await listState();
  eq(st.total, base.total, "total after Clear");
});

// ------------------------------------------------------------------ search, errors, keyboard

await step("search: full-text query with highlighted snippets", async () => {
  const word = (await get(`/v1/bots/${BOT}/conversations/${first.id}`)).messages.find((m) => m.role === "bot").text.split(/\W+/).find((w) => w.length >= 4);
  await gotoList();
  await page.fill("#q", word);
  await page.press("#q", "Enter");
  await page.waitForURL((u) => u.searchParams.get("q") === word);
  const st = await listState();
  const expected = await search(`q=${encodeURIComponent(word)}&sort=relevance`);
  eq(st.total, expected.total, `total for q=${word}`);
  eq(st.ids, expected.conversations.map((c) => c.id), "rows by relevance");
  assert(await page.locator("#rows .snip mark").count(), "no highlighted snippet");
  // The help tooltip explains the syntax.
  await page.click("#q-help-btn");
  const help = await page.locator("#q-help").innerText();
  for (const syntax of ["user:", '"phone number"', "OR", "refu*", "refnud~", "refnud~2", "intent:", "node:", "flow:", "inflections", "accents"]) {
    assert(help.includes(syntax), `query help lists ${syntax}: ${help}`);
  }
});

await step("errors: an invalid query is explained in words", async () => {
  await gotoList(`${LIST}&q=${encodeURIComponent("(refund")}`);
  const msg = await page.locator("#list-error").innerText();
  let apiMessage = "";
  try {
    await search("q=" + encodeURIComponent("(refund"));
  } catch (e) {
    apiMessage = JSON.parse(e.message.slice(e.message.indexOf("{"))).error.message;
  }
  assert(apiMessage && msg.includes(apiMessage), `page says ${JSON.stringify(msg)}, API says ${JSON.stringify(apiMessage)}`);
  assert(await page.locator("#empty").isHidden(), "empty state shown under an error");
  // The sidebar says why it has no counts instead of waiting forever ("…").
  const empties = await page.locator("#filters li.none").allInnerTexts();
  assert(empties.length && empties.every((t) => t !== "…"), `sidebar placeholders under an error: ${JSON.stringify(empties)}`);
  assert(empties.some((t) => t.includes("the search has an error")), `sidebar under an error: ${JSON.stringify(empties)}`);
});

await step("keyboard: j/k and arrows move, Enter opens, Esc closes", async () => {
  const st = await gotoList();
  await page.locator("body").click({ position: { x: 5, y: 790 } });
  await page.keyboard.press("j");
  await page.keyboard.press("j");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("k");
  await page.keyboard.press("Enter");
  await page.waitForURL((u) => u.pathname.endsWith(`/conversations/${st.ids[1]}`));
  await page.waitForSelector("#transcript");
  await page.keyboard.press("j");
  await page.waitForURL((u) => u.pathname.endsWith(`/conversations/${st.ids[2]}`));
  await page.keyboard.press("Escape");
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}`);
  assert(await page.locator("#drawer").count() === 0, "drawer still open");
  assert(new URL(page.url()).searchParams.get("from") === FROM, "the list keeps its range");
});

// ------------------------------------------------------------------ conversation view and review actions

const target = first.id;
await step("conversation: transcript, annotations, tag reasons, user details", async () => {
  await gotoList();
  await page.click(`#rows tr[data-id="${target}"] .c-chan`);
  await page.waitForURL((u) => u.pathname.endsWith(`/conversations/${target}`) && u.searchParams.get("from") === FROM);
  await page.waitForSelector("#transcript");
  const d = await get(`/v1/bots/${BOT}/conversations/${target}`);
  eq(await page.locator("#transcript .msg").count(), d.messages.length, "messages");
  eq(await page.locator("#transcript .msg.m-user").count(), d.messages.filter((m) => m.role === "user").length, "user messages");
  eq(await page.locator("#transcript .msg.unidentified").count(), d.messages.filter((m) => m.unidentified).length, "unidentified responses");
  const triggered = new Set(d.tag_details.flatMap((t) => t.message_ids));
  eq(await page.locator("#transcript .msg.triggered").count(), triggered.size, "messages that triggered a tag");
  for (const td of d.tag_details) assert((await page.locator(".tagsum").innerText()).includes(td.reason), `reason of ${td.tag}`);
  eq(await page.locator("#conv-title").innerText(), d.user, "pseudonym");
  eq(await page.locator("#ud-user").innerText(), d.user, "user details");
  const bot = d.messages.find((m) => m.role === "bot" && m.node_name);
  if (bot) assert((await page.locator(`#msg-${bot.id} .meta`).innerText()).includes(bot.node_name), "node annotation");
  const hist = d.history || [];
  eq(await page.locator("#history li").count(), hist.length, "earlier conversations");
  assert(await page.locator(`#rows tr[data-id="${target}"].open`).count(), "row marked open");
  await shot("conversation");
});

await step("conversation: search hits are highlighted", async () => {
  const d = await get(`/v1/bots/${BOT}/conversations/${target}`);
  const word = d.messages.find((m) => m.role === "user" && /\p{L}{4,}/u.test(m.text)).text.match(/\p{L}{4,}/u)[0];
  const withQ = await get(`/v1/bots/${BOT}/conversations/${target}?q=${encodeURIComponent(word)}`);
  await page.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}&q=${encodeURIComponent(word)}`);
  await page.waitForSelector("#transcript");
  eq(await page.locator("#transcript .msg.hit").count(), withQ.messages.filter((m) => m.highlight).length, "highlighted messages");
  const marked = await page.locator("#transcript .msg.hit mark").first().innerText();
  eq(marked.toLowerCase(), word.toLowerCase(), "marked word");
});

const LABEL = "ui-check";
await step("labels: add a label (with suggestions) and see it in the list", async () => {
  await page.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}`);
  await page.waitForSelector("#label-input");
  await page.fill("#label-input", LABEL);
  await page.press("#label-input", "Enter");
  await page.waitForSelector(`#labels [data-label="${LABEL}"]`);
  const d = await get(`/v1/bots/${BOT}/conversations/${target}`);
  assert(d.labels.includes(LABEL), "API has no label");
  assert(JSON.parse(await page.locator(`#rows tr[data-id="${target}"] .c-labels`).getAttribute("data-values")).includes(LABEL), "row shows the label");
  await eventually(async () => {
    const names = (await get(`/v1/bots/${BOT}/labels`)).labels.map((l) => l.name);
    assert(names.includes(LABEL), "labels endpoint");
  });
  eq(await page.locator("#label-input").evaluate((e) => document.activeElement === e), true, "focus stays in the label input");
  const options = await page.$$eval("#label-suggestions option", (o) => o.map((x) => x.value));
  assert(!options.includes(LABEL), "suggests a label the conversation already has");
});

await step("flag: toggle the flag icon", async () => {
  await page.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}`);
  await page.waitForSelector("#flag-toggle:not([disabled])");
  eq(await page.getAttribute("#flag-toggle", "aria-pressed"), "false", "not flagged at first");
  await page.click("#flag-toggle");
  await page.waitForSelector('#flag-toggle[aria-pressed="true"]:not([disabled])');
  eq((await get(`/v1/bots/${BOT}/conversations/${target}`)).flagged, true, "API flagged");
  assert(await page.locator(`#rows tr[data-id="${target}"] .flagged`).count(), "flag icon in the row");
});

await step("filter: Labels", async () => {
  await eventually(async () => {
    const r = await search(`label=${LABEL}`);
    assert(r.total === 1, "label not searchable yet");
  });
  await applyFilter("label", LABEL, `label=${LABEL}`);
  eq((await listState()).ids, [target], "labelled conversation");
});

await step("filter: Flagged", async () => {
  await eventually(async () => assert((await search("flagged=true")).total >= 1, "flag not searchable yet"));
  await gotoList();
  await page.check('[data-fkey="flagged:true"]');
  const expected = await search("flagged=true");
  await page.waitForFunction((n) => document.querySelector("#f-apply").textContent.includes(`(${n})`), String(expected.total));
  await page.click("#f-apply");
  await page.waitForURL((u) => u.searchParams.get("flagged") === "true");
  const st = await listState();
  eq(st.ids, expected.conversations.map((c) => c.id), "flagged rows");
  assert(st.ids.includes(target), "our flagged conversation");
  eq(await page.locator("#rows tr .flagged").count(), st.ids.length, "flag icons");
  eq(await facetCount("flagged", "false"), (await search("flagged=true")).facets.flagged.false || 0, "not-flagged count");
});

await step("filters: an empty section says when the other filters emptied it", async () => {
  // Now our conversation is the only one labelled, and it is flagged.
  const facetKeys = (r) => Object.keys((r.facets && r.facets.label) || {});
  assert(facetKeys(await search("")).length, "labels in the range");
  eq(facetKeys(await search("flagged=false")), [], "labels among unflagged conversations");
  await gotoList(`${LIST}&flagged=false`);
  await page.waitForSelector('.fsec[data-dim="label"] li.none');
  eq(await page.locator('.fsec[data-dim="label"] li.none').innerText(), "None with these filters.", "labels section");
  await gotoList();
  eq(await page.locator('.fsec[data-dim="label"] li.none').count(), 0, "labels listed without the filter");
});

await step("labels and flag: remove again", async () => {
  await page.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}`);
  await page.waitForSelector(`#labels [data-label="${LABEL}"] .x`);
  await page.click(`#labels [data-label="${LABEL}"] .x`);
  await page.waitForSelector(`#labels [data-label="${LABEL}"]`, { state: "detached" });
  await page.waitForSelector('#flag-toggle[aria-pressed="true"]:not([disabled])');
  await page.click("#flag-toggle");
  await page.waitForSelector('#flag-toggle[aria-pressed="false"]:not([disabled])');
  const d = await get(`/v1/bots/${BOT}/conversations/${target}`);
  assert(!d.labels.includes(LABEL), "label still there");
  eq(d.flagged, false, "still flagged");
});

// ------------------------------------------------------------------ the reviewer's day: keys, previews, bulk, export

await step("keyboard: l labels and f flags the selected conversation, ? lists every key", async () => {
  const st = await gotoList();
  const id = st.ids[0];
  await page.locator("body").click({ position: { x: 5, y: 790 } });
  await page.keyboard.press("j");
  await page.keyboard.press("f");
  await page.waitForURL((u) => u.pathname.endsWith(`/conversations/${id}`));
  await page.waitForSelector('#flag-toggle[aria-pressed="true"]:not([disabled])');
  eq((await get(`/v1/bots/${BOT}/conversations/${id}`)).flagged, true, "flagged by f");
  await page.keyboard.press("l");
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "label-input");
  await page.keyboard.type("by-keyboard");
  await page.keyboard.press("Enter");
  await page.waitForSelector('#labels [data-label="by-keyboard"]');
  assert((await get(`/v1/bots/${BOT}/conversations/${id}`)).labels.includes("by-keyboard"), "labelled by l");
  await page.keyboard.press("Escape"); // leaves the label box
  await page.keyboard.press("f");
  await page.waitForSelector('#flag-toggle[aria-pressed="false"]:not([disabled])');
  eq((await get(`/v1/bots/${BOT}/conversations/${id}`)).flagged, false, "unflagged by f");
  await page.keyboard.press("?");
  await page.waitForSelector("#keys-sheet[open]");
  const keys = await page.$$eval("#keys-sheet kbd", (k) => k.map((x) => x.textContent));
  for (const k of ["j / ↓", "k / ↑", "Enter", "l", "f", "x", "/", "Esc", "?"]) assert(keys.includes(k), `the sheet lists ${k}: ${keys}`);
  await page.keyboard.press("Escape");
  await page.waitForSelector("#keys-sheet", { state: "hidden" });
  await page.keyboard.press("Escape");
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}`);
  await page.keyboard.press("/");
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "q");
  await api("DELETE", `/v1/bots/${BOT}/conversations/${id}/labels/by-keyboard`);
});

await step("list: each row previews what the user said, or the search's snippets", async () => {
  const st = await gotoList();
  const expected = await search("");
  eq(st.ids, expected.conversations.map((c) => c.id), "rows");
  const shown = await page.$$eval("#rows tr", (rows) => rows.map((r) => r.querySelector(".preview")?.textContent ?? null));
  eq(shown, expected.conversations.map((c) => c.preview ?? null), "previews");
  assert(shown.filter(Boolean).length > expected.conversations.length / 2, "most rows have a preview");
  // One line each: a preview never makes its row taller than two lines of text.
  const heights = await page.$$eval("#rows .preview", (els) => els.map((e) => e.getBoundingClientRect().height));
  assert(heights.every((x) => x < 24), `previews wrap: ${heights}`);
});

await step("layout at 1400×900: whole tag chips, whole filter names, a legend for the steps, Apply in view", async () => {
  const wide = await newPage({ width: 1400, height: 900 });
  // A conversation with four tags or more, found through the API and labelled to be shown.
  let many = null;
  let cursor = "";
  while (!many) {
    const r = await get(`/v1/bots/${BOT}/conversations?${RANGE}&limit=100${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    many = r.conversations.find((c) => c.tags.length >= 4);
    if (!r.next_cursor) break;
    cursor = r.next_cursor;
  }
  assert(many, "no conversation with four tags in the data");
  await api("PUT", `/v1/bots/${BOT}/conversations/${many.id}/labels/four-tags`);
  await eventually(async () => assert((await search("label=four-tags")).total === 1, "label not searchable yet"));
  for (const url of [LIST, `${LIST}&label=four-tags`]) {
    await gotoList(url, wide);
    const cut = await wide.$$eval("#rows td .chip", (chips) => chips.filter((c) => {
      const cell = c.closest("td").getBoundingClientRect();
      const box = c.getBoundingClientRect();
      return c.scrollWidth > c.clientWidth + 1 || box.right > cell.right + 1 || box.bottom > cell.bottom + 1;
    }).map((c) => c.textContent));
    eq(cut, [], `chips cut off (${url})`);
  }
  const chips = await wide.$$eval(`#rows tr[data-id="${many.id}"] .c-tags .chip`, (c) => c.map((x) => x.textContent));
  const shownTags = chips.filter((c) => !c.startsWith("+"));
  assert(shownTags.every((t) => many.tags.includes(t)), `chips ${chips} vs ${many.tags}`);
  eq(chips.length, Math.min(4, many.tags.length), "three chips and a +N, or four");
  // The filter panel: names wrap instead of being cut; Apply is in view without scrolling.
  await gotoList(LIST, wide);
  const apply = await wide.locator("#f-apply").boundingBox();
  assert(apply && apply.y + apply.height <= 900, `Apply filter below the fold: ${JSON.stringify(apply)}`);
  const flows = pick(base.facets.flow);
  await wide.check(`[data-fkey="flow:${flows[0][0]}"]`);
  await wide.waitForSelector("#fsteps-legend");
  assert((await wide.locator("#fsteps-legend").innerText()).includes("reached"), "step legend");
  await wide.waitForSelector('#fv-step [data-fkey^="step:"]');
  const overflowing = await wide.$$eval("#filters .fname", (names) => names.filter((n) => n.scrollWidth > n.clientWidth + 1).map((n) => n.textContent));
  eq(overflowing, [], "filter names cut off");
  const dropoff = await wide.locator("#f-dropoff").evaluate((e) => e.closest("label").querySelector(".fname").innerText);
  assert(dropoff.startsWith("Dropped off"), `drop-off label: ${dropoff}`);
  const apply2 = await wide.locator("#f-apply").boundingBox();
  assert(apply2.y + apply2.height <= 900, "Apply filter stays in view with a flow open");
  await api("DELETE", `/v1/bots/${BOT}/conversations/${many.id}/labels/four-tags`);
  await wide.context().close();
});

/** Every conversation id a search finds (paging through it). */
async function allIds(qs) {
  const ids = [];
  let cursor = "";
  for (;;) {
    const r = await get(`/v1/bots/${BOT}/conversations?${RANGE}&limit=100&${qs}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    ids.push(...r.conversations.map((c) => c.id));
    if (!r.next_cursor) return ids;
    cursor = r.next_cursor;
  }
}

await step("bulk: label all matching after the dry-run count, watch it run, undo it", async () => {
  const chan = pick(base.facets.channel)[0][0];
  const expected = await search(`channel=${chan}`);
  assert(expected.total > 50, `too few ${chan} conversations to page: ${expected.total}`);
  await gotoList(`${LIST}&channel=${chan}`);
  await page.check("#sel-page");
  eq(await page.locator("#bulk-count").innerText(), "50 selected", "the page is ticked");
  await page.click("#bulk-all");
  eq(await page.locator("#bulk-count").innerText(), `All ${expected.total.toLocaleString("en-US")} matching`, "all matching");
  await page.fill("#bulk-label", "bulk-ui");
  await page.click("#bulk-add-label");
  await page.waitForSelector("#bulk-confirm");
  const dry = Number((await page.locator("#bulk-matched").innerText()).replace(/,/g, ""));
  eq(dry, expected.total, "the dry-run count is the search's");
  eq(await search("label=bulk-ui").then((r) => r.total), 0, "a dry run changes nothing");
  await shot("bulk");
  // The progress bar may come and go between two polls of a test: a watcher records it.
  await page.evaluate(() => {
    window.sawProgress = false;
    new MutationObserver(() => {
      if (document.querySelector("#bulk-progress progress")) window.sawProgress = true;
    }).observe(document.body, { subtree: true, childList: true });
  });
  await page.click("#bulk-go");
  await page.waitForSelector("#bulk-last");
  assert(await page.evaluate(() => window.sawProgress), "no progress shown while it ran");
  assert((await page.locator("#bulk-last").innerText()).includes(`${expected.total} conversations`), "the outcome");
  await eventually(async () => eq((await search("label=bulk-ui")).total, dry, "labelled exactly the dry-run count"));
  eq(new Set(await allIds("label=bulk-ui")), new Set(await allIds(`channel=${chan}`)), "the conversations labelled");
  const rowLabels = await page.$$eval("#rows .c-labels", (cells) => cells.map((c) => JSON.parse(c.dataset.values)));
  assert(rowLabels.every((l) => l.includes("bulk-ui")), "the rows show the label");
  const actions = (await get(`/v1/bots/${BOT}/conversations/bulk`)).actions;
  eq([actions[0].state, actions[0].matched, actions[0].done], ["done", dry, dry], "the recorded action");
  await page.click("#bulk-undo");
  await page.waitForFunction(() => /Undone/.test(document.querySelector("#bulk-last")?.textContent || ""));
  await eventually(async () => eq((await search("label=bulk-ui")).total, 0, "undone"));
  const after = await page.$$eval("#rows .c-labels", (cells) => cells.map((c) => JSON.parse(c.dataset.values)));
  assert(after.every((l) => !l.includes("bulk-ui")), "the rows show the undo");
});

await step("bulk: flag the ticked rows only (x ticks the selected row)", async () => {
  const st = await gotoList();
  await page.locator(`#rows tr[data-id="${st.ids[2]}"] .sel-row`).check();
  await page.locator("body").click({ position: { x: 5, y: 790 } });
  await page.keyboard.press("j");
  await page.keyboard.press("x");
  eq(await page.locator("#bulk-count").innerText(), "2 selected", "two ticked");
  await page.click("#bulk-flag");
  await page.waitForSelector("#bulk-confirm");
  eq(await page.locator("#bulk-matched").innerText(), "2", "dry run of two");
  await page.click("#bulk-go");
  await page.waitForSelector("#bulk-last");
  await eventually(async () => eq(new Set(await allIds("flagged=true")), new Set([st.ids[0], st.ids[2]]), "flagged"));
  await page.click("#bulk-undo");
  await eventually(async () => eq((await search("flagged=true")).total, 0, "unflagged again"));
});

await step("export: the CSV of a filtered view holds the search's conversations, the NDJSON their messages", async () => {
  const chan = pick(base.facets.channel)[1][0];
  const qs = `channel=${chan}&tag=dropoff`;
  const ids = await allIds(qs);
  assert(ids.length > 0, "nothing to export");
  await gotoList(`${LIST}&${qs}`);
  await page.click("#export-btn");
  const [csv] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  assert(/^convlog-.*\.csv$/.test(csv.suggestedFilename()), csv.suggestedFilename());
  const text = fs.readFileSync(await csv.path(), "utf8");
  const lines = text.trim().split(/\r\n/);
  eq(lines[0].split(",")[0], "id", "header");
  const exported = lines.slice(1).map((l) => l.split(",")[0]);
  eq(new Set(exported), new Set(ids), "the exported conversations");
  eq(exported.length, ids.length, "each once");
  await page.click("#export-btn");
  const [nd] = await Promise.all([page.waitForEvent("download"), page.click("#export-ndjson")]);
  const messages = fs.readFileSync(await nd.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  eq(new Set(messages.map((m) => m.conversation_id)), new Set(ids), "the messages' conversations");
  const counts = (await Promise.all(ids.map((id) => get(`/v1/bots/${BOT}/conversations/${id}`)))).reduce((n, d) => n + d.messages.length, 0);
  eq(messages.length, counts, "every message");
});

// ------------------------------------------------------------------ debugger

await step("debugger: a stored trace, grouped by user input, expandable", async () => {
  if (!FIXTURE || !FIXTURE.traced) {
    console.log("     (no --fixture: skipped)");
    return;
  }
  const id = FIXTURE.traced.conversation_id;
  const trace = await get(`/v1/bots/${BOT}/conversations/${id}/trace`);
  const events = trace.inputs.flatMap((i) => i.events);
  assert(events.length > 0, "fixture trace is empty");
  await page.goto(BASE + `/bots/${BOT}/conversations/${id}?${RANGE}&tab=debug`);
  await page.waitForSelector("#trace details.tinput");
  eq(await page.locator("#trace details.tinput").count(), trace.inputs.length, "inputs");
  await page.click("text=Expand all");
  eq(await page.locator("#trace .ev").count(), events.length, "events");
  for (const ev of events.slice(0, 5)) assert(await page.locator("#trace .evaction", { hasText: ev.action }).count(), `action ${ev.action}`);
  const withDetail = page.locator("#trace .evdetail").first();
  if (await withDetail.count()) {
    await withDetail.locator("summary").click();
    assert((await withDetail.locator("pre").innerText()).includes("{"), "detail JSON");
  }
  assert(await page.locator("#debug-toggle").isChecked(), "debug switch shows on");
  await shot("debugger");
  await page.click("#tab-logs");
  await page.waitForURL((u) => u.searchParams.get("tab") === "logs");
  await page.waitForSelector("#logs table");
  eq(await page.locator("#logs tbody tr").count(), events.length, "log rows");
  const levels = [...new Set(events.map((e) => e.level))];
  if (levels.length > 1) {
    await page.locator(".lvlchk", { hasText: levels[0] }).locator("input").uncheck();
    eq(await page.locator("#logs tbody tr:visible").count(), events.filter((e) => e.level !== levels[0]).length, "level filter");
  }
  await shot("logs");
});

await step("debugger: turn debug logging on, then see the bot's trace", async () => {
  const fx = FIXTURE && FIXTURE.debug;
  const id = fx ? fx.conversation_id : base.conversations[1].id;
  await page.goto(BASE + `/bots/${BOT}/conversations/${id}?${RANGE}&tab=debug`);
  await page.waitForSelector("#trace-empty");
  assert(!(await page.locator("#debug-toggle").isChecked()), "debug already on");
  assert((await page.locator("#trace-empty").innerText()).includes("Turn on debug logging"), "empty state explains debug logging");
  await page.locator("label.switch").click();
  await page.waitForSelector("#debug-toggle:checked:not([disabled])");
  eq((await get(`/v1/bots/${BOT}/conversations/${id}`)).debug, true, "API debug");
  if (!fx) {
    await page.locator("label.switch").click();
    await page.waitForSelector("#debug-toggle:not(:checked):not([disabled])");
    console.log("     (no --fixture: trace posting skipped)");
    return;
  }
  // The bot runtime sends its events now that debug logging is on.
  const events = fx.inputs.flatMap((inp, i) => [
    { action: "nlu.classify", level: "debug", duration_ms: 11 + i, detail: { text_length: 12 + i } },
    { action: "flow.step", level: i === 1 ? "warn" : "info", duration_ms: 3.5, detail: { step: `s${i}` } },
  ].map((e, j) => ({ bot_id: BOT, user_id: fx.user_id, channel: fx.channel, message_id: inp.message_id,
    timestamp: new Date(Date.parse(inp.timestamp) + 100 * (j + 1)).toISOString(), ...e })));
  const r = await api("POST", "/v1/traces", events);
  eq(r.accepted, events.length, "trace events accepted");
  await page.click("#trace-refresh");
  await page.waitForSelector("#trace .tinput .ev", { state: "attached" });
  await page.click("text=Expand all");
  eq(await page.locator("#trace .ev").count(), events.length, "events shown");
  assert(await page.locator("#trace .lvl-warn").count(), "warn level shown");
});

// ------------------------------------------------------------------ OpenTelemetry
await step("debugger: an OpenTelemetry-ingested conversation shows its tool spans", async () => {
  const trace = "4bf92f3577b34da6a3ce929d0e0e47aa";
  const ns = (ms) => (BigInt(Math.round(ms)) * 1000000n).toString();
  const t0 = NOW - 2 * 3600e3;
  const str = (key, value) => ({ key, value: { stringValue: value } });
  const request = (spans) => ({ resourceSpans: [{ resource: { attributes: [str("service.name", BOT)] }, scopeSpans: [{ spans }] }] });
  const chat = { traceId: trace, spanId: "00f067aa0ba902a1", name: "chat gpt-4o",
    startTimeUnixNano: ns(t0), endTimeUnixNano: ns(t0 + 900),
    attributes: [str("gen_ai.operation.name", "chat"), str("user.id", "otel-ui-user"), str("gen_ai.conversation.id", "otel-ui-conv"),
      str("gen_ai.input.messages", JSON.stringify([{ role: "user", parts: [{ type: "text", content: "otelmarker where is my parcel" }] }])),
      str("gen_ai.output.messages", JSON.stringify([{ role: "assistant", parts: [{ type: "text", content: "It left the depot." }] }]))] };
  const tool = { traceId: trace, spanId: "00f067aa0ba902a2", parentSpanId: "00f067aa0ba902a1", name: "execute_tool track_parcel",
    startTimeUnixNano: ns(t0 + 200), endTimeUnixNano: ns(t0 + 450), status: { code: 2, message: "carrier timeout" },
    attributes: [str("gen_ai.operation.name", "execute_tool"), str("gen_ai.tool.name", "track_parcel"), str("user.id", "otel-ui-user")] };
  // The conversation first (its messages), debug logging on, then the tool's span.
  await api("POST", "/otlp/v1/traces", request([chat]));
  let found = null;
  for (let i = 0; i < 100 && !found; i++) {
    const r = await get(`/v1/bots/${BOT}/messages?${RANGE}&q=otelmarker`);
    found = r.messages[0] || null;
    if (!found) await new Promise((ok) => setTimeout(ok, 50));
  }
  assert(found, "the OTLP message is searchable");
  const id = found.conversation_id;
  await api("PUT", `/v1/bots/${BOT}/conversations/${id}/debug`);
  await api("POST", "/otlp/v1/traces", request([tool]));
  await page.goto(BASE + `/bots/${BOT}/conversations/${id}?${RANGE}&tab=debug`);
  await page.waitForSelector("#trace details.tinput");
  await page.click("text=Expand all");
  assert(await page.locator("#trace .evaction", { hasText: "execute_tool track_parcel" }).count(), "the tool span in the debugger");
  assert((await page.locator("#trace details.tinput", { hasText: "otelmarker" }).innerText()).includes("execute_tool track_parcel"),
    "the tool span under its input");
  assert(await page.locator("#trace .lvl-error").count(), "its error status shown as level error");
  await shot("debugger-otel");
});

// ------------------------------------------------------------------ share link

await step("share: Copy link, open it in a fresh browser context", async () => {
  await page.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}`);
  await page.waitForSelector("#share-btn:not([disabled])");
  await page.click("#share-btn");
  await page.waitForSelector("#share-link");
  const link = await page.inputValue("#share-link");
  assert(link.startsWith(BASE + "/shared/"), `link ${link}`);
  const clip = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
  eq(clip, link, "clipboard");
  eq(await page.locator("#share-status").innerText(), "Link copied to the clipboard.", "status");
  const other = await newPage();
  await other.goto(link);
  await other.waitForSelector("#shared #transcript");
  const d = await get(`/v1/bots/${BOT}/conversations/${target}`);
  eq(await other.locator("#transcript .msg").count(), d.messages.length, "shared messages");
  eq(await other.locator("#shared h1").innerText(), d.user, "shared pseudonym");
  eq(await other.locator("#flag-toggle, #label-input, #debug-toggle, #share-btn").count(), 0, "no editing on a shared page");
  eq(await other.evaluate(() => sessionStorage.length + localStorage.length), 0, "fresh context");
  await shot("shared", other);
  await other.goto(BASE + "/shared/not-a-token");
  await other.waitForSelector(".center-msg .error");
  assert((await other.locator(".center-msg .error").innerText()).includes("expired or was revoked"), "bad token message");
  await other.context().close();
});

// ------------------------------------------------------------------ dashboards

await step("dashboards: charts, and a funnel drop-off leads to its conversations", async () => {
  await page.goto(BASE + `/bots/${BOT}/dashboards?${RANGE}`);
  await page.waitForSelector("#chart-days svg rect");
  await page.waitForSelector("#chart-tags svg polyline");
  await page.waitForSelector("#funnels .funnel-card");
  // One day's bars add up to that day's search total.
  const seg = page.locator("#chart-days a.seg").first();
  const href = await seg.getAttribute("href");
  const u = new URL(BASE + href);
  const day = await get(`/v1/bots/${BOT}/conversations?from=${encodeURIComponent(u.searchParams.get("from"))}&to=${encodeURIComponent(u.searchParams.get("to"))}&limit=1`);
  const title = await seg.locator("title").textContent();
  const ch = u.searchParams.get("channel");
  assert(title.includes(`${day.facets.channel[ch].toLocaleString("en-US")} on ${ch}`), `bar ${title} vs ${day.facets.channel[ch]}`);
  await shot("dashboards", page, true);
  const flows = (await get(`/v1/bots/${BOT}/flows?${RANGE}`)).flows;
  const link = page.locator("#funnels a.dropoff-link").first();
  const flow = await link.getAttribute("data-flow");
  const stepName = await link.getAttribute("data-step");
  const expectedSteps = flows.find((f) => f.flow === flow).steps;
  const st = expectedSteps.find((x) => (x.step ?? "") === stepName);
  await link.click();
  await page.waitForURL((url) => url.pathname === `/bots/${BOT}` && url.searchParams.get("flow") === flow && url.searchParams.get("dropoff") === "true");
  const ls = await listState();
  eq(ls.total, st.dropped_off, "drop-offs in the list");
  const expected = await search(`flow=${encodeURIComponent(flow)}&step=${encodeURIComponent(stepName)}&dropoff=true`);
  eq(ls.ids, expected.conversations.map((c) => c.id), "rows of the drop-off");
  assert(await page.locator("#f-dropoff").isChecked(), "dropped-off filter ticked");
  assert(await page.locator(`[data-fkey="step:${stepName}"]`).isChecked(), "step ticked");
});

await step("what the bot misses: clusters as the API counts them, click-through and bulk label", async () => {
  const insights = await get(`/v1/bots/${BOT}/insights/unidentified?${RANGE}&limit=100`);
  assert(insights.clusters.length > 0, "the generated data has unidentified inputs");
  await page.goto(BASE + `/bots/${BOT}?${RANGE}`);
  await listState();
  await page.click("#mainnav a:has-text('What the bot misses')");
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}/misses`);
  // The URL holds the view: open it with the fixed range.
  await page.goto(BASE + `/bots/${BOT}/misses?${RANGE}`);
  await page.waitForSelector("#clusters li.cluster");
  eq(await page.$eval("#misses-total", (e) => Number(e.textContent.replace(/,/g, ""))), insights.total_inputs, "inputs shown");
  const shown = await page.$$eval("#clusters li.cluster", (els) => els.map((el) => ({
    label: el.querySelector(".cluster-name").textContent,
    inputs: Number(el.querySelector(".inputs").textContent.replace(/,/g, "")),
    examples: el.querySelectorAll(".examples li").length,
  })));
  eq(shown, insights.clusters.map((c) => ({ label: c.label, inputs: c.inputs, examples: c.examples.length })), "clusters, in order");
  await noHorizontalOverflow();
  await shot("misses", page);
  // An example opens its conversation.
  const example = page.locator("#clusters li.cluster").first().locator(".examples a").first();
  await example.click();
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}/conversations/${insights.clusters[0].examples[0].conversation_id}`);
  await page.waitForSelector("#transcript");
  // "Show conversations" lists the cluster's conversations: the list shows what the search answers.
  await page.goto(BASE + `/bots/${BOT}/misses?${RANGE}`);
  await page.waitForSelector("#clusters li.cluster");
  const card = page.locator("#clusters li.cluster").first();
  await card.locator("a.open-list").click();
  await page.waitForURL((u) => u.pathname === `/bots/${BOT}` && u.searchParams.getAll("tag").includes("unidentified_response") && (u.searchParams.get("q") || "").startsWith("user:"));
  const qs = new URL(page.url()).searchParams;
  const st = await listState();
  const expected = await get(`/v1/bots/${BOT}/conversations?${qs}&limit=50`);
  eq(st.total, expected.total, "the cluster's conversations");
  assert(st.total > 0, "the cluster points to conversations");
  // Bulk label: the dry run's count first, then exactly that many change.
  await page.goBack();
  await page.waitForSelector("#clusters li.cluster");
  const label = "missed-" + Date.now().toString(36);
  await card.locator(".label-btn").click();
  await card.locator(".cluster-label input").fill(label);
  await card.locator(".cluster-label button[type=submit]").click();
  await page.waitForFunction(() => /^Label \d/.test(document.querySelector("#clusters li.cluster .cluster-label button").textContent));
  const count = Number((await card.locator(".cluster-label button").textContent()).replace(/\D/g, ""));
  eq(count, expected.total, "dry-run count");
  await card.locator(".cluster-label button[type=submit]").click();
  await page.waitForFunction(() => /Labelled/.test(document.querySelector("#clusters li.cluster .confirm-line").textContent));
  // The index follows the store within its refresh interval.
  await eventually(async () => eq((await search(`label=${label}`)).total, count, "conversations labelled"));
});

await step("live: the logs page's Live toggle shows new matching messages as they arrive", async () => {
  await page.goto(BASE + `/bots/${BOT}?${RANGE}&channel=web`);
  await listState();
  await page.click("#live-toggle");
  await page.waitForURL((u) => u.searchParams.get("live") === "1" && u.searchParams.get("channel") === "web");
  await page.waitForFunction(() => /waiting|new message/.test(document.querySelector("#live-status").textContent));
  const mark = "live-check-" + Date.now().toString(36);
  const at = new Date().toISOString();
  const msg = (id, channel, text) => ({ id, bot_id: BOT, user_id: "live-visitor", channel, role: "user", text, timestamp: at });
  await api("POST", "/v1/messages", [msg(mark + "-tg", "telegram", mark + " on telegram"), msg(mark + "-web", "web", mark + " on the web")]);
  await page.waitForSelector(`#live-feed li[data-id="${mark}-web"]`, { timeout: 20000 });
  eq(await page.locator(`#live-feed li[data-id="${mark}-tg"]`).count(), 0, "other channels stay out");
  await shot("live", page);
  // It opens the message's conversation; switching off closes the feed.
  await page.click(`#live-feed li[data-id="${mark}-web"] a`);
  await page.waitForSelector("#transcript");
  await page.goto(BASE + `/bots/${BOT}?${RANGE}&channel=web&live=1`);
  await listState();
  await page.click("#live-toggle");
  await page.waitForURL((u) => !u.searchParams.has("live"));
  assert(await page.locator("#live").isHidden(), "the feed is closed");
});

// ------------------------------------------------------------------ phone width

await step("phone width (375 px): list, filters and conversation fit", async () => {
  const phone = await newPage({ width: 375, height: 812, mobile: true });
  await phone.goto(BASE + LIST);
  await listState(phone);
  await noHorizontalOverflow(phone);
  await phone.goto(BASE + `/bots/${BOT}`);
  await listState(phone);
  await noHorizontalOverflow(phone);
  await shot("phone-list", phone);
  await phone.goto(BASE + LIST);
  await listState(phone);
  await phone.click("#filters-toggle");
  await phone.waitForSelector("#filters", { state: "visible" });
  await noHorizontalOverflow(phone);
  await shot("phone-filters", phone);
  await phone.goto(BASE + `/bots/${BOT}/conversations/${target}?${RANGE}`);
  await phone.waitForSelector("#transcript");
  await noHorizontalOverflow(phone);
  const box = await phone.locator("#drawer").boundingBox();
  assert(box.width <= 375, `drawer ${box.width}px wide`);
  await shot("phone-conversation", phone);
  await phone.goto(BASE + `/bots/${BOT}/dashboards?${RANGE}`);
  await phone.waitForSelector("#funnels .funnel-card svg");
  await noHorizontalOverflow(phone);
  await phone.context().close();
});

await step("screenshot: the list with filters applied and one pending", async () => {
  const chans = pick(base.facets.channel).slice(0, 2).map(([c]) => `channel=${c}`).join("&");
  await gotoList(`${LIST}&${chans}&tag=dropoff`);
  await page.check('[data-fkey="tag:low_confidence"]');
  await page.waitForFunction(() => /\(\d/.test(document.querySelector("#f-apply").textContent));
  await shot("list-filters");
});

// ------------------------------------------------------------------ access control (last: it ends open mode)

if (WITH_AUTH) {
  await step("access control: sign in with a key; controls follow the role", async () => {
    const admin = (await api("POST", "/v1/admin/keys", { name: "ui-admin", role: "admin", bots: "*" })).key;
    apiKey = admin;
    const viewer = (await api("POST", "/v1/admin/keys", { name: "ui-viewer", role: "viewer", bots: [BOT] })).key;
    const editor = (await api("POST", "/v1/admin/keys", { name: "ui-editor", role: "editor", bots: "*" })).key;
    const p = await newPage();
    const conv = `/bots/${BOT}/conversations/${target}?${RANGE}`;
    await p.goto(BASE + conv);
    await p.waitForSelector("#signin[open]");
    await shot("signin", p);
    await p.fill("#signin-key", "clk_nope_nope");
    await p.click("#signin-submit");
    await p.waitForSelector("#signin-error:not([hidden])");
    // Viewer: reads, no editing controls.
    await p.fill("#signin-key", viewer);
    await p.click("#signin-submit");
    await p.waitForSelector("#signin", { state: "hidden" });
    await p.waitForSelector("#transcript");
    eq(await p.locator("#role-badge").textContent(), "viewer", "role badge");
    eq(await p.locator("#label-input").count(), 0, "no label editor for a viewer");
    eq(await p.locator("#sel-page").count(), 0, "no bulk selection for a viewer");
    assert(await p.locator("#share-btn").isHidden(), "no share button for a viewer");
    assert(await p.locator("#debug-toggle").isDisabled(), "debug switch read-only");
    eq(await p.evaluate(() => sessionStorage.getItem("convlog.key") !== null), true, "key in sessionStorage");
    const st = await listState(p);
    eq(st.total, (await search("")).total, "viewer sees the list");
    // Sign out, then an editor.
    await p.click("#signout");
    await p.waitForSelector("#signin[open]");
    await p.fill("#signin-key", editor);
    await p.click("#signin-submit");
    await p.waitForSelector("#label-input");
    eq(await p.locator("#role-badge").textContent(), "editor", "editor badge");
    assert(await p.locator("#share-btn").isVisible(), "share for an editor");
    await p.click("#signout");
    await p.fill("#signin-key", admin);
    await p.click("#signin-submit");
    await p.waitForSelector("#label-input");
    eq(await p.locator("#role-badge").textContent(), "admin", "admin badge");
    await p.context().close();
  });
}

await step("no script errors in the page", async () => {
  const real = pageErrors.filter((e) => !/status of (400|401|403|404)/.test(e));
  eq(real, [], "page errors");
});

await browser.close();
console.log(`\nscreenshots in ${SHOTS}`);
if (failures.length) console.log(`failed: ${failures.join("; ")}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
