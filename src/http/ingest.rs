//! `POST /v1/messages` and `POST /v1/traces`.

use super::error::AppError;
use super::guard::Caller;
use super::openapi::{Components, closed, count, nullable, object, reference, timestamp};
use crate::app::App;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use convlog_engine::config::IngestConfig;
use convlog_engine::ingest::pseudonym::UserKeyer;
use convlog_engine::ingest::validate::{
    BodyFormat, ItemError, ValidationError, parse_items, validate_messages, validate_traces,
};
use serde_json::{Value, json};
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
type Validate<T> = fn(&[&str], &IngestConfig, &UserKeyer) -> Result<Vec<T>, ValidationError>;

/// Splits, parses and validates a body off the async workers (a full body
/// takes milliseconds): `validate` gets the items' raw JSON texts.
async fn validate_body<T: Send + 'static>(
    app: &App,
    body: Bytes,
    format: BodyFormat,
    validate: Validate<T>,
) -> Result<Vec<T>, AppError> {
    let (limits, keyer) = (app.config.ingest.clone(), app.keyer.clone());
    tokio::task::spawn_blocking(move || {
        let items = parse_items(&body, format, &limits)?;
        validate(&items, &limits, &keyer)
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
    let outcome = app.ingest(messages).await?;
    app.metrics
        .ingested_messages
        .fetch_add(outcome.accepted as u64, Ordering::Relaxed);
    app.metrics
        .duplicate_messages
        .fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
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
    let (stored, dropped) = app.store_traces(traces).await?;
    app.metrics
        .traces_stored
        .fetch_add(stored as u64, Ordering::Relaxed);
    app.metrics
        .traces_dropped
        .fetch_add(dropped as u64, Ordering::Relaxed);
    Ok(Json(json!({"accepted": stored, "dropped": dropped})))
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
