//! `GET /v1/admin/sources…`: the logs the node consumes — how far each is
//! stored, its lag, and what it carried that could not be stored.

use super::error::AppError;
use super::openapi::{
    Components, array, count, limit_parameter, nullable, object, string, timestamp,
};
use crate::app::App;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use convlog_core::format_timestamp;
use convlog_engine::store::sources;
use serde_json::{Value, json};

/// Dead letters answered when `limit` isn't given, and the most it may ask.
const DEFAULT_LETTERS: usize = 100;
const MAX_LETTERS: usize = 1000;

/// `GET /v1/admin/sources`: every configured source and every source the store has a position of.
pub async fn sources(State(app): State<App>) -> Result<Json<Value>, AppError> {
    let mut states = app.store.read_async(sources::states).await?;
    for name in app.metrics.source_names() {
        if !states.iter().any(|s| s.source == name) {
            states.push(sources::SourceState {
                source: name,
                position: 0,
                updated_at: 0,
                dead_letters: 0,
            });
        }
    }
    let sources: Vec<Value> = states
        .iter()
        .map(|state| {
            let (lag, connected) = app.metrics.source_live(&state.source);
            json!({
                "name": state.source,
                "position": state.position,
                "updated_at": (state.updated_at > 0).then(|| format_timestamp(state.updated_at)),
                "dead_letters": state.dead_letters,
                "lag": lag,
                "connected": connected,
            })
        })
        .collect();
    Ok(Json(json!({ "sources": sources })))
}

/// `GET /v1/admin/sources/{source}/dead-letters?limit=N`: newest first.
pub async fn dead_letters(
    State(app): State<App>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let mut limit = DEFAULT_LETTERS;
    for (name, value) in
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
            .map_err(|err| AppError::InvalidParameter {
                name: "query string".into(),
                reason: err.to_string(),
            })?
    {
        if name != "limit" {
            return Err(AppError::InvalidParameter {
                name,
                reason: "unknown parameter".into(),
            });
        }
        limit = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LETTERS).contains(n))
            .ok_or_else(|| AppError::InvalidParameter {
                name: "limit".into(),
                reason: format!("must be a whole number between 1 and {MAX_LETTERS}"),
            })?;
    }
    let letters = app
        .store
        .read_async(move |conn| sources::dead_letters(conn, &source, limit))
        .await?;
    let letters: Vec<Value> = letters
        .iter()
        .map(|stored| {
            json!({
                "position": stored.letter.position,
                "received_at": format_timestamp(stored.received_at),
                "reason": stored.letter.reason,
                "payload": String::from_utf8_lossy(&stored.letter.payload),
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": letters })))
}

/// The parameters of the dead letters beside the path.
pub fn dead_letter_params() -> Vec<utoipa::openapi::path::Parameter> {
    vec![limit_parameter(
        "How many, newest first (default 100).",
        MAX_LETTERS,
    )]
}

/// The answer of `GET /v1/admin/sources`.
pub fn sources_schema(_: &mut Components) -> Value {
    let source = object(
        &[
            ("name", string()),
            ("position", count()),
            ("updated_at", nullable(timestamp())),
            ("dead_letters", count()),
            ("lag", count()),
            ("connected", json!({ "type": "boolean" })),
        ],
        &[
            "name",
            "position",
            "updated_at",
            "dead_letters",
            "lag",
            "connected",
        ],
    );
    object(&[("sources", array(source))], &["sources"])
}

/// The answer of `GET /v1/admin/sources/{source}/dead-letters`.
pub fn dead_letters_schema(_: &mut Components) -> Value {
    let letter = object(
        &[
            ("position", count()),
            ("received_at", timestamp()),
            ("reason", string()),
            ("payload", string()),
        ],
        &["position", "received_at", "reason", "payload"],
    );
    object(&[("dead_letters", array(letter))], &["dead_letters"])
}
