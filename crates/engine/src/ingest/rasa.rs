//! Rasa tracker events → convlog messages and debugger trace events.
//!
//! Rasa's event brokers and `rasa export` publish one JSON object per event
//! (`{"sender_id", "event": "user" | "bot" | "action" | "slot" |
//! "session_started" | …, "timestamp": <seconds>, …}`); its tracker store
//! answers a whole tracker (`{"sender_id", "events": […]}`). [`decode`] takes
//! any of these — one, an array, or several one after the other (NDJSON) — and
//! makes items of `POST /v1/messages` and `POST /v1/traces`, so they go through
//! the same validation, anonymity, limits and store. The ingest-log source of
//! a later issue reuses it. The mapping is documented in `docs/ingest.md`.

use convlog_core::{Micros, format_timestamp};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The intent Rasa's `FallbackClassifier` predicts for an input it didn't understand.
const FALLBACK_INTENT: &str = "nlu_fallback";

/// What a body of Rasa events becomes.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Items of `POST /v1/messages`, each with the position of its event.
    pub messages: Vec<(usize, Map<String, Value>)>,
    /// Items of `POST /v1/traces`, each with the position of its event.
    pub traces: Vec<(usize, Map<String, Value>)>,
    /// Events that are neither messages nor debugger events (e.g. `restart`), counted.
    pub skipped: usize,
}

/// Why a body is refused: which event and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventError {
    /// 0-based position of the event in the body.
    pub index: usize,
    pub field: &'static str,
    pub reason: String,
}

/// The events of `body`: JSON values one after the other, each an event, an
/// array of events, or a tracker holding them.
pub fn events(body: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let mut events = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let value = value.map_err(|err| format!("invalid JSON: {err}"))?;
        collect(value, None, &mut events)?;
    }
    Ok(events)
}

fn collect(
    value: Value,
    sender: Option<&Value>,
    out: &mut Vec<Map<String, Value>>,
) -> Result<(), String> {
    match value {
        Value::Array(items) => {
            for item in items {
                collect(item, sender, out)?;
            }
            Ok(())
        }
        Value::Object(mut map) => {
            if let Some(Value::Array(events)) = map.remove("events") {
                // A tracker: its events share its sender_id.
                let sender = map.get("sender_id").cloned();
                for event in events {
                    collect(event, sender.as_ref(), out)?;
                }
                return Ok(());
            }
            if let Some(sender) = sender {
                map.entry("sender_id").or_insert_with(|| sender.clone());
            }
            out.push(map);
            Ok(())
        }
        other => Err(format!(
            "expected Rasa events (objects), found {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            }
        )),
    }
}

/// What is known of one sender while its events are read in order.
#[derive(Default)]
struct Sender {
    /// The session `session_started` opened, if one did in this body.
    session: Option<String>,
    /// The channel of its last input.
    channel: Option<String>,
    /// Its last input: (message id, intent).
    input: Option<(String, Option<String>)>,
}

/// Turns `events` (in order) for `bot` into message and trace items.
pub fn decode(bot: &str, events: &[Map<String, Value>]) -> Result<Decoded, Vec<EventError>> {
    let mut decoded = Decoded::default();
    let mut errors = Vec::new();
    let mut senders: HashMap<String, Sender> = HashMap::new();
    // Events before a sender's first input (the session start) belong on its channel too.
    for event in events {
        if let (Some(sender), Some(channel)) = (
            event.get("sender_id").and_then(Value::as_str),
            input_channel(event),
        ) {
            senders
                .entry(sender.to_string())
                .or_default()
                .channel
                .get_or_insert_with(|| channel.to_string());
        }
    }
    for (index, event) in events.iter().enumerate() {
        let error = |field: &'static str, reason: String| EventError {
            index,
            field,
            reason,
        };
        let Some(kind) = event.get("event").and_then(Value::as_str) else {
            errors.push(error(
                "event",
                "is required (user, bot, action, slot, session_started…)".into(),
            ));
            continue;
        };
        let Some(sender_id) = event.get("sender_id").and_then(Value::as_str) else {
            errors.push(error(
                "sender_id",
                "is required: the end user of the conversation".into(),
            ));
            continue;
        };
        let Some(at) = event.get("timestamp").and_then(Value::as_f64) else {
            errors.push(error(
                "timestamp",
                "is required: seconds since the Unix epoch".into(),
            ));
            continue;
        };
        if !(0.0..1e11).contains(&at) {
            errors.push(error(
                "timestamp",
                format!("{at} is not seconds since the Unix epoch"),
            ));
            continue;
        }
        let at: Micros = (at * 1e6).round() as Micros;
        let sender = senders.entry(sender_id.to_string()).or_default();
        let text = event.get("text").and_then(Value::as_str);
        let base = |sender: &Sender, role: &str| {
            let mut item = Map::new();
            item.insert("bot_id".into(), json!(bot));
            item.insert("user_id".into(), json!(sender_id));
            item.insert(
                "channel".into(),
                json!(sender.channel.as_deref().unwrap_or("rasa")),
            );
            item.insert("role".into(), json!(role));
            item.insert("timestamp".into(), json!(format_timestamp(at)));
            if let Some(session) = &sender.session {
                item.insert("session_id".into(), json!(session));
            }
            item
        };
        match kind {
            "session_started" => {
                sender.session = Some(format!("rasa-{sender_id}-{at}"));
                sender.input = None;
            }
            "user" => {
                if let Some(channel) = input_channel(event) {
                    sender.channel = Some(channel.to_string());
                }
                let id = match event.get("message_id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => format!("rasa-{id}"),
                    _ => derived_id(sender_id, at, "u", text.unwrap_or("")),
                };
                let intent =
                    at_path(event, &["parse_data", "intent", "name"]).and_then(Value::as_str);
                let mut item = base(sender, "user");
                item.insert("id".into(), json!(id));
                item.insert("text".into(), json!(text.unwrap_or("")));
                if let Some(intent) = intent.filter(|i| !i.is_empty()) {
                    item.insert("intent".into(), json!(intent));
                }
                if let Some(confidence) =
                    at_path(event, &["parse_data", "intent", "confidence"]).and_then(Value::as_f64)
                {
                    item.insert("confidence".into(), json!(confidence));
                }
                sender.input = Some((id, intent.map(str::to_string)));
                decoded.messages.push((index, item));
            }
            "bot" => {
                let mut item = base(sender, "bot");
                item.insert(
                    "id".into(),
                    json!(derived_id(sender_id, at, "b", text.unwrap_or(""))),
                );
                item.insert("text".into(), json!(text.unwrap_or("")));
                if let Some(utter) =
                    at_path(event, &["metadata", "utter_action"]).and_then(Value::as_str)
                {
                    item.insert("node_id".into(), json!(utter));
                    item.insert("node_type".into(), json!("response"));
                }
                let fallback = sender
                    .input
                    .as_ref()
                    .is_some_and(|(_, intent)| intent.as_deref() == Some(FALLBACK_INTENT));
                if fallback {
                    item.insert("unidentified".into(), json!(true));
                }
                decoded.messages.push((index, item));
            }
            "action" | "slot" => {
                let name = event.get("name").and_then(Value::as_str).unwrap_or("");
                // A trace event: the fields of a message's place, no role or session.
                let mut item = base(sender, "");
                item.remove("role");
                item.remove("session_id");
                item.insert(
                    "id".into(),
                    json!(derived_id(
                        sender_id,
                        at,
                        kind,
                        &format!("{name}\u{0}{}", event.get("value").unwrap_or(&Value::Null))
                    )),
                );
                item.insert("action".into(), json!(format!("{kind} {name}").trim()));
                let mut detail = event.clone();
                for key in ["event", "sender_id", "timestamp", "name"] {
                    detail.remove(key);
                }
                item.insert("detail".into(), Value::Object(detail));
                if let Some((input, _)) = &sender.input {
                    item.insert("message_id".into(), json!(input));
                }
                decoded.traces.push((index, item));
            }
            _ => decoded.skipped += 1,
        }
    }
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(errors)
    }
}

/// The value at `path` inside an event.
fn at_path<'a>(event: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(event.get(*first)?, |value, key| value.get(key))
}

/// The channel a `user` event came in on, when it names one convlog can take.
fn input_channel(event: &Map<String, Value>) -> Option<&str> {
    event
        .get("input_channel")
        .and_then(Value::as_str)
        .filter(|c| convlog_core::is_identifier(c))
}

/// An id for an event Rasa gives none: the same event always gets the same
/// one, so a replay adds nothing.
fn derived_id(sender: &str, at: Micros, kind: &str, text: &str) -> String {
    use std::hash::{Hash, Hasher};
    // FNV-1a over the parts: stable across runs and builds (unlike DefaultHasher).
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = (self.0 ^ *byte as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    (sender, at, kind, text).hash(&mut hasher);
    format!("rasa-{kind}-{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Vec<Map<String, Value>> {
        events(
            br#"{"sender_id": "alice", "events": [
                {"event": "action", "timestamp": 1700000000.0, "name": "action_session_start"},
                {"event": "session_started", "timestamp": 1700000000.1},
                {"event": "user", "timestamp": 1700000001.0, "text": "hi", "input_channel": "telegram",
                 "message_id": "m1", "parse_data": {"intent": {"name": "greet", "confidence": 0.97}}},
                {"event": "slot", "timestamp": 1700000001.5, "name": "mood", "value": "happy"},
                {"event": "bot", "timestamp": 1700000002.0, "text": "Hello!", "metadata": {"utter_action": "utter_greet"}},
                {"event": "user", "timestamp": 1700000003.0, "text": "asdfgh",
                 "parse_data": {"intent": {"name": "nlu_fallback", "confidence": 0.3}}},
                {"event": "bot", "timestamp": 1700000004.0, "text": "Sorry, I didn't get that."},
                {"event": "session_started", "timestamp": 1700090000.0},
                {"event": "user", "timestamp": 1700090001.0, "text": "bye"},
                {"event": "restart", "timestamp": 1700090002.0}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_tracker_becomes_messages_sessions_and_trace_events() {
        let decoded = decode("shop", &tracker()).unwrap();
        let texts: Vec<&str> = decoded
            .messages
            .iter()
            .map(|(_, m)| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            ["hi", "Hello!", "asdfgh", "Sorry, I didn't get that.", "bye"]
        );
        let message = |n: usize| &decoded.messages[n].1;
        let first = message(0);
        assert_eq!(first["id"], "rasa-m1");
        assert_eq!(first["user_id"], "alice");
        assert_eq!(first["channel"], "telegram");
        assert_eq!(first["intent"], "greet");
        assert_eq!(first["confidence"], 0.97);
        assert_eq!(first["timestamp"], "2023-11-14T22:13:21Z");
        assert_eq!(message(1)["node_id"], "utter_greet");
        assert_eq!(message(3)["unidentified"], true);
        assert!(message(1).get("unidentified").is_none());
        assert_eq!(decoded.messages[4].0, 8, "the position of its event");
        let sessions: Vec<&Value> = decoded
            .messages
            .iter()
            .map(|(_, m)| &m["session_id"])
            .collect();
        assert_eq!(sessions[0], sessions[3]);
        assert_ne!(sessions[0], sessions[4]);
        assert_eq!(decoded.traces.len(), 2);
        let slot = &decoded.traces[1].1;
        assert_eq!(slot["action"], "slot mood");
        assert_eq!(slot["message_id"], "rasa-m1");
        assert_eq!(slot["detail"]["value"], "happy");
        assert_eq!(decoded.skipped, 1);
        // The same events give the same ids: a replay adds nothing.
        let again = decode("shop", &tracker()).unwrap();
        assert_eq!(again.messages, decoded.messages);
    }

    #[test]
    fn one_event_an_array_or_ndjson() {
        let one = br#"{"sender_id": "a", "event": "user", "timestamp": 1.5, "text": "x"}"#;
        assert_eq!(events(one).unwrap().len(), 1);
        let array = br#"[{"sender_id": "a", "event": "bot", "timestamp": 1, "text": "x"}, {"sender_id": "a", "event": "bot", "timestamp": 2, "text": "y"}]"#;
        assert_eq!(events(array).unwrap().len(), 2);
        let ndjson = b"{\"sender_id\": \"a\", \"event\": \"bot\", \"timestamp\": 1}\n{\"sender_id\": \"a\", \"event\": \"bot\", \"timestamp\": 2}\n";
        assert_eq!(events(ndjson).unwrap().len(), 2);
        assert!(events(b"[1]").unwrap_err().contains("a number"));
        assert!(events(b"{").unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn events_without_sender_kind_or_time_are_named() {
        let bad = events(br#"[{"event": "user", "timestamp": 1}, {"sender_id": "a", "timestamp": 1}, {"sender_id": "a", "event": "bot", "timestamp": "soon"}]"#).unwrap();
        let errors = decode("shop", &bad).unwrap_err();
        let fields: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(fields, [(0, "sender_id"), (1, "event"), (2, "timestamp")]);
    }
}
