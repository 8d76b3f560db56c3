//! HTTP: thin axum handlers that extract, call one function of the layer
//! below and convert; errors become responses in [`error`] only.

mod admin;
pub mod error;
pub mod guard;
mod ingest;
mod ops;
mod review;
pub mod routes;
mod search;
mod ui;
pub mod views;

use crate::app::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use error::AppError;
use std::time::Instant;

/// The service's router, built from the route table ([`routes::routes`]).
pub fn router(app: App) -> Router {
    let max_body = app.config.server.max_body;
    let router = routes::routes()
        .into_iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, route.handler)
        });
    router
        .route_layer(middleware::from_fn_with_state(app.clone(), guard::guard))
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
    let max_body = app.config.server.max_body;
    // Refuse a declared oversized body before reading any of it.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let response = if declared.is_some_and(|length| length > max_body as u64) {
        // Closing tells hyper not to read (and buffer) the rest of the upload.
        let mut response = AppError::PayloadTooLarge { limit: max_body }.into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response
    } else {
        // Bodies in memory at once are bounded: a request holds its declared length
        // (or the whole limit when chunked) from a shared budget while it runs.
        let has_body = declared.is_some_and(|length| length > 0)
            || request.headers().contains_key(header::TRANSFER_ENCODING);
        let cost_kib = declared.unwrap_or(max_body as u64).div_ceil(1024).max(1) as u32;
        let _budget = match has_body {
            true => Some(
                app.body_budget
                    .clone()
                    .acquire_many_owned(cost_kib.min(app.body_budget_kib))
                    .await,
            ),
            false => None,
        };
        match tokio::time::timeout(app.config.server.request_timeout, next.run(request)).await {
            // Body-limit rejections of extractors are plain text: answer with the contract's error.
            Ok(response)
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&response) =>
            {
                AppError::PayloadTooLarge { limit: max_body }.into_response()
            }
            Ok(response) => response,
            Err(_) => AppError::Timeout.into_response(),
        }
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

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"))
}

/// Paths are logged without share tokens.
pub(crate) fn redact(path: &str) -> String {
    for marker in ["/shared/", "/shares/"] {
        if let Some(at) = path.find(marker) {
            return format!("{}{marker}…", &path[..at]);
        }
    }
    path.to_string()
}
