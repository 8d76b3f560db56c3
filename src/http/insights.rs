//! Insights under `/v1/bots/{bot}`: what the bot missed (clusters of
//! unidentified inputs) and the live tail.

use super::error::AppError;
use super::openapi::{Components, array, count, limit_parameter, object, string};
use super::search::{bot_id, filters_request};
use super::views::{MessageView, PlacedMessageView};
use crate::app::App;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use convlog_core::ConversationId;
use convlog_engine::query::Target;
use convlog_engine::query::tail::{TailEvent, Tailed, follow};
use serde_json::{Value, json};
use std::convert::Infallible;

/// Clusters returned when `limit` isn't given, and the most it may ask.
const DEFAULT_CLUSTERS: usize = 50;
const MAX_CLUSTERS: usize = 500;

/// `GET /v1/bots/{bot}/insights/unidentified`: the inputs the bot answered
/// with a fallback in the matching conversations, clustered by similarity.
pub async fn unidentified(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let (request, own) = filters_request(query, Target::Aggregates, app.clock.now(), &["limit"])?;
    let mut limit = DEFAULT_CLUSTERS;
    for (name, value) in own {
        limit = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_CLUSTERS).contains(n))
            .ok_or_else(|| AppError::InvalidParameter {
                name,
                reason: format!("must be a whole number between 1 and {MAX_CLUSTERS}"),
            })?;
    }
    let found = app.insights.unidentified(&bot, request, limit).await?;
    let clusters: Vec<Value> = found
        .clusters
        .iter()
        .map(|cluster| {
            let examples: Vec<Value> = cluster
                .examples
                .iter()
                .map(|input| {
                    json!({
                        "text": input.text,
                        "conversation_id": ConversationId(input.conversation_id).to_string(),
                        "message_id": input.msg_id,
                    })
                })
                .collect();
            json!({
                "label": cluster.label,
                "inputs": cluster.inputs,
                "conversations": cluster.conversations,
                "terms": cluster.terms,
                "examples": examples,
            })
        })
        .collect();
    Ok(Json(json!({
        "total_inputs": found.total_inputs,
        "total_clusters": found.total_clusters,
        "clusters": clusters,
    })))
}

/// The parameters of `…/insights/unidentified` beside the filters.
pub fn unidentified_params() -> Vec<utoipa::openapi::path::Parameter> {
    vec![limit_parameter(
        "How many clusters to return, largest first (default 50).",
        MAX_CLUSTERS,
    )]
}

/// The answer of `…/insights/unidentified`.
pub fn unidentified_schema(_: &mut Components) -> Value {
    let example = object(
        &[
            ("text", string()),
            ("conversation_id", string()),
            ("message_id", string()),
        ],
        &["text", "conversation_id", "message_id"],
    );
    let cluster = object(
        &[
            ("label", string()),
            ("inputs", count()),
            ("conversations", count()),
            ("terms", array(string())),
            (
                "examples",
                json!({ "type": "array", "items": example, "maxItems": 5 }),
            ),
        ],
        &["label", "inputs", "conversations", "terms", "examples"],
    );
    object(
        &[
            ("total_inputs", count()),
            ("total_clusters", count()),
            ("clusters", array(cluster)),
        ],
        &["total_inputs", "total_clusters", "clusters"],
    )
}

/// `GET /v1/bots/{bot}/tail`: matching messages as they are ingested, as
/// Server-Sent Events (`message`, `dropped`), with heartbeats. A reconnecting
/// client's `Last-Event-ID` (a message's store sequence) resumes after it.
pub async fn tail(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let bot = bot_id(&bot)?;
    let (request, _) = filters_request(query, Target::Messages, app.clock.now(), &[])?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| AppError::InvalidParameter {
                    name: "Last-Event-ID".into(),
                    reason: "must be the id of an event this stream sent".into(),
                })?,
        ),
    };
    let events = follow(
        app.search.clone(),
        bot.clone(),
        request,
        resume,
        &app.config.tail,
        render_message,
        app.stopping.subscribe(),
    )
    .await?;
    // Every event waiting goes out in one chunk (one write, not one per
    // message); an idle stream gets a comment line every heartbeat.
    let heartbeat = app.config.tail.heartbeat;
    let stream = futures::stream::unfold(events, move |mut events| async move {
        let first = match tokio::time::timeout(heartbeat, events.recv()).await {
            Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), events)),
            Ok(None) => return None,
            Ok(Some(event)) => event,
        };
        let mut chunk = String::new();
        write_event(&mut chunk, first);
        while chunk.len() < CHUNK_BYTES {
            let Ok(event) = events.try_recv() else { break };
            write_event(&mut chunk, event);
        }
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), events))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Proxies that buffer answers (nginx) pass this one through as it comes.
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Most bytes of events sent in one chunk.
const CHUNK_BYTES: usize = 64 << 10;

/// A message's event, as every tail that sends it writes it (JSON data has
/// no line breaks).
fn render_message(tailed: &Tailed) -> String {
    let record = &tailed.message;
    let data = PlacedMessageView {
        message: MessageView::new(record, None),
        conversation_id: ConversationId(record.conversation_id).to_string(),
        channel: &tailed.channel,
        bot_id: &tailed.bot_id,
    };
    let data = serde_json::to_string(&data).expect("a message serialises");
    format!("event: message\nid: {}\ndata: {data}\n\n", record.seq)
}

/// Appends one Server-Sent Event.
fn write_event(out: &mut String, event: TailEvent) {
    match event {
        TailEvent::Message(tailed) => out.push_str(tailed.rendered(render_message)),
        TailEvent::Dropped(count) => {
            use std::fmt::Write;
            let _ = write!(
                out,
                "event: dropped\ndata: {}\n\n",
                json!({ "dropped": count })
            );
        }
    }
}
