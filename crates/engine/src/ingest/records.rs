//! The records of a log (issue #21's sources) → what they store: messages,
//! trace events, Rasa session starts, and the records that can't be stored,
//! each with its reason (dead letters). A bad record never holds back the
//! others of its batch.

use super::rasa::{self, Senders, SessionStart};
use super::validate::{IngestRules, ItemError, validate_message, validate_record, validate_trace};
use crate::settings::RecordFormat;
use convlog_core::{NewMessage, NewTrace};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One record of a log.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its position in the log (a stream sequence, an offset).
    pub position: u64,
    /// Its subject: with Rasa events, its last `.`-separated token names the
    /// bot unless the source names one.
    pub subject: String,
    pub payload: bytes::Bytes,
}

/// What a batch of records stores.
#[derive(Debug, Default)]
pub struct Decoded {
    pub messages: Vec<NewMessage>,
    pub traces: Vec<NewTrace>,
    /// Sessions Rasa's `session_started` opened, by bot.
    pub sessions: Vec<(String, Vec<SessionStart>)>,
    /// The records that can't be stored: (position, reason).
    pub dead: Vec<(u64, String)>,
}

/// Decodes `records` (in position order) as `format` says. `senders(bot)`
/// tells what the store knows of a bot's Rasa senders; those it made are
/// returned beside, for the caller to check that their reads succeeded.
pub fn decode<S: Senders>(
    format: &RecordFormat,
    records: &[Record],
    rules: &IngestRules,
    senders: impl Fn(&str) -> S,
) -> (Decoded, Vec<S>) {
    let mut decoded = Decoded::default();
    let mut used = Vec::new();
    match format {
        RecordFormat::Convlog => {
            for record in records {
                match validate_record(&record.payload, rules) {
                    Ok(message) => decoded.messages.push(message),
                    Err(reason) => decoded.dead.push((record.position, reason)),
                }
            }
        }
        RecordFormat::Rasa { bot } => {
            let mut by_bot: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
            for record in records {
                let named = bot
                    .as_deref()
                    .unwrap_or_else(|| record.subject.rsplit('.').next().unwrap_or_default());
                match convlog_core::is_identifier(named) {
                    true => by_bot.entry(named).or_default().push(record),
                    false => decoded.dead.push((
                        record.position,
                        format!(
                            "subject {:?}: its last token must be the bot's id (or set the source's bot)",
                            record.subject
                        ),
                    )),
                }
            }
            for (bot, records) in by_bot {
                let known = senders(bot);
                decode_rasa(bot, &records, rules, &known, &mut decoded);
                used.push(known);
            }
            decoded.dead.sort_by_key(|(position, _)| *position);
        }
    }
    (decoded, used)
}

/// Decodes one bot's records of Rasa events as one body, so a sender's
/// events continue each other across records as they do in a request. A
/// record whose events are refused, or whose messages or trace events don't
/// validate, is set aside with the reason, and the rest is decoded again
/// without it (what it opened, such as a session, must not be used).
fn decode_rasa(
    bot: &str,
    records: &[&Record],
    rules: &IngestRules,
    senders: &dyn Senders,
    out: &mut Decoded,
) {
    let mut alive: Vec<(u64, Vec<Map<String, Value>>)> = Vec::with_capacity(records.len());
    for record in records {
        match rasa::events(&record.payload) {
            Ok(events) => alive.push((record.position, events)),
            Err(reason) => out.dead.push((record.position, reason)),
        }
    }
    loop {
        // The record each event of the body came from.
        let owners: Vec<usize> = alive
            .iter()
            .enumerate()
            .flat_map(|(i, (_, events))| std::iter::repeat_n(i, events.len()))
            .collect();
        let events: Vec<Map<String, Value>> = alive
            .iter()
            .flat_map(|(_, events)| events.iter().cloned())
            .collect();
        let mut refused: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut refuse = |event: usize, field: &str, reason: &str| {
            let within = event - owners.iter().position(|&o| o == owners[event]).unwrap_or(0);
            refused
                .entry(owners[event])
                .or_default()
                .push(format!("event {within}: {field}: {reason}"));
        };
        let mut built = (Vec::new(), Vec::new());
        match rasa::decode(bot, &events, senders) {
            Err(errors) => {
                for error in errors {
                    refuse(error.index, error.field, &error.reason);
                }
            }
            Ok(decoded) => {
                let mut item_errors = |errors: Vec<ItemError>, event: usize| {
                    for error in errors {
                        refuse(event, &error.field, &error.reason);
                    }
                };
                for (event, item) in &decoded.messages {
                    match validate_message(*event, item, rules) {
                        Ok(message) => built.0.push(message),
                        Err(errors) => item_errors(errors, *event),
                    }
                }
                for (event, item) in &decoded.traces {
                    match validate_trace(*event, item, rules) {
                        Ok(trace) => built.1.push(trace),
                        Err(errors) => item_errors(errors, *event),
                    }
                }
                if refused.is_empty() {
                    out.messages.append(&mut built.0);
                    out.traces.append(&mut built.1);
                    if !decoded.sessions.is_empty() {
                        out.sessions.push((bot.to_string(), decoded.sessions));
                    }
                    return;
                }
            }
        }
        // Set the refused records aside (last first, so indexes hold) and decode again.
        for (record, reasons) in refused.into_iter().rev() {
            let (position, _) = alive.remove(record);
            out.dead.push((position, reasons.join("; ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pseudonym::UserKeyer;
    use serde_json::json;

    fn rules() -> IngestRules {
        let config = crate::config::Config::defaults();
        IngestRules {
            limits: config.ingest,
            keyer: UserKeyer::from_secret([0; 32]),
            redaction: config.privacy,
        }
    }

    fn raw(position: u64, subject: &str, payload: &[u8]) -> Record {
        Record {
            position,
            subject: subject.into(),
            payload: payload.to_vec().into(),
        }
    }

    fn record(position: u64, subject: &str, event: Value) -> Record {
        raw(position, subject, &serde_json::to_vec(&event).unwrap())
    }

    fn rasa(bot: Option<&str>, records: &[Record]) -> Decoded {
        let keyer = UserKeyer::from_secret([0; 32]);
        let keyer = &keyer;
        let rules = rules();
        decode(
            &RecordFormat::Rasa {
                bot: bot.map(str::to_string),
            },
            records,
            &rules,
            |bot| {
                let bot = bot.to_string();
                rasa::Unknown(move |sender: &str| keyer.key(&bot, sender).0)
            },
        )
        .0
    }

    #[test]
    fn rasa_events_one_per_record_continue_each_other_and_a_bad_record_is_set_aside() {
        let at = 1_780_000_000.0;
        let records = [
            record(
                1,
                "rasa.shop",
                json!({"event": "session_started", "sender_id": "u1", "timestamp": at}),
            ),
            record(
                2,
                "rasa.shop",
                json!({"event": "user", "sender_id": "u1", "timestamp": at + 1.0, "text": "where is my order", "input_channel": "telegram", "message_id": "m1", "parse_data": {"intent": {"name": "order_status"}}}),
            ),
            record(
                3,
                "rasa.shop",
                json!({"event": "user", "sender_id": "u1", "text": "no timestamp"}),
            ),
            raw(4, "rasa.shop", b"not json"),
            record(
                5,
                "rasa.shop",
                json!({"event": "bot", "sender_id": "u1", "timestamp": at + 2.0, "text": "It ships tomorrow."}),
            ),
            record(
                6,
                "rasa",
                json!({"event": "user", "sender_id": "u2", "timestamp": at, "text": "hi"}),
            ),
            record(
                7,
                "rasa.a b",
                json!({"event": "user", "sender_id": "u2", "timestamp": at, "text": "hi"}),
            ),
        ];
        let decoded = rasa(None, &records);
        let dead: Vec<u64> = decoded.dead.iter().map(|(p, _)| *p).collect();
        assert_eq!(dead, [3, 4, 7], "{:?}", decoded.dead);
        assert!(
            decoded.dead[0].1.contains("timestamp"),
            "{:?}",
            decoded.dead
        );
        assert!(decoded.dead[2].1.contains("subject"), "{:?}", decoded.dead);
        // u1's bot answer (record 5) is in the session record 1 opened, on
        // the channel of its input (record 2); record 6 is bot "rasa"'s.
        let shop: Vec<&NewMessage> = decoded
            .messages
            .iter()
            .filter(|m| m.bot_id == "shop")
            .collect();
        assert_eq!(shop.len(), 2, "{:?}", decoded.messages);
        assert!(shop.iter().all(|m| m.channel == "telegram"
            && m.session_id == shop[0].session_id
            && m.session_id.is_some()));
        assert_eq!(decoded.messages.len(), 3);
        assert_eq!(decoded.sessions.len(), 1);
        assert_eq!(decoded.sessions[0].0, "shop");
    }

    #[test]
    fn a_record_refused_after_decoding_takes_its_session_with_it() {
        let at = 1_780_000_000.0;
        let long = "x".repeat(1_000_000);
        let records = [
            record(
                1,
                "s",
                json!([{"event": "session_started", "sender_id": "u1", "timestamp": at}, {"event": "user", "sender_id": "u1", "timestamp": at + 1.0, "text": long}]),
            ),
            record(
                2,
                "s",
                json!({"event": "user", "sender_id": "u1", "timestamp": at + 3.0, "text": "hello"}),
            ),
        ];
        let decoded = rasa(Some("shop"), &records);
        assert_eq!(decoded.dead.len(), 1, "{:?}", decoded.dead);
        assert_eq!(decoded.dead[0].0, 1);
        assert!(
            decoded.dead[0].1.contains("event 1: text"),
            "{:?}",
            decoded.dead
        );
        assert!(decoded.sessions.is_empty());
        assert_eq!(decoded.messages.len(), 1);
        assert_eq!(decoded.messages[0].bot_id, "shop");
    }
}
