// Routes from paths, and the URLs of the list and of an open conversation.
import assert from "node:assert/strict";
import { test } from "node:test";
import { convTab, convUrl, dashUrl, listQS, listUrl, parseRoute } from "../js/router.js";

const qs = (s) => new URLSearchParams(s);

test("every page path has its route; anything else is home", () => {
  assert.deepEqual(parseRoute("/"), { kind: "home" });
  assert.deepEqual(parseRoute("/bots/demo"), { kind: "list", bot: "demo" });
  assert.deepEqual(parseRoute("/bots/demo/conversations/c_42"), { kind: "list", bot: "demo", id: "c_42" });
  assert.deepEqual(parseRoute("/bots/demo/dashboards"), { kind: "dash", bot: "demo" });
  assert.deepEqual(parseRoute("/shared/tok"), { kind: "shared", token: "tok" });
  assert.deepEqual(parseRoute("/bots/demo/elsewhere"), { kind: "list", bot: "demo" });
  assert.deepEqual(parseRoute("/nowhere"), { kind: "home" });
});

test("path segments are decoded, and a malformed escape is kept as written", () => {
  assert.deepEqual(parseRoute("/bots/a%2Eb/conversations/c%201"), { kind: "list", bot: "a.b", id: "c 1" });
  assert.deepEqual(parseRoute("/bots/%E0%A4%A"), { kind: "list", bot: "%E0%A4%A" });
});

test("the list's URL keeps filters, query and range but not the conversation tab", () => {
  assert.equal(listQS(qs("tab=debug&channel=web&q=refund")), "?channel=web&q=refund");
  assert.equal(listQS(qs("tab=logs")), "");
  assert.equal(listUrl("demo", qs("range=7d&tab=debug")), "/bots/demo?range=7d");
  assert.equal(listUrl("a b", qs("")), "/bots/a%20b");
});

test("a conversation's URL carries the list's query and its tab, the transcript being the default", () => {
  assert.equal(convUrl("c/1", "demo", qs("tag=x&tab=logs")), "/bots/demo/conversations/c%2F1?tag=x");
  assert.equal(convUrl("c1", "demo", qs("tag=x"), "debug"), "/bots/demo/conversations/c1?tag=x&tab=debug");
  assert.equal(convUrl("c1", "demo", qs(""), "transcript"), "/bots/demo/conversations/c1");
});

test("the tab of a conversation is transcript unless debug or logs", () => {
  assert.equal(convTab(qs("tab=debug")), "debug");
  assert.equal(convTab(qs("tab=logs")), "logs");
  assert.equal(convTab(qs("tab=other")), "transcript");
  assert.equal(convTab(qs("")), "transcript");
});

test("the dashboards' URL has the query only when there is one", () => {
  assert.equal(dashUrl("demo"), "/bots/demo/dashboards");
  assert.equal(dashUrl("demo", qs("range=30d")), "/bots/demo/dashboards?range=30d");
});
