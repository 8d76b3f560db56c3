//! Refusals of the search side: bad parameters and queries get a clear 4xx, never a crash.

use crate::common::{ALL_FROM, ALL_TO, Server, encode};

fn assert_refused(server: &Server, path: &str, status: u16, code: &str) -> String {
    let reply = server.get(path);
    assert_eq!(reply.status, status, "{path}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{path}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn search_refuses_unknown_parameters_and_bad_values_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for query in [
        "chanel=web",
        "step=ask-email",
        "limit=0",
        "limit=101",
        "flagged=yes",
        "from=yesterday",
        "sort=size",
    ] {
        let message = assert_refused(
            &server,
            &format!("/v1/bots/demo/conversations?{query}"),
            400,
            "invalid_parameter",
        );
        let name = query.split('=').next().unwrap();
        assert!(
            message.contains(name),
            "{query}: message {message:?} does not name the parameter"
        );
    }
}

#[test]
fn invalid_query_syntax_is_400_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for q in ["(refund", "refund AND", "\"unterminated", "user:(a b)"] {
        let message = assert_refused(
            &server,
            &format!(
                "/v1/bots/demo/conversations?from={ALL_FROM}&to={ALL_TO}&q={}",
                encode(q)
            ),
            400,
            "invalid_query",
        );
        assert!(message.contains("position"), "{q:?}: {message:?}");
    }
    // Deep nesting is refused quickly and the server stays up.
    let deep = format!("{}refund{}", "(".repeat(5_000), ")".repeat(5_000));
    let started = std::time::Instant::now();
    let reply = server.get(&format!("/v1/bots/demo/conversations?q={}", encode(&deep)));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn unknown_conversation_is_404_and_unknown_bot_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.ingest(&[crate::common::message(
        "m1",
        "demo",
        "u1",
        "hello",
        "2026-11-19T10:00:00Z",
    )]);
    server.wait_indexed();
    for id in ["c_ffffff", "c_", "nonsense"] {
        assert_refused(
            &server,
            &format!("/v1/bots/demo/conversations/{id}"),
            404,
            "not_found",
        );
    }
    let empty = server.get_ok(&format!(
        "/v1/bots/nobody/conversations?from={ALL_FROM}&to={ALL_TO}"
    ));
    assert_eq!(empty["total"], 0);
    assert_eq!(empty["conversations"].as_array().unwrap().len(), 0);
}

#[test]
fn negated_phrase_excludes_matches_instead_of_failing() {
    // Regression: `-"did not"` made tantivy's phrase scorer assert (`target … should be
    // greater than or equal to doc …`) inside the exclusion, and the search answered 500.
    // Whether it trips depends on where the phrase's first match lies in the segment, so
    // try both layouts: one conversation, and two conversations in either order.
    for (users, phrase_first) in [
        (["u1", "u1"], false),
        (["u1", "u2"], false),
        (["u1", "u2"], true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        let texts = if phrase_first {
            ["I did not get it", "hello"]
        } else {
            ["hello", "I did not get it"]
        };
        let messages: Vec<_> = (0..2)
            .map(|n| {
                let mut m = crate::common::message(
                    &format!("r{n}"),
                    "mini",
                    users[n],
                    texts[n],
                    &format!("2026-11-19T10:0{n}:00Z"),
                );
                m.channel = "sms".into();
                m
            })
            .collect();
        server.ingest(&messages);
        server.wait_indexed();
        let one_conversation = users[0] == users[1];
        for (kind, q, want) in [
            (
                "conversations",
                "-\"did not\"",
                if one_conversation { 0 } else { 1 },
            ),
            (
                "conversations",
                "-user:\"did not\"",
                if one_conversation { 0 } else { 1 },
            ),
            ("messages", "-\"did not\"", 1),
            ("messages", "hello -\"did not\"", 1),
        ] {
            let path = format!(
                "/v1/bots/mini/{kind}?from={ALL_FROM}&to={ALL_TO}&q={}",
                encode(q)
            );
            let reply = server.get(&path);
            assert_eq!(
                reply.status, 200,
                "users {users:?}: GET {path}: {}",
                reply.body
            );
            assert_eq!(reply.json()["total"], want, "users {users:?}: GET {path}");
        }
    }
}

#[test]
fn half_open_and_default_time_ranges_are_answered() {
    // Regression: a range with only `from` (as the default, the last 24 hours, is) or only
    // `to` answered 500 "At least one bound must be set" on some endpoints.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let recent = crate::common::rfc3339(chrono::Utc::now().timestamp_micros() - 3_600_000_000);
    server.ingest(&[crate::common::message("m1", "demo", "u1", "hello", &recent)]);
    server.wait_indexed();
    for range in ["", "from=2026-01-01T00:00:00Z", "to=2099-01-01T00:00:00Z"] {
        for endpoint in [
            "conversations",
            "messages",
            "nodes",
            "flows",
            "tags",
            "labels",
        ] {
            let path = format!("/v1/bots/demo/{endpoint}?{range}");
            let reply = server.get(&path);
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        }
    }
    // The default range (the last 24 hours) holds the message of an hour ago.
    for endpoint in ["conversations", "messages"] {
        let found = server.get_ok(&format!("/v1/bots/demo/{endpoint}"));
        assert_eq!(found["total"], 1, "GET /v1/bots/demo/{endpoint}: {found}");
    }
}
