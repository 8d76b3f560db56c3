//! The one place where errors become HTTP responses with a stable `code`.

use crate::ingest::validate::{ItemError, ValidationError};
use crate::query::QueryError;
use crate::review::ReviewError;
use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Review(ReviewError),
    #[error("body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this key's role ({0}) may not do this")]
    Forbidden(&'static str),
    #[error("too many requests; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("request timed out")]
    Timeout,
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [ItemError],
}

impl From<ReviewError> for AppError {
    fn from(err: ReviewError) -> AppError {
        match err {
            ReviewError::Store(err) => AppError::Store(err),
            ReviewError::Query(err) => AppError::Query(err),
            other => AppError::Review(other),
        }
    }
}

impl From<crate::archive::ArchiveError> for AppError {
    fn from(err: crate::archive::ArchiveError) -> AppError {
        match err {
            crate::archive::ArchiveError::Store(err) => AppError::Store(err),
            // The object store failed or the work was stopped: try again later.
            other => AppError::Store(StoreError::Unavailable(other.to_string())),
        }
    }
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Validation(ValidationError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_json")
            }
            AppError::Validation(ValidationError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_message")
            }
            AppError::Query(QueryError::InvalidQuery { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_query")
            }
            AppError::Query(QueryError::InvalidParameter { .. })
            | AppError::InvalidParameter { .. }
            | AppError::Review(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            AppError::Query(QueryError::NotFound) | AppError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            AppError::Store(StoreError::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Store(StoreError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            AppError::Query(QueryError::Store(err)) | AppError::Store(err)
                if err.is_unavailable() =>
            {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            AppError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            AppError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::Query(_) | AppError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Internal details go to the log, not to clients.
            tracing::error!(error = %self, "request failed");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        let details: &[ItemError] = match &self {
            AppError::Validation(ValidationError::Invalid(details)) => details,
            _ => &[],
        };
        let body = Body {
            error: ErrorBody {
                code,
                message,
                details,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let AppError::RateLimited { retry_after } = self
            && let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}
