// Routing: where the page is, the URLs of its places, and navigation.
//
// Routes (every page path serves the same document; the script routes on the URL):
//   /                                  -> the bots the key may see (home)
//   /bots/{bot}?filters                -> conversation logs (filters, query, range, sort in the query string)
//   /bots/{bot}/conversations/{id}?…   -> the same list with that conversation open (tab=debug|logs)
//   /bots/{bot}/dashboards?range=…     -> charts
//   /bots/{bot}/misses?range=…&filters -> what the bot misses (clusters of unidentified inputs)
//   /shared/{token}                    -> a read-only shared conversation
// The whole state of a page is in its URL, so copying the URL shares what one sees.
//
// Owns: the current route and query, which view skeleton is mounted in #view, and
// go(). The URL functions are pure (unit-tested under Node, ui/test/); rendering is
// whatever main.js registers with onNavigate().

export const enc = encodeURIComponent;
/** A valid bot id (as the server checks it). */
export const BOT_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** Where the page is: set by each render from the address bar. */
export const current = {
  /** {kind: "home"} | {kind: "list", bot, id?} | {kind: "dash", bot} | {kind: "misses", bot} | {kind: "shared", token} */
  route: { kind: "home" },
  /** The query string. */
  params: new URLSearchParams(),
  /** Which skeleton is mounted in #view: "list:<bot>" | "dash:<bot>" | "home" | "shared" | null. */
  page: null,
};

/** The route of a path. */
export function parseRoute(pathname) {
  const parts = pathname.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === "shared" && parts[1]) return { kind: "shared", token: parts[1] };
  if (parts[0] === "bots" && parts[1]) {
    const bot = parts[1];
    if (parts[2] === "conversations" && parts[3]) return { kind: "list", bot, id: parts[3] };
    if (parts[2] === "dashboards") return { kind: "dash", bot };
    if (parts[2] === "misses") return { kind: "misses", bot };
    return { kind: "list", bot };
  }
  return { kind: "home" };
}

/** Parameters of the conversation view that the list itself ignores. */
const LIST_ONLY_KEYS = ["tab"];

/** The list's query string ("?…" or ""), without the conversation tab. */
export function listQS(params = current.params) {
  const p = new URLSearchParams(params);
  for (const k of LIST_ONLY_KEYS) p.delete(k);
  const qs = p.toString();
  return qs ? "?" + qs : "";
}

/** The conversation list of `bot` with `params`. */
export function listUrl(bot = current.route.bot, params = current.params) {
  return `/bots/${enc(bot)}${listQS(params)}`;
}

/** Conversation `id` open over the list of `bot` with `params`, on `tab` (default: the transcript). */
export function convUrl(id, bot = current.route.bot, params = current.params, tab) {
  const p = new URLSearchParams(listQS(params));
  if (tab && tab !== "transcript") p.set("tab", tab);
  const qs = p.toString();
  return `/bots/${enc(bot)}/conversations/${enc(id)}${qs ? "?" + qs : ""}`;
}

/** The dashboards of `bot` with `params`. */
export function dashUrl(bot, params = new URLSearchParams()) {
  const qs = params.toString();
  return `/bots/${enc(bot)}/dashboards${qs ? "?" + qs : ""}`;
}

/** What `bot` misses, with `params` (range and search filters). */
export function missesUrl(bot, params = new URLSearchParams()) {
  const qs = params.toString();
  return `/bots/${enc(bot)}/misses${qs ? "?" + qs : ""}`;
}

/** The tab of the open conversation: "transcript", "debug" or "logs". */
export function convTab(params = current.params) {
  const t = params.get("tab");
  return t === "debug" || t === "logs" ? t : "transcript";
}

let renderer = () => {};

/** Registers the function that renders the page for the current URL. */
export function onNavigate(render) {
  renderer = render;
}

/** Renders the page for the current URL again. */
function rerender() {
  return renderer();
}

/** Goes to `url` (a new history entry, or the current one replaced) and renders it. */
export function go(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  rerender();
}
