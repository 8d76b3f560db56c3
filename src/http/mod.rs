//! HTTP: thin axum handlers that extract, call one function of the layer
//! below and convert; errors become responses in [`error`] only.

mod admin;
pub mod error;
mod export;
pub mod forward;
pub mod guard;
mod ingest;
mod insights;
mod openapi;
mod ops;
mod review;
pub mod routes;
mod search;
mod server;
mod sources;
mod ui;
pub mod views;

use crate::app::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use error::AppError;
pub use server::{ConnectionLimits, serve};
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
        // The guard has read the body within server.max_body already.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            deadline_and_log,
        ))
        .with_state(app)
}

/// Bounds every request by the configured timeout, gives the router's own
/// plain-text rejections (405, 413) the contract's error body, and logs the
/// request (path only: queries may hold user text).
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
    let mut response = if declared.is_some_and(|length| length > max_body as u64) {
        AppError::PayloadTooLarge { limit: max_body }.into_response()
    } else {
        match tokio::time::timeout(app.config.server.request_timeout, next.run(request)).await {
            Ok(response) if !is_encoded(&response) => contract_error(response, &method, max_body),
            Ok(response) => response,
            Err(_) => AppError::Timeout.into_response(),
        }
    };
    // No answer is ever to be sniffed into another type (a JSON error as HTML).
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let served = response.extensions().get::<guard::RouteServed>();
    let route = served.map_or("unmatched", |served| served.template.as_str());
    app.metrics.served(route, method.as_str(), status, elapsed);
    let code = response
        .extensions()
        .get::<error::ErrorCode>()
        .map(|code| code.0);
    if let Some(code) = code
        && served.is_some_and(|served| served.ingest)
    {
        app.metrics.ingest_rejected(code);
    }
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::debug!(
        request_id,
        %method,
        route,
        path = %redact(&path),
        status,
        error = code.unwrap_or(""),
        elapsed_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// The contract's error body for the router's own plain-text rejections.
fn contract_error(response: Response, method: &axum::http::Method, max_body: usize) -> Response {
    match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response
                .headers()
                .get(header::ALLOW)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_string();
            AppError::MethodNotAllowed {
                method: method.to_string(),
                allow,
            }
            .into_response()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge { limit: max_body }.into_response()
        }
        _ => response,
    }
}

/// Whether `response` has a body of its own: JSON, or an OTLP route's protobuf.
fn is_encoded(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| {
            let value = value.as_bytes();
            value.starts_with(b"application/json") || value.starts_with(b"application/x-protobuf")
        })
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
