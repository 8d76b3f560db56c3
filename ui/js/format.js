// Formatting of numbers, times and durations, and other small helpers without the DOM.
//
// Owns: how a count, a date, a time of day and a duration read on screen.
// No DOM: imported by the unit tests under Node (ui/test/).

const nf = new Intl.NumberFormat("en-US");
const dtf = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const tf = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const dayf = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });
const fullf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" });
const datef = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

/** A count with thousands separators ("1,234"); null counts as 0. */
export const fmtN = (n) => nf.format(n ?? 0);

/** Day, month and time of day ("3 Dec, 14:05"); "–" for none; the input itself if it isn't a date. */
export function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : dtf.format(d);
}

/** Time of day with seconds ("14:05:09"). */
export function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : tf.format(d);
}

/** Date and time in full, for tooltips. */
export function fmtFull(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : fullf.format(d);
}

/** A day of a chart's axis ("Wed 3"). */
export const fmtDay = (date) => dayf.format(date);

/** A calendar date ("Dec 3, 2025"). */
export const fmtDateOnly = (date) => datef.format(date);

/** A duration: "1.5 ms", "42 ms", "1.25 s", "12 s"; "" for none. */
export function fmtMs(ms) {
  if (ms == null) return "";
  if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 2) + " s";
  if (ms >= 10) return Math.round(ms) + " ms";
  return (Math.round(ms * 10) / 10) + " ms";
}

/** Local "YYYY-MM-DDTHH:mm" for <input type=datetime-local>; "" for what isn't a date. */
export function toLocalInput(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** `fn` called once calls stop for `ms`. */
export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** A stable hue (0–359) for a text, so a tag or channel has one colour everywhere. */
export function hashHue(text) {
  let x = 0;
  for (const ch of String(text)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}
