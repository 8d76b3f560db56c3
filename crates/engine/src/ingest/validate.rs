//! Turns an ingest body (JSON array or NDJSON) into validated messages.
//!
//! Every item is checked in full and every problem is reported with its item
//! index, field and reason, so a client can fix a whole batch in one go. Nothing
//! here touches the store: a batch either validates completely or is refused.

use crate::ingest::pseudonym::UserKeyer;
use crate::ingest::redact::Redaction;
use crate::settings::IngestConfig;
use convlog_core::{NewMessage, NewTrace, Role, is_identifier, parse_timestamp};
use serde::Serialize;
use serde_json::{Map, Value};

/// At most this many problems are reported for one batch.
const MAX_DETAILS: usize = 100;

/// One problem with one item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemError {
    /// The item's 0-based position in the batch; `None` for the batch as a whole.
    pub index: Option<usize>,
    pub field: String,
    pub reason: String,
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The body is not JSON / NDJSON at all (400).
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Well-formed, but some items are invalid (422).
    #[error("{}", describe(.0))]
    Invalid(Vec<ItemError>),
}

/// The first problem in words, naming its item and field, and how many more there are.
fn describe(details: &[ItemError]) -> String {
    let Some(first) = details.first() else {
        return "invalid batch".into();
    };
    let place = match first.index {
        Some(index) => format!("item {index}: `{}`", first.field),
        None => format!("`{}`", first.field),
    };
    match details.len() {
        1 => format!("{place} {}", first.reason),
        n => format!(
            "{place} {} (and {} more problems, see details)",
            first.reason,
            n - 1
        ),
    }
}

/// The body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    JsonArray,
    Ndjson,
}

impl BodyFormat {
    /// NDJSON for `application/x-ndjson` (or `application/jsonl`), a JSON array otherwise.
    pub fn from_content_type(content_type: Option<&str>) -> BodyFormat {
        match content_type {
            Some(ct) if ct.contains("ndjson") || ct.contains("jsonl") => BodyFormat::Ndjson,
            _ => BodyFormat::JsonArray,
        }
    }
}

/// Splits a body into the raw JSON text of its items, refusing anything that
/// is not well-formed.
///
/// Items are taken one at a time and not parsed here: the batch limit
/// (`max_batch_messages`) and the size limit of one item bite first, and
/// [`validate_messages`] parses and converts one item at a time, so a body of
/// millions of tiny values (`[0,0,0,…]`, or an object holding them) costs no
/// more memory than its bytes and one item.
pub fn parse_items<'a>(
    body: &'a [u8],
    format: BodyFormat,
    limits: &IngestConfig,
) -> Result<Vec<&'a str>, ValidationError> {
    let text = std::str::from_utf8(body).map_err(|err| {
        ValidationError::Malformed(format!(
            "body is not valid UTF-8 (at byte {})",
            err.valid_up_to()
        ))
    })?;
    let raw = match format {
        BodyFormat::JsonArray => raw_array_items(text, limits.max_batch_messages)?,
        BodyFormat::Ndjson => raw_lines(text, limits.max_batch_messages)?,
    };
    let max_item = limits.max_item_bytes();
    let mut oversized = raw
        .iter()
        .enumerate()
        .filter(|(_, (_, item))| item.len() > max_item)
        .map(|(index, (_, item))| ItemError {
            index: Some(index),
            field: "item".into(),
            reason: format!("is {} bytes; an item is at most {max_item}", item.len()),
        })
        .take(MAX_DETAILS)
        .peekable();
    if oversized.peek().is_some() {
        return Err(ValidationError::Invalid(oversized.collect()));
    }
    // NDJSON lines are only split so far: check their syntax, keeping nothing.
    for (line, item) in &raw {
        if let Some(line) = line {
            serde_json::from_str::<serde::de::IgnoredAny>(item).map_err(|err| {
                ValidationError::Malformed(format!("invalid JSON on line {line}: {err}"))
            })?;
        }
    }
    Ok(raw.into_iter().map(|(_, item)| item).collect())
}

/// The raw text of each element of a JSON array body, without parsing the
/// elements; at most `max` of them (the rest are only counted).
fn raw_array_items(text: &str, max: usize) -> Result<Vec<(Option<usize>, &str)>, ValidationError> {
    use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    struct Items {
        max: usize,
    }
    impl<'de> Visitor<'de> for Items {
        type Value = (Vec<&'de RawValue>, usize);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of messages")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while items.len() < self.max {
                match seq.next_element::<&'de RawValue>()? {
                    Some(item) => items.push(item),
                    None => {
                        let count = items.len();
                        return Ok((items, count));
                    }
                }
            }
            let mut count = items.len();
            while seq.next_element::<IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok((items, count))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = deserializer
        .deserialize_seq(Items { max })
        .and_then(|items| deserializer.end().map(|()| items));
    match parsed {
        Ok((items, count)) => {
            check_batch_size(count, max)?;
            Ok(items.into_iter().map(|item| (None, item.get())).collect())
        }
        Err(err) if err.is_data() => Err(ValidationError::Malformed(
            "body must be a JSON array of messages (or NDJSON with Content-Type: application/x-ndjson)"
                .into(),
        )),
        Err(err) => Err(ValidationError::Malformed(format!("invalid JSON: {err}"))),
    }
}

/// The non-blank lines of an NDJSON body with their 1-based line numbers.
fn raw_lines(text: &str, max: usize) -> Result<Vec<(Option<usize>, &str)>, ValidationError> {
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let items: Vec<_> = lines
        .clone()
        .take(max)
        .map(|(number, line)| (Some(number + 1), line))
        .collect();
    if items.len() == max {
        check_batch_size(lines.count(), max)?;
    }
    Ok(items)
}

const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "bot_id",
    "user_id",
    "channel",
    "role",
    "text",
    "timestamp",
    "session_id",
    "flow",
    "step",
    "node_id",
    "node_type",
    "node_name",
    "intent",
    "confidence",
    "unidentified",
    "flow_completed",
    "metadata",
    "lang",
];

const TRACE_FIELDS: &[&str] = &[
    "id",
    "bot_id",
    "user_id",
    "channel",
    "timestamp",
    "message_id",
    "action",
    "detail",
    "duration_ms",
    "level",
];

/// Longest accepted value of the short string fields (flow, node name, …).
const MAX_SHORT: usize = 256;

/// What every ingest path applies to what it takes: the limits, the
/// pseudonyms of end users, and the redaction of what they typed.
#[derive(Debug, Clone)]
pub struct IngestRules {
    pub limits: IngestConfig,
    pub keyer: UserKeyer,
    pub redaction: Redaction,
}

/// Validates every item of a batch of messages; all or nothing.
pub fn validate_messages(
    items: &[&str],
    rules: &IngestRules,
) -> Result<Vec<NewMessage>, ValidationError> {
    check_batch_size(items.len(), rules.limits.max_batch_messages)?;
    collect(items, |index, map| validate_message(index, map, rules))
}

/// Validates items an adapter built (see `otlp`, `rasa`) with `validate`
/// ([`validate_message`] or [`validate_trace`]), as a batch of
/// `POST /v1/messages` would be: all or nothing.
///
/// Each item comes with the index its problems are reported at (the position
/// of what it was made from, in the body the client sent).
pub fn validate_built<T>(
    items: &[(usize, Map<String, Value>)],
    limits: &IngestConfig,
    validate: impl Fn(usize, &Map<String, Value>) -> Result<T, Vec<ItemError>>,
) -> Result<Vec<T>, ValidationError> {
    check_batch_size(items.len(), limits.max_batch_messages)?;
    let mut valid = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items {
        match validate(*index, item) {
            Ok(value) => valid.push(value),
            Err(mut item_errors) => errors.append(&mut item_errors),
        }
    }
    errors.truncate(MAX_DETAILS);
    match errors.is_empty() {
        true => Ok(valid),
        false => Err(ValidationError::Invalid(errors)),
    }
}

/// Validates every item of a batch of trace events; all or nothing.
pub fn validate_traces(
    items: &[&str],
    rules: &IngestRules,
) -> Result<Vec<NewTrace>, ValidationError> {
    check_batch_size(items.len(), rules.limits.max_batch_messages)?;
    collect(items, |index, map| validate_trace(index, map, rules))
}

fn check_batch_size(len: usize, max: usize) -> Result<(), ValidationError> {
    if len > max {
        return Err(ValidationError::Invalid(vec![ItemError {
            index: None,
            field: "body".into(),
            reason: format!("batch has {len} items; at most {max} are accepted"),
        }]));
    }
    Ok(())
}

/// Parses and validates each item in turn (only one item's JSON values are in
/// memory at a time); all or nothing.
fn collect<T>(
    items: &[&str],
    mut validate: impl FnMut(usize, &Map<String, Value>) -> Result<T, Vec<ItemError>>,
) -> Result<Vec<T>, ValidationError> {
    let mut valid = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let not_an_object = || {
            Err(vec![ItemError {
                index: Some(index),
                field: String::new(),
                reason: "item is not a JSON object".into(),
            }])
        };
        // Anything but an object is refused before its values are built.
        let result = if !item.trim_start().starts_with('{') {
            not_an_object()
        } else {
            match serde_json::from_str::<Value>(item) {
                Ok(Value::Object(map)) => validate(index, &map),
                Ok(_) => not_an_object(),
                Err(err) => Err(vec![ItemError {
                    index: Some(index),
                    field: String::new(),
                    reason: format!("invalid JSON: {err}"),
                }]),
            }
        };
        match result {
            Ok(message) => valid.push(message),
            Err(mut item_errors) => {
                errors.append(&mut item_errors);
                if errors.len() >= MAX_DETAILS {
                    errors.truncate(MAX_DETAILS);
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(ValidationError::Invalid(errors))
    }
}

/// Reads typed fields of one item, remembering every problem.
struct Item<'a> {
    index: usize,
    map: &'a Map<String, Value>,
    errors: Vec<ItemError>,
}

impl<'a> Item<'a> {
    fn new(index: usize, map: &'a Map<String, Value>, allowed: &[&str]) -> Item<'a> {
        let mut item = Item {
            index,
            map,
            errors: Vec::new(),
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                item.error(key, "unknown field");
            }
        }
        item
    }

    fn error(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(ItemError {
            index: Some(self.index),
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// The field's value, treating JSON null as absent.
    fn value(&mut self, field: &str, required: bool) -> Option<&'a Value> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.error(field, "missing");
                }
                None
            }
            Some(value) => Some(value),
        }
    }

    /// A string of at most `max_chars` characters (Unicode scalar values, as
    /// JSON Schema's `maxLength` counts them).
    fn string(&mut self, field: &str, required: bool, max_chars: usize) -> Option<&'a str> {
        match self.value(field, required)? {
            // Bytes bound characters: the count is only needed past the bound.
            Value::String(text) if text.len() > max_chars && text.chars().count() > max_chars => {
                self.error(
                    field,
                    format!(
                        "is {} characters; at most {max_chars} are accepted",
                        text.chars().count()
                    ),
                );
                None
            }
            Value::String(text) => Some(text),
            _ => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    fn non_empty(&mut self, field: &str, required: bool, max_chars: usize) -> Option<String> {
        let text = self.string(field, required, max_chars)?;
        if text.trim().is_empty() {
            self.error(field, "must not be empty");
            return None;
        }
        Some(text.to_string())
    }

    fn optional_short(&mut self, field: &str) -> Option<String> {
        self.non_empty(field, false, MAX_SHORT)
    }

    fn identifier(&mut self, field: &str) -> Option<String> {
        let text = self.string(field, true, 64)?;
        if !is_identifier(text) {
            self.error(field, "must match [A-Za-z0-9._-]{1,64}");
            return None;
        }
        Some(text.to_string())
    }

    fn channel(&mut self) -> Option<String> {
        let text = self.string("channel", true, 64)?;
        let channel = text.to_ascii_lowercase();
        if !is_identifier(&channel) {
            self.error("channel", "must match [a-z0-9._-]{1,64}");
            return None;
        }
        Some(channel)
    }

    fn timestamp(&mut self, field: &str) -> Option<i64> {
        let text = self.string(field, true, 64)?;
        let micros = parse_timestamp(text);
        if micros.is_none() {
            self.error(field, format!("{text:?} is not an RFC 3339 timestamp"));
        }
        micros
    }

    fn number(&mut self, field: &str, range: std::ops::RangeInclusive<f64>) -> Option<f64> {
        match self.value(field, false)? {
            Value::Number(number) => {
                let value = number.as_f64().unwrap_or(f64::NAN);
                if !range.contains(&value) {
                    self.error(
                        field,
                        format!("must be between {} and {}", range.start(), range.end()),
                    );
                    return None;
                }
                Some(value)
            }
            _ => {
                self.error(field, "must be a number");
                None
            }
        }
    }

    fn boolean(&mut self, field: &str) -> bool {
        match self.value(field, false) {
            None => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => {
                self.error(field, "must be true or false");
                false
            }
        }
    }

    fn object_json(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        match self.value(field, false)? {
            value @ Value::Object(_) => {
                let json = value.to_string();
                if json.len() > max_bytes {
                    self.error(
                        field,
                        format!(
                            "is {} bytes as JSON; at most {max_bytes} are accepted",
                            json.len()
                        ),
                    );
                    return None;
                }
                Some(json)
            }
            _ => {
                self.error(field, "must be a JSON object");
                None
            }
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ItemError>> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(self.errors),
        }
    }
}

/// Validates one message a log carried (a JSON object); `Err` says why it
/// can't be stored, naming the fields at fault.
pub fn validate_record(payload: &[u8], rules: &IngestRules) -> Result<NewMessage, String> {
    let map = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(err) => return Err(format!("invalid JSON: {err}")),
    };
    validate_message(0, &map, rules).map_err(|errors| {
        errors
            .iter()
            .map(|e| match e.field.as_str() {
                "" => e.reason.clone(),
                field => format!("{field}: {}", e.reason),
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Validates one message and redacts its text and metadata.
pub fn validate_message(
    index: usize,
    map: &Map<String, Value>,
    rules: &IngestRules,
) -> Result<NewMessage, Vec<ItemError>> {
    let (limits, keyer) = (&rules.limits, &rules.keyer);
    let mut item = Item::new(index, map, MESSAGE_FIELDS);
    let id = item.non_empty("id", false, 128);
    let bot_id = item.identifier("bot_id");
    let user_id = item.non_empty("user_id", true, 256);
    let channel = item.channel();
    let role = match item.string("role", true, 16) {
        Some(text) => {
            let role = Role::parse(text);
            if role.is_none() {
                item.error(
                    "role",
                    format!("{text:?} is not one of user, bot, agent, system"),
                );
            }
            role
        }
        None => None,
    };
    // `ingest.max_text` is a size: the text's bytes are what it bounds.
    let text = item.string("text", true, usize::MAX).and_then(|text| {
        if text.len() > limits.max_text {
            let reason = format!(
                "is {} bytes; at most {} are accepted",
                text.len(),
                limits.max_text
            );
            item.error("text", reason);
            return None;
        }
        Some(text.to_string())
    });
    let timestamp = item.timestamp("timestamp");
    let session_id = item.non_empty("session_id", false, 128);
    let flow = item.optional_short("flow");
    let step = item.optional_short("step");
    let node_id = item.optional_short("node_id");
    let node_type = item.optional_short("node_type");
    let node_name = item.optional_short("node_name");
    let intent = item.optional_short("intent");
    let confidence = item.number("confidence", 0.0..=1.0);
    let unidentified = item.boolean("unidentified");
    let flow_completed = item.boolean("flow_completed");
    let metadata = item.object_json("metadata", limits.max_metadata);
    let lang =
        item.string("lang", false, 35).and_then(
            |tag| match convlog_querylang::analysis::primary_tag(tag) {
                Ok(lang) => Some(lang),
                Err(reason) => {
                    item.error("lang", reason);
                    None
                }
            },
        );

    let message = (|| {
        let bot_id = bot_id?;
        Some(NewMessage {
            id: id.unwrap_or_else(generated_id),
            user_key: keyer.key(&bot_id, &user_id?),
            bot_id,
            channel: channel?,
            role: role?,
            text: text?,
            timestamp: timestamp?,
            session_id,
            flow,
            step,
            node_id,
            node_type,
            node_name,
            intent,
            confidence,
            unidentified,
            flow_completed,
            metadata,
            lang,
        })
    })();
    let mut message = item.finish(message)?;
    let redaction = &rules.redaction;
    redaction.redact_in_place(&message.bot_id, &mut message.text);
    if let Some(metadata) = &mut message.metadata {
        redaction.redact_json_text(&message.bot_id, metadata);
    }
    Ok(message)
}

/// Validates one trace event and redacts its action and detail.
pub fn validate_trace(
    index: usize,
    map: &Map<String, Value>,
    rules: &IngestRules,
) -> Result<NewTrace, Vec<ItemError>> {
    let (limits, keyer) = (&rules.limits, &rules.keyer);
    let mut item = Item::new(index, map, TRACE_FIELDS);
    let id = item.non_empty("id", false, 128);
    let bot_id = item.identifier("bot_id");
    let user_id = item.non_empty("user_id", true, 256);
    let channel = item.channel();
    let timestamp = item.timestamp("timestamp");
    let message_id = item.non_empty("message_id", false, 128);
    let action = item.non_empty("action", true, MAX_SHORT);
    let detail = item.object_json("detail", limits.max_metadata);
    let duration_ms = item.number("duration_ms", 0.0..=f64::MAX);
    let level = match item.string("level", false, 16) {
        None => Some("info".to_string()),
        Some(level @ ("debug" | "info" | "warn" | "error")) => Some(level.to_string()),
        Some(other) => {
            item.error(
                "level",
                format!("{other:?} is not one of debug, info, warn, error"),
            );
            None
        }
    };
    let trace = (|| {
        let bot_id = bot_id?;
        Some(NewTrace {
            id,
            user_key: keyer.key(&bot_id, &user_id?),
            bot_id,
            channel: channel?,
            timestamp: timestamp?,
            message_id,
            action: action?,
            detail,
            duration_ms,
            level: level?,
        })
    })();
    let mut trace = item.finish(trace)?;
    let redaction = &rules.redaction;
    redaction.redact_in_place(&trace.bot_id, &mut trace.action);
    if let Some(detail) = &mut trace.detail {
        redaction.redact_json_text(&trace.bot_id, detail);
    }
    Ok(trace)
}

/// An id for a message sent without one: such messages can't be deduplicated on retry.
fn generated_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let mut id = String::from("gen-");
    for byte in bytes {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn limits() -> IngestConfig {
        Config::defaults().ingest
    }

    fn rules() -> IngestRules {
        let config = Config::defaults();
        IngestRules {
            limits: config.ingest,
            keyer: UserKeyer::from_secret([0; 32]),
            redaction: config.privacy,
        }
    }

    fn validate(items: Value) -> Result<Vec<NewMessage>, ValidationError> {
        let body = serde_json::to_vec(&items).unwrap();
        let items = parse_items(&body, BodyFormat::JsonArray, &limits())?;
        validate_messages(&items, &rules())
    }

    fn message() -> Value {
        json!({"id": "m1", "bot_id": "acme", "user_id": "+4915100", "channel": "WhatsApp",
               "role": "user", "text": "hello", "timestamp": "2026-11-24T10:00:00+01:00"})
    }

    fn details(result: Result<Vec<NewMessage>, ValidationError>) -> Vec<ItemError> {
        match result {
            Err(ValidationError::Invalid(details)) => details,
            other => panic!("expected 422 details, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_message_and_normalises_it() {
        let messages = validate(json!([message()])).unwrap();
        assert_eq!(messages[0].channel, "whatsapp");
        assert_eq!(
            messages[0].timestamp,
            parse_timestamp("2026-11-24T09:00:00Z").unwrap()
        );
        assert_eq!(messages[0].user_key.0.len(), 32);
    }

    /// Short fields are bounded in characters, as the API description's
    /// `maxLength` counts them; `text` in bytes (`ingest.max_text`).
    #[test]
    fn short_fields_count_characters_and_text_counts_bytes() {
        let mut at_limit = message();
        at_limit["flow"] = json!("ü".repeat(256));
        assert!(
            validate(json!([at_limit])).is_ok(),
            "256 characters of 2 bytes"
        );
        let mut over = message();
        over["flow"] = json!("ü".repeat(257));
        let refused = details(validate(json!([over])));
        assert_eq!(refused[0].field, "flow");
        assert!(refused[0].reason.contains("257 characters"), "{refused:?}");
        let max_text = Config::defaults().ingest.max_text;
        let mut long_text = message();
        long_text["text"] = json!("ü".repeat(max_text / 2 + 1));
        let refused = details(validate(json!([long_text])));
        assert_eq!(refused[0].field, "text");
        assert!(refused[0].reason.contains("bytes"), "{refused:?}");
    }

    #[test]
    fn names_index_and_field_of_each_problem() {
        let mut bad = message();
        bad["timestamp"] = json!("yesterday");
        bad.as_object_mut().unwrap().remove("role");
        let details = details(validate(json!([message(), bad])));
        assert_eq!(details.len(), 2);
        assert!(details.iter().all(|d| d.index == Some(1)));
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        assert!(fields.contains(&"timestamp") && fields.contains(&"role"));
    }

    #[test]
    fn refuses_unknown_roles_fields_and_long_texts() {
        let mut bad = message();
        bad["role"] = json!("robot");
        bad["colour"] = json!("red");
        bad["text"] = json!("x".repeat(16 * 1024 + 1));
        let fields: Vec<String> = details(validate(json!([bad])))
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, vec!["colour", "role", "text"]);
    }

    #[test]
    fn malformed_json_and_invalid_utf8_are_400() {
        let items = parse_items(b"[{\"id\":", BodyFormat::JsonArray, &limits());
        assert!(matches!(items, Err(ValidationError::Malformed(_))));
        let items = parse_items(b"[\"\xff\"]", BodyFormat::JsonArray, &limits());
        assert!(matches!(items, Err(ValidationError::Malformed(_))));
        let items = parse_items(b"{}\n{oops}\n", BodyFormat::Ndjson, &limits());
        match items {
            Err(ValidationError::Malformed(reason)) => {
                assert!(reason.contains("line 2"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ndjson_skips_blank_lines() {
        let items =
            parse_items(b"{\"a\":1}\n\n{\"b\":2}\n", BodyFormat::Ndjson, &limits()).unwrap();
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn a_batch_over_the_item_limit_is_refused_before_its_items_are_parsed() {
        let mut limits = limits();
        limits.max_batch_messages = 3;
        let body = format!("[{}0]", "0,".repeat(99_999));
        let details = details_of(parse_items(body.as_bytes(), BodyFormat::JsonArray, &limits));
        assert_eq!(details[0].index, None);
        assert!(details[0].reason.contains("100000 items"), "{details:?}");
        let body = "0\n".repeat(10);
        let details = details_of(parse_items(body.as_bytes(), BodyFormat::Ndjson, &limits));
        assert!(details[0].reason.contains("10 items"), "{details:?}");
        assert_eq!(
            parse_items(b"[0,0,0]", BodyFormat::JsonArray, &limits)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn an_item_over_the_size_limit_is_refused_by_index() {
        let limits = limits();
        let big = format!("[{{}}, [{}0]]", "0,".repeat(limits.max_item_bytes() / 2));
        let details = details_of(parse_items(big.as_bytes(), BodyFormat::JsonArray, &limits));
        assert_eq!(details[0].index, Some(1));
        assert_eq!(details[0].field, "item");
    }

    fn details_of<T: std::fmt::Debug>(result: Result<Vec<T>, ValidationError>) -> Vec<ItemError> {
        match result {
            Err(ValidationError::Invalid(details)) => details,
            other => panic!("expected 422 details, got {other:?}"),
        }
    }

    #[test]
    fn items_of_many_values_are_refused_one_at_a_time() {
        let limits = limits();
        // Arrays where messages belong, and a message whose metadata is huge:
        // each is refused by index; none of them is a message.
        let values = "0,".repeat(20_000);
        let body = format!(r#"[[{values}0], {{"metadata": [{values}0]}}, [{values}0]]"#);
        let items = parse_items(body.as_bytes(), BodyFormat::JsonArray, &limits).unwrap();
        let details = details_of(validate_messages(&items, &rules()));
        assert_eq!(details[0].index, Some(0));
        assert_eq!(details[0].reason, "item is not a JSON object");
        assert!(
            details
                .iter()
                .any(|d| d.index == Some(1) && d.field == "metadata")
        );
        assert!(details.iter().any(|d| d.index == Some(2)));
    }
}
