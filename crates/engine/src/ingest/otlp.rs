//! OpenTelemetry traces (OTLP) → convlog messages and debugger trace events.
//!
//! A bot instrumented with the GenAI semantic conventions already says what
//! was asked and answered: its inference spans carry the messages, every other
//! span of the turn (tool calls, retrievals, agent steps) is what the bot did
//! for that input. [`decode`] turns an export request into items of
//! `POST /v1/messages` and `POST /v1/traces`, so they go through the same
//! validation, anonymity, limits and store as those. The mapping is documented
//! in `docs/ingest.md`.

use convlog_core::{Micros, format_timestamp};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};

/// How an export request's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding of a `Content-Type`, if OTLP/HTTP has one for it.
    pub fn of(content_type: &str) -> Option<Encoding> {
        match content_type.split(';').next()?.trim() {
            "application/x-protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// Its `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Parses an export request; the error says why it doesn't decode.
pub fn parse(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => {
            <ExportTraceServiceRequest as prost::Message>::decode(body).map_err(|e| e.to_string())
        }
        // Protobuf's JSON mapping writes every message as an object.
        Encoding::Json => super::json::from_slice(body).map_err(|e| e.to_string()),
    }
}

/// Encodes the answer to an export request: full success, or how many spans
/// were rejected and why.
pub fn answer(encoding: Encoding, rejected: usize, message: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let response = ExportTraceServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: message.to_string(),
        }),
    };
    match encoding {
        Encoding::Protobuf => prost::Message::encode_to_vec(&response),
        // Full success is `{}`: the serialiser would write `"partialSuccess": null`.
        Encoding::Json if response.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&response).expect("a response serialises"),
    }
}

/// `google.rpc.Status` (googleapis' `google/rpc/status.proto`): the body of
/// every OTLP/HTTP error. `details` (field 3) is left out: the spec makes it
/// optional, and `message` names the field and the reason.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The body of an error answered with HTTP `http_status`: a `Status` in the
/// request's encoding, its code the gRPC code of that HTTP status (OTLP
/// clients go by the HTTP status; the code is for their logs).
pub fn error_body(encoding: Encoding, http_status: u16, message: &str) -> Vec<u8> {
    let code = match http_status {
        400 | 413 | 415 | 422 => 3, // INVALID_ARGUMENT
        401 => 16,                  // UNAUTHENTICATED
        403 => 7,                   // PERMISSION_DENIED
        404 => 5,                   // NOT_FOUND
        408 | 504 => 4,             // DEADLINE_EXCEEDED
        409 => 10,                  // ABORTED
        429 => 8,                   // RESOURCE_EXHAUSTED
        502 | 503 => 14,            // UNAVAILABLE
        _ => 13,                    // INTERNAL
    };
    match encoding {
        Encoding::Protobuf => prost::Message::encode_to_vec(&Status {
            code,
            message: message.to_string(),
        }),
        Encoding::Json => serde_json::to_vec(&json!({"code": code, "message": message}))
            .expect("a status serialises"),
    }
}

/// What an export request becomes.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Items of `POST /v1/messages`, each with the span it came from.
    pub messages: Vec<(SpanId, Map<String, Value>)>,
    /// Items of `POST /v1/traces`, each with the span it came from.
    pub traces: Vec<(SpanId, Map<String, Value>)>,
    /// Spans that could not be taken, with why.
    pub rejected: Vec<(SpanId, String)>,
    /// Spans in the request.
    pub spans: usize,
}

/// A span of the request: its trace id and span id, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId {
    pub trace: String,
    pub span: String,
}

/// The inference operations whose spans carry messages.
const INFERENCE: &[&str] = &["chat", "text_completion", "generate_content"];

/// One span with what it inherits from its resource.
struct Flat<'a> {
    id: SpanId,
    span: &'a Span,
    bot: Option<String>,
    resource_channel: Option<String>,
}

/// Turns an export request into message and trace items (see the module doc).
pub fn decode(request: &ExportTraceServiceRequest) -> Decoded {
    let mut decoded = Decoded::default();
    let mut traces: BTreeMap<String, Vec<Flat<'_>>> = BTreeMap::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        let bot = text(resource, "convlog.bot_id").or_else(|| text(resource, "service.name"));
        let resource_channel = text(resource, "convlog.channel");
        for span in resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| &scope.spans)
        {
            decoded.spans += 1;
            let id = SpanId {
                trace: hex(&span.trace_id),
                span: hex(&span.span_id),
            };
            if span.trace_id.len() != 16 || span.span_id.len() != 8 {
                decoded
                    .rejected
                    .push((id, "traceId must be 16 bytes and spanId 8".into()));
                continue;
            }
            traces.entry(id.trace.clone()).or_default().push(Flat {
                id,
                span,
                bot: bot.clone(),
                resource_channel: resource_channel.clone(),
            });
        }
    }
    for (trace_id, mut spans) in traces {
        spans.sort_by_key(|flat| (flat.span.start_time_unix_nano, flat.span.end_time_unix_nano));
        decode_trace(&trace_id, &spans, &mut decoded);
    }
    decoded
}

/// Who a trace's messages belong to: what any of its spans says.
struct Turn {
    user: String,
    conversation: Option<String>,
}

impl Turn {
    fn of(spans: &[Flat<'_>]) -> Result<Turn, String> {
        let first = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| spans.iter().find_map(|f| text(&f.span.attributes, key)))
        };
        let conversation = first(&["gen_ai.conversation.id"]);
        let user = first(&["user.id", "enduser.id"])
            .or_else(|| conversation.clone())
            .ok_or(
                "no end user: set user.id (or enduser.id) or gen_ai.conversation.id on a span of the trace",
            )?;
        Ok(Turn { user, conversation })
    }
}

fn decode_trace(trace_id: &str, spans: &[Flat<'_>], decoded: &mut Decoded) {
    let turn = match Turn::of(spans) {
        Ok(turn) => turn,
        Err(reason) => {
            for flat in spans {
                decoded.rejected.push((flat.id.clone(), reason.to_string()));
            }
            return;
        }
    };
    // The user messages of this trace so far: (time, id), to hang events under.
    let mut inputs: Vec<(Micros, String)> = Vec::new();
    let mut said: HashSet<String> = HashSet::new();
    let mut events = Vec::new();
    for flat in spans {
        let Some(bot) = &flat.bot else {
            decoded.rejected.push((
                flat.id.clone(),
                "no bot: set the resource attribute convlog.bot_id or service.name".into(),
            ));
            continue;
        };
        let span = flat.span;
        let attributes = &span.attributes;
        let channel = text(attributes, "convlog.channel")
            .or_else(|| flat.resource_channel.clone())
            .unwrap_or_else(|| "api".into());
        let base = |role: &str, text: &str, at: Micros| {
            let mut item = Map::new();
            item.insert("bot_id".into(), json!(bot));
            item.insert("user_id".into(), json!(turn.user));
            item.insert("channel".into(), json!(channel));
            item.insert("role".into(), json!(role));
            item.insert("text".into(), json!(text));
            item.insert("timestamp".into(), json!(format_timestamp(at)));
            if let Some(conversation) = &turn.conversation {
                item.insert("session_id".into(), json!(conversation));
            }
            for (key, field) in [
                ("convlog.flow", "flow"),
                ("convlog.step", "step"),
                ("convlog.node_id", "node_id"),
                ("convlog.node_type", "node_type"),
                ("convlog.node_name", "node_name"),
                ("convlog.lang", "lang"),
            ] {
                if let Some(value) = self::text(attributes, key) {
                    item.insert(field.into(), json!(value));
                }
            }
            item
        };
        let operation = text(attributes, "gen_ai.operation.name");
        if !operation.is_some_and(|op| INFERENCE.contains(&op.as_str())) {
            events.push(flat);
            continue;
        }
        let (start, end) = (
            micros(span.start_time_unix_nano),
            micros(span.end_time_unix_nano),
        );
        for (n, text) in user_inputs(span).into_iter().enumerate() {
            // A framework may repeat the turn's input in a later call of it.
            if !said.insert(text.clone()) {
                continue;
            }
            let id = format!("otel-{trace_id}-{}-u{n}", flat.id.span);
            let mut item = base("user", &text, start + n as Micros);
            item.insert("id".into(), json!(id));
            if let Some(intent) = self::text(attributes, "convlog.intent") {
                item.insert("intent".into(), json!(intent));
            }
            if let Some(confidence) = number(attributes, "convlog.confidence") {
                item.insert("confidence".into(), json!(confidence));
            }
            inputs.push((start + n as Micros, id));
            decoded.messages.push((flat.id.clone(), item));
        }
        for (n, text) in bot_outputs(span).into_iter().enumerate() {
            let mut item = base("bot", &text, end + n as Micros);
            item.insert(
                "id".into(),
                json!(format!("otel-{trace_id}-{}-b{n}", flat.id.span)),
            );
            if let Some(unidentified) = boolean(attributes, "convlog.unidentified") {
                item.insert("unidentified".into(), json!(unidentified));
            }
            decoded.messages.push((flat.id.clone(), item));
        }
    }
    for flat in events {
        let Some(bot) = &flat.bot else { continue };
        let span = flat.span;
        let start = micros(span.start_time_unix_nano);
        let channel = text(&span.attributes, "convlog.channel")
            .or_else(|| flat.resource_channel.clone())
            .unwrap_or_else(|| "api".into());
        // Under the latest input at or before it, else the trace's first.
        let input = inputs
            .iter()
            .rev()
            .find(|(at, _)| *at <= start)
            .or(inputs.first())
            .map(|(_, id)| id.clone());
        let status = span.status.as_ref();
        let error = status.is_some_and(|s| s.code == StatusCode::Error as i32);
        let mut detail = Map::new();
        detail.insert("trace_id".into(), json!(flat.id.trace));
        detail.insert("span_id".into(), json!(flat.id.span));
        if !span.parent_span_id.is_empty() {
            detail.insert("parent_span_id".into(), json!(hex(&span.parent_span_id)));
        }
        detail.insert("attributes".into(), attributes_json(&span.attributes));
        if let Some(message) = status.map(|s| &s.message).filter(|m| !m.is_empty()) {
            detail.insert("status".into(), json!(message));
        }
        if !span.events.is_empty() {
            let events: Vec<Value> = span
                .events
                .iter()
                .map(|event| {
                    json!({
                        "name": event.name,
                        "timestamp": format_timestamp(micros(event.time_unix_nano)),
                        "attributes": attributes_json(&event.attributes),
                    })
                })
                .collect();
            detail.insert("events".into(), Value::Array(events));
        }
        let mut item = Map::new();
        item.insert(
            "id".into(),
            json!(format!("otel-{}-{}", flat.id.trace, flat.id.span)),
        );
        item.insert("bot_id".into(), json!(bot));
        item.insert("user_id".into(), json!(turn.user));
        item.insert("channel".into(), json!(channel));
        item.insert("timestamp".into(), json!(format_timestamp(start)));
        if let Some(input) = input {
            item.insert("message_id".into(), json!(input));
        }
        item.insert("action".into(), json!(action(span)));
        item.insert("detail".into(), Value::Object(detail));
        let nanos = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano);
        item.insert("duration_ms".into(), json!(nanos as f64 / 1e6));
        item.insert("level".into(), json!(if error { "error" } else { "info" }));
        decoded.traces.push((flat.id.clone(), item));
    }
}

/// What a span did, for the debugger: a tool call by its tool, else the span's name.
fn action(span: &Span) -> String {
    match text(&span.attributes, "gen_ai.tool.name") {
        Some(tool) if !span.name.contains(&tool) => format!("{} {tool}", span.name),
        _ if span.name.trim().is_empty() => "span".into(),
        _ => span.name.clone(),
    }
}

/// The messages a chat span gives to the model as `(role, text)`: the current
/// conventions' `gen_ai.input.messages`, else the older `gen_ai.user.message`
/// (and `gen_ai.assistant.message`) events, else OpenLLMetry's
/// `gen_ai.prompt.N.role` / `.content` attributes.
fn inputs(span: &Span) -> Vec<(String, String)> {
    if let Some(messages) = structured(&span.attributes, "gen_ai.input.messages") {
        return chat_messages(&messages);
    }
    let from_events: Vec<(String, String)> = span
        .events
        .iter()
        .filter_map(|event| {
            let role = match event.name.as_str() {
                "gen_ai.user.message" => "user",
                "gen_ai.assistant.message" => "assistant",
                "gen_ai.system.message" => "system",
                "gen_ai.tool.message" => "tool",
                _ => return None,
            };
            Some((role.to_string(), content(&event.attributes)?))
        })
        .collect();
    if !from_events.is_empty() {
        return from_events;
    }
    numbered(&span.attributes, "gen_ai.prompt")
}

/// The user messages a chat span adds to its conversation: those after the
/// last assistant message of its input (earlier ones are history, already
/// stored from the call that first had them).
fn user_inputs(span: &Span) -> Vec<String> {
    let inputs = inputs(span);
    let after = inputs
        .iter()
        .rposition(|(role, _)| role == "assistant")
        .map_or(0, |i| i + 1);
    inputs[after..]
        .iter()
        .filter(|(role, text)| role == "user" && !text.trim().is_empty())
        .map(|(_, text)| text.clone())
        .collect()
}

/// What the model answered: `gen_ai.output.messages`, else `gen_ai.choice`
/// events, else `gen_ai.completion.N.*` attributes. Answers without text
/// (a tool call) are left out: the tool's span says what it did.
fn bot_outputs(span: &Span) -> Vec<String> {
    let outputs = if let Some(messages) = structured(&span.attributes, "gen_ai.output.messages") {
        chat_messages(&messages)
    } else {
        let from_events: Vec<(String, String)> = span
            .events
            .iter()
            .filter(|event| event.name == "gen_ai.choice")
            .filter_map(|event| {
                let text = match structured(&event.attributes, "message") {
                    Some(message) => message_text(&message)?,
                    None => content(&event.attributes)?,
                };
                Some(("assistant".to_string(), text))
            })
            .collect();
        if from_events.is_empty() {
            numbered(&span.attributes, "gen_ai.completion")
        } else {
            from_events
        }
    };
    outputs
        .into_iter()
        .filter(|(role, text)| role != "tool" && !text.trim().is_empty())
        .map(|(_, text)| text)
        .collect()
}

/// `[{"role", "parts": [{"type": "text", "content"}]}]` (or `"content"` alone) as (role, text).
fn chat_messages(messages: &Value) -> Vec<(String, String)> {
    let list = match messages {
        Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    };
    list.iter()
        .filter_map(|message| {
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("assistant");
            Some((role.to_string(), message_text(message)?))
        })
        .collect()
}

/// The text of one chat message: its text parts joined, or its `content` string.
fn message_text(message: &Value) -> Option<String> {
    if let Some(parts) = message.get("parts").and_then(Value::as_array) {
        let texts: Vec<&str> = parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str).unwrap_or("text") == "text")
            .filter_map(|part| part.get("content").and_then(Value::as_str))
            .collect();
        return (!texts.is_empty()).then(|| texts.join("\n"));
    }
    match message.get("content")? {
        Value::String(text) => Some(text.clone()),
        // OpenAI-style content parts: [{"type": "text", "text": …}].
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// `prefix.N.role` / `prefix.N.content` attributes, in order of N.
fn numbered(attributes: &[KeyValue], prefix: &str) -> Vec<(String, String)> {
    let mut found: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    for kv in attributes {
        let Some(rest) = kv
            .key
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let value = kv.value.as_ref().and_then(any_text);
        let entry = found.entry(n).or_default();
        match field {
            "role" => entry.0 = value,
            "content" => entry.1 = value,
            _ => {}
        }
    }
    found
        .into_values()
        .filter_map(|(role, content)| Some((role.unwrap_or_else(|| "user".into()), content?)))
        .collect()
}

/// An attribute holding structured data: a JSON string (as most
/// instrumentations record it on spans) or an array / map value.
fn structured(attributes: &[KeyValue], key: &str) -> Option<Value> {
    let value = attribute(attributes, key)?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => serde_json::from_str(text).ok(),
        _ => Some(any_json(value)),
    }
}

/// An event's `content` attribute.
fn content(attributes: &[KeyValue]) -> Option<String> {
    text(attributes, "content")
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// A string attribute (numbers and booleans as written).
fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attribute(attributes, key).and_then(any_text)
}

fn any_text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        any_value::Value::DoubleValue(x) => Some(x.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
    .filter(|text| !text.trim().is_empty())
}

fn number(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attribute(attributes, key)?.value.as_ref()? {
        any_value::Value::DoubleValue(x) => Some(*x),
        any_value::Value::IntValue(n) => Some(*n as f64),
        any_value::Value::StringValue(text) => text.parse().ok(),
        _ => None,
    }
}

fn boolean(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attribute(attributes, key)?.value.as_ref()? {
        any_value::Value::BoolValue(b) => Some(*b),
        any_value::Value::StringValue(text) => text.parse().ok(),
        _ => None,
    }
}

/// Attributes as one JSON object.
fn attributes_json(attributes: &[KeyValue]) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().map_or(Value::Null, any_json);
                (kv.key.clone(), value)
            })
            .collect(),
    )
}

fn any_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(text)) => json!(text),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(n)) => json!(n),
        Some(any_value::Value::DoubleValue(x)) => json!(x),
        Some(any_value::Value::ArrayValue(list)) => {
            Value::Array(list.values.iter().map(any_json).collect())
        }
        Some(any_value::Value::KvlistValue(map)) => attributes_json(&map.values),
        Some(any_value::Value::BytesValue(bytes)) => json!(hex(bytes)),
        // An index into a dictionary this request doesn't carry (profiles only).
        Some(_) => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn micros(nanos: u64) -> Micros {
    (nanos / 1_000) as Micros
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, span::Event};

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn span(span: u8, name: &str, start_s: u64, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![span; 8],
            name: name.into(),
            start_time_unix_nano: start_s * 1_000_000_000,
            end_time_unix_nano: (start_s + 1) * 1_000_000_000,
            attributes,
            ..Span::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "shop-bot")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    fn texts(decoded: &Decoded) -> Vec<(String, String)> {
        decoded
            .messages
            .iter()
            .map(|(_, m)| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn current_conventions_store_the_new_user_input_and_the_answer_once() {
        let history = r#"[{"role":"system","parts":[{"type":"text","content":"be nice"}]},
            {"role":"user","parts":[{"type":"text","content":"hi"}]},
            {"role":"assistant","parts":[{"type":"text","content":"hello"}]},
            {"role":"user","parts":[{"type":"text","content":"where is my order?"}]}]"#;
        let decoded = decode(&request(vec![
            span(
                2,
                "chat gpt",
                10,
                vec![
                    kv("gen_ai.operation.name", "chat"),
                    kv("gen_ai.conversation.id", "conv-1"),
                    kv("user.id", "alice"),
                    kv("gen_ai.input.messages", history),
                    kv(
                        "gen_ai.output.messages",
                        r#"[{"role":"assistant","parts":[{"type":"tool_call","name":"lookup"}]}]"#,
                    ),
                ],
            ),
            span(
                3,
                "execute_tool lookup",
                11,
                vec![kv("gen_ai.tool.name", "lookup")],
            ),
            span(
                4,
                "chat gpt",
                12,
                vec![
                    kv("gen_ai.operation.name", "chat"),
                    kv(
                        "gen_ai.input.messages",
                        r#"[{"role":"user","parts":[{"type":"text","content":"where is my order?"}]},
                            {"role":"tool","parts":[{"type":"tool_call_response","response":"shipped"}]}]"#,
                    ),
                    kv(
                        "gen_ai.output.messages",
                        r#"[{"role":"assistant","parts":[{"type":"text","content":"It shipped."}]}]"#,
                    ),
                ],
            ),
        ]));
        assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
        assert_eq!(
            texts(&decoded),
            [
                ("user".into(), "where is my order?".into()),
                ("bot".into(), "It shipped.".into())
            ]
        );
        let user = &decoded.messages[0].1;
        assert_eq!(user["user_id"], "alice");
        assert_eq!(user["session_id"], "conv-1");
        assert_eq!(user["bot_id"], "shop-bot");
        assert_eq!(user["channel"], "api");
        assert_eq!(decoded.traces.len(), 1);
        let tool = &decoded.traces[0].1;
        assert_eq!(tool["action"], "execute_tool lookup");
        assert_eq!(tool["message_id"], user["id"]);
        assert_eq!(tool["duration_ms"], 1000.0);
    }

    #[test]
    fn older_conventions_events_and_numbered_attributes() {
        let mut with_events = span(
            2,
            "chat",
            10,
            vec![kv("gen_ai.operation.name", "chat"), kv("enduser.id", "bob")],
        );
        with_events.events = vec![
            Event {
                name: "gen_ai.user.message".into(),
                attributes: vec![kv("content", "refund please")],
                ..Event::default()
            },
            Event {
                name: "gen_ai.choice".into(),
                attributes: vec![kv("message", r#"{"role":"assistant","content":"Done."}"#)],
                ..Event::default()
            },
        ];
        let numbered = span(
            3,
            "openai.chat",
            20,
            vec![
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.prompt.0.role", "user"),
                kv("gen_ai.prompt.0.content", "and cancel"),
                kv("gen_ai.completion.0.role", "assistant"),
                kv("gen_ai.completion.0.content", "Cancelled."),
            ],
        );
        let decoded = decode(&request(vec![with_events, numbered]));
        assert_eq!(
            texts(&decoded),
            [
                ("user".into(), "refund please".into()),
                ("bot".into(), "Done.".into()),
                ("user".into(), "and cancel".into()),
                ("bot".into(), "Cancelled.".into())
            ]
        );
    }

    #[test]
    fn spans_without_a_user_or_a_bot_are_rejected_with_the_reason() {
        let no_user = decode(&request(vec![span(
            2,
            "chat",
            1,
            vec![kv("gen_ai.operation.name", "chat")],
        )]));
        assert_eq!(no_user.rejected.len(), 1);
        assert!(no_user.rejected[0].1.contains("user.id"));
        let mut no_bot = request(vec![span(2, "step", 1, vec![kv("user.id", "u")])]);
        no_bot.resource_spans[0].resource = None;
        let decoded = decode(&no_bot);
        assert!(
            decoded.rejected[0].1.contains("service.name"),
            "{decoded:?}"
        );
    }

    #[test]
    fn structured_attributes_may_be_arrays_instead_of_json_text() {
        let message = AnyValue {
            value: Some(any_value::Value::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![kv("role", "user"), kv("content", "hola")],
                },
            )),
        };
        let attributes = vec![
            kv("gen_ai.operation.name", "chat"),
            kv("user.id", "u"),
            KeyValue {
                key: "gen_ai.input.messages".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![message],
                    })),
                }),
                ..KeyValue::default()
            },
        ];
        let decoded = decode(&request(vec![span(2, "chat", 1, attributes)]));
        assert_eq!(texts(&decoded), [("user".into(), "hola".into())]);
    }

    #[test]
    fn otlp_json_is_an_object() {
        assert!(parse(b"[]", Encoding::Json).is_err());
        assert!(parse(b" {}", Encoding::Json).is_ok());
        assert!(parse(b"\x0a\x00", Encoding::Protobuf).is_ok());
    }

    #[test]
    fn answers_encode_partial_success() {
        let body = answer(Encoding::Json, 2, "no bot");
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["partialSuccess"]["rejectedSpans"], 2);
        assert_eq!(answer(Encoding::Json, 0, ""), b"{}");
        assert!(answer(Encoding::Protobuf, 0, "").is_empty());
    }
}
