// The search filters, derived from the server's descriptor (`GET /v1/filters`).
//
// Owns: which filters the conversation list has, how they are read from and written
// to a query string, when two filter sets are the same, how many are set, and the
// sidebar's sections. Nothing here names a filter: the server's table does, so a new
// filter there shows up in the UI without a change here. No DOM: imported by the
// unit tests under Node (ui/test/).
//
// A filter set `f` maps each parameter to its value: an array of strings for a
// "multi" filter (repeatable), "" | "true" | "false" for a "bool" one.

const KINDS = new Set(["multi", "bool"]);

/**
 * The filter model of one search target ("conversations", "messages", "aggregates")
 * from the descriptor `{filters: [{param, kind, facet?, targets?, requires?, section?}]}`.
 * A filter without `targets` applies to every target.
 */
export function filterModel(descriptor, target = "conversations") {
  const all = descriptor && Array.isArray(descriptor.filters) ? descriptor.filters : null;
  if (!all) throw new Error("the filter descriptor has no `filters` list");
  for (const d of all) {
    if (!d || typeof d.param !== "string" || !d.param) throw new Error("a filter without `param` in the descriptor");
    if (!KINDS.has(d.kind)) throw new Error(`filter ${d.param}: unknown kind ${JSON.stringify(d.kind)}`);
  }
  const filters = all.filter((d) => !d.targets || d.targets.includes(target));
  const byParam = new Map(filters.map((d) => [d.param, d]));
  for (const d of filters) {
    if (d.requires && !byParam.has(d.requires)) throw new Error(`filter ${d.param} requires ${d.requires}, which ${target} has not`);
  }

  const isSet = (d, v) => (d.kind === "multi" ? v.length > 0 : v !== "");
  /** Whether `d` takes effect in `f`: it has a value and what it requires has one. */
  const effective = (d, f) => isSet(d, f[d.param]) && (!d.requires || isSet(byParam.get(d.requires), f[d.requires]));

  /** A filter set with nothing chosen. */
  function empty() {
    const f = {};
    for (const d of filters) f[d.param] = d.kind === "multi" ? [] : "";
    return f;
  }

  /** The filter set of a query string (URLSearchParams); repeated values appear once. */
  function fromParams(p) {
    const f = {};
    for (const d of filters) f[d.param] = d.kind === "multi" ? [...new Set(p.getAll(d.param))] : p.get(d.param) || "";
    return f;
  }

  /** Replaces the filter parameters of `p` by those of `f`, in descriptor order; returns `p`. */
  function write(f, p) {
    for (const d of filters) p.delete(d.param);
    for (const d of filters) {
      if (!effective(d, f)) continue;
      if (d.kind === "multi") for (const v of f[d.param]) p.append(d.param, v);
      else p.set(d.param, f[d.param]);
    }
    return p;
  }

  /** A key equal for two filter sets exactly when they select the same conversations. */
  function key(f) {
    return JSON.stringify(filters.map((d) => {
      if (!effective(d, f)) return d.kind === "multi" ? [] : "";
      return d.kind === "multi" ? [...f[d.param]].sort() : f[d.param];
    }));
  }

  /** How many values are chosen (each value of a multi filter counts). */
  function count(f) {
    let n = 0;
    for (const d of filters) if (effective(d, f)) n += d.kind === "multi" ? f[d.param].length : 1;
    return n;
  }

  /** Whether `param`'s requirement (if any) is met in `f`, so it may be offered. */
  function available(param, f) {
    const d = byParam.get(param);
    return !!d && (!d.requires || isSet(byParam.get(d.requires), f[d.requires]));
  }

  /** API parameters for a search with filters `f` in the list context `{from, to, q, sort}`. */
  function searchParams(f, ctx, { sort = true } = {}) {
    const p = new URLSearchParams();
    if (ctx.from) p.set("from", ctx.from);
    if (ctx.to) p.set("to", ctx.to);
    if (ctx.q) p.set("q", ctx.q);
    write(f, p);
    if (sort && ctx.sort) p.set("sort", ctx.sort);
    return p;
  }

  /** The sidebar's sections, in order: {param, kind, facet, title, empty?, searchable, hint?}. */
  const sections = filters
    .filter((d) => d.section && d.section.title)
    .map((d) => ({
      param: d.param,
      kind: d.kind,
      facet: d.facet || d.param,
      title: d.section.title,
      empty: d.section.empty || null,
      searchable: !!d.section.searchable,
      hint: d.section.hint || null,
    }));

  return { filters, sections, empty, fromParams, write, key, count, available, searchParams };
}
