//! Domain types shared by every stage of the pipeline.

pub use crate::query::parse::Role;

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, UTC: how every timestamp is stored and indexed.
pub type Micros = i64;

/// Parses an RFC 3339 timestamp with any offset into UTC microseconds.
pub fn parse_timestamp(text: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

/// Formats UTC microseconds as RFC 3339 with a `Z` and only the fractional digits needed.
pub fn format_timestamp(micros: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The current time in microseconds.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// Whether `text` is a valid identifier (`bot_id`, label name): `[A-Za-z0-9._-]{1,64}`.
pub fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The keyed hash of an end user's id: the only form in which a user is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(pub String);

/// The public id of a conversation (`c_…`), a thin wrapper around the store's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub u64);

impl ConversationId {
    /// Parses the public form `c_<hex>`.
    pub fn parse(text: &str) -> Option<ConversationId> {
        let hex = text.strip_prefix("c_")?;
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(ConversationId)
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c_{:x}", self.0)
    }
}

/// A validated message, ready to be stored: the raw user id is already replaced by its key.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub bot_id: String,
    pub user_key: UserKey,
    pub channel: String,
    pub role: Role,
    pub text: String,
    pub timestamp: Micros,
    pub session_id: Option<String>,
    pub flow: Option<String>,
    pub step: Option<String>,
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub node_name: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub unidentified: bool,
    pub flow_completed: bool,
    /// The `metadata` object serialised as JSON.
    pub metadata: Option<String>,
}

/// A validated debug trace event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrace {
    pub bot_id: String,
    pub user_key: UserKey,
    pub channel: String,
    pub timestamp: Micros,
    pub message_id: Option<String>,
    pub action: String,
    pub detail: Option<String>,
    pub duration_ms: Option<f64>,
    pub level: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_utc() {
        let micros = parse_timestamp("2026-11-24T11:00:00.250+01:00").unwrap();
        assert_eq!(format_timestamp(micros), "2026-11-24T10:00:00.250Z");
        assert_eq!(
            format_timestamp(parse_timestamp("2026-11-24T10:00:00Z").unwrap()),
            "2026-11-24T10:00:00Z"
        );
        assert!(parse_timestamp("2026-11-24 10:00").is_none());
    }

    #[test]
    fn conversation_ids_round_trip() {
        let id = ConversationId(0x1f3);
        assert_eq!(id.to_string(), "c_1f3");
        assert_eq!(ConversationId::parse("c_1f3"), Some(id));
        assert_eq!(ConversationId::parse("c_"), None);
        assert_eq!(ConversationId::parse("x_1"), None);
        assert_eq!(ConversationId::parse("c_zz"), None);
    }

    #[test]
    fn identifiers_follow_the_contract() {
        assert!(is_identifier("acme-bot_1.v2"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier(&"x".repeat(65)));
    }
}
