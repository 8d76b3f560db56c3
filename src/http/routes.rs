//! The route table: every route with the policy it demands.
//!
//! The router is built from this table, so a route can't exist without a
//! policy, and the tests enumerate it (every route × every role × own/other bot).

use super::{admin, ingest, ops, review, search, ui};
use crate::app::App;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use convlog_engine::auth::Policy;

/// One method on one path.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
    /// Body types accepted (415 otherwise).
    pub accepts: Accepts,
    pub handler: MethodRouter<App>,
}

/// The media types a route's request body may have. A request without a body
/// passes; a body of any other type gets 415, so a browser can't send one
/// cross-site without a CORS preflight (which the server never grants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// No body at all (GET, HEAD, DELETE): one is refused before it is read.
    Nothing,
    /// `application/json`.
    Json,
    /// `application/json` or NDJSON (`application/x-ndjson`, `application/jsonl`).
    JsonOrNdjson,
}

impl Accepts {
    /// Whether a body of `content_type` is accepted.
    pub fn allows(self, content_type: Option<&str>) -> bool {
        let Some(essence) = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
        else {
            return false;
        };
        match self {
            Accepts::Nothing => false,
            Accepts::Json => essence == "application/json",
            Accepts::JsonOrNdjson => matches!(
                essence.as_str(),
                "application/json" | "application/x-ndjson" | "application/jsonl"
            ),
        }
    }

    /// The accepted types in words, for the 415 message.
    pub fn describe(self) -> &'static str {
        match self {
            Accepts::Nothing => "no body",
            Accepts::Json => "application/json",
            Accepts::JsonOrNdjson => "application/json or application/x-ndjson",
        }
    }
}

impl Route {
    /// Also accepts NDJSON bodies.
    fn ndjson(mut self) -> Route {
        self.accepts = Accepts::JsonOrNdjson;
        self
    }
}

/// What the guard needs to know of a route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub policy: Policy,
    pub accepts: Accepts,
}

fn route<H, T>(method: Method, path: &'static str, policy: Policy, handler: H) -> Route
where
    H: axum::handler::Handler<T, App>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    let accepts = match method {
        Method::GET | Method::HEAD | Method::DELETE => Accepts::Nothing,
        _ => Accepts::Json,
    };
    Route {
        method,
        path,
        policy,
        accepts,
        handler: on(filter, handler),
    }
}

/// Every route of the service.
pub fn routes() -> Vec<Route> {
    use Method as M;
    use Policy::*;
    vec![
        route(M::POST, "/v1/messages", Ingest, ingest::messages).ndjson(),
        route(M::POST, "/v1/traces", Ingest, ingest::traces).ndjson(),
        route(M::GET, "/v1/filters", Public, search::filters),
        route(M::GET, "/v1/bots", Read, search::bots),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations",
            Read,
            search::conversations,
        ),
        route(
            M::POST,
            "/v1/bots/{bot}/conversations/bulk",
            Edit,
            review::bulk,
        ),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/{id}",
            Read,
            search::conversation,
        ),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/labels/{label}",
            Edit,
            review::add_label,
        ),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/labels/{label}",
            Edit,
            review::remove_label,
        ),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/flag",
            Edit,
            review::flag,
        ),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/flag",
            Edit,
            review::unflag,
        ),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/debug",
            Edit,
            review::debug_on,
        ),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/debug",
            Edit,
            review::debug_off,
        ),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/{id}/trace",
            Read,
            review::trace,
        ),
        route(
            M::POST,
            "/v1/bots/{bot}/conversations/{id}/share",
            Edit,
            review::share,
        ),
        route(M::GET, "/v1/bots/{bot}/debug", Read, review::debug_list),
        route(
            M::DELETE,
            "/v1/bots/{bot}/shares/{token}",
            Edit,
            review::revoke_share,
        ),
        route(M::GET, "/v1/shared/{token}", Public, review::shared),
        route(M::GET, "/v1/bots/{bot}/messages", Read, search::messages),
        route(M::GET, "/v1/bots/{bot}/nodes", Read, search::nodes),
        route(M::GET, "/v1/bots/{bot}/flows", Read, search::flows),
        route(M::GET, "/v1/bots/{bot}/tags", Read, search::tags),
        route(M::GET, "/v1/bots/{bot}/labels", Read, search::labels),
        route(M::POST, "/v1/admin/tagging", Admin, admin::tagging),
        route(M::POST, "/v1/admin/reindex", Admin, admin::reindex),
        route(M::POST, "/v1/admin/archive", Admin, admin::archive),
        route(
            M::GET,
            "/v1/admin/archive/partitions",
            Admin,
            admin::archive_partitions,
        ),
        route(M::POST, "/v1/admin/restore", Admin, admin::restore),
        route(M::GET, "/v1/admin/jobs", Admin, admin::jobs),
        route(M::GET, "/v1/admin/jobs/{id}", Admin, admin::job),
        route(M::DELETE, "/v1/admin/jobs/{id}", Admin, admin::cancel),
        route(M::POST, "/v1/admin/keys", Admin, admin::create_key),
        route(M::GET, "/v1/admin/keys", Admin, admin::list_keys),
        route(M::DELETE, "/v1/admin/keys/{id}", Admin, admin::revoke_key),
        route(M::GET, "/v1/admin/audit", Admin, admin::audit),
        route(M::GET, "/v1/openapi.json", Public, ops::openapi),
        route(M::GET, "/healthz", Public, ops::healthz),
        route(M::GET, "/readyz", Public, ops::readyz),
        route(M::GET, "/metrics", Admin, ops::metrics),
        route(M::GET, "/", Public, ui::page),
        route(M::GET, "/bots/{bot}", Public, ui::page),
        route(M::GET, "/bots/{bot}/{*rest}", Public, ui::page),
        route(M::GET, "/shared/{token}", Public, ui::page),
        route(M::GET, "/ui/{*file}", Public, ui::file),
    ]
}

/// Every route's method, path and spec, built once.
static SPECS: std::sync::LazyLock<Vec<(Method, &'static str, RouteSpec)>> =
    std::sync::LazyLock::new(|| {
        routes()
            .into_iter()
            .map(|r| {
                let spec = RouteSpec {
                    policy: r.policy,
                    accepts: r.accepts,
                };
                (r.method, r.path, spec)
            })
            .collect()
    });

/// The methods `path` has, for `Allow` (HEAD wherever GET is).
pub fn allowed_methods(path: &str) -> String {
    let mut methods: Vec<String> = Vec::new();
    for (method, _, _) in SPECS.iter().filter(|(_, p, _)| *p == path) {
        methods.push(method.to_string());
        if method == Method::GET {
            methods.push(Method::HEAD.to_string());
        }
    }
    methods.sort();
    methods.dedup();
    methods.join(", ")
}

/// The policy and body types of `method` on the matched `path`; `None` when
/// the path has no such method.
pub fn spec(method: &Method, path: &str) -> Option<RouteSpec> {
    SPECS
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map(|(_, _, spec)| *spec)
}
