// The API client: every request to the server goes through api().
//
// Owns: the API key of this tab (session storage), what it may do (`auth`), and how
// an answer becomes data or an ApiError with the server's message. What a 401 or a
// refused edit means for the page is session.js's business, told through apiHooks.

const KEY_STORE = "convlog.key";

/** An error answer (or none): `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The caller: key, role and whether it may edit. */
export const auth = {
  key: "",
  /** "open" (no keys on the server), "admin", "editor", "viewer", or null before probing. */
  role: null,
  canEdit: true,
  /** Whether the role was probed since the page loaded or the key changed. */
  checked: false,
};

/** What the session does when the server refuses: set by session.js. */
export const apiHooks = {
  /** A 401: the key is missing or not accepted (`message` from the server). */
  unauthorized: (message) => {},
  /** The role changed (a refused edit showed the key can't edit). */
  roleChanged: () => {},
};

/** Takes the key of this tab from session storage. */
export function restoreKey() {
  auth.key = sessionStorage.getItem(KEY_STORE) || "";
}

/** Uses `key` from now on ("" for none) and keeps it for this tab only. */
export function useKey(key) {
  auth.key = key;
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

/**
 * One request: `params` (URLSearchParams) become the query string, `body` is sent as
 * JSON. With `probe`, a refusal is only returned, never acted on.
 */
export async function api(method, path, { params, body, signal, probe = false } = {}) {
  const res = await send(method, path, { params, body, signal, accept: "application/json" });
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw refused(method, res, data, probe);
  return data;
}

/**
 * A download (GET `path` with `params`): the answer as a Blob and the file name the
 * server suggests (Content-Disposition), or an ApiError like api()'s.
 */
export async function apiDownload(path, { params, fallbackName = "download" } = {}) {
  const res = await send("GET", path, { params, accept: "*/*" });
  if (!res.ok) {
    let data = null;
    try {
      data = JSON.parse(await res.text());
    } catch {
      data = null;
    }
    throw refused("GET", res, data, false);
  }
  const disposition = res.headers.get("content-disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
  return { blob: await res.blob(), name };
}

async function send(method, path, { params, body, signal, accept }) {
  let url = path;
  if (params) {
    const qs = params.toString();
    if (qs) url += "?" + qs;
  }
  const headers = { Accept: accept };
  if (auth.key) headers.Authorization = "Bearer " + auth.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server could not be reached. Check that convlog is running, then try again.");
  }
}

/** The ApiError of a refusal (`data`: its JSON body, if any); tells the session of a 401 or a refused edit. */
function refused(method, res, data, probe) {
  const err = data && data.error;
  let message = (err && err.message) || `The server answered ${res.status} ${res.statusText}.`;
  if (res.status === 429) message += ` Try again in ${res.headers.get("retry-after") || "a few"} s.`;
  const e = new ApiError(res.status, (err && err.code) || "http_" + res.status, message);
  if (!probe && res.status === 401) apiHooks.unauthorized(message);
  if (!probe && res.status === 403 && method !== "GET" && auth.canEdit) {
    auth.canEdit = false;
    if (auth.role === "editor" || auth.role === "open") auth.role = "viewer";
    apiHooks.roleChanged();
  }
  return e;
}
