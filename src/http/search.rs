//! Search and read endpoints under `/v1/bots/{bot}`.

use super::error::AppError;
use super::guard::Caller;
use super::openapi::{Components, array, count, nullable, object, string, timestamp};
use super::views::{ConversationView, MessageView, TagDetailView};
use crate::app::App;
use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use convlog_core::{ConversationId, format_timestamp, is_identifier};
use convlog_engine::query::{SearchRequest, Target};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

pub(super) fn bot_id(bot: &str) -> Result<String, AppError> {
    if !is_identifier(bot) {
        return Err(AppError::InvalidParameter {
            name: "bot_id".into(),
            reason: "must match [A-Za-z0-9._-]{1,64}".into(),
        });
    }
    Ok(bot.to_string())
}

/// The name-value pairs of a query string.
fn pairs(query: Option<String>) -> Result<Vec<(String, String)>, AppError> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|err| {
        AppError::InvalidParameter {
            name: "query string".into(),
            reason: err.to_string(),
        }
    })
}

/// The search request of a query string; relative times (`now-7d`) from `now`.
pub(super) fn request(
    query: Option<String>,
    target: Target,
    now: convlog_core::Micros,
) -> Result<SearchRequest, AppError> {
    Ok(SearchRequest::from_pairs(&pairs(query)?, target, now)?)
}

/// The search request of a query string that takes filters, time range and
/// `q` but no paging, plus the route's own parameters `own` (returned apart).
pub(super) fn filters_request(
    query: Option<String>,
    target: Target,
    now: convlog_core::Micros,
    own: &[&str],
) -> Result<(SearchRequest, Vec<(String, String)>), AppError> {
    let (mine, filters): (Vec<_>, Vec<_>) = pairs(query)?
        .into_iter()
        .partition(|(name, _)| own.contains(&name.as_str()));
    if let Some((name, _)) = filters
        .iter()
        .find(|(name, _)| super::openapi::PAGING.contains(&name.as_str()))
    {
        return Err(AppError::InvalidParameter {
            name: name.clone(),
            reason: "unknown parameter".into(),
        });
    }
    Ok((SearchRequest::from_pairs(&filters, target, now)?, mine))
}

/// `GET /v1/filters`: the search filters (the engine's filter table), which
/// the UI's sidebar is built from.
pub async fn filters() -> Json<Value> {
    Json(json!({ "filters": convlog_engine::query::filters::describe() }))
}

/// `GET /v1/bots`: the bots the caller's key may see, with their conversations
/// in the hot store and their last activity.
pub async fn bots(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, AppError> {
    let bots = app.search.bots().await?;
    let mut bots: Vec<Value> = bots
        .into_iter()
        .filter(|bot| caller.scope.includes(&bot.id))
        .map(|bot| {
            json!({
                "id": bot.id,
                "conversations": bot.conversations,
                "last_message_at": format_timestamp(bot.last_message_at),
            })
        })
        .collect();
    // In a cluster each bot is on one node: the others' lists are added (a
    // forwarded request answers for its node only).
    if headers.contains_key(super::forward::FORWARDED) {
        return Ok(Json(json!({ "bots": bots })));
    }
    let mut unavailable = Vec::new();
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    for (node, answer) in super::forward::ask_others(&app, "/v1/bots", authorization).await {
        match answer {
            Ok(answer) => bots.extend(answer["bots"].as_array().cloned().unwrap_or_default()),
            Err(reason) => {
                tracing::warn!(%node, error = %reason, "a node did not list its bots");
                unavailable.push(node);
            }
        }
    }
    bots.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut body = json!({ "bots": bots });
    if app.config.cluster.is_some() {
        body["unavailable_nodes"] = json!(unavailable);
    }
    Ok(Json(body))
}

/// `GET /v1/bots/{bot}/conversations`.
pub async fn conversations(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<ConversationsPage>, AppError> {
    let started = Instant::now();
    let bot = bot_id(&bot)?;
    let request = request(query, Target::Conversations, app.clock.now())?;
    let page = app
        .search
        .conversations(bot, request, app.clock.now())
        .await?;
    let conversations: Vec<Value> = page
        .hits
        .iter()
        .map(|hit| {
            let mut value =
                serde_json::to_value(ConversationView::new(&hit.record)).expect("view serialises");
            value["snippets"] = json!(hit.snippets);
            value["preview"] = json!(hit.preview);
            value
        })
        .collect();
    // Serialised straight from the page: thousands of facet values through a
    // `Value` would be sorted into a map a second time.
    let body = ConversationsPage {
        total: page.total,
        conversations,
        next_cursor: page.next_cursor,
        facets: page.facets,
    };
    app.metrics.query_conversations.observe(started.elapsed());
    Ok(Json(body))
}

/// The body of `GET /v1/bots/{bot}/conversations`.
#[derive(serde::Serialize)]
pub struct ConversationsPage {
    total: u64,
    conversations: Vec<Value>,
    next_cursor: Option<String>,
    facets: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// `GET /v1/bots/{bot}/conversations/{id}`.
pub async fn conversation(
    State(app): State<App>,
    Path((bot, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let started = Instant::now();
    let bot = bot_id(&bot)?;
    let id = ConversationId::parse(&id).ok_or(AppError::NotFound("conversation"))?;
    let request = request(query, Target::Aggregates, app.clock.now())?;
    let detail = app.search.conversation(bot, id.0, request.ast).await?;
    let mut body =
        serde_json::to_value(ConversationView::new(&detail.record)).expect("view serialises");
    body["messages"] = json!(
        detail
            .messages
            .iter()
            .map(|(message, highlight)| MessageView::new(message, highlight.as_deref()))
            .collect::<Vec<_>>()
    );
    body["tag_details"] = json!(
        detail
            .record
            .tags
            .iter()
            .map(TagDetailView::new)
            .collect::<Vec<_>>()
    );
    body["history"] = json!(
        detail
            .history
            .iter()
            .map(ConversationView::new)
            .collect::<Vec<_>>()
    );
    app.metrics.query_other.observe(started.elapsed());
    Ok(Json(body))
}

/// `GET /v1/bots/{bot}/messages`.
pub async fn messages(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let started = Instant::now();
    let bot = bot_id(&bot)?;
    let request = request(query, Target::Messages, app.clock.now())?;
    let page = app.search.messages(bot, request, app.clock.now()).await?;
    let messages: Vec<Value> = page
        .hits
        .iter()
        .map(|hit| {
            let mut value =
                serde_json::to_value(MessageView::new(&hit.record, None)).expect("view serialises");
            value["conversation_id"] =
                json!(ConversationId(hit.record.conversation_id).to_string());
            value["snippet"] = json!(hit.snippet);
            value
        })
        .collect();
    app.metrics.query_messages.observe(started.elapsed());
    Ok(Json(
        json!({"total": page.total, "messages": messages, "next_cursor": page.next_cursor}),
    ))
}

/// `GET /v1/bots/{bot}/nodes`.
pub async fn nodes(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let request = request(query, Target::Aggregates, app.clock.now())?;
    let nodes = app.search.nodes(bot, request, app.clock.now()).await?;
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| json!({"id": n.node.id, "name": n.node.name, "type": n.node.node_type, "conversations": n.conversations}))
        .collect();
    Ok(Json(json!({"nodes": nodes})))
}

/// `GET /v1/bots/{bot}/flows`: the funnel of every flow.
pub async fn flows(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let request = request(query, Target::Aggregates, app.clock.now())?;
    let flows = app.search.flows(bot, request, app.clock.now()).await?;
    Ok(Json(json!({"flows": flows})))
}

async fn value_counts(
    app: App,
    bot: String,
    query: Option<String>,
    field: &'static str,
    key: &'static str,
) -> Result<Json<Value>, AppError> {
    let bot = bot_id(&bot)?;
    let request = request(query, Target::Aggregates, app.clock.now())?;
    let counts = app
        .search
        .value_counts(bot, request, field, app.clock.now())
        .await?;
    let list: Vec<Value> = counts
        .into_iter()
        .map(|(name, conversations)| json!({"name": name, "conversations": conversations}))
        .collect();
    Ok(Json(json!({ key: list })))
}

/// `GET /v1/bots/{bot}/tags`.
pub async fn tags(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    value_counts(app, bot, query, "tag", "tags").await
}

/// `GET /v1/bots/{bot}/labels`.
pub async fn labels(
    State(app): State<App>,
    Path(bot): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    value_counts(app, bot, query, "label", "labels").await
}

/// The answer of `GET /v1/filters`.
pub fn filters_schema(_: &mut Components) -> Value {
    let filter = object(
        &[
            ("param", string()),
            ("kind", json!({ "enum": ["multi", "bool"] })),
            ("description", string()),
            ("facet", string()),
            (
                "targets",
                array(json!({ "enum": ["conversations", "messages", "aggregates"] })),
            ),
            ("requires", string()),
            ("section", json!({ "type": "object" })),
        ],
        &["param", "kind", "description", "targets"],
    );
    object(&[("filters", array(filter))], &["filters"])
}

/// The answer of `GET /v1/bots`.
pub fn bots_schema(_: &mut Components) -> Value {
    let bot = object(
        &[
            ("id", string()),
            ("conversations", count()),
            ("last_message_at", timestamp()),
        ],
        &["id", "conversations", "last_message_at"],
    );
    // `unavailable_nodes`: in a cluster, the nodes that didn't list their bots.
    object(
        &[("bots", array(bot)), ("unavailable_nodes", array(string()))],
        &["bots"],
    )
}

/// The query of `GET …/conversations/{id}`: `q` highlights matches.
pub fn conversation_params() -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    vec![
        ParameterBuilder::new()
            .name("q")
            .parameter_in(ParameterIn::Query)
            .description(Some("A query whose matches are highlighted."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(1024)),
            ))
            .build(),
    ]
}

/// The answer of `GET …/nodes`.
pub fn nodes_schema(_: &mut Components) -> Value {
    let node = object(
        &[
            ("id", string()),
            ("name", nullable(string())),
            ("type", nullable(string())),
            ("conversations", count()),
        ],
        &["id", "conversations"],
    );
    object(&[("nodes", array(node))], &["nodes"])
}

/// The answer of `GET …/flows`.
pub fn flows_schema(_: &mut Components) -> Value {
    let step = object(
        &[
            ("step", nullable(string())),
            ("reached", count()),
            ("dropped_off", count()),
        ],
        &["step", "reached", "dropped_off"],
    );
    let flow = object(
        &[
            ("flow", string()),
            ("conversations", count()),
            ("dropped_off", count()),
            ("steps", array(step)),
        ],
        &["flow", "conversations", "dropped_off", "steps"],
    );
    object(&[("flows", array(flow))], &["flows"])
}

fn name_counts(key: &str) -> Value {
    let entry = object(
        &[("name", string()), ("conversations", count())],
        &["name", "conversations"],
    );
    object(&[(key, array(entry))], &[key])
}

/// The answer of `GET …/tags`.
pub fn tags_schema(_: &mut Components) -> Value {
    name_counts("tags")
}

/// The answer of `GET …/labels`.
pub fn labels_schema(_: &mut Components) -> Value {
    name_counts("labels")
}
