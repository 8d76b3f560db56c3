// The filter model derived from the descriptor: parsing, writing, keys, counts, sections.
import assert from "node:assert/strict";
import { test } from "node:test";
import { filterModel } from "../js/filters.js";
import { DESCRIPTOR } from "./descriptor.mjs";

const model = filterModel(DESCRIPTOR);
const qs = (s) => new URLSearchParams(s);

test("the conversation list has every filter of its target, in descriptor order", () => {
  assert.deepEqual(model.filters.map((d) => d.param), ["channel", "tag", "flagged", "label", "flow", "step", "dropoff", "node", "intent"]);
  assert.deepEqual(filterModel(DESCRIPTOR, "messages").filters.map((d) => d.param).at(-1), "role");
});

test("sidebar sections are the filters with a section, in order, with their options", () => {
  assert.deepEqual(model.sections, [
    { param: "channel", kind: "multi", facet: "channel", title: "Source", empty: null, searchable: false, hint: null },
    { param: "tag", kind: "multi", facet: "tag", title: "Tags", empty: null, searchable: false, hint: null },
    { param: "flagged", kind: "bool", facet: "flagged", title: "Flagged", empty: null, searchable: false, hint: null },
    { param: "label", kind: "multi", facet: "label", title: "Labels", empty: "No labels in this range yet.", searchable: false, hint: null },
    { param: "flow", kind: "multi", facet: "flow", title: "Flows", empty: null, searchable: true, hint: null },
    { param: "node", kind: "multi", facet: "node", title: "Nodes", empty: null, searchable: true, hint: "prompt nodes" },
    { param: "intent", kind: "multi", facet: "intent", title: "Intents", empty: null, searchable: true, hint: null },
  ]);
});

test("parses repeatable filters once per value and bools as given; ignores other parameters", () => {
  const f = model.fromParams(qs("channel=web&channel=sms&channel=web&flagged=true&flow=a&step=s1&dropoff=true&q=x&role=user"));
  assert.deepEqual(f, { channel: ["web", "sms"], tag: [], flagged: "true", label: [], flow: ["a"], step: ["s1"], dropoff: "true", node: [], intent: [] });
  assert.deepEqual(model.fromParams(qs("")), model.empty());
});

test("writing replaces the filter parameters and keeps the others", () => {
  const p = model.write(model.fromParams(qs("tag=b&tag=a&flagged=false")), qs("q=refund&tag=old&sort=relevance&range=7d"));
  assert.equal(p.toString(), "q=refund&sort=relevance&range=7d&tag=b&tag=a&flagged=false");
});

test("a filter whose required filter is empty is neither written, keyed, counted nor offered", () => {
  const orphan = model.fromParams(qs("step=s1&channel=web"));
  assert.equal(model.write(orphan, qs("")).toString(), "channel=web");
  assert.equal(model.count(orphan), 1);
  assert.equal(model.key(orphan), model.key(model.fromParams(qs("channel=web"))));
  assert.equal(model.available("step", orphan), false);
  const withFlow = { ...orphan, flow: ["checkout"] };
  assert.equal(model.write(withFlow, qs("")).toString(), "channel=web&flow=checkout&step=s1");
  assert.equal(model.count(withFlow), 3);
  assert.equal(model.available("step", withFlow), true);
});

test("without `requires` a filter stands alone (a drop-off in any flow); with it, it doesn't", () => {
  const f = model.fromParams(qs("dropoff=true"));
  assert.equal(model.write(f, qs("")).toString(), "dropoff=true");
  assert.equal(model.count(f), 1);
  assert.equal(model.available("dropoff", f), true);
  const strict = filterModel({ filters: DESCRIPTOR.filters.map((d) => (d.param === "dropoff" ? { ...d, requires: "flow" } : d)) });
  assert.equal(strict.write(f, qs("")).toString(), "");
  assert.equal(strict.count(f), 0);
  assert.equal(strict.available("dropoff", f), false);
  assert.equal(strict.write({ ...f, flow: ["checkout"] }, qs("")).toString(), "flow=checkout&dropoff=true");
});

test("the key ignores the order of values, and differs when a value or a bool differs", () => {
  const a = model.fromParams(qs("channel=web&channel=sms"));
  const b = model.fromParams(qs("channel=sms&channel=web"));
  assert.equal(model.key(a), model.key(b));
  assert.notEqual(model.key(a), model.key(model.fromParams(qs("channel=web"))));
  assert.notEqual(model.key(model.fromParams(qs("flagged=true"))), model.key(model.fromParams(qs("flagged=false"))));
  assert.notEqual(model.key(model.fromParams(qs("flagged=true"))), model.key(model.empty()));
});

test("counting counts each value of a repeatable filter and each set bool", () => {
  assert.equal(model.count(model.fromParams(qs("tag=a&tag=b&label=x&flagged=false"))), 4);
  assert.equal(model.count(model.empty()), 0);
});

test("search parameters: range, query, filters, then the sort unless left out", () => {
  const f = model.fromParams(qs("node=n1&flagged=true"));
  const ctx = { from: "2026-01-01T00:00:00Z", to: null, q: "refund", sort: "started_at" };
  assert.equal(model.searchParams(f, ctx).toString(), "from=2026-01-01T00%3A00%3A00Z&q=refund&flagged=true&node=n1&sort=started_at");
  assert.equal(model.searchParams(f, ctx, { sort: false }).toString(), "from=2026-01-01T00%3A00%3A00Z&q=refund&flagged=true&node=n1");
});

test("a descriptor that can't drive the UI is refused with a reason", () => {
  assert.throws(() => filterModel({}), /no `filters` list/);
  assert.throws(() => filterModel({ filters: [{ param: "x", kind: "range" }] }), /filter x: unknown kind "range"/);
  assert.throws(() => filterModel({ filters: [{ kind: "multi" }] }), /without `param`/);
  assert.throws(() => filterModel({ filters: [{ param: "step", kind: "multi", requires: "flow" }] }), /step requires flow/);
});
