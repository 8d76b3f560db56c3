//! Review actions under `/v1/bots/{bot}/conversations/{id}`, shares and bulk actions.

use super::error::AppError;
use super::openapi::{Components, array, closed, count, nullable, object, string, timestamp};
use super::search::{bot_id, request};
use super::views::{ConversationView, MessageView};
use crate::app::App;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use convlog_core::{ConversationId, format_timestamp};
use convlog_engine::ingest::json;
use convlog_engine::query::Target;
use convlog_engine::review::{BulkState, BulkTarget};
use convlog_engine::store::ConversationRecord;
use convlog_engine::store::bulk::{BulkAction, BulkChange};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn ids(bot: &str, id: &str) -> Result<(String, u64), AppError> {
    let bot = bot_id(bot)?;
    let id = ConversationId::parse(id).ok_or(AppError::NotFound("conversation"))?;
    Ok((bot, id.0))
}

fn answer(record: &ConversationRecord) -> Json<Value> {
    Json(serde_json::to_value(ConversationView::new(record)).expect("view serialises"))
}

/// An optional JSON body: empty means the default.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(json::from_slice(body)?)
}

/// `PUT …/labels/{label}`.
pub async fn add_label(
    State(app): State<App>,
    Path((bot, id, label)): Path<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    Ok(answer(&app.review.add_label(&bot, id, &label).await?))
}

/// `DELETE …/labels/{label}`.
pub async fn remove_label(
    State(app): State<App>,
    Path((bot, id, label)): Path<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    Ok(answer(&app.review.remove_label(&bot, id, &label).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagBody {
    note: Option<String>,
}

/// `PUT …/flag`, optionally with `{"note": "…"}`.
pub async fn flag(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    let body: FlagBody = optional_body(&body)?;
    Ok(answer(
        &app.review.set_flag(&bot, id, true, body.note).await?,
    ))
}

/// `DELETE …/flag`.
pub async fn unflag(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    Ok(answer(&app.review.set_flag(&bot, id, false, None).await?))
}

/// `PUT …/debug`.
pub async fn debug_on(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    Ok(answer(&app.review.set_debug(&bot, id, true).await?))
}

/// `DELETE …/debug`.
pub async fn debug_off(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    Ok(answer(&app.review.set_debug(&bot, id, false).await?))
}

/// `GET /v1/bots/{bot}/debug`: what a bot runtime polls to know whom to trace.
pub async fn debug_list(
    State(app): State<App>,
    Path(bot): Path<String>,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let records = app.review.debug_list(&bot).await?;
    Ok(Json(json!({
        "conversations": records.iter().map(ConversationView::new).collect::<Vec<_>>()
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    message_id: Option<String>,
}

/// `GET …/trace[?message_id=]`.
pub async fn trace(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    let query: TraceQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|err| {
            AppError::InvalidParameter {
                name: "query string".into(),
                reason: err.to_string(),
            }
        })?;
    let (record, groups) = app.review.trace(&bot, id, query.message_id).await?;
    let inputs: Vec<Value> = groups
        .iter()
        .map(|group| {
            json!({
                "message": group.input.as_ref().map(|m| MessageView::new(m, None)),
                "total_duration_ms": group.total_duration_ms(),
                "events": group.events.iter().map(|e| json!({
                    "timestamp": format_timestamp(e.timestamp),
                    "message_id": e.message_id,
                    "action": e.action,
                    "detail": e.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
                    "duration_ms": e.duration_ms,
                    "level": e.level,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "conversation_id": ConversationId(record.id).to_string(),
        "debug": record.debug,
        "inputs": inputs,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    ttl: Option<String>,
    /// What of the review the link shows besides the transcript.
    #[serde(default)]
    include: Vec<String>,
}

/// `POST …/share`, optionally with `{"ttl": "7d", "include": ["labels", …]}`.
pub async fn share(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let (bot, id) = ids(&bot, &id)?;
    let body: ShareBody = optional_body(&body)?;
    let share = app
        .review
        .create_share(&bot, id, body.ttl.as_deref(), &body.include)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "url": format!("/shared/{}", share.token),
            "api_url": format!("/v1/shared/{}", share.token),
            "token": share.token,
            "expires_at": format_timestamp(share.expires_at),
        })),
    ))
}

/// `GET /v1/shared/{token}`: one conversation, read-only: the transcript, the
/// pseudonym, channel, times and tags, and of the review only what the link
/// was created to reveal.
pub async fn shared(
    State(app): State<App>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let shared = app.review.open_share(&token).await?;
    Ok(private(Json(super::views::shared_view(&shared))))
}

/// Headers that keep a shared conversation out of caches and referrers.
fn private<T: IntoResponse>(response: T) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        response,
    )
}

/// `DELETE /v1/bots/{bot}/shares/{token}`.
pub async fn revoke_share(
    State(app): State<App>,
    Path((bot, token)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let bot = bot_id(&bot)?;
    app.review.revoke_share(&bot, &token).await?;
    Ok(private(Json(json!({"revoked": true}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    #[serde(default)]
    add_labels: Vec<String>,
    #[serde(default)]
    remove_labels: Vec<String>,
    flag: Option<bool>,
    #[serde(default)]
    dry_run: bool,
    conversation_ids: Option<Vec<String>>,
}

/// Most conversations a bulk action may name one by one (more: use the filters).
const MAX_BULK_IDS: usize = 5000;

/// `POST /v1/bots/{bot}/conversations/bulk?<filters>`.
pub async fn bulk(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let body: BulkBody = json::from_slice(&body)?;
    let target = match body.conversation_ids {
        None => BulkTarget::Matching(request(query, Target::Aggregates, app.clock.now())?),
        Some(ids) => BulkTarget::Ids(listed_ids(query, &ids)?),
    };
    let change = BulkChange {
        add_labels: body.add_labels,
        remove_labels: body.remove_labels,
        flag: body.flag,
    };
    let outcome = app.review.bulk(&bot, target, change, body.dry_run).await?;
    Ok(Json(json!({
        "matched": outcome.matched,
        "changed": outcome.changed,
        "dry_run": outcome.dry_run,
        "action_id": outcome.action,
    })))
}

/// The conversations a bulk action names one by one; the filters then have no say.
fn listed_ids(query: Option<String>, ids: &[String]) -> Result<Vec<u64>, AppError> {
    let invalid = |reason: String| AppError::InvalidParameter {
        name: "conversation_ids".into(),
        reason,
    };
    if query.as_deref().is_some_and(|query| !query.is_empty()) {
        return Err(invalid(
            "names the conversations itself: send it without search filters".into(),
        ));
    }
    if ids.len() > MAX_BULK_IDS {
        return Err(invalid(format!(
            "at most {MAX_BULK_IDS} ids; use the search filters for more"
        )));
    }
    ids.iter()
        .map(|id| {
            ConversationId::parse(id)
                .map(|id| id.0)
                .ok_or_else(|| invalid(format!("`{id}` is not a conversation id")))
        })
        .collect()
}

/// `GET /v1/bots/{bot}/conversations/bulk`: the bot's recent bulk actions, newest first.
pub async fn bulk_actions(
    State(app): State<App>,
    Path(bot): Path<String>,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let actions = app.review.bulk_actions(&bot).await?;
    let actions: Vec<Value> = actions
        .iter()
        .map(|(action, state)| action_view(action, *state))
        .collect();
    Ok(Json(json!({ "actions": actions })))
}

/// `POST /v1/bots/{bot}/conversations/bulk/{action}/undo`.
pub async fn undo_bulk(
    State(app): State<App>,
    Path((bot, action)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let action: u64 = action
        .parse()
        .map_err(|_| AppError::NotFound("bulk action"))?;
    let (action, state) = app.review.undo_bulk(&bot, action).await?;
    Ok(Json(action_view(&action, state)))
}

fn action_view(action: &BulkAction, state: BulkState) -> Value {
    json!({
        "id": action.id,
        "state": state.name(),
        "created_at": format_timestamp(action.created_at),
        "finished_at": action.finished_at.map(format_timestamp),
        "undone_at": action.undone_at.map(format_timestamp),
        "add_labels": action.change.add_labels,
        "remove_labels": action.change.remove_labels,
        "flag": action.change.flag,
        "matched": action.matched,
        "done": action.done,
        "changed": action.changed,
        "restored": action.restored,
    })
}

fn label() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "\\S" })
}

/// The body of a bulk action.
pub fn bulk_body(_: &mut Components) -> Value {
    closed(object(
        &[
            ("add_labels", array(label())),
            ("remove_labels", array(label())),
            ("flag", nullable(json!({ "type": "boolean" }))),
            ("dry_run", json!({ "type": "boolean" })),
            (
                "conversation_ids",
                nullable(json!({ "type": "array", "items": string(), "maxItems": MAX_BULK_IDS })),
            ),
        ],
        &[],
    ))
}

/// What a bulk action did.
pub fn bulk_outcome(_: &mut Components) -> Value {
    object(
        &[
            ("matched", count()),
            ("changed", count()),
            ("dry_run", json!({ "type": "boolean" })),
            ("action_id", nullable(count())),
        ],
        &["matched", "changed", "dry_run", "action_id"],
    )
}

/// A recorded bulk action.
pub fn bulk_action(_: &mut Components) -> Value {
    let time = || nullable(timestamp());
    object(
        &[
            ("id", count()),
            (
                "state",
                json!({ "type": "string", "enum": ["running", "done", "interrupted", "undone"] }),
            ),
            ("created_at", timestamp()),
            ("finished_at", time()),
            ("undone_at", time()),
            ("add_labels", array(string())),
            ("remove_labels", array(string())),
            ("flag", nullable(json!({ "type": "boolean" }))),
            ("matched", count()),
            ("done", count()),
            ("changed", count()),
            ("restored", count()),
        ],
        &[
            "id",
            "state",
            "created_at",
            "finished_at",
            "undone_at",
            "add_labels",
            "remove_labels",
            "flag",
            "matched",
            "done",
            "changed",
            "restored",
        ],
    )
}

/// The bot's recent bulk actions.
pub fn bulk_actions_schema(components: &mut Components) -> Value {
    object(&[("actions", array(bulk_action(components)))], &["actions"])
}

/// The optional body of `PUT …/flag`.
pub fn flag_body(_: &mut Components) -> Value {
    closed(object(
        &[(
            "note",
            nullable(json!({ "type": "string", "maxLength": 4096 })),
        )],
        &[],
    ))
}

/// The query of `GET …/trace`.
pub fn trace_params() -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    vec![
        ParameterBuilder::new()
            .name("message_id")
            .parameter_in(ParameterIn::Query)
            .description(Some("Only the input of this message."))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build(),
    ]
}

/// The answer of `GET …/trace`.
pub fn trace_schema(components: &mut Components) -> Value {
    let event = object(
        &[
            ("timestamp", timestamp()),
            ("message_id", nullable(string())),
            ("action", string()),
            ("detail", json!({})),
            ("duration_ms", nullable(json!({ "type": "number" }))),
            ("level", string()),
        ],
        &["timestamp", "action", "level"],
    );
    let input = object(
        &[
            ("message", nullable(components.derived::<MessageView>())),
            ("total_duration_ms", nullable(json!({ "type": "number" }))),
            ("events", array(event)),
        ],
        &["message", "events"],
    );
    object(
        &[
            ("conversation_id", string()),
            ("debug", json!({ "type": "boolean" })),
            ("inputs", array(input)),
        ],
        &["conversation_id", "debug", "inputs"],
    )
}

/// The optional body of `POST …/share`.
pub fn share_body(_: &mut Components) -> Value {
    let names: Vec<&str> = convlog_engine::store::review::Reveal::NAMES.to_vec();
    closed(object(
        &[
            (
                "ttl",
                nullable(json!({ "type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$",
                        "description": "How long the link works; at most `review.share_max_ttl`." })),
            ),
            ("include", array(json!({ "enum": names }))),
        ],
        &[],
    ))
}

/// The answer of `POST …/share`.
pub fn share_schema(_: &mut Components) -> Value {
    object(
        &[
            ("url", string()),
            ("api_url", string()),
            ("token", string()),
            ("expires_at", timestamp()),
        ],
        &["url", "api_url", "token", "expires_at"],
    )
}

/// A list of conversations.
pub fn conversations_schema(components: &mut Components) -> Value {
    object(
        &[(
            "conversations",
            array(components.derived::<ConversationView>()),
        )],
        &["conversations"],
    )
}

/// The answer of revoking a share.
pub fn revoked_schema(_: &mut Components) -> Value {
    object(&[("revoked", json!({ "type": "boolean" }))], &["revoked"])
}

/// A shared conversation: the transcript and what the link reveals.
pub fn shared_schema(components: &mut Components) -> Value {
    object(
        &[
            ("id", string()),
            ("bot_id", string()),
            ("user", string()),
            ("channel", string()),
            ("started_at", timestamp()),
            ("last_message_at", timestamp()),
            ("message_count", count()),
            ("tags", array(string())),
            ("flows", array(string())),
            ("messages", array(components.derived::<MessageView>())),
            ("tag_details", array(json!({ "type": "object" }))),
            ("revealed", array(string())),
        ],
        &["id", "bot_id", "user", "messages", "revealed"],
    )
}
