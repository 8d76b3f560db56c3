//! The OpenAPI description, generated from the code at start-up.
//!
//! - paths, methods, security and the error answers a route can give come from
//!   the route table ([`super::routes`]): its policy (401/403/429), its body
//!   (400/408/413/415/503), its path parameters (400/404), its [`Doc`];
//! - search parameters come from the engine's filter table
//!   ([`convlog_engine::query::filters::FILTERS`]) plus paging;
//! - the conversation, message and tag objects are derived (`utoipa`) from the
//!   view structs the handlers answer with;
//! - request bodies, other query parameters and the envelopes (pages, jobs,
//!   keys) are written beside the handler that parses or builds them, and
//!   Schemathesis checks them against the running server in CI
//!   (`tests/schemathesis/run`).
//!
//! `docs/openapi.json` is a copy of this document, kept equal by a test.

use super::routes::{Accepts, Route, routes};
use super::views::{ConversationView, MessageView, TagDetailView};
use convlog_engine::auth::Policy;
use convlog_engine::query::filters::{FILTERS, Kind};
use convlog_engine::query::{MAX_LIMIT, Target};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// A schema, made when the document is.
pub type SchemaFn = fn(&mut Components) -> Value;

/// What the route table says of a route for its description.
#[derive(Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    pub query: Query,
    /// The JSON request body, when the route takes one.
    pub body: Option<SchemaFn>,
    /// The body of the success answer.
    pub ok: Ok,
    /// Another success answer (a dry run's 200 beside a job's 202).
    pub also_ok: Option<(u16, SchemaFn)>,
    /// Error statuses beyond those the route's shape implies (e.g. 409, 422).
    pub also: &'static [u16],
}

impl Default for Doc {
    fn default() -> Doc {
        Doc {
            summary: "",
            query: Query::None,
            body: None,
            ok: Ok::Json(200, any_object),
            also_ok: None,
            also: &[],
        }
    }
}

/// The query parameters of a route.
#[derive(Clone, Copy)]
pub enum Query {
    None,
    /// The search filters of this target, plus time range, `q` and paging.
    Search(Target),
    /// Parameters of a struct the handler parses (`utoipa::IntoParams`).
    Params(fn() -> Vec<utoipa::openapi::path::Parameter>),
    /// The search filters of this target and time range and `q`, without
    /// paging, plus these.
    Filters(Target, fn() -> Vec<utoipa::openapi::path::Parameter>),
}

/// The success answer of a route.
#[derive(Clone, Copy)]
pub enum Ok {
    /// A JSON body of this schema, with this status.
    Json(u16, SchemaFn),
    /// A body of one of these content types (the UI's files, metrics).
    Text(&'static [&'static str]),
    /// 200 in the request's encoding: JSON of this schema, or its protobuf form.
    JsonOrProtobuf(SchemaFn),
}

/// The component schemas a document collects as it is built.
#[derive(Default)]
pub struct Components(BTreeMap<String, Value>);

impl Components {
    /// A `$ref` to `T`'s derived schema, registering it and what it refers to.
    pub fn derived<T: utoipa::ToSchema>(&mut self) -> Value {
        let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
        T::schemas(&mut nested);
        for (name, schema) in nested {
            self.0.insert(name, to_value(schema));
        }
        let name = T::name().to_string();
        self.0.insert(name.clone(), to_value(T::schema()));
        reference(&name)
    }

    /// A `$ref` to a schema written here, registered under `name`.
    pub fn named(&mut self, name: &str, make: impl FnOnce(&mut Components) -> Value) -> Value {
        if !self.0.contains_key(name) {
            self.0.insert(name.to_string(), Value::Null);
            let schema = make(self);
            self.0.insert(name.to_string(), schema);
        }
        reference(name)
    }
}

fn to_value(schema: impl serde::Serialize) -> Value {
    serde_json::to_value(schema).expect("schemas serialise")
}

pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An object with these properties, the `required` ones always present.
pub fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// `schema` (an object) with no properties besides those it names.
pub fn closed(mut schema: Value) -> Value {
    schema["additionalProperties"] = json!(false);
    schema
}

pub fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

pub fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [schema, { "type": "null" }] })
}

pub fn string() -> Value {
    json!({ "type": "string" })
}

pub fn timestamp() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

pub fn count() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

/// Any JSON object.
pub fn any_object(_: &mut Components) -> Value {
    json!({ "type": "object" })
}

/// `google.rpc.Status` as OTLP/HTTP answers errors in JSON.
fn otlp_status(components: &mut Components) -> Value {
    components.named("OtlpStatus", |_| {
        object(
            &[
                ("code", json!({ "type": "integer" })),
                ("message", string()),
            ],
            &["code", "message"],
        )
    })
}

/// The error object every refusal answers with (`http/error.rs`), on every
/// route but OTLP's ([`otlp_status`]).
fn error(components: &mut Components) -> Value {
    components.named("Error", |_| {
        let item = object(
            &[
                ("index", nullable(count())),
                ("field", nullable(string())),
                ("reason", string()),
            ],
            &["reason"],
        );
        object(
            &[(
                "error",
                object(
                    &[
                        ("code", string()),
                        ("message", string()),
                        ("details", array(item)),
                    ],
                    &["code", "message"],
                ),
            )],
            &["error"],
        )
    })
}

/// The conversation object.
pub fn conversation(components: &mut Components) -> Value {
    components.derived::<ConversationView>()
}

/// The message object.
pub fn message(components: &mut Components) -> Value {
    components.derived::<MessageView>()
}

/// A conversation with its messages, tags explained and the user's history.
pub fn conversation_detail(components: &mut Components) -> Value {
    components.named("ConversationDetail", |c| {
        let extra = object(
            &[
                ("messages", array(message(c))),
                ("tag_details", array(c.derived::<TagDetailView>())),
                ("history", array(conversation(c))),
            ],
            &["messages", "tag_details", "history"],
        );
        json!({ "allOf": [conversation(c), extra] })
    })
}

/// A page of conversation search.
pub fn conversation_page(components: &mut Components) -> Value {
    let hit = json!({ "allOf": [
        conversation(components),
        object(
            &[
                ("snippets", array(string())),
                ("preview", nullable(string())),
            ],
            &["snippets", "preview"],
        ),
    ]});
    let counts = json!({ "type": "object", "additionalProperties": count() });
    object(
        &[
            ("total", count()),
            ("conversations", array(hit)),
            ("next_cursor", nullable(string())),
            (
                "facets",
                json!({ "type": "object", "additionalProperties": counts }),
            ),
        ],
        &["total", "conversations", "next_cursor", "facets"],
    )
}

/// A page of message search.
pub fn message_page(components: &mut Components) -> Value {
    let hit = json!({ "allOf": [
        message(components),
        object(
            &[("conversation_id", string()), ("snippet", nullable(string()))],
            &["conversation_id", "snippet"],
        ),
    ]});
    object(
        &[
            ("total", count()),
            ("messages", array(hit)),
            ("next_cursor", nullable(string())),
        ],
        &["total", "messages", "next_cursor"],
    )
}

/// A background job.
pub fn job(components: &mut Components) -> Value {
    components.named("Job", |_| {
        object(
            &[
                ("id", string()),
                ("kind", string()),
                (
                    "state",
                    json!({ "enum": ["queued", "running", "succeeded", "failed"] }),
                ),
                ("processed", count()),
                ("total", nullable(count())),
                ("created_at", timestamp()),
                ("started_at", nullable(timestamp())),
                ("finished_at", nullable(timestamp())),
                ("error", nullable(string())),
                ("result", json!({})),
            ],
            &["id", "kind", "state", "processed", "created_at"],
        )
    })
}

/// An API key's record (never the key itself, except on creation).
pub fn key(components: &mut Components) -> Value {
    components.named("Key", |_| {
        object(
            &[
                ("id", string()),
                ("name", string()),
                (
                    "role",
                    json!({ "enum": ["viewer", "editor", "ingest", "admin"] }),
                ),
                ("bots", string()),
                ("created_at", timestamp()),
                ("revoked_at", nullable(timestamp())),
            ],
            &["id", "name", "role", "bots", "created_at", "revoked_at"],
        )
    })
}

/// The schema and description of a path parameter.
fn path_parameter(path: &str, name: &str) -> (Value, &'static str) {
    if !path.starts_with("/v1/") {
        // The UI's pages take any value; the page itself says what isn't there.
        return (
            json!({ "type": "string", "minLength": 1 }),
            "Part of the page's address.",
        );
    }
    match name {
        "bot" => (
            json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }),
            "Bot id.",
        ),
        "id" if path.starts_with("/v1/admin/jobs/") => (
            json!({ "type": "string", "pattern": "^j_[0-9a-f]{16}$" }),
            "Job id.",
        ),
        "id" if path.starts_with("/v1/admin/keys/") => (
            json!({ "type": "string", "pattern": "^[0-9a-f]{16}$" }),
            "Key id.",
        ),
        "id" => (
            json!({ "type": "string", "pattern": "^c_[0-9a-f]{1,16}$" }),
            "Conversation id.",
        ),
        "label" => (
            json!({ "type": "string", "minLength": 1, "maxLength": 64 }),
            "Label name (URL-encoded).",
        ),
        "token" => (
            json!({ "type": "string", "minLength": 1, "maxLength": 128 }),
            "Share token.",
        ),
        _ => (
            json!({ "type": "string", "minLength": 1 }),
            "Path below this one.",
        ),
    }
}

fn parameter(name: &str, place: &str, schema: Value, description: &str, required: bool) -> Value {
    json!({
        "name": name,
        "in": place,
        "required": required,
        "description": description,
        "schema": schema,
    })
}

/// The query parameters of a search of `target`: the filter table, then the rest.
/// The paging parameters of a search.
pub const PAGING: [&str; 3] = ["sort", "limit", "cursor"];

fn search_parameters(target: Target) -> Vec<Value> {
    let filter_value = json!({ "type": "string", "minLength": 1, "maxLength": 256 });
    let mut parameters = vec![
        parameter(
            "from",
            "query",
            timestamp(),
            "Start of the time range (inclusive). Default: 24 hours before `to` or now.",
            false,
        ),
        parameter(
            "to",
            "query",
            timestamp(),
            "End of the time range (exclusive).",
            false,
        ),
        parameter(
            "q",
            "query",
            json!({ "type": "string", "maxLength": 1024 }),
            "Full-text query (see docs/api.md).",
            false,
        ),
    ];
    for filter in FILTERS.iter().filter(|f| f.targets.contains(&target)) {
        let value = match filter.choices {
            [] => filter_value.clone(),
            choices => json!({ "enum": choices }),
        };
        let schema = match filter.kind {
            Kind::Multi => array(value),
            Kind::Bool => json!({ "type": "boolean" }),
        };
        let mut value = parameter(filter.param, "query", schema, filter.description, false);
        if filter.kind == Kind::Multi {
            value["style"] = json!("form");
            value["explode"] = json!(true);
        }
        parameters.push(value);
    }
    if target != Target::Aggregates {
        let mut sorts = vec!["last_message_at", "started_at", "relevance"];
        if target == Target::Messages {
            sorts.push("timestamp");
        }
        parameters.extend([
            parameter(
                "sort",
                "query",
                json!({ "enum": sorts }),
                "Order of the results, newest first.",
                false,
            ),
            parameter(
                "limit",
                "query",
                json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT }),
                "Page size.",
                false,
            ),
            parameter(
                "cursor",
                "query",
                string(),
                "`next_cursor` of the previous page, with the same filters.",
                false,
            ),
        ]);
    }
    parameters
}

/// The error answers `route` can give, by status.
fn error_statuses(route: &Route) -> Vec<u16> {
    let mut statuses: Vec<u16> = route.doc.also.to_vec();
    if route.policy != Policy::Public {
        statuses.extend([401, 403, 429]);
    }
    if route.path.contains('{') || !matches!(route.doc.query, Query::None) {
        // A bad value; a request line longer than the server reads.
        statuses.extend([400, 414]);
    }
    if route.path.contains('{') {
        statuses.push(404);
    }
    if route.accepts != Accepts::Nothing {
        statuses.extend([400, 408, 413, 415]);
    }
    if route.path.starts_with("/v1/") || route.path == "/readyz" {
        // The store or the index is unavailable, or the server is busy.
        statuses.push(503);
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn operation(route: &Route, components: &mut Components) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    for name in route
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
    {
        let bare = name.trim_start_matches('*');
        let (schema, description) = path_parameter(route.path, bare);
        parameters.push(parameter(bare, "path", schema, description, true));
    }
    match route.doc.query {
        Query::None => {}
        Query::Search(target) => parameters.extend(search_parameters(target)),
        Query::Params(make) => parameters.extend(make().into_iter().map(to_value)),
        Query::Filters(target, make) => {
            parameters.extend(
                search_parameters(target)
                    .into_iter()
                    .filter(|p| !PAGING.contains(&p["name"].as_str().unwrap_or_default())),
            );
            parameters.extend(make().into_iter().map(to_value));
        }
    }
    let mut responses = Map::new();
    let (status, content) = match route.doc.ok {
        Ok::Json(status, schema) => (
            status,
            json!({ "application/json": { "schema": schema(components) } }),
        ),
        Ok::JsonOrProtobuf(schema) => (
            200,
            json!({
                "application/json": { "schema": schema(components) },
                "application/x-protobuf": { "schema": { "type": "string", "format": "binary" } },
            }),
        ),
        Ok::Text(types) => (
            200,
            types
                .iter()
                .map(|kind| (kind.to_string(), json!({ "schema": { "type": "string" } })))
                .collect::<Map<String, Value>>()
                .into(),
        ),
    };
    responses.insert(
        status.to_string(),
        json!({ "description": reason(status), "content": content }),
    );
    if let Some((status, schema)) = route.doc.also_ok {
        responses.insert(
            status.to_string(),
            json!({ "description": reason(status),
                    "content": { "application/json": { "schema": schema(components) } } }),
        );
    }
    // OTLP routes answer errors with a google.rpc.Status in the request's encoding.
    let content = match route.accepts {
        Accepts::ProtobufOrJson => json!({
            "application/json": { "schema": otlp_status(components) },
            "application/x-protobuf": { "schema": { "type": "string", "format": "binary" } },
        }),
        _ => json!({ "application/json": { "schema": error(components) } }),
    };
    for status in error_statuses(route) {
        let mut response = json!({
            "description": reason(status),
            "content": content,
        });
        if status == 414 {
            // Answered by the HTTP layer before any handler: no body.
            response = json!({ "description": reason(status) });
        }
        if matches!(status, 429 | 503) {
            response["headers"] = json!({ "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": { "type": "integer" },
            }});
        }
        responses.insert(status.to_string(), response);
    }
    let method = route.method.as_str().to_ascii_lowercase();
    let mut operation = json!({
        "operationId": format!("{method} {}", route.path),
        "summary": route.doc.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if route.policy == Policy::Public {
        operation["security"] = json!([]);
    } else {
        let roles = match route.policy {
            Policy::Ingest => "ingest or admin",
            Policy::Read => "viewer, editor or admin",
            Policy::Edit => "editor or admin",
            _ => "admin",
        };
        operation["description"] = json!(format!("Needs a key with the role {roles}."));
    }
    if let Some(body) = route.doc.body {
        let schema = body(components);
        let mut content = Map::new();
        content.insert("application/json".into(), json!({ "schema": schema }));
        match route.accepts {
            Accepts::JsonOrNdjson => {
                content.insert(
                    "application/x-ndjson".into(),
                    json!({ "schema": { "type": "string" } }),
                );
            }
            Accepts::ProtobufOrJson => {
                content.insert(
                    "application/x-protobuf".into(),
                    json!({ "schema": { "type": "string", "format": "binary" } }),
                );
            }
            Accepts::Nothing | Accepts::Json => {}
        }
        operation["requestBody"] = json!({ "required": !route.body_optional, "content": content });
    }
    operation
}

/// The whole document.
pub fn document() -> Value {
    let mut components = Components::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes() {
        let path = route.path.replace("{*", "{");
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = operation(&route, &mut components);
        paths.entry(path).or_default().insert(method, operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "convlog",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Conversation logs for chatbots. Generated from the code \
                (src/http/openapi.rs); readings of the contract are in docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components.0,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
        "security": [{ "bearer": [] }],
    })
}

/// The document as served, made once.
pub static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    serde_json::to_string_pretty(&document()).expect("the document serialises") + "\n"
});

/// A query parameter of a route that parses its own query (see [`Query::Params`]).
/// `limit`: how many to answer, 1 to `max`.
pub fn limit_parameter(description: &str, max: usize) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::schema::Type;
    query_parameter(
        "limit",
        description,
        of_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(max as f64)),
    )
}

pub fn query_parameter(
    name: &str,
    description: &str,
    schema: utoipa::openapi::schema::ObjectBuilder,
) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A schema of one type.
pub fn of_type(kind: utoipa::openapi::schema::Type) -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new().schema_type(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once() {
        let document = document();
        let mut described = 0;
        for route in routes() {
            let path = route.path.replace("{*", "{");
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                document["paths"][&path][&method].is_object(),
                "{method} {path}"
            );
            described += 1;
        }
        let operations: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(operations, described);
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name}"
            );
        }
    }

    /// `docs/openapi.json` is the served document; refresh it with
    /// `CONVLOG_WRITE_OPENAPI=1 cargo test --lib openapi`.
    #[test]
    fn committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        if std::env::var_os("CONVLOG_WRITE_OPENAPI").is_some() {
            std::fs::write(path, DOCUMENT.as_str()).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == *DOCUMENT,
            "docs/openapi.json is stale: run CONVLOG_WRITE_OPENAPI=1 cargo test --lib openapi"
        );
    }
}
