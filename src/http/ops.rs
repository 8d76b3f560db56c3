//! Health, readiness, metrics and the API description.

use super::error::AppError;
use crate::app::App;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Green once the store is open and the index has caught up and is healthy;
/// either way with how far the index is behind the store.
pub async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let (changes, seconds) = app.index_lag();
    let lag = json!({"changes": changes, "seconds": seconds});
    match app.index.state().ready() {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "lag": lag})),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": reason, "lag": lag})),
        ),
    }
}

/// Prometheus text format.
pub async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.render_metrics(),
    )
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::DOCUMENT.as_str(),
    )
}

/// Any other path.
pub async fn not_found() -> AppError {
    AppError::NotFound("route")
}

/// The answer of `/healthz` and `/readyz`.
pub fn status_schema(_: &mut super::openapi::Components) -> serde_json::Value {
    super::openapi::object(
        &[
            ("status", json!({ "enum": ["ok", "ready", "not_ready"] })),
            ("reason", super::openapi::string()),
            (
                "lag",
                json!({
                    "description": "How far the search index is behind the store (readyz only): changes not yet searchable, and how long the oldest has been committed.",
                    "type": "object",
                    "properties": {
                        "changes": { "type": "integer", "minimum": 0 },
                        "seconds": { "type": "number", "minimum": 0 }
                    },
                    "required": ["changes", "seconds"]
                }),
            ),
        ],
        &["status"],
    )
}
