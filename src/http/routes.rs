//! The route table: every route with the policy it demands.
//!
//! The router is built from this table, so a route can't exist without a
//! policy, and the tests enumerate it (every route × every role × own/other bot).

use super::openapi::{self as api, Doc};
use super::{admin, export, ingest, insights, ops, review, search, sources, ui};
use crate::app::App;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use convlog_engine::auth::Policy;
use convlog_engine::query::Target;

/// One method on one path.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
    /// Body types accepted (415 otherwise).
    pub accepts: Accepts,
    /// Whether a request may leave out the body (the description says so).
    pub body_optional: bool,
    pub handler: MethodRouter<App>,
    pub doc: Doc,
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
    /// OTLP/HTTP: `application/x-protobuf` or `application/json`.
    ProtobufOrJson,
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
            Accepts::ProtobufOrJson => {
                matches!(
                    essence.as_str(),
                    "application/x-protobuf" | "application/json"
                )
            }
        }
    }

    /// The accepted types in words, for the 415 message.
    pub fn describe(self) -> &'static str {
        match self {
            Accepts::Nothing => "no body",
            Accepts::Json => "application/json",
            Accepts::JsonOrNdjson => "application/json or application/x-ndjson",
            Accepts::ProtobufOrJson => "application/x-protobuf or application/json",
        }
    }
}

impl Route {
    /// Takes OTLP bodies: protobuf or JSON.
    fn protobuf(mut self) -> Route {
        self.accepts = Accepts::ProtobufOrJson;
        self
    }

    /// Also accepts NDJSON bodies.
    fn ndjson(mut self) -> Route {
        self.accepts = Accepts::JsonOrNdjson;
        self
    }

    /// The body may be left out.
    fn optional_body(mut self) -> Route {
        self.body_optional = true;
        self
    }

    /// Its description.
    fn doc(mut self, doc: Doc) -> Route {
        self.doc = doc;
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
        body_optional: false,
        handler: on(filter, handler),
        doc: Doc::default(),
    }
}

/// A change to a conversation the archive holds (being archived, or restored
/// read-only) is a conflict.
const HELD: &[u16] = &[409];

/// Every route of the service, with its description.
pub fn routes() -> Vec<Route> {
    use Method as M;
    use Policy::*;
    use api::{Ok as Answer, Query as Q};
    let search = |target| Q::Search(target);
    let json = |schema| Answer::Json(200, schema);
    let job = Answer::Json(202, api::job);
    vec![
        route(M::POST, "/v1/messages", Ingest, ingest::messages)
            .ndjson()
            .doc(Doc {
                summary: "Ingest messages: a JSON array or NDJSON",
                body: Some(ingest::message_body),
                ok: json(ingest::accepted),
                // 409: a session held by the archive (being archived or restored).
                also: &[409, 422],
                ..Doc::default()
            }),
        route(M::POST, "/v1/traces", Ingest, ingest::traces)
            .ndjson()
            .doc(Doc {
                summary: "Ingest debug trace events: a JSON array or NDJSON",
                body: Some(ingest::trace_body),
                ok: json(ingest::accepted_traces),
                // 409: a session held by the archive (being archived or restored).
                also: &[409, 422],
                ..Doc::default()
            }),
        route(M::POST, "/otlp/v1/traces", Ingest, ingest::otlp_traces)
            .protobuf()
            .doc(Doc {
                summary: "Ingest OpenTelemetry traces (OTLP/HTTP, protobuf or JSON, gzip or not): \
                          GenAI inference spans become messages, other spans debugger events",
                body: Some(ingest::otlp_body),
                ok: Answer::JsonOrProtobuf(ingest::otlp_answer),
                also: HELD,
                ..Doc::default()
            }),
        route(M::POST, "/v1/ingest/rasa", Ingest, ingest::rasa)
            .ndjson()
            .doc(Doc {
                summary: "Ingest Rasa tracker events: one, an array, a tracker, or NDJSON",
                query: Q::Params(ingest::rasa_params),
                body: Some(ingest::rasa_body),
                ok: json(ingest::accepted_rasa),
                also: &[409, 422],
                ..Doc::default()
            }),
        route(M::GET, "/v1/filters", Public, search::filters).doc(Doc {
            summary: "The search filters (the filter table)",
            ok: json(search::filters_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots", Read, search::bots).doc(Doc {
            summary: "The bots the key may read",
            ok: json(search::bots_schema),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations",
            Read,
            search::conversations,
        )
        .doc(Doc {
            summary: "Search conversations, with facet counts",
            query: search(Target::Conversations),
            ok: json(api::conversation_page),
            ..Doc::default()
        }),
        route(
            M::POST,
            "/v1/bots/{bot}/conversations/bulk",
            Edit,
            review::bulk,
        )
        .doc(Doc {
            summary: "Label, unlabel or flag every conversation a search matches (or those named)",
            also: HELD,
            query: search(Target::Aggregates),
            body: Some(review::bulk_body),
            ok: json(review::bulk_outcome),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/export",
            Read,
            export::export,
        )
        .doc(Doc {
            summary: "Download the conversations a search matches: CSV rows or NDJSON messages, streamed",
            query: api::Query::Filters(Target::Aggregates, export::export_params),
            ok: api::Ok::Text(&["text/csv", "application/x-ndjson"]),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/bulk",
            Read,
            review::bulk_actions,
        )
        .doc(Doc {
            summary: "The bot's recent bulk actions (the last 20), with their progress",
            ok: json(review::bulk_actions_schema),
            ..Doc::default()
        }),
        route(
            M::POST,
            "/v1/bots/{bot}/conversations/bulk/{action}/undo",
            Edit,
            review::undo_bulk,
        )
        .doc(Doc {
            summary: "Undo a bulk action: put back what it changed, where nobody changed it since",
            ok: json(review::bulk_action),
            also: &[409],
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/{id}",
            Read,
            search::conversation,
        )
        .doc(Doc {
            summary: "One conversation with its messages, tags explained and the user's history",
            query: Q::Params(search::conversation_params),
            ok: json(api::conversation_detail),
            ..Doc::default()
        }),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/labels/{label}",
            Edit,
            review::add_label,
        )
        .doc(Doc {
            summary: "Add a label",
            also: HELD,
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/labels/{label}",
            Edit,
            review::remove_label,
        )
        .doc(Doc {
            summary: "Remove a label",
            also: HELD,
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/flag",
            Edit,
            review::flag,
        )
        .optional_body()
        .doc(Doc {
            summary: "Flag, optionally with a note",
            also: HELD,
            body: Some(review::flag_body),
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/flag",
            Edit,
            review::unflag,
        )
        .doc(Doc {
            summary: "Remove the flag",
            also: HELD,
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::PUT,
            "/v1/bots/{bot}/conversations/{id}/debug",
            Edit,
            review::debug_on,
        )
        .doc(Doc {
            summary: "Turn debug logging on",
            also: HELD,
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::DELETE,
            "/v1/bots/{bot}/conversations/{id}/debug",
            Edit,
            review::debug_off,
        )
        .doc(Doc {
            summary: "Turn debug logging off",
            also: HELD,
            ok: json(api::conversation),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/conversations/{id}/trace",
            Read,
            review::trace,
        )
        .doc(Doc {
            summary: "What the bot did for each input (debug traces)",
            query: Q::Params(review::trace_params),
            ok: json(review::trace_schema),
            ..Doc::default()
        }),
        route(
            M::POST,
            "/v1/bots/{bot}/conversations/{id}/share",
            Edit,
            review::share,
        )
        .optional_body()
        .doc(Doc {
            summary: "Create a read-only share link",
            body: Some(review::share_body),
            ok: json(review::share_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/debug", Read, review::debug_list).doc(Doc {
            summary: "Conversations with debug logging on",
            ok: json(review::conversations_schema),
            ..Doc::default()
        }),
        route(
            M::DELETE,
            "/v1/bots/{bot}/shares/{token}",
            Edit,
            review::revoke_share,
        )
        .doc(Doc {
            summary: "Revoke a share link",
            ok: json(review::revoked_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/shared/{token}", Public, review::shared).doc(Doc {
            summary: "A shared conversation (no key: the token is the credential)",
            ok: json(review::shared_schema),
            also: &[429],
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/messages", Read, search::messages).doc(Doc {
            summary: "Search messages",
            query: search(Target::Messages),
            ok: json(api::message_page),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/nodes", Read, search::nodes).doc(Doc {
            summary: "Every node seen, with the conversations that passed through it",
            query: search(Target::Aggregates),
            ok: json(search::nodes_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/flows", Read, search::flows).doc(Doc {
            summary: "The funnel of every flow",
            query: search(Target::Aggregates),
            ok: json(search::flows_schema),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/bots/{bot}/insights/unidentified",
            Read,
            insights::unidentified,
        )
        .doc(Doc {
            summary: "What the bot missed: the inputs a fallback answered, in clusters of similar ones",
            query: api::Query::Filters(Target::Aggregates, insights::unidentified_params),
            ok: json(insights::unidentified_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/tail", Read, insights::tail).doc(Doc {
            summary: "Live tail: matching messages as they are ingested (Server-Sent Events)",
            query: api::Query::Filters(Target::Messages, Vec::new),
            ok: api::Ok::Text(&["text/event-stream"]),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/tags", Read, search::tags).doc(Doc {
            summary: "Tags with their conversation counts",
            query: search(Target::Aggregates),
            ok: json(search::tags_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/bots/{bot}/labels", Read, search::labels).doc(Doc {
            summary: "Labels with their conversation counts",
            query: search(Target::Aggregates),
            ok: json(search::labels_schema),
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/tagging", Admin, admin::tagging).doc(Doc {
            summary: "Re-run the tagging rules over every hot conversation (a job)",
            ok: job,
            also: &[409],
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/reindex", Admin, admin::reindex).doc(Doc {
            summary: "Rebuild the index from the store and swap it in (a job)",
            ok: job,
            also: &[409],
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/archive", Admin, admin::archive).doc(Doc {
            summary: "Archive conversations past retention (a job); `dry_run=true` plans only",
            query: Q::Params(admin::archive_params),
            ok: job,
            also_ok: Some((200, admin::plan_schema)),
            also: &[409],
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/admin/archive/partitions",
            Admin,
            admin::archive_partitions,
        )
        .doc(Doc {
            summary: "The archive's partitions",
            ok: json(admin::partitions_schema),
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/restore", Admin, admin::restore).doc(Doc {
            summary: "Bring archived conversations of a bot back (a job)",
            body: Some(admin::restore_body),
            ok: job,
            also: &[409],
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/erase", Admin, admin::erase).doc(Doc {
            summary: "Erase one end user of one bot: hot store, index and archive (a job)",
            body: Some(admin::erase_body),
            ok: job,
            ..Doc::default()
        }),
        route(M::GET, "/v1/admin/sources", Admin, sources::sources).doc(Doc {
            summary: "The logs this node consumes ([sources]): position stored, lag, dead letters",
            ok: json(sources::sources_schema),
            ..Doc::default()
        }),
        route(
            M::GET,
            "/v1/admin/sources/{source}/dead-letters",
            Admin,
            sources::dead_letters,
        )
        .doc(Doc {
            summary: "What a source carried that could not be stored, with the reason, newest first",
            query: Q::Params(sources::dead_letter_params),
            ok: json(sources::dead_letters_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/admin/jobs", Admin, admin::jobs).doc(Doc {
            summary: "Recent jobs, newest first",
            ok: json(admin::jobs_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/admin/jobs/{id}", Admin, admin::job).doc(Doc {
            summary: "One job and its progress",
            ok: json(api::job),
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/jobs/{id}/cancel", Admin, admin::cancel).doc(Doc {
            summary: "Ask a running job to stop (409 when it is not running)",
            ok: job,
            also: &[409],
            ..Doc::default()
        }),
        route(M::POST, "/v1/admin/keys", Admin, admin::create_key).doc(Doc {
            summary: "Create an API key (the key is in this answer only)",
            body: Some(admin::key_body),
            ok: Answer::Json(201, admin::new_key_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/admin/keys", Admin, admin::list_keys).doc(Doc {
            summary: "Every key (never the secret)",
            ok: json(admin::keys_schema),
            ..Doc::default()
        }),
        route(M::DELETE, "/v1/admin/keys/{id}", Admin, admin::revoke_key).doc(Doc {
            summary: "Revoke a key, effective for the next request",
            ok: json(admin::revoked_key_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/admin/audit", Admin, admin::audit).doc(Doc {
            summary: "The audit log, newest first",
            query: Q::Params(admin::audit_params),
            ok: json(admin::audit_schema),
            ..Doc::default()
        }),
        route(M::GET, "/v1/openapi.json", Public, ops::openapi).doc(Doc {
            summary: "This description",
            ..Doc::default()
        }),
        route(M::GET, "/healthz", Public, ops::healthz).doc(Doc {
            summary: "The process is up",
            ok: json(ops::status_schema),
            ..Doc::default()
        }),
        route(M::GET, "/readyz", Public, ops::readyz).doc(Doc {
            summary: "Ready: the store is open and the index caught up",
            ok: json(ops::status_schema),
            ..Doc::default()
        }),
        route(M::GET, "/metrics", Admin, ops::metrics).doc(Doc {
            summary: "Prometheus metrics",
            ok: Answer::Text(&["text/plain"]),
            ..Doc::default()
        }),
        route(M::GET, "/", Public, ui::page).doc(ui_doc("The web UI")),
        route(M::GET, "/bots/{bot}", Public, ui::page).doc(ui_doc("The web UI: a bot's logs")),
        route(M::GET, "/bots/{bot}/{*rest}", Public, ui::page)
            .doc(ui_doc("The web UI: any page of a bot")),
        route(M::GET, "/shared/{token}", Public, ui::page)
            .doc(ui_doc("The web UI: a shared conversation")),
        route(M::GET, "/ui/{*file}", Public, ui::file).doc(Doc {
            summary: "The web UI's files (ES modules, style sheet)",
            ok: Answer::Text(&["text/javascript", "text/css"]),
            also: &[404],
            ..Doc::default()
        }),
    ]
}

fn ui_doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        ok: api::Ok::Text(&["text/html"]),
        ..Doc::default()
    }
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
