//! `POST /v1/messages` and `POST /v1/traces`, and the adapters that take what
//! bots already emit: `POST /otlp/v1/traces` (OpenTelemetry) and
//! `POST /v1/ingest/rasa` (Rasa tracker events).

use super::error::AppError;
use super::guard::Caller;
use super::openapi::{
    Components, closed, count, nullable, object, of_type, query_parameter, reference, timestamp,
};
use crate::app::App;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convlog_core::{NewMessage, NewTrace};
use convlog_engine::config::KeepTraces;
use convlog_engine::ingest::validate::{
    BodyFormat, IngestRules, ItemError, ValidationError, parse_items, validate_built,
    validate_message, validate_messages, validate_trace, validate_traces,
};
use convlog_engine::ingest::{otlp, rasa};
use convlog_engine::store::{IngestOutcome, read};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn body_or_413(app: &App, body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge {
                limit: app.config.server.max_body,
            }
        } else {
            AppError::InvalidParameter {
                name: "body".into(),
                reason: rejection.body_text(),
            }
        }
    })
}

fn format(headers: &HeaderMap) -> BodyFormat {
    BodyFormat::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    )
}

/// A validation of raw JSON items: messages or trace events.
type Validate<T> = fn(&[&str], &IngestRules) -> Result<Vec<T>, ValidationError>;

/// Splits, parses and validates a body off the async workers (a full body
/// takes milliseconds): `validate` gets the items' raw JSON texts.
async fn validate_body<T: Send + 'static>(
    app: &App,
    body: Bytes,
    format: BodyFormat,
    validate: Validate<T>,
) -> Result<Vec<T>, AppError> {
    let rules = app.rules.clone();
    tokio::task::spawn_blocking(move || {
        let items = parse_items(&body, format, &rules.limits)?;
        validate(&items, &rules)
    })
    .await
    .map_err(|err| AppError::InvalidParameter {
        name: "body".into(),
        reason: err.to_string(),
    })?
    .map_err(AppError::from)
}

/// Refuses items for bots outside the caller's key (nothing of the batch is stored).
fn check_scope<'a>(caller: &Caller, bots: impl Iterator<Item = &'a str>) -> Result<(), AppError> {
    let details: Vec<ItemError> = bots
        .enumerate()
        .filter(|(_, bot)| !caller.scope.includes(bot))
        .map(|(index, bot)| ItemError {
            index: Some(index),
            field: "bot_id".into(),
            reason: format!("this API key may not write to bot {bot:?}"),
        })
        .take(100)
        .collect();
    if details.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::Invalid(details).into())
    }
}

/// Stores a batch of messages durably, then answers.
pub async fn messages(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let started = Instant::now();
    let body = body_or_413(&app, body)?;
    let messages = validate_body(&app, body, format(&headers), validate_messages)
        .await
        .and_then(|messages| {
            check_scope(&caller, messages.iter().map(|m| m.bot_id.as_str()))?;
            Ok(messages)
        });
    let messages = match messages {
        Ok(messages) => messages,
        Err(err) => {
            app.metrics.rejected_batches.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
    };
    let outcome = store_messages(&app, messages).await?;
    app.metrics.ingest_batch.observe(started.elapsed());
    Ok(Json(
        json!({"accepted": outcome.accepted, "duplicates": outcome.duplicates}),
    ))
}

/// Stores the trace events of conversations with debug logging on (or all, when configured).
pub async fn traces(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body_or_413(&app, body)?;
    let traces = validate_body(&app, body, format(&headers), validate_traces).await?;
    check_scope(&caller, traces.iter().map(|t| t.bot_id.as_str()))?;
    let (stored, dropped) = store_traces(&app, traces, false).await?;
    Ok(Json(json!({"accepted": stored, "dropped": dropped})))
}

/// Stores messages as `POST /v1/messages` does, counting them.
async fn store_messages(app: &App, messages: Vec<NewMessage>) -> Result<IngestOutcome, AppError> {
    if messages.is_empty() {
        return Ok(IngestOutcome::default());
    }
    // In a cluster a node stores only the bots it owns; the others' go to their node.
    if let Some(cluster) = &app.config.cluster
        && let Some(message) = messages
            .iter()
            .find(|m| cluster.owner(&m.bot_id).name != cluster.node)
    {
        return Err(AppError::NotOwner {
            bot: message.bot_id.clone(),
            node: cluster.owner(&message.bot_id).name.clone(),
        });
    }
    let outcome = app.ingest(messages).await?;
    app.metrics
        .ingested_messages
        .fetch_add(outcome.accepted as u64, Ordering::Relaxed);
    app.metrics
        .duplicate_messages
        .fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
    Ok(outcome)
}

/// Stores trace events as `POST /v1/traces` does, counting them; (stored, dropped).
async fn store_traces(
    app: &App,
    traces: Vec<NewTrace>,
    keep_all: bool,
) -> Result<(usize, usize), AppError> {
    if traces.is_empty() {
        return Ok((0, 0));
    }
    let (stored, dropped) = app.store_traces(traces, keep_all).await?;
    app.metrics
        .traces_stored
        .fetch_add(stored as u64, Ordering::Relaxed);
    app.metrics
        .traces_dropped
        .fetch_add(dropped as u64, Ordering::Relaxed);
    Ok((stored, dropped))
}

/// A body as sent, or inflated when it came gzip-compressed (at most
/// `server.max_body` once inflated: 413 past it).
fn inflate(app: &App, headers: &HeaderMap, body: Bytes) -> Result<Bytes, AppError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(body),
        Some("gzip") => {
            use std::io::Read;
            let limit = app.config.server.max_body;
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|err| AppError::InvalidParameter {
                    name: "body".into(),
                    reason: format!("is not valid gzip: {err}"),
                })?;
            if inflated.len() > limit {
                return Err(AppError::PayloadTooLarge { limit });
            }
            Ok(inflated.into())
        }
        Some(other) => Err(AppError::UnsupportedMediaType {
            given: format!(
                "Content-Encoding: {}",
                other.chars().take(50).collect::<String>()
            ),
            accepted: "gzip or identity",
        }),
    }
}

/// `POST /otlp/v1/traces`: OpenTelemetry traces over OTLP/HTTP (protobuf or
/// JSON, gzip or not). Answers as OTLP says: 200 with the spans that were
/// rejected and why (partial success), 400 for a body that doesn't decode.
pub async fn otlp_traces(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(otlp::Encoding::of)
        .unwrap_or(otlp::Encoding::Json);
    let body = inflate(&app, &headers, body_or_413(&app, body)?)?;
    let rules = app.rules.clone();
    let decoded = tokio::task::spawn_blocking(move || -> Result<_, AppError> {
        let request =
            otlp::parse(&body, encoding).map_err(|reason| AppError::InvalidParameter {
                name: "body".into(),
                reason: format!("is not an OTLP ExportTraceServiceRequest: {reason}"),
            })?;
        Ok(otlp_items(otlp::decode(&request), &rules, &caller))
    })
    .await
    .map_err(|err| AppError::InvalidParameter {
        name: "body".into(),
        reason: err.to_string(),
    })??;
    if decoded.messages.len() > app.config.ingest.max_batch_messages {
        return Err(AppError::InvalidParameter {
            name: "body".into(),
            reason: format!(
                "holds {} messages; at most {} (ingest.max_batch_messages) are accepted at once",
                decoded.messages.len(),
                app.config.ingest.max_batch_messages
            ),
        });
    }
    store_messages(&app, decoded.messages).await?;
    let keep_all = app.config.ingest.otlp_keep_traces == KeepTraces::Always;
    store_traces(&app, decoded.traces, keep_all).await?;
    app.metrics.ingest_batch.observe(started.elapsed());
    let answer = otlp::answer(encoding, decoded.rejected.len(), &decoded.reason);
    Ok(([(header::CONTENT_TYPE, encoding.media_type())], answer).into_response())
}

/// How errors of `request` are to be encoded when its route takes OTLP
/// (OTLP/HTTP answers every failure with a `google.rpc.Status`): JSON for a
/// JSON request, protobuf for any other. `None` for other routes.
pub fn otlp_errors(request: &axum::extract::Request) -> Option<otlp::Encoding> {
    let path = request.extensions().get::<axum::extract::MatchedPath>()?;
    let spec = super::routes::spec(request.method(), path.as_str())?;
    (spec.accepts == super::routes::Accepts::ProtobufOrJson).then(|| {
        request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(otlp::Encoding::of)
            .unwrap_or(otlp::Encoding::Protobuf)
    })
}

/// An error answer of an OTLP route re-encoded as a `google.rpc.Status`
/// carrying the error's message (its status and headers, such as
/// `Retry-After`, kept); any other answer as it is.
pub async fn otlp_error(response: Response, encoding: otlp::Encoding) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|error| {
            let error = &error["error"];
            Some(format!(
                "{}: {}",
                error["code"].as_str()?,
                error["message"].as_str()?
            ))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(encoding.media_type()),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = otlp::error_body(encoding, status.as_u16(), &message);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// What an export request stores: the messages and events of the spans that
/// passed validation and the caller's scope, and the spans that did not.
struct OtlpItems {
    messages: Vec<NewMessage>,
    traces: Vec<NewTrace>,
    rejected: BTreeMap<otlp::SpanId, String>,
    /// The first reasons, for the answer's `error_message`.
    reason: String,
}

fn otlp_items(decoded: otlp::Decoded, rules: &IngestRules, caller: &Caller) -> OtlpItems {
    let mut rejected: BTreeMap<otlp::SpanId, String> = decoded.rejected.into_iter().collect();
    let messages = take_valid(&decoded.messages, &mut rejected, caller, |i, item| {
        validate_message(i, item, rules).map(|m| (m.bot_id.clone(), m))
    });
    let traces = take_valid(&decoded.traces, &mut rejected, caller, |i, item| {
        validate_trace(i, item, rules).map(|t| (t.bot_id.clone(), t))
    });
    // A span is taken whole or not at all.
    let (messages, traces) = (whole(messages, &rejected), whole(traces, &rejected));
    let reason = rejected
        .iter()
        .take(3)
        .map(|(span, reason)| format!("span {} of trace {}: {reason}", span.span, span.trace))
        .collect::<Vec<_>>()
        .join("; ");
    OtlpItems {
        messages,
        traces,
        rejected,
        reason,
    }
}

/// The items that pass `validate` and the caller's scope, each with its span;
/// the spans of the others go to `rejected` with why.
fn take_valid<T>(
    items: &[(otlp::SpanId, serde_json::Map<String, Value>)],
    rejected: &mut BTreeMap<otlp::SpanId, String>,
    caller: &Caller,
    validate: impl Fn(usize, &serde_json::Map<String, Value>) -> Result<(String, T), Vec<ItemError>>,
) -> Vec<(otlp::SpanId, T)> {
    let mut taken = Vec::new();
    for (index, (span, item)) in items.iter().enumerate() {
        let reason = match validate(index, item) {
            Ok((bot, _)) if !caller.scope.includes(&bot) => {
                format!("`bot_id` this API key may not write to bot {bot:?}")
            }
            Ok((_, value)) => {
                taken.push((span.clone(), value));
                continue;
            }
            Err(errors) => errors
                .iter()
                .map(|e| format!("`{}` {}", e.field, e.reason))
                .collect::<Vec<_>>()
                .join("; "),
        };
        rejected.entry(span.clone()).or_insert(reason);
    }
    taken
}

/// What `taken` holds of the spans not `rejected`.
fn whole<T>(taken: Vec<(otlp::SpanId, T)>, rejected: &BTreeMap<otlp::SpanId, String>) -> Vec<T> {
    taken
        .into_iter()
        .filter(|(span, _)| !rejected.contains_key(span))
        .map(|(_, value)| value)
        .collect()
}

/// `?bot=` of `POST /v1/ingest/rasa`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RasaQuery {
    bot: Option<String>,
}

/// `POST /v1/ingest/rasa?bot=B`: Rasa tracker events (one, an array, a
/// tracker, or NDJSON), stored as `POST /v1/messages` and `POST /v1/traces`
/// store theirs: all or nothing, 422 naming the event and field.
pub async fn rasa(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let started = Instant::now();
    let query: RasaQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|err| {
            AppError::InvalidParameter {
                name: "query string".into(),
                reason: err.to_string(),
            }
        })?;
    let bot = match query.bot {
        Some(bot) if convlog_core::is_identifier(&bot) => bot,
        Some(_) => {
            return Err(AppError::InvalidParameter {
                name: "bot".into(),
                reason: "must be 1–64 letters, digits, '.', '_' or '-'".into(),
            });
        }
        None => {
            return Err(AppError::InvalidParameter {
                name: "bot".into(),
                reason: "is required: the bot the events belong to".into(),
            });
        }
    };
    check_scope(&caller, std::iter::once(bot.as_str()))?;
    let body = inflate(&app, &headers, body_or_413(&app, body)?)?;
    let rules = app.rules.clone();
    let bot_id = bot.clone();
    // Decoded beside the store: a sender's events continue what earlier
    // requests stored of it (its session, channel and last input).
    let decoded = app
        .store
        .read_async(move |conn| {
            let events = match rasa::events(&body) {
                Ok(events) => events,
                Err(reason) => return Ok(Err(ValidationError::Malformed(reason))),
            };
            let senders = read::StoredSenders::new(conn, &bot, &rules.keyer);
            let decoded = rasa::decode(&bot, &events, &senders);
            senders.finish()?;
            Ok(validated_rasa(decoded, &rules))
        })
        .await?;
    let items = match decoded {
        Ok(items) => items,
        Err(err) => {
            app.metrics.rejected_batches.fetch_add(1, Ordering::Relaxed);
            return Err(err.into());
        }
    };
    if !items.sessions.is_empty() {
        let sessions = items.sessions;
        app.store
            .write(move |ctx| ctx.record_session_starts(&bot_id, &sessions))
            .await?;
    }
    let outcome = store_messages(&app, items.messages).await?;
    let (stored, dropped) = store_traces(&app, items.traces, false).await?;
    app.metrics.ingest_batch.observe(started.elapsed());
    Ok(Json(json!({
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "traces": {"accepted": stored, "dropped": dropped},
        "skipped": items.skipped,
    })))
}

/// What a body of Rasa events stores, validated like the items of
/// `POST /v1/messages` and `POST /v1/traces`.
struct RasaItems {
    messages: Vec<NewMessage>,
    traces: Vec<NewTrace>,
    /// The sessions `session_started` opened.
    sessions: Vec<rasa::SessionStart>,
    /// Events that are neither (counted in the answer).
    skipped: usize,
}

fn validated_rasa(
    decoded: Result<rasa::Decoded, Vec<rasa::EventError>>,
    rules: &IngestRules,
) -> Result<RasaItems, ValidationError> {
    let decoded = decoded.map_err(|errors| {
        ValidationError::Invalid(
            errors
                .into_iter()
                .map(|e| ItemError {
                    index: Some(e.index),
                    field: e.field.into(),
                    reason: e.reason,
                })
                .collect(),
        )
    })?;
    Ok(RasaItems {
        messages: validate_built(&decoded.messages, &rules.limits, |index, item| {
            validate_message(index, item, rules)
        })?,
        traces: validate_built(&decoded.traces, &rules.limits, |index, item| {
            validate_trace(index, item, rules)
        })?,
        sessions: decoded.sessions,
        skipped: decoded.skipped,
    })
}

/// A string that is not blank, of at most `max` characters.
fn non_blank(max: u64) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S" })
}

fn identifier() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" })
}

/// A batch: an array of items (NDJSON: one per line).
fn batch(item: Value) -> Value {
    json!({ "type": "array", "items": item, "maxItems": 10000 })
}

/// An object whose optional properties may also be `null` (the same as left out).
fn item(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Vec<(&str, Value)> = properties
        .iter()
        .map(|(name, schema)| match required.contains(name) {
            true => (*name, schema.clone()),
            false => (*name, nullable(schema.clone())),
        })
        .collect();
    closed(object(&properties, required))
}

/// The body of `POST /v1/messages`: an array of messages (or NDJSON).
pub fn message_body(components: &mut Components) -> Value {
    components.named("NewMessage", |_| {
        let short = non_blank(256);
        item(
            &[
                ("id", non_blank(128)),
                ("bot_id", identifier()),
                ("user_id", non_blank(256)),
                ("channel", identifier()),
                (
                    "role",
                    json!({ "enum": ["user", "bot", "agent", "system"] }),
                ),
                (
                    "text",
                    json!({ "type": "string", "description": "At most `ingest.max_text` bytes." }),
                ),
                ("timestamp", timestamp()),
                ("session_id", non_blank(128)),
                ("flow", short.clone()),
                ("step", short.clone()),
                ("node_id", short.clone()),
                ("node_type", short.clone()),
                ("node_name", short.clone()),
                ("intent", short),
                (
                    "confidence",
                    json!({ "type": "number", "minimum": 0, "maximum": 1 }),
                ),
                ("unidentified", json!({ "type": "boolean" })),
                ("flow_completed", json!({ "type": "boolean" })),
                ("metadata", json!({ "type": "object" })),
                (
                    "lang",
                    json!({
                        "type": "string",
                        "maxLength": 35,
                        "pattern": "^[A-Za-z]{2,3}([-_].*)?$",
                        "description": "The language of `text` (BCP 47, e.g. `en`, `pt-BR`); its words are stemmed in it. Without it, `search.detect_language` decides."
                    }),
                ),
            ],
            &["bot_id", "user_id", "channel", "role", "text", "timestamp"],
        )
    });
    batch(reference("NewMessage"))
}

/// The body of `POST /v1/traces`: an array of events (or NDJSON).
pub fn trace_body(components: &mut Components) -> Value {
    components.named("NewTrace", |_| {
        item(
            &[
                ("bot_id", identifier()),
                ("user_id", non_blank(256)),
                ("channel", identifier()),
                ("timestamp", timestamp()),
                ("message_id", non_blank(128)),
                ("action", non_blank(256)),
                ("detail", json!({ "type": "object" })),
                ("duration_ms", json!({ "type": "number", "minimum": 0 })),
                (
                    "level",
                    json!({ "enum": ["debug", "info", "warn", "error"] }),
                ),
            ],
            &["bot_id", "user_id", "channel", "timestamp", "action"],
        )
    });
    batch(reference("NewTrace"))
}

/// The answer of `POST /v1/messages`.
pub fn accepted(_: &mut Components) -> Value {
    object(
        &[("accepted", count()), ("duplicates", count())],
        &["accepted", "duplicates"],
    )
}

/// The answer of `POST /v1/traces`.
pub fn accepted_traces(_: &mut Components) -> Value {
    object(
        &[("accepted", count()), ("dropped", count())],
        &["accepted", "dropped"],
    )
}

/// The body of `POST /otlp/v1/traces` in OTLP JSON (protobuf is the same message).
pub fn otlp_body(_: &mut Components) -> Value {
    json!({
        "type": "object",
        "description": "An OTLP ExportTraceServiceRequest (opentelemetry-proto), \
            as protobuf (application/x-protobuf) or OTLP JSON (application/json), \
            optionally with Content-Encoding: gzip. The mapping is in docs/ingest.md.",
        "properties": { "resourceSpans": { "type": "array", "items": { "type": "object" } } },
    })
}

/// The answer of `POST /otlp/v1/traces` in OTLP JSON: `{}`, or the spans not taken and why.
pub fn otlp_answer(_: &mut Components) -> Value {
    object(
        &[(
            "partialSuccess",
            object(
                &[
                    ("rejectedSpans", json!({ "type": "integer", "minimum": 0 })),
                    ("errorMessage", json!({ "type": "string" })),
                ],
                &[],
            ),
        )],
        &[],
    )
}

/// The body of `POST /v1/ingest/rasa`.
pub fn rasa_body(_: &mut Components) -> Value {
    json!({
        "description": "Rasa tracker events: one event, an array of events, a tracker \
            ({\"sender_id\", \"events\": [...]}), or NDJSON of these. The mapping is in docs/ingest.md.",
        "oneOf": [
            { "type": "object" },
            { "type": "array", "items": { "type": "object" } },
        ],
    })
}

/// The query of `POST /v1/ingest/rasa`.
pub fn rasa_params() -> Vec<utoipa::openapi::path::Parameter> {
    let mut bot = query_parameter(
        "bot",
        "The bot the events belong to (Rasa events don't say).",
        of_type(utoipa::openapi::schema::Type::String),
    );
    bot.required = utoipa::openapi::Required::True;
    vec![bot]
}

/// The answer of `POST /v1/ingest/rasa`.
pub fn accepted_rasa(components: &mut Components) -> Value {
    object(
        &[
            ("accepted", count()),
            ("duplicates", count()),
            ("traces", accepted_traces(components)),
            ("skipped", count()),
        ],
        &["accepted", "duplicates", "traces", "skipped"],
    )
}
