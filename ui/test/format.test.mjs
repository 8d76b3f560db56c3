// Formatting of counts, durations and times, and the colour of a text.
import assert from "node:assert/strict";
import { test } from "node:test";
import { niceMax } from "../js/charts.js";
import { debounce, fmtDate, fmtMs, fmtN, hashHue, toLocalInput } from "../js/format.js";

test("counts have thousands separators and none is 0", () => {
  assert.equal(fmtN(1234567), "1,234,567");
  assert.equal(fmtN(null), "0");
  assert.equal(fmtN(undefined), "0");
});

test("durations read in ms below a second and in s above, with sensible precision", () => {
  assert.equal(fmtMs(null), "");
  assert.equal(fmtMs(0), "0 ms");
  assert.equal(fmtMs(1.25), "1.3 ms");
  assert.equal(fmtMs(9.94), "9.9 ms");
  assert.equal(fmtMs(42.4), "42 ms");
  assert.equal(fmtMs(1250), "1.25 s");
  assert.equal(fmtMs(12500), "13 s");
  assert.equal(fmtMs(-3), "-3 ms");
});

test("a date without value is a dash, and what isn't a date is shown as written", () => {
  assert.equal(fmtDate(""), "–");
  assert.equal(fmtDate(null), "–");
  assert.equal(fmtDate("yesterday"), "yesterday");
});

test("datetime-local inputs get local minutes of the instant, and nothing for a non-date", () => {
  const local = new Date(2026, 0, 5, 7, 9, 30);
  assert.equal(toLocalInput(local.toISOString()), "2026-01-05T07:09");
  assert.equal(toLocalInput("nope"), "");
});

test("a text's hue is stable and within the colour wheel", () => {
  assert.equal(hashHue("refund"), hashHue("refund"));
  assert.notEqual(hashHue("refund"), hashHue("refunds"));
  for (const t of ["", "a", "whatsapp", "émoji 🙂", 12]) {
    const h = hashHue(t);
    assert.ok(Number.isInteger(h) && h >= 0 && h < 360, `${t}: ${h}`);
  }
});

test("the axis top is a round number at or above the maximum, at least 4", () => {
  assert.equal(niceMax(0), 4);
  assert.equal(niceMax(4), 4);
  assert.equal(niceMax(5), 5);
  assert.equal(niceMax(11), 12);
  assert.equal(niceMax(13), 16);
  assert.equal(niceMax(81), 100);
  assert.equal(niceMax(1001), 1200);
});

test("debounce runs the last call once, after the quiet time", async () => {
  const calls = [];
  const f = debounce((x) => calls.push(x), 10);
  f(1);
  f(2);
  f(3);
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(calls, [3]);
});
