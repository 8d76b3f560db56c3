//! HTTP: thin axum handlers that extract, call one function of the layer
//! below and convert; errors become responses in [`error`] only.

mod admin;
pub mod error;
mod ingest;
mod ops;
mod review;
mod search;
pub mod views;

use crate::app::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use error::AppError;
use std::time::Instant;

/// Every route of the service.
pub fn router(app: App) -> Router {
    let max_body = app.config.server.max_body;
    Router::new()
        .route("/v1/messages", post(ingest::messages))
        .route("/v1/traces", post(ingest::traces))
        .route("/v1/bots/{bot}/conversations", get(search::conversations))
        .route("/v1/bots/{bot}/conversations/bulk", post(review::bulk))
        .route(
            "/v1/bots/{bot}/conversations/{id}",
            get(search::conversation),
        )
        .route(
            "/v1/bots/{bot}/conversations/{id}/labels/{label}",
            put(review::add_label).delete(review::remove_label),
        )
        .route(
            "/v1/bots/{bot}/conversations/{id}/flag",
            put(review::flag).delete(review::unflag),
        )
        .route(
            "/v1/bots/{bot}/conversations/{id}/debug",
            put(review::debug_on).delete(review::debug_off),
        )
        .route(
            "/v1/bots/{bot}/conversations/{id}/trace",
            get(review::trace),
        )
        .route(
            "/v1/bots/{bot}/conversations/{id}/share",
            post(review::share),
        )
        .route("/v1/bots/{bot}/debug", get(review::debug_list))
        .route(
            "/v1/bots/{bot}/shares/{token}",
            axum::routing::delete(review::revoke_share),
        )
        .route("/v1/shared/{token}", get(review::shared))
        .route("/v1/bots/{bot}/messages", get(search::messages))
        .route("/v1/bots/{bot}/nodes", get(search::nodes))
        .route("/v1/bots/{bot}/flows", get(search::flows))
        .route("/v1/bots/{bot}/tags", get(search::tags))
        .route("/v1/bots/{bot}/labels", get(search::labels))
        .route("/v1/admin/tagging", post(admin::tagging))
        .route("/v1/admin/reindex", post(admin::reindex))
        .route("/v1/admin/jobs", get(admin::jobs))
        .route("/v1/admin/jobs/{id}", get(admin::job).delete(admin::cancel))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            deadline_and_log,
        ))
        .with_state(app)
}

/// Bounds every request by the configured timeout and logs it (path only: queries may hold user text).
async fn deadline_and_log(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response =
        match tokio::time::timeout(app.config.server.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => AppError::Timeout.into_response(),
        };
    tracing::debug!(
        %method,
        path = %redact(&path),
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// Paths are logged without share tokens.
fn redact(path: &str) -> String {
    for marker in ["/shared/", "/shares/"] {
        if let Some(at) = path.find(marker) {
            return format!("{}{marker}…", &path[..at]);
        }
    }
    path.to_string()
}
