// Time ranges at a fixed moment: presets, custom ranges, the dashboards' days.
import assert from "node:assert/strict";
import { test } from "node:test";
import { dayBuckets, resolveRange } from "../js/range.js";

const qs = (s) => new URLSearchParams(s);
const NOW = Date.parse("2026-03-10T12:00:00Z");

test("a preset ends now and starts its length before", () => {
  assert.deepEqual(resolveRange(qs("range=7d"), "24h", { now: NOW }), { from: "2026-03-03T12:00:00.000Z", to: null, label: "Last 7 days", preset: "7d" });
});

test("no range, or an unknown one, is the fallback preset", () => {
  assert.equal(resolveRange(qs(""), "24h", { now: NOW }).from, "2026-03-09T12:00:00.000Z");
  assert.equal(resolveRange(qs("range=1y"), "7d", { now: NOW }).preset, "7d");
});

test("from or to make a custom range, labelled with the formatted ends", () => {
  const fmt = (iso) => `<${iso}>`;
  assert.deepEqual(resolveRange(qs("from=2026-01-01T00:00:00Z&range=7d"), "24h", { now: NOW, formatDate: fmt }),
    { from: "2026-01-01T00:00:00Z", to: null, label: "<2026-01-01T00:00:00Z> – now", preset: "custom" });
  assert.equal(resolveRange(qs("to=2026-01-02T00:00:00Z"), "24h", { formatDate: fmt }).label, "… – <2026-01-02T00:00:00Z>");
});

test("the dashboards' days: whole local days, today included, back to back", () => {
  const { range, days } = dayBuckets(qs(""), { now: NOW });
  assert.equal(range.preset, "7d");
  assert.equal(days.length, 7);
  const today = new Date(NOW);
  assert.equal(days[6].date.getTime(), new Date(today.getFullYear(), today.getMonth(), today.getDate()).getTime());
  assert.equal(range.from, days[0].from);
  for (let i = 1; i < days.length; i++) assert.equal(days[i].from, days[i - 1].to);
  assert.equal(dayBuckets(qs("range=30d"), { now: NOW }).days.length, 30);
  assert.equal(dayBuckets(qs("range=24h"), { now: NOW }).days.length, 2);
});

test("a custom range covers the days it touches, at most 62", () => {
  const from = new Date(2026, 0, 1, 15).toISOString();
  const to = new Date(2026, 0, 3, 9).toISOString();
  assert.equal(dayBuckets(qs(`from=${from}&to=${to}`), { now: NOW }).days.length, 3);
  assert.equal(dayBuckets(qs(`from=${new Date(2025, 0, 1).toISOString()}`), { now: NOW }).days.length, 62);
});
