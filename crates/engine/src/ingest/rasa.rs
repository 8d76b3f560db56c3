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

/// The action Rasa runs before `session_started`: skipped, like other bookkeeping.
const SESSION_START_ACTION: &str = "action_session_start";

/// What a body of Rasa events becomes.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Items of `POST /v1/messages`, each with the position of its event.
    pub messages: Vec<(usize, Map<String, Value>)>,
    /// Items of `POST /v1/traces`, each with the position of its event.
    pub traces: Vec<(usize, Map<String, Value>)>,
    /// The sessions `session_started` events opened, to be remembered for the
    /// events of later bodies.
    pub sessions: Vec<SessionStart>,
    /// Events that are neither messages nor debugger events (e.g. `restart`), counted.
    pub skipped: usize,
}

/// A session a `session_started` event opened.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStart {
    /// The sender's pseudonymous key ([`Senders::key`]).
    pub user_key: String,
    pub started_at: Micros,
    pub session_id: String,
}

/// What decoding needs beyond the body: who a sender is, pseudonymously, and
/// what earlier bodies left of them. An event broker sends one event per
/// request, so `session_started`, the user's input and the bot's answer
/// arrive apart; the store remembers them.
pub trait Senders {
    /// The sender's pseudonymous key: session ids and the ids of events Rasa
    /// gives none are made from it, never from the raw `sender_id`.
    fn key(&self, sender: &str) -> String;
    /// What is stored of `sender` at `at`: the session it is in, its channel
    /// and its last input.
    fn before(&self, sender: &str, at: Micros) -> SenderState;
}

/// A body decoded on its own: nothing is known of earlier bodies.
pub struct Unknown<F: Fn(&str) -> String>(pub F);

impl<F: Fn(&str) -> String> Senders for Unknown<F> {
    fn key(&self, sender: &str) -> String {
        (self.0)(sender)
    }
    fn before(&self, _: &str, _: Micros) -> SenderState {
        SenderState::default()
    }
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
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SenderState {
    /// The session `session_started` opened, if one did.
    pub session: Option<String>,
    /// The channel of its last input.
    pub channel: Option<String>,
    /// Its last input: (message id, intent).
    pub input: Option<(String, Option<String>)>,
}

/// One sender of the body: its key and its state.
struct Sender {
    key: String,
    state: SenderState,
}

/// Turns `events` (in order) for `bot` into message and trace items; a
/// sender's first event in the body continues what `senders` knows of it.
pub fn decode(
    bot: &str,
    events: &[Map<String, Value>],
    known: &dyn Senders,
) -> Result<Decoded, Vec<EventError>> {
    let mut decoded = Decoded::default();
    let mut errors = Vec::new();
    let mut senders: HashMap<String, Sender> = HashMap::new();
    // Events before a sender's first input (the session start) belong on its
    // channel too, unless an earlier body said where it is.
    let mut first_channels: HashMap<&str, &str> = HashMap::new();
    for event in events {
        if let (Some(sender), Some(channel)) = (
            event.get("sender_id").and_then(Value::as_str),
            input_channel(event),
        ) {
            first_channels.entry(sender).or_insert(channel);
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
        let sender = senders.entry(sender_id.to_string()).or_insert_with(|| {
            let mut state = known.before(sender_id, at);
            if state.channel.is_none() {
                state.channel = first_channels.get(sender_id).map(|c| c.to_string());
            }
            Sender {
                key: known.key(sender_id),
                state,
            }
        });
        let text = event.get("text").and_then(Value::as_str);
        let base = |sender: &Sender, role: &str| {
            let mut item = Map::new();
            item.insert("bot_id".into(), json!(bot));
            item.insert("user_id".into(), json!(sender_id));
            item.insert(
                "channel".into(),
                json!(sender.state.channel.as_deref().unwrap_or("rasa")),
            );
            item.insert("role".into(), json!(role));
            item.insert("timestamp".into(), json!(format_timestamp(at)));
            if let Some(session) = &sender.state.session {
                item.insert("session_id".into(), json!(session));
            }
            item
        };
        match kind {
            "session_started" => {
                let session_id = format!("rasa-{}-{at}", sender.key);
                decoded.sessions.push(SessionStart {
                    user_key: sender.key.clone(),
                    started_at: at,
                    session_id: session_id.clone(),
                });
                sender.state.session = Some(session_id);
                sender.state.input = None;
            }
            "user" => {
                if let Some(channel) = input_channel(event) {
                    sender.state.channel = Some(channel.to_string());
                }
                let id = match event.get("message_id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => format!("rasa-{id}"),
                    _ => derived_id(&sender.key, at, "u", text.unwrap_or("")),
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
                sender.state.input = Some((id, intent.map(str::to_string)));
                decoded.messages.push((index, item));
            }
            "bot" => {
                let mut item = base(sender, "bot");
                item.insert(
                    "id".into(),
                    json!(derived_id(&sender.key, at, "b", text.unwrap_or(""))),
                );
                item.insert("text".into(), json!(text.unwrap_or("")));
                if let Some(utter) =
                    at_path(event, &["metadata", "utter_action"]).and_then(Value::as_str)
                {
                    item.insert("node_id".into(), json!(utter));
                    item.insert("node_type".into(), json!("response"));
                }
                let fallback = sender
                    .state
                    .input
                    .as_ref()
                    .is_some_and(|(_, intent)| intent.as_deref() == Some(FALLBACK_INTENT));
                if fallback {
                    item.insert("unidentified".into(), json!(true));
                }
                decoded.messages.push((index, item));
            }
            // Rasa's bookkeeping before `session_started`: the conversation's
            // start says as much, and a broker sends it before the session exists.
            "action" if event.get("name").and_then(Value::as_str) == Some(SESSION_START_ACTION) => {
                decoded.skipped += 1;
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
                        &sender.key,
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
                if let Some((input, _)) = &sender.state.input {
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
/// one, so a replay adds nothing. Made from the sender's key, not its raw id.
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

    /// Keys as the store's would be: not the raw sender id.
    fn keys() -> Unknown<impl Fn(&str) -> String> {
        Unknown(|sender: &str| format!("{:x}", sender.len() * 7919))
    }

    #[test]
    fn a_tracker_becomes_messages_sessions_and_trace_events() {
        let decoded = decode("shop", &tracker(), &keys()).unwrap();
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
        assert_eq!(decoded.sessions.len(), 2);
        assert_eq!(sessions[4], decoded.sessions[1].session_id.as_str());
        // Neither session ids nor derived ids hold the raw sender id.
        let all = format!("{:?}{:?}", decoded.messages, decoded.traces);
        assert!(
            !all.contains("rasa-alice") && !all.contains("alice-"),
            "{all}"
        );
        // action_session_start is bookkeeping: skipped, like restart.
        assert_eq!(decoded.traces.len(), 1);
        let slot = &decoded.traces[0].1;
        assert_eq!(slot["action"], "slot mood");
        assert_eq!(slot["message_id"], "rasa-m1");
        assert_eq!(slot["detail"]["value"], "happy");
        assert_eq!(decoded.skipped, 2);
        // The same events give the same ids: a replay adds nothing.
        let again = decode("shop", &tracker(), &keys()).unwrap();
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
        let errors = decode("shop", &bad, &keys()).unwrap_err();
        let fields: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(fields, [(0, "sender_id"), (1, "event"), (2, "timestamp")]);
    }

    /// What an earlier body left: alice is in a session on telegram, and her
    /// last input was not understood.
    struct Earlier;

    impl Senders for Earlier {
        fn key(&self, sender: &str) -> String {
            format!("k{}", sender.len())
        }
        fn before(&self, sender: &str, _: Micros) -> SenderState {
            match sender {
                "alice" => SenderState {
                    session: Some("rasa-k5-1".into()),
                    channel: Some("telegram".into()),
                    input: Some(("rasa-m9".into(), Some(FALLBACK_INTENT.into()))),
                },
                _ => SenderState::default(),
            }
        }
    }

    #[test]
    fn one_event_per_body_continues_the_stored_session_and_input() {
        let answer =
            events(br#"{"sender_id": "alice", "event": "bot", "timestamp": 5, "text": "Sorry?"}"#)
                .unwrap();
        let decoded = decode("shop", &answer, &Earlier).unwrap();
        let bot = &decoded.messages[0].1;
        assert_eq!(bot["session_id"], "rasa-k5-1");
        assert_eq!(bot["channel"], "telegram");
        assert_eq!(bot["unidentified"], true);
        let action = events(br#"{"sender_id": "alice", "event": "action", "timestamp": 6, "name": "action_listen"}"#).unwrap();
        let decoded = decode("shop", &action, &Earlier).unwrap();
        assert_eq!(decoded.traces[0].1["message_id"], "rasa-m9");
        // A new session in the body replaces the stored one.
        let restart = events(
            br#"[{"sender_id": "alice", "event": "session_started", "timestamp": 7},
            {"sender_id": "alice", "event": "bot", "timestamp": 8, "text": "Welcome back"}]"#,
        )
        .unwrap();
        let decoded = decode("shop", &restart, &Earlier).unwrap();
        let bot = &decoded.messages[0].1;
        assert_eq!(bot["session_id"], "rasa-k5-7000000");
        assert!(bot.get("unidentified").is_none());
        assert_eq!(decoded.sessions[0].user_key, "k5");
    }
}
