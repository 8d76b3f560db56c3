// The live tail: GET /v1/bots/{bot}/tail read as Server-Sent Events through fetch
// (EventSource can't send the API key), reconnecting with Last-Event-ID.
//
// Owns: the one open stream of the page. list.js shows what it sends.

import { auth } from "./api.js";
import { enc } from "./router.js";

/** The open stream: its key (bot and filters) and how to stop it. */
let open = null;

/** Stops the open stream, if any. */
export function stopLive() {
  if (open) open.ctrl.abort();
  open = null;
}

/**
 * Follows `bot`'s new messages matching `params` (search filters and `q`) until
 * stopped; `onEvent({type: "message"|"dropped"|"status", data})` gets each event
 * and the connection's state ("live", "reconnecting"). Nothing happens when the
 * same stream is open already.
 */
export function startLive(bot, params, onEvent) {
  const key = bot + "|" + params.toString();
  if (open && open.key === key) return;
  stopLive();
  const ctrl = new AbortController();
  open = { key, ctrl };
  run(bot, params, onEvent, ctrl.signal);
}

async function run(bot, params, onEvent, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (auth.key) headers.Authorization = "Bearer " + auth.key;
      if (lastId) headers["Last-Event-ID"] = lastId;
      const qs = params.toString();
      const res = await fetch(`/v1/bots/${enc(bot)}/tail${qs ? "?" + qs : ""}`, { headers, signal });
      if (!res.ok) {
        let message = `The server answered ${res.status}.`;
        try {
          message = (await res.json()).error.message;
        } catch {
          // keep the status line
        }
        onEvent({ type: "status", data: { state: "error", message } });
        return;
      }
      onEvent({ type: "status", data: { state: "live" } });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parse(block);
          if (!event) continue;
          if (event.id) lastId = event.id;
          onEvent(event);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    onEvent({ type: "status", data: { state: "reconnecting" } });
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** One event block of the stream, or null for a comment (heartbeat). */
function parse(block) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return { type, id, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}
