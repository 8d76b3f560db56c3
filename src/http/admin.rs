//! Admin endpoints: jobs and the runs that create them.

use super::error::AppError;
use super::guard::Caller;
use super::openapi::{
    self, Components, array, closed, count, limit_parameter, nullable, object, of_type,
    query_parameter, string, timestamp,
};
use crate::app::App;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use convlog_core::parse_time;
use convlog_engine::audit::AuditFilter;
use convlog_engine::auth::{KeyRecord, KeyRequest, OPEN_MODE_WARNING};
use convlog_engine::ingest::json;
use convlog_engine::jobs::JobRecord;
use convlog_engine::store::StoreError;
use serde_json::{Value, json};

fn job_json(job: &JobRecord) -> Value {
    job.to_json()
}

/// `POST /v1/admin/tagging`: re-run the tagging rules over every hot conversation.
pub async fn tagging(State(app): State<App>) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.start_full_tagging().await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// `POST /v1/admin/reindex`: build a new index from the store and swap it in.
pub async fn reindex(State(app): State<App>) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.start_reindex().await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveQuery {
    dry_run: Option<bool>,
}

/// `POST /v1/admin/archive`: archive every conversation past its retention
/// period, as a job. With `?dry_run=true`: what would be archived, changing nothing.
pub async fn archive(
    State(app): State<App>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let query: ArchiveQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|err| invalid("query string", err.to_string()))?;
    if query.dry_run == Some(true) {
        let archiver = app.archiver.clone();
        let summary = blocking(move || archiver.dry_run()).await?;
        return Ok((
            StatusCode::OK,
            Json(json!({"dry_run": true, "plan": summary})),
        ));
    }
    let job = app.start_archive().await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// Runs archive work that reads the store on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, convlog_engine::archive::ArchiveError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| AppError::Store(StoreError::Unavailable(err.to_string())))?
        .map_err(AppError::from)
}

/// `GET /v1/admin/archive/partitions`: the archive's message partitions.
pub async fn archive_partitions(State(app): State<App>) -> Result<Json<Value>, AppError> {
    let archiver = app.archiver.clone();
    let url = archiver.url().to_string();
    let partitions = blocking(move || archiver.partitions(None)).await?;
    Ok(Json(json!({"url": url, "partitions": partitions})))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    bot_id: String,
    from: String,
    to: String,
}

/// `POST /v1/admin/restore {"bot_id", "from", "to"}`: bring back the archived
/// conversations of a bot active in `[from, to)`, as a job.
pub async fn restore(
    State(app): State<App>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body: RestoreBody = json::from_slice(&body)?;
    if !convlog_core::is_identifier(&body.bot_id) {
        return Err(invalid("bot_id", "must match [A-Za-z0-9._-]{1,64}"));
    }
    let now = app.clock.now();
    let from = parse_time(&body.from, now).map_err(|reason| invalid("from", reason))?;
    let to = parse_time(&body.to, now).map_err(|reason| invalid("to", reason))?;
    if from >= to {
        return Err(invalid("to", "must be after `from`"));
    }
    let job = app.start_restore(body.bot_id, from, to).await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// `POST /v1/admin/erase {"bot_id", "user_id"}`: remove every trace of one end
/// user of one bot — hot store, index and archive — as a job. `user_id` is
/// the raw id as ingested: it is hashed here and goes no further.
pub async fn erase(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body: Value = serde_json::from_slice(&body).map_err(|err| {
        invalid(
            "body",
            format!("expected {{\"bot_id\", \"user_id\"}}: {err}"),
        )
    })?;
    let Some(fields) = body.as_object() else {
        return Err(invalid(
            "body",
            "expected an object {\"bot_id\", \"user_id\"}",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["bot_id", "user_id"].contains(&k.as_str()))
    {
        return Err(invalid(
            unknown,
            "is not a field of an erasure (bot_id, user_id)",
        ));
    }
    let bot_id = match fields.get("bot_id") {
        None => return Err(invalid("bot_id", "is required: the bot the user talked to")),
        Some(Value::String(bot)) if convlog_core::is_identifier(bot) => bot.clone(),
        Some(_) => return Err(invalid("bot_id", "must match [A-Za-z0-9._-]{1,64}")),
    };
    let user_id = match fields.get("user_id") {
        None => {
            return Err(invalid(
                "user_id",
                "is required: the end user's id as ingested",
            ));
        }
        Some(Value::String(user)) if !user.trim().is_empty() && user.chars().count() <= 256 => {
            user.clone()
        }
        Some(_) => {
            return Err(invalid(
                "user_id",
                "must be a non-blank string of at most 256 characters",
            ));
        }
    };
    let job = app
        .start_erasure(bot_id, &user_id, caller.key_id, caller.request_id)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// `GET /v1/admin/jobs`: recent jobs, newest first.
pub async fn jobs(State(app): State<App>) -> Result<Json<Value>, AppError> {
    let jobs = app.jobs.list(100).await?;
    Ok(Json(
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/admin/jobs/{id}`.
pub async fn job(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    Ok(Json(job_json(&app.jobs.get(&id).await?)))
}

/// `POST /v1/admin/jobs/{id}/cancel`: ask a running job to stop (the job
/// stays listed, ending as failed: an action on it, not its deletion).
pub async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let job = app.jobs.get(&id).await?;
    if !app.jobs.cancel(&id) {
        return Err(AppError::Conflict("the job is not running"));
    }
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    #[serde(default)]
    name: String,
    role: String,
    /// "*" or a list of bot ids.
    bots: serde_json::Value,
}

fn key_json(key: &KeyRecord) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "bots": key.scope.to_text(),
        "created_at": convlog_core::format_timestamp(key.created_at),
        "revoked_at": key.revoked_at.map(convlog_core::format_timestamp),
    })
}

fn invalid(name: &str, reason: impl Into<String>) -> AppError {
    AppError::InvalidParameter {
        name: name.into(),
        reason: reason.into(),
    }
}

/// `POST /v1/admin/keys`: the key is in this answer and nowhere else.
pub async fn create_key(
    State(app): State<App>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body: NewKeyBody = json::from_slice(&body)?;
    let not_bots = || invalid("bots", "a non-empty list of bot ids, or \"*\"");
    let bots = match &body.bots {
        Value::String(text) if text == "*" => text.clone(),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| v.as_str().filter(|bot| convlog_core::is_identifier(bot)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(not_bots)?
            .join(","),
        _ => return Err(not_bots()),
    };
    let request = KeyRequest::new(&body.role, &bots, body.name)
        .map_err(|(name, reason)| invalid(name, reason))?;
    let now = app.clock.now();
    let issued = app.keys.create(request, now).await?;
    let mut answer = key_json(&issued.record);
    answer["key"] = json!(issued.key);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/admin/keys`.
pub async fn list_keys(State(app): State<App>) -> Result<Json<Value>, AppError> {
    let list = app.keys.list().await?;
    Ok(Json(
        json!({"keys": list.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /v1/admin/keys/{id}`: effective for the next request.
pub async fn revoke_key(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let now = app.clock.now();
    let revoked = app.keys.revoke(id, now).await.map_err(|err| match err {
        StoreError::NotFound => AppError::NotFound("key"),
        other => other.into(),
    })?;
    app.note_key_state(revoked.keys_remain);
    let mut body = key_json(&revoked.record);
    // Revoking the last key must not reopen the server silently.
    body["open_mode"] = json!(!revoked.keys_remain);
    if !revoked.keys_remain {
        body["warning"] = json!(OPEN_MODE_WARNING);
    }
    Ok(Json(body))
}

/// Most audit entries one answer lists.
const MAX_AUDIT_LIMIT: usize = 1000;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    bot_id: Option<String>,
    key_id: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/admin/audit?bot_id=&key_id=&action=&from=&to=&limit=`: newest first.
pub async fn audit(
    State(app): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let query: AuditQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|err| invalid("query string", err.to_string()))?;
    let now = app.clock.now();
    let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, AppError> {
        value
            .as_deref()
            .map(|text| parse_time(text, now).map_err(|reason| invalid(name, reason)))
            .transpose()
    };
    let filter = AuditFilter {
        from: time("from", &query.from)?,
        to: time("to", &query.to)?,
        bot_id: query.bot_id,
        key_id: query.key_id,
        action: query.action,
        limit: match query.limit {
            None => 100,
            Some(limit @ 1..=MAX_AUDIT_LIMIT) => limit,
            Some(_) => {
                return Err(invalid(
                    "limit",
                    format!("must be between 1 and {MAX_AUDIT_LIMIT}"),
                ));
            }
        },
    };
    let entries = app.audit.entries(filter).await?;
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "at": convlog_core::format_timestamp(e.at), "key_id": e.key_id,
                "action": e.action, "target": e.target, "bot_id": e.bot_id,
                "request_id": e.request_id, "status": e.status, "hash": e.hash,
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries})))
}

/// The query of `POST /v1/admin/archive`.
pub fn archive_params() -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::schema::Type;
    vec![query_parameter(
        "dry_run",
        "Only say what would be archived (200, nothing changes).",
        of_type(Type::Boolean),
    )]
}

/// The answer of a dry run of the archive.
pub fn plan_schema(_: &mut Components) -> Value {
    object(
        &[
            ("dry_run", json!({ "const": true })),
            ("plan", json!({ "type": "object" })),
        ],
        &["dry_run", "plan"],
    )
}

/// The answer of `GET /v1/admin/archive/partitions`.
pub fn partitions_schema(_: &mut Components) -> Value {
    object(
        &[
            ("url", string()),
            ("partitions", array(json!({ "type": "object" }))),
        ],
        &["url", "partitions"],
    )
}

/// The body of `POST /v1/admin/restore`.
/// The body of `POST /v1/admin/erase`.
pub fn erase_body(_: &mut Components) -> Value {
    closed(object(
        &[
            (
                "bot_id",
                json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }),
            ),
            (
                "user_id",
                json!({ "type": "string", "minLength": 1, "maxLength": 256, "pattern": "\\S",
                        "description": "The end user's id as ingested; hashed, never stored." }),
            ),
        ],
        &["bot_id", "user_id"],
    ))
}

pub fn restore_body(_: &mut Components) -> Value {
    closed(object(
        &[
            (
                "bot_id",
                json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }),
            ),
            ("from", timestamp()),
            (
                "to",
                json!({ "type": "string", "format": "date-time", "description": "After `from`." }),
            ),
        ],
        &["bot_id", "from", "to"],
    ))
}

/// The answer of `GET /v1/admin/jobs`.
pub fn jobs_schema(components: &mut Components) -> Value {
    object(&[("jobs", array(openapi::job(components)))], &["jobs"])
}

/// The body of `POST /v1/admin/keys`.
pub fn key_body(_: &mut Components) -> Value {
    let bot = json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" });
    closed(object(
        &[
            (
                "name",
                json!({ "type": "string", "maxLength": KeyRequest::MAX_KEY_NAME }),
            ),
            (
                "role",
                json!({ "enum": ["viewer", "editor", "ingest", "admin"] }),
            ),
            (
                "bots",
                json!({ "oneOf": [{ "const": "*" }, { "type": "array", "items": bot, "minItems": 1 }] }),
            ),
        ],
        &["role", "bots"],
    ))
}

/// The answer of `POST /v1/admin/keys`: the record and the key.
pub fn new_key_schema(components: &mut Components) -> Value {
    json!({ "allOf": [openapi::key(components), object(&[("key", string())], &["key"])] })
}

/// The answer of `GET /v1/admin/keys`.
pub fn keys_schema(components: &mut Components) -> Value {
    object(&[("keys", array(openapi::key(components)))], &["keys"])
}

/// The answer of `DELETE /v1/admin/keys/{id}`.
pub fn revoked_key_schema(components: &mut Components) -> Value {
    let state = object(
        &[
            ("open_mode", json!({ "type": "boolean" })),
            ("warning", string()),
        ],
        &["open_mode"],
    );
    json!({ "allOf": [openapi::key(components), state] })
}

/// The query of `GET /v1/admin/audit`.
pub fn audit_params() -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::schema::Type;
    let timestamp = || {
        of_type(Type::String).format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
    };
    vec![
        query_parameter("bot_id", "Entries about this bot.", of_type(Type::String)),
        query_parameter("key_id", "Entries of this key.", of_type(Type::String)),
        query_parameter("action", "Entries of this action.", of_type(Type::String)),
        query_parameter("from", "Entries at or after.", timestamp()),
        query_parameter("to", "Entries before.", timestamp()),
        limit_parameter("Most entries (default 100).", MAX_AUDIT_LIMIT),
    ]
}

/// The answer of `GET /v1/admin/audit`.
pub fn audit_schema(_: &mut Components) -> Value {
    let entry = object(
        &[
            ("id", count()),
            ("at", timestamp()),
            ("key_id", nullable(string())),
            ("action", string()),
            ("target", nullable(string())),
            ("bot_id", nullable(string())),
            ("request_id", nullable(string())),
            ("status", nullable(count())),
            ("hash", string()),
        ],
        &["id", "at", "action", "hash"],
    );
    object(&[("entries", array(entry))], &["entries"])
}
