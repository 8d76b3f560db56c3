//! The web UI: static files embedded in the binary, so `convlog serve` brings it up.
//!
//! The page talks to the public HTTP API only; every page path (`/`,
//! `/bots/{bot}/…`, `/shared/{token}`) serves the same document and the
//! script routes on the URL. The script is native ES modules under `ui/js/`
//! (no build step); they and the style sheet are served by one route,
//! `/ui/{*file}`, from the table [`FILES`]. A new module is one line there
//! (`the_ui_serves_exactly_the_files_of_its_table` fails for a file under `ui/`
//! that isn't served).

use super::error::AppError;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../ui/index.html");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One file of the UI, served at `/ui/{path}`.
struct File {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// A file of `ui/` by its path there, embedded.
macro_rules! file {
    ($path:literal, $content_type:expr) => {
        File {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("../../ui/", $path)),
        }
    };
}

/// Every file under `/ui/`; any other path there is a 404.
const FILES: &[File] = &[
    file!("app.css", CSS),
    file!("js/api.js", JS),
    file!("js/bulk.js", JS),
    file!("js/charts.js", JS),
    file!("js/conversation.js", JS),
    file!("js/dashboards.js", JS),
    file!("js/debugger.js", JS),
    file!("js/filters.js", JS),
    file!("js/format.js", JS),
    file!("js/home.js", JS),
    file!("js/list.js", JS),
    file!("js/live.js", JS),
    file!("js/main.js", JS),
    file!("js/misses.js", JS),
    file!("js/panel.js", JS),
    file!("js/range.js", JS),
    file!("js/router.js", JS),
    file!("js/session.js", JS),
    file!("js/shared.js", JS),
    file!("js/sharepage.js", JS),
    file!("js/shell.js", JS),
];

/// Only the server's own files run and load; no page may frame the UI
/// (clickjacking); `data:` only for the empty favicon.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// An embedded file with the headers every UI response carries.
fn embedded(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// The page.
pub async fn page() -> impl IntoResponse {
    embedded(HTML, INDEX)
}

/// `/ui/{*file}`: a file of the table, or 404.
pub async fn file(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|file| file.path == path) {
        Some(file) => embedded(file.content_type, file.body).into_response(),
        None => AppError::NotFound("file").into_response(),
    }
}
