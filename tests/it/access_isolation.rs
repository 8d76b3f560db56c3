//! Acceptance 2 of issue #8: a key of bot `a` asking with bot `b`'s ids, terms, filters,
//! cursors, share tokens or `bot_id:` syntax gets 0 foreign hits, and can't change `b`.
//! Ingest of another bot's messages is refused (422, field `bot_id`) and stores nothing.

use crate::access::{
    AuthServer, Resp, api_create_key, cli_create_key, conversation_ids, two_bot_messages,
};
use crate::common::{ALL_FROM, ALL_TO, encode, message};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Strings that only bot `b`'s data holds.
const B_MARKERS: [&str; 8] = [
    "zebrafoo",
    "bmsg-",
    "bchan",
    "b-flow",
    "b-step",
    "n-b-node",
    "b node name",
    "blabel",
];

/// Everything in `value` that belongs to bot `b`: its conversation ids, its marker strings,
/// or a `bot_id` other than `a`.
fn foreign(value: &Value, b_ids: &BTreeSet<String>, found: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            let lower = text.to_lowercase();
            if b_ids.contains(text) {
                found.push(format!("b's conversation id {text}"));
            }
            for marker in B_MARKERS {
                if lower.contains(marker) {
                    found.push(format!("{marker:?} in {text:?}"));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| foreign(v, b_ids, found)),
        Value::Object(map) => {
            for (name, v) in map {
                if name == "bot_id" && v.as_str().is_some_and(|bot| bot != "a") {
                    found.push(format!("bot_id {v}"));
                }
                foreign(&Value::String(name.clone()), b_ids, found);
                foreign(v, b_ids, found);
            }
        }
        _ => {}
    }
}

struct Probe<'a> {
    server: &'a AuthServer,
    b_ids: BTreeSet<String>,
    requests: usize,
    hits: Vec<String>,
}

impl Probe<'_> {
    /// Sends a request of a key of bot `a`: it must be answered 2xx without anything of
    /// `b`, or refused 400/404.
    fn check(&mut self, method: &str, path: &str, key: &str, body: Option<Value>) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let reply = self
            .server
            .api
            .send(method, path, Some(key), bytes.as_deref(), &[]);
        self.requests += 1;
        if (200..300).contains(&reply.status) {
            let mut found = Vec::new();
            foreign(&reply.json(), &self.b_ids, &mut found);
            for what in found {
                self.hits.push(format!("{method} {path}: {what}"));
            }
        } else if ![400, 404].contains(&reply.status) {
            self.hits.push(format!(
                "{method} {path}: unexpected {} {}",
                reply.status, reply.body
            ));
        }
        reply
    }
}

#[test]
fn queries_with_another_bots_ids_terms_and_syntax_find_nothing_of_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let api = &server.api;
    server.ingest(None, &two_bot_messages());
    server.wait_indexed(None);
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "root");
    let viewer = cli_create_key(&dir, "viewer", "a", "viewer-a");
    let editor = cli_create_key(&dir, "editor", "a", "editor-a");
    let admin_a = api_create_key(api, &admin, "admin", json!(["a"]), "admin-a");

    // Bot b: a label, a flag, debug logging and a share link on its first conversation.
    let b_ids_list = conversation_ids(api, &admin, "b");
    let a_ids = conversation_ids(api, &admin, "a");
    let b0 = b_ids_list[0].clone();
    for (method, path) in [
        (
            "PUT",
            format!("/v1/bots/b/conversations/{b0}/labels/blabel"),
        ),
        ("PUT", format!("/v1/bots/b/conversations/{b0}/flag")),
        ("PUT", format!("/v1/bots/b/conversations/{b0}/debug")),
    ] {
        let reply = api.send(method, &path, Some(&admin), None, &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let share = api.send(
        "POST",
        &format!("/v1/bots/b/conversations/{b0}/share"),
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(share.status, 200, "{}", share.body);
    let b_token = share.json()["token"].as_str().expect("token").to_string();
    server.wait_indexed(Some(&admin));
    let b_before = api.get_ok(&format!("/v1/bots/b/conversations/{b0}"), Some(&admin));
    let b_cursor = api.get_ok(
        &format!("/v1/bots/b/conversations?from={ALL_FROM}&to={ALL_TO}&limit=1"),
        Some(&admin),
    )["next_cursor"]
        .as_str()
        .expect("b has more than one page")
        .to_string();

    // The probes are not vacuous: the same questions on b find b.
    for filter in [
        "q=zebrafoo",
        "q=bot%3Azebrafoo",
        "label=blabel",
        "channel=bchan",
        "node=n-b-node",
    ] {
        let page = api.get_ok(
            &format!("/v1/bots/b/conversations?from={ALL_FROM}&to={ALL_TO}&{filter}"),
            Some(&admin),
        );
        assert!(
            page["total"].as_u64() > Some(0),
            "b: {filter} finds nothing"
        );
    }
    let mut probe = Probe {
        server: &server,
        b_ids: b_ids_list.iter().cloned().collect(),
        requests: 0,
        hits: Vec::new(),
    };
    let range = format!("from={ALL_FROM}&to={ALL_TO}");
    let queries = [
        "bot_id:b",
        "bot_id:\"b\"",
        "(bot_id:b)",
        "bot_id:b OR bot_id:a",
        "zebrafoo",
        "\"zebrafoo hello\"",
        "user:zebrafoo",
        "bot:zebrafoo",
        "zebrafoo OR alphaword",
        "NOT alphaword",
        "NOT zebrafoo",
        "-alphaword",
        "b",
        "bmsg",
        "bchan",
        "blabel",
        "*",
        "zebra*",
        "zebrafoo~",
        "/zebrafoo/",
        "/.*/",
        "hello",
        "zebrafoo bot_id:b",
    ];
    let keys = [&viewer, &editor, &admin_a];
    for q in queries {
        for key in keys {
            let q = encode(q);
            for endpoint in ["conversations", "messages"] {
                for extra in ["", "&sort=relevance", "&limit=100"] {
                    probe.check(
                        "GET",
                        &format!("/v1/bots/a/{endpoint}?{range}&q={q}{extra}"),
                        key,
                        None,
                    );
                }
            }
            for endpoint in ["nodes", "flows", "tags", "labels"] {
                probe.check(
                    "GET",
                    &format!("/v1/bots/a/{endpoint}?{range}&q={q}"),
                    key,
                    None,
                );
            }
        }
    }
    // b's filter values on a's endpoints.
    let filters = [
        "channel=bchan",
        "flow=b-flow",
        "flow=b-flow&step=b-step",
        "flow=b-flow&dropoff=true",
        "node=n-b-node",
        "label=blabel",
        "flagged=true",
        "tag=unidentified_response",
        "role=user",
    ];
    for filter in filters {
        for endpoint in [
            "conversations",
            "messages",
            "nodes",
            "flows",
            "tags",
            "labels",
        ] {
            probe.check(
                "GET",
                &format!("/v1/bots/a/{endpoint}?{range}&{filter}"),
                &viewer,
                None,
            );
        }
    }
    // Facets, debug list, details (history of the same end users), traces of a.
    probe.check("GET", "/v1/bots/a/debug", &viewer, None);
    for id in &a_ids {
        probe.check(
            "GET",
            &format!("/v1/bots/a/conversations/{id}?q=zebrafoo"),
            &viewer,
            None,
        );
        probe.check(
            "GET",
            &format!("/v1/bots/a/conversations/{id}/trace"),
            &viewer,
            None,
        );
    }
    // b's cursor on a: refused or a's own hits.
    for endpoint in ["conversations", "messages"] {
        probe.check(
            "GET",
            &format!(
                "/v1/bots/a/{endpoint}?{range}&limit=1&cursor={}",
                encode(&b_cursor)
            ),
            &viewer,
            None,
        );
    }
    // b's conversation ids under a: 404, exactly like an id that doesn't exist.
    let missing = api.get("/v1/bots/a/conversations/c_fffffffffff", Some(&viewer));
    assert_eq!(missing.status, 404);
    for id in &b_ids_list {
        for suffix in ["", "/trace", "/trace?message_id=bmsg-0-0"] {
            let reply = probe.check(
                "GET",
                &format!("/v1/bots/a/conversations/{id}{suffix}"),
                &viewer,
                None,
            );
            assert_eq!(reply.status, 404, "{id}{suffix}: {}", reply.body);
            if suffix.is_empty() {
                assert_eq!(
                    (reply.code(), reply.json()["error"]["message"].clone()),
                    (missing.code(), missing.json()["error"]["message"].clone()),
                    "b's id answers differently from a missing id"
                );
            }
        }
    }
    // Other spellings of b in the path: refused.
    for bot in [
        "b",
        "B",
        "%62",
        "a%2F..%2Fb",
        "a,b",
        "*",
        "%2A",
        "b%00",
        "b%20",
    ] {
        let reply = probe.check(
            "GET",
            &format!("/v1/bots/{bot}/conversations?{range}"),
            &viewer,
            None,
        );
        assert!(
            [400, 404].contains(&reply.status),
            "/v1/bots/{bot}: {} {}",
            reply.status,
            reply.body
        );
    }

    // Changes to b through a's paths: 404, and b is unchanged.
    for key in [&editor, &admin_a] {
        for (method, path, body) in [
            (
                "PUT",
                format!("/v1/bots/a/conversations/{b0}/labels/hacked"),
                None,
            ),
            (
                "DELETE",
                format!("/v1/bots/a/conversations/{b0}/labels/blabel"),
                None,
            ),
            (
                "DELETE",
                format!("/v1/bots/a/conversations/{b0}/flag"),
                None,
            ),
            (
                "PUT",
                format!("/v1/bots/a/conversations/{b0}/flag"),
                Some(json!({"note": "x"})),
            ),
            (
                "DELETE",
                format!("/v1/bots/a/conversations/{b0}/debug"),
                None,
            ),
            ("POST", format!("/v1/bots/a/conversations/{b0}/share"), None),
            ("DELETE", format!("/v1/bots/a/shares/{b_token}"), None),
        ] {
            let reply = probe.check(method, &path, key, body);
            assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        }
        // Bulk on a with b's words or no filter at all touches only a.
        for filter in [
            "q=zebrafoo",
            "channel=bchan",
            "label=blabel",
            "flagged=true",
            "",
        ] {
            probe.check(
                "POST",
                &format!("/v1/bots/a/conversations/bulk?{range}&{filter}"),
                key,
                Some(json!({"add_labels": ["bulk-a"], "remove_labels": ["blabel"], "flag": false})),
            );
        }
    }
    server.wait_indexed(Some(&admin));
    let b_after = api.get_ok(&format!("/v1/bots/b/conversations/{b0}"), Some(&admin));
    for field in ["labels", "flagged", "debug", "messages", "tags"] {
        assert_eq!(
            b_before[field], b_after[field],
            "b's {field} changed through a's paths"
        );
    }
    for id in &b_ids_list {
        let labels = &api.get_ok(&format!("/v1/bots/b/conversations/{id}"), Some(&admin))["labels"];
        assert!(
            !labels.to_string().contains("bulk-a") && !labels.to_string().contains("hacked"),
            "b's {id} got a's labels: {labels}"
        );
    }
    let shared = api.get(&format!("/v1/shared/{b_token}"), None);
    assert_eq!(shared.status, 200, "b's share was revoked through a's path");
    // a's bulk did change a (the requests above were real).
    let a_labels = api.get_ok(
        &format!("/v1/bots/a/conversations/{}", a_ids[0]),
        Some(&admin),
    );
    assert!(
        a_labels["labels"].to_string().contains("bulk-a"),
        "{a_labels}"
    );

    println!(
        "cross-bot probes: {} requests, {} foreign hits",
        probe.requests,
        probe.hits.len()
    );
    assert!(
        probe.hits.is_empty(),
        "{} foreign hits:\n{}",
        probe.hits.len(),
        probe.hits.join("\n")
    );
}

/// Ingest and trace keys of bot `a` can't write to `b`: 422 naming `bot_id` and the item,
/// and nothing of the batch is stored (not even a's items).
#[test]
fn ingest_outside_the_keys_bots_is_422_and_stores_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let api = &server.api;
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "root");
    let ingest = cli_create_key(&dir, "ingest", "a", "ingest-a");
    let admin_a = cli_create_key(&dir, "admin", "a", "admin-a");
    let at = "2026-11-18T09:00:00Z";
    for key in [&ingest, &admin_a] {
        let batch = json!([
            message("x-a-1", "a", "u1", "mixedbatchword", at),
            message("x-b-1", "b", "u1", "mixedbatchword", at),
            message("x-c-1", "c", "u1", "mixedbatchword", at),
        ]);
        let reply = api.post("/v1/messages", Some(key), &batch);
        assert_eq!(reply.status, 422, "{}", reply.body);
        let details = reply.json()["error"]["details"].clone();
        let fields: Vec<(u64, String)> = details
            .as_array()
            .expect("details")
            .iter()
            .map(|d| {
                (
                    d["index"].as_u64().unwrap_or(99),
                    d["field"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            vec![(1, "bot_id".to_string()), (2, "bot_id".to_string())],
            "{details}"
        );
        // NDJSON too.
        let ndjson = format!(
            "{}\n",
            serde_json::to_string(&message("x-b-2", "b", "u1", "ndjsonword", at)).unwrap()
        );
        let reply = api.send(
            "POST",
            "/v1/messages",
            Some(key),
            Some(ndjson.as_bytes()),
            &[("Content-Type", "application/x-ndjson")],
        );
        assert_eq!(reply.status, 422, "{}", reply.body);
        // Traces.
        let traces = json!([{"bot_id": "b", "user_id": "u1", "channel": "web",
                              "timestamp": at, "action": "t"}]);
        let reply = api.post("/v1/traces", Some(key), &traces);
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert_eq!(reply.json()["error"]["details"][0]["field"], "bot_id");
    }
    // The allowed bot still works.
    let ok = api.post(
        "/v1/messages",
        Some(&ingest),
        &json!([message("x-a-2", "a", "u1", "allowedword", at)]),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.wait_indexed(Some(&admin));
    for bot in ["a", "b", "c"] {
        let page = api.get_ok(
            &format!(
                "/v1/bots/{bot}/messages?from={ALL_FROM}&to={ALL_TO}&q={}",
                encode("mixedbatchword OR ndjsonword")
            ),
            Some(&admin),
        );
        assert_eq!(page["total"], 0, "bot {bot} stored part of a refused batch");
    }
    let page = api.get_ok(
        &format!("/v1/bots/a/messages?from={ALL_FROM}&to={ALL_TO}&q=allowedword"),
        Some(&admin),
    );
    assert_eq!(page["total"], 1);
}
