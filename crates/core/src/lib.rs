//! convlog's core: the domain types every stage of the pipeline shares —
//! timestamps, identifiers, labels, the clock, message roles, validated
//! messages — and the units of `config.toml` (durations, sizes).
//!
//! It imports no other convlog crate, and nothing here does I/O beyond reading
//! the clock's environment variables: everything above builds on it.

mod units;

pub use units::{parse_duration, parse_size};

use chrono::{DateTime, SecondsFormat, Utc};

/// Who sent a message; used by role qualifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The human talking to the bot.
    User,
    /// The chatbot.
    Bot,
    /// A human agent who took over the conversation.
    Agent,
    /// System or tooling messages.
    System,
}

impl Role {
    /// The lowercase name used in storage and in query qualifiers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Bot => "bot",
            Role::Agent => "agent",
            Role::System => "system",
        }
    }

    /// Parses an exact lowercase role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "bot" => Some(Role::Bot),
            "agent" => Some(Role::Agent),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

/// Microseconds since the Unix epoch, UTC: how every timestamp is stored and indexed.
pub type Micros = i64;

/// Parses an RFC 3339 timestamp with any offset into UTC microseconds.
pub fn parse_timestamp(text: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

/// The units of relative times (`now-7d`), in microseconds.
const TIME_UNITS: [(char, Micros); 5] = [
    ('s', 1_000_000),
    ('m', 60_000_000),
    ('h', 3_600_000_000),
    ('d', 86_400_000_000),
    ('w', 604_800_000_000),
];

/// What [`parse_time`] accepts, for error messages.
pub const TIME_SYNTAX: &str =
    "an RFC 3339 timestamp, `now`, or `now-<n><unit>` with unit s, m, h, d or w (e.g. `now-7d`)";

/// Parses a time as `from` and `to` take it: RFC 3339, `now`, or
/// `now-<n><unit>` (`now-15m`, `now-24h`, `now-7d`, `now-2w`) before `now`;
/// the error says what is wrong.
pub fn parse_time(text: &str, now: Micros) -> Result<Micros, String> {
    let Some(relative) = text.strip_prefix("now") else {
        return parse_timestamp(text).ok_or_else(|| format!("{text:?} is not {TIME_SYNTAX}"));
    };
    if relative.is_empty() {
        return Ok(now);
    }
    let Some(span) = relative.strip_prefix('-') else {
        return Err(format!("{text:?} is not {TIME_SYNTAX}"));
    };
    let digits = span.chars().take_while(char::is_ascii_digit).count();
    let (count, unit) = span.split_at(digits);
    let count: Micros = count
        .parse()
        .map_err(|_| format!("{text:?}: `now-` needs a number, then a unit (s, m, h, d or w)"))?;
    let Some((_, size)) = TIME_UNITS
        .iter()
        .find(|(name, _)| unit.len() == 1 && unit.starts_with(*name))
    else {
        return Err(format!(
            "{text:?}: the unit {unit:?} is not one of s, m, h, d, w"
        ));
    };
    count
        .checked_mul(*size)
        .and_then(|span| now.checked_sub(span))
        .ok_or_else(|| format!("{text:?} is too far in the past"))
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

/// A label name as typed by a person: trimmed, 1–64 characters, no control characters.
pub fn normalize_label(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 64 {
        return Err("labels are 1 to 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("labels can't contain control characters");
    }
    if name.chars().any(is_bidi_control) {
        return Err(
            "labels can't contain bidirectional controls (U+202A–U+202E, U+2066–U+2069, …)",
        );
    }
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err("labels need a visible character");
    }
    Ok(name.to_string())
}

/// Characters that reorder the text around them (Trojan Source, CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that take no visible space: format characters, joiners,
/// variation selectors, fillers and blanks.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// The service's clock: real time, shifted by a fixed offset in tests and
/// drills, or stopped at one instant (`CONVLOG_CLOCK_AT`) for boundary tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: Micros,
    stopped_at: Option<Micros>,
}

impl Clock {
    /// A clock `offset` microseconds ahead of real time (negative: behind).
    pub fn with_offset(offset: Micros) -> Clock {
        Clock {
            offset,
            stopped_at: None,
        }
    }

    /// Reads `CONVLOG_CLOCK_AT` (an RFC 3339 instant the clock stays at) or
    /// `CONVLOG_CLOCK_OFFSET` ("+8d", "-90m", "30s"); real time when neither is set.
    pub fn from_env() -> Result<Clock, String> {
        if let Ok(text) = std::env::var("CONVLOG_CLOCK_AT") {
            let at = parse_timestamp(&text).ok_or_else(|| {
                format!("CONVLOG_CLOCK_AT: {text:?} is not an RFC 3339 timestamp")
            })?;
            return Ok(Clock {
                offset: 0,
                stopped_at: Some(at),
            });
        }
        match std::env::var("CONVLOG_CLOCK_OFFSET") {
            Err(_) => Ok(Clock::default()),
            Ok(text) => {
                let (sign, rest) = match text.strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, text.strip_prefix('+').unwrap_or(&text)),
                };
                let offset = parse_duration(rest)
                    .map_err(|reason| format!("CONVLOG_CLOCK_OFFSET: {reason}"))?;
                Ok(Clock::with_offset(sign * offset.as_micros() as Micros))
            }
        }
    }

    /// The current time in microseconds.
    pub fn now(&self) -> Micros {
        self.stopped_at
            .unwrap_or_else(|| now_micros() + self.offset)
    }
}

/// The keyed hash of an end user's id: the only form in which a user is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The language the message says it is in (a BCP 47 primary tag), when it says.
    pub lang: Option<String>,
}

/// A validated debug trace event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrace {
    /// Its id, when the sender gives one: a second event with the same id (a
    /// retried export) is not stored again.
    pub id: Option<String>,
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
    fn times_are_rfc3339_or_relative_to_now() {
        let now = 1_000_000_000_000_000;
        let hour = 3_600_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-15m", now), Ok(now - hour / 4));
        assert_eq!(parse_time("now-24h", now), Ok(now - 24 * hour));
        assert_eq!(parse_time("now-7d", now), Ok(now - 7 * 24 * hour));
        assert_eq!(parse_time("now-2w", now), Ok(now - 14 * 24 * hour));
        assert_eq!(parse_time("now-30s", now), Ok(now - 30_000_000));
        assert_eq!(
            parse_time("2026-11-24T09:00:00Z", now),
            Ok(parse_timestamp("2026-11-24T09:00:00Z").unwrap())
        );
        for (bad, says) in [
            ("now-7y", "the unit \"y\""),
            ("now-7", "the unit \"\""),
            ("now-d", "needs a number"),
            ("now+1d", "is not an RFC 3339"),
            ("now-1dd", "the unit \"dd\""),
            ("yesterday", "is not an RFC 3339"),
            ("now-99999999999999w", "too far"),
        ] {
            let err = parse_time(bad, now).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

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

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(
            normalize_label("  Beschwerde über Lieferung ").unwrap(),
            "Beschwerde über Lieferung"
        );
        assert!(normalize_label("   ").is_err());
        assert!(normalize_label(&"é".repeat(65)).is_err());
        assert!(normalize_label("a\nb").is_err());
    }

    #[test]
    fn labels_refuse_invisible_only_text_and_bidi_controls() {
        assert!(normalize_label("\u{200B}").is_err());
        assert!(normalize_label("\u{200B}\u{FEFF} \u{2060}").is_err());
        assert!(normalize_label("refund\u{202E}dnufer").is_err());
        assert!(normalize_label("\u{2066}x").is_err());
        // Joiners inside visible text are fine (emoji sequences, Indic scripts).
        assert!(normalize_label("👩\u{200D}💻 dev").is_ok());
        assert!(normalize_label("返金").is_ok());
    }
}
