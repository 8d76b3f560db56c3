// Time ranges: the URL's `range` preset or `from`/`to` pair, resolved to timestamps.
//
// Owns: the presets, what a range means at a given moment, and the calendar days a
// dashboard chart shows. No DOM (the picker is in shared.js); `now` is passed in so
// the unit tests (ui/test/) don't depend on the clock.

/** The presets of the range picker, relative to now. */
export const RANGES = {
  "24h": { label: "Last 24 hours", ms: 24 * 3600e3 },
  "7d": { label: "Last 7 days", ms: 7 * 24 * 3600e3 },
  "30d": { label: "Last 30 days", ms: 30 * 24 * 3600e3 },
};

const DAY_MS = 864e5;
/** A chart shows at most this many days. */
const MAX_DAYS = 62;

/**
 * {from, to, label, preset} for the URL's range; presets are relative to `now`.
 * `formatDate` writes the ends of a custom range into its label.
 */
export function resolveRange(p, fallback = "24h", { now = Date.now(), formatDate = String } = {}) {
  const from = p.get("from");
  const to = p.get("to");
  if (from || to) {
    const label = `${from ? formatDate(from) : "…"} – ${to ? formatDate(to) : "now"}`;
    return { from: from || null, to: to || null, label, preset: "custom" };
  }
  const key = RANGES[p.get("range")] ? p.get("range") : fallback;
  const r = RANGES[key];
  return { from: new Date(now - r.ms).toISOString(), to: null, label: r.label, preset: key };
}

/**
 * The range of a dashboard (default: the last 7 days) and its local calendar days,
 * each {from, to, date}; a preset covers whole days, today included.
 */
export function dayBuckets(p, { now = Date.now(), formatDate = String } = {}) {
  const r = resolveRange(p, "7d", { now, formatDate });
  const today = new Date(now);
  if (r.preset !== "custom") {
    const n = Math.max(2, Math.round(RANGES[r.preset].ms / DAY_MS));
    r.from = new Date(today.getFullYear(), today.getMonth(), today.getDate() - n + 1).toISOString();
  }
  const start = new Date(r.from || now - 7 * DAY_MS);
  const end = r.to ? new Date(r.to) : today;
  const d0 = new Date(start.getFullYear(), start.getMonth(), start.getDate());
  const days = [];
  for (let d = d0; d < end && days.length < MAX_DAYS; d = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1)) {
    const next = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
    days.push({ from: d.toISOString(), to: next.toISOString(), date: d });
  }
  return { range: r, days };
}
