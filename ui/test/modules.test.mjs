// The shape of ui/js: every module says what it owns, imports form no cycle, and the
// modules the unit tests load stay free of DOM modules.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

const dir = new URL("../js/", import.meta.url);
const modules = new Map(readdirSync(dir).filter((f) => f.endsWith(".js")).map((f) => {
  const text = readFileSync(new URL(f, dir), "utf8");
  const imports = [...text.matchAll(/^import [^;]*? from "\.\/([\w-]+\.js)";$/gm)].map((m) => m[1]);
  return [f, { text, imports }];
}));

test("every module starts with a comment saying what it owns", () => {
  for (const [name, { text }] of modules) {
    const doc = (text.match(/^(\/\/.*\n)+/) || [""])[0];
    assert.match(doc, /Owns:|entry module/, `${name}: its leading comment must say what it owns`);
  }
});

test("imports name existing modules and form no cycle", () => {
  const state = new Map(); // name -> "visiting" | "done"
  const visit = (name, path) => {
    assert.ok(modules.has(name), `${path.at(-1)} imports ${name}, which doesn't exist`);
    if (state.get(name) === "done") return;
    assert.notEqual(state.get(name), "visiting", `import cycle: ${[...path, name].join(" -> ")}`);
    state.set(name, "visiting");
    for (const dep of modules.get(name).imports) visit(dep, [...path, name]);
    state.set(name, "done");
  };
  for (const name of modules.keys()) visit(name, []);
});

test("the modules without DOM import none that has it", () => {
  const pure = new Set(["filters.js", "router.js", "range.js", "format.js"]);
  for (const name of pure) {
    for (const dep of modules.get(name).imports) assert.ok(pure.has(dep), `${name} imports ${dep}`);
    assert.doesNotMatch(modules.get(name).text, /\bdocument\./, `${name} uses the DOM`);
  }
});
