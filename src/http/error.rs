//! The one place where errors become HTTP responses with a stable `code`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convlog_engine::archive::ArchiveError;
use convlog_engine::ingest::json::JsonError;
use convlog_engine::ingest::validate::{ItemError, ValidationError};
use convlog_engine::query::QueryError;
use convlog_engine::review::ReviewError;
use convlog_engine::store::StoreError;
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
    #[error(transparent)]
    Archive(ArchiveError),
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
    #[error("{0}")]
    Refused(&'static str),
    #[error("body of type {given:?} is not accepted here; send Content-Type: {accepted}")]
    UnsupportedMediaType {
        given: String,
        accepted: &'static str,
    },
    #[error("the request body did not arrive within {} s", limit.as_secs_f64())]
    BodyTimeout { limit: std::time::Duration },
    #[error("{0}")]
    Busy(&'static str),
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// In a cluster: the node owning the bot did not answer.
    #[error("the node owning this bot ({node}) is unavailable: {reason}")]
    OwnerUnavailable { node: String, reason: String },
    /// In a cluster: messages of a bot another node owns.
    #[error(
        "bot {bot:?} belongs to node {node:?}: send its messages there, or publish them to the log"
    )]
    NotOwner { bot: String, node: String },
    /// In a cluster: a forwarded request reached a node that doesn't own the bot either.
    #[error("{0}")]
    Misrouted(String),
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

/// A JSON body that doesn't decode: 400 naming the field at fault, or `body`.
impl From<JsonError> for AppError {
    fn from(err: JsonError) -> AppError {
        AppError::InvalidParameter {
            name: err.field.unwrap_or_else(|| "body".into()),
            reason: err.reason,
        }
    }
}

impl From<ArchiveError> for AppError {
    fn from(err: ArchiveError) -> AppError {
        match err {
            ArchiveError::Store(err) => AppError::Store(err),
            other => AppError::Archive(other),
        }
    }
}

/// Seconds a client waits before retrying when the archive's object store is unavailable.
const ARCHIVE_RETRY_AFTER: &str = "5";

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

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
            AppError::Store(StoreError::Limit { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_parameter")
            }
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
            AppError::Refused(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            AppError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AppError::OwnerUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "owner_unavailable")
            }
            AppError::Misrouted(_) => (StatusCode::SERVICE_UNAVAILABLE, "misrouted"),
            AppError::NotOwner { .. } => (StatusCode::MISDIRECTED_REQUEST, "not_owner"),
            AppError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            AppError::Archive(err) => match err {
                // The object is there but damaged: retrying won't help.
                ArchiveError::Corrupt { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "archive_corrupt")
                }
                ArchiveError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
                ArchiveError::Unavailable(_) | ArchiveError::Cancelled => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                }
                ArchiveError::Misconfigured(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "archive_misconfigured")
                }
                ArchiveError::Store(_) | ArchiveError::Encode(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            AppError::Query(_) | AppError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

/// The error code of an error response, for the request log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Internal details go to the log, not to clients.
            tracing::error!(error = %self, "request failed");
            match code {
                "archive_corrupt" => "an archive object is corrupt; see the server log",
                "archive_misconfigured" => "the archive is misconfigured; see the server log",
                _ => "internal error; see the server log",
            }
            .to_string()
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
        response.extensions_mut().insert(ErrorCode(code));
        let headers = response.headers_mut();
        match &self {
            AppError::RateLimited { retry_after } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            AppError::Busy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            AppError::OwnerUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            AppError::Archive(ArchiveError::Unavailable(_)) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(ARCHIVE_RETRY_AFTER),
                );
            }
            AppError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            // The rest of an unread body would be taken for the next request.
            AppError::BodyTimeout { .. } | AppError::PayloadTooLarge { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(err: ArchiveError) -> (u16, &'static str, Option<String>) {
        let err = AppError::from(err);
        let (status, code) = err.status_and_code();
        let response = err.into_response();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        (status.as_u16(), code, retry_after)
    }

    #[test]
    fn archive_errors_answer_by_what_the_client_can_do() {
        let corrupt = ArchiveError::corrupt("messages/x.parquet", "checksum differs");
        assert_eq!(answer(corrupt), (500, "archive_corrupt", None));
        assert_eq!(
            answer(ArchiveError::Unavailable("S3 timed out".into())),
            (503, "unavailable", Some(ARCHIVE_RETRY_AFTER.to_string()))
        );
        let missing = ArchiveError::NotFound { key: "k".into() };
        assert_eq!(answer(missing), (404, "not_found", None));
        assert_eq!(
            answer(ArchiveError::Misconfigured("no bucket".into())),
            (500, "archive_misconfigured", None)
        );
        let store = ArchiveError::Store(StoreError::Unavailable("disk full".into()));
        assert_eq!(answer(store), (503, "unavailable", None));
    }
}
