//! Issue #17: ingest what bots already emit.
//!
//! 1. A bot instrumented with the real OpenTelemetry Python SDK (its OTLP/HTTP
//!    exporter, configured only through `OTEL_EXPORTER_OTLP_*` variables with an
//!    ingest key): two turns with a tool call land as one conversation of four
//!    messages in order, the tool calls sit in the debugger under their input, a
//!    retried export adds nothing, a gzip export lands too.
//! 2. Hand-built OTLP JSON (the older GenAI conventions), partial success for
//!    spans that can't be taken, and bodies that don't decode: 400, nothing
//!    stored; every error a `google.rpc.Status` in the request's encoding.
//! 3. A Rasa tracker with two sessions, intents, actions and slots, replayed
//!    whole and sent one event per request as an event broker does.
//!
//! The SDK comes from PyPI (`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-http`,
//! installed by `.ci/run`); without it (1) is skipped, unless
//! `CONVLOG_REQUIRE_OTEL_SDK=1` makes its absence a failure.

use crate::access::{AuthServer, Resp, cli_create_key};
use crate::common::{ALL_FROM, ALL_TO, encode};
use convlog_engine::ingest::otlp;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// Python with the OpenTelemetry SDK and its OTLP/HTTP exporter, when installed.
fn otel_sdk_available() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        assert!(
            std::env::var("CONVLOG_REQUIRE_OTEL_SDK").is_err(),
            "CONVLOG_REQUIRE_OTEL_SDK is set but the OpenTelemetry SDK is not installed \
             (python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)"
        );
        eprintln!("skipping the OpenTelemetry SDK run: the Python SDK is not installed");
    }
    ok
}

/// Runs `tests/otel/bot.py` against `server` with `key`; its JSON summary.
fn sdk_bot(server: &AuthServer, key: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/bot.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .args(args)
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{}/otlp/v1/traces", server.api.base),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{key}"),
        )
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let out = command.output().expect("run python3");
    assert!(
        out.status.success(),
        "bot.py {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "bot.py printed no JSON ({err}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A server with keys: (server, an admin key, an ingest key for `bot`).
pub(crate) fn keyed_server(root: &Path, extra: &[&str], bot: &str) -> (AuthServer, String, String) {
    let server = AuthServer::start(root, extra, "warn");
    let data = server.data_dir_str();
    let admin = cli_create_key(&data, "admin", "*", "admin");
    let ingest = cli_create_key(&data, "ingest", bot, "adapter");
    (server, admin, ingest)
}

/// `path` (with a query string) over all time.
fn all_time(path: &str) -> String {
    format!("{path}&from={}&to={}", encode(ALL_FROM), encode(ALL_TO))
}

/// Conversations of `bot` over all time, as (id, channel), oldest first.
fn conversations(server: &AuthServer, key: &str, bot: &str) -> Vec<(String, String)> {
    let page = server.api.get_ok(
        &all_time(&format!("/v1/bots/{bot}/conversations?limit=100")),
        Some(key),
    );
    let mut found: Vec<(String, String, String)> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["started_at"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
                c["channel"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, id, channel)| (id, channel))
        .collect()
}

/// The messages of a conversation as (role, text), in order.
fn messages(server: &AuthServer, key: &str, bot: &str, id: &str) -> Vec<(String, String)> {
    let conversation = server
        .api
        .get_ok(&format!("/v1/bots/{bot}/conversations/{id}"), Some(key));
    conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One group of the debugger: its input's text and its events' (action, level).
type Group = (Option<String>, Vec<(String, String)>);

/// The debugger of a conversation: its groups that hold events.
fn debugger(server: &AuthServer, key: &str, bot: &str, id: &str) -> Vec<Group> {
    let trace = server.api.get_ok(
        &format!("/v1/bots/{bot}/conversations/{id}/trace"),
        Some(key),
    );
    trace["inputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no inputs: {trace}"))
        .iter()
        .map(|group| {
            (
                group["message"]["text"].as_str().map(String::from),
                group["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        (
                            e["action"].as_str().unwrap().to_string(),
                            e["level"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
            )
        })
        .filter(|(_, events): &Group| !events.is_empty())
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A store-wide count of messages of `bot` (to see that nothing was stored).
fn message_total(server: &AuthServer, key: &str, bot: &str) -> u64 {
    server.api.get_ok(
        &all_time(&format!("/v1/bots/{bot}/messages?limit=1")),
        Some(key),
    )["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn an_otel_instrumented_bot_lands_with_its_tool_calls_under_each_input() {
    if !otel_sdk_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (server, admin, ingest) = keyed_server(
        root.path(),
        &["--set", "ingest.otlp.keep_traces=always"],
        "shop-bot",
    );

    // Two turns, exported, then the same spans exported again (a retry).
    let run = sdk_bot(&server, &ingest, &["conv-1", "alice", "--twice"], &[]);
    assert_eq!(run["exports"], json!(["SUCCESS", "SUCCESS"]), "{run}");
    assert_eq!(run["spans"], 8, "{run}");
    server.wait_indexed(Some(&admin));
    let found = conversations(&server, &admin, "shop-bot");
    assert_eq!(found.len(), 1, "one conversation: {found:?}");
    let (id, channel) = &found[0];
    assert_eq!(channel, "api");
    let expected = pairs(&[
        ("user", "where is my order 1234?"),
        ("bot", "Your order 1234 has shipped."),
        ("user", "can I get a refund for it?"),
        ("bot", "Refunds take 5 days once it is back."),
    ]);
    assert_eq!(messages(&server, &admin, "shop-bot", id), expected);
    // The debugger: each turn's agent and tool spans under its input, once.
    let groups = debugger(&server, &admin, "shop-bot", id);
    assert_eq!(
        groups,
        vec![
            (
                Some("where is my order 1234?".to_string()),
                pairs(&[
                    ("invoke_agent shop", "info"),
                    ("execute_tool lookup_order", "info")
                ])
            ),
            (
                Some("can I get a refund for it?".to_string()),
                pairs(&[
                    ("invoke_agent shop", "info"),
                    ("execute_tool refund_policy", "error")
                ])
            ),
        ],
        "debugger of {id}"
    );
    // The end user is pseudonymised like any other: the raw id is nowhere.
    let conversation = server.api.get_ok(
        &format!("/v1/bots/shop-bot/conversations/{id}"),
        Some(&admin),
    );
    assert!(
        !conversation.to_string().contains("alice"),
        "{conversation}"
    );
    // A search finds the words of an OTel message.
    let page = server.api.get_ok(
        &all_time("/v1/bots/shop-bot/messages?q=refunds"),
        Some(&admin),
    );
    assert_eq!(page["total"], 2, "{page}");

    // A gzip export of another conversation lands too.
    let run = sdk_bot(
        &server,
        &ingest,
        &["conv-2", "bob"],
        &[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")],
    );
    assert_eq!(run["exports"], json!(["SUCCESS"]), "{run}");
    server.wait_indexed(Some(&admin));
    assert_eq!(conversations(&server, &admin, "shop-bot").len(), 2);
    assert_eq!(message_total(&server, &admin, "shop-bot"), 8);
}

/// One hand-built OTLP JSON request: the older GenAI conventions (events on
/// the span), the bot and channel from resource attributes.
fn otlp_json(trace: &str, user: Option<&str>, start_s: u64) -> Value {
    let ns = |s: u64| (s * 1_000_000_000).to_string();
    let mut attributes =
        vec![json!({"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}})];
    if let Some(user) = user {
        attributes.push(json!({"key": "enduser.id", "value": {"stringValue": user}}));
    }
    attributes.push(json!({"key": "convlog.intent", "value": {"stringValue": "order_status"}}));
    attributes.push(json!({"key": "convlog.confidence", "value": {"doubleValue": 0.91}}));
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "ignored"}},
            {"key": "convlog.bot_id", "value": {"stringValue": "json-bot"}},
            {"key": "convlog.channel", "value": {"stringValue": "whatsapp"}}
        ]},
        "scopeSpans": [{"scope": {"name": "hand"}, "spans": [{
            "traceId": trace,
            "spanId": "00f067aa0ba902b7",
            "name": "chat",
            "kind": 3,
            "startTimeUnixNano": ns(start_s),
            "endTimeUnixNano": ns(start_s + 2),
            "attributes": attributes,
            "events": [
                {"timeUnixNano": ns(start_s), "name": "gen_ai.user.message",
                 "attributes": [{"key": "content", "value": {"stringValue": "wo ist meine Bestellung"}}]},
                {"timeUnixNano": ns(start_s + 2), "name": "gen_ai.choice",
                 "attributes": [{"key": "message", "value": {"stringValue": "{\"role\":\"assistant\",\"content\":\"Sie ist unterwegs.\"}"}}]}
            ],
            "status": {}
        }]}]
    }]})
}

#[test]
fn otlp_json_partial_success_and_bodies_that_dont_decode() {
    let root = tempfile::tempdir().unwrap();
    let (server, admin, ingest) = keyed_server(root.path(), &[], "json-bot");
    let now = chrono::Utc::now().timestamp() as u64 - 3600;
    let post = |body: &[u8], content_type: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend_from_slice(extra);
        server.api.send(
            "POST",
            "/otlp/v1/traces",
            Some(&ingest),
            Some(body),
            &headers,
        )
    };

    let body = serde_json::to_vec(&otlp_json(
        "4bf92f3577b34da6a3ce929d0e0e4736",
        Some("u1"),
        now,
    ))
    .unwrap();
    let reply = post(&body, "application/json", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({}), "full success: no partialSuccess");
    // Sent again: nothing more.
    assert_eq!(post(&body, "application/json", &[]).status, 200);
    server.wait_indexed(Some(&admin));
    let found = conversations(&server, &admin, "json-bot");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "whatsapp");
    assert_eq!(
        messages(&server, &admin, "json-bot", &found[0].0),
        pairs(&[
            ("user", "wo ist meine Bestellung"),
            ("bot", "Sie ist unterwegs.")
        ])
    );
    let page = server.api.get_ok(
        &all_time("/v1/bots/json-bot/messages?intent=order_status"),
        Some(&admin),
    );
    assert_eq!(
        page["total"], 1,
        "the intent of the span's user message: {page}"
    );

    // A tool span of that conversation: with its debug logging off (the default
    // `ingest.otlp.keep_traces = "debug"`), dropped and counted, not stored.
    let dropped = |server: &AuthServer| {
        let metrics = server.api.get("/metrics", Some(&admin)).body;
        crate::common::metric_value(&metrics, "convlog_traces_dropped_total").unwrap()
    };
    let before = dropped(&server);
    let mut tool = otlp_json("4bf92f3577b34da6a3ce929d0e0e4736", Some("u1"), now);
    let span = &mut tool["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    span["spanId"] = json!("00f067aa0ba902c1");
    span["name"] = json!("execute_tool track");
    span["attributes"] = json!([{"key": "enduser.id", "value": {"stringValue": "u1"}}]);
    span["events"] = json!([]);
    let reply = post(&serde_json::to_vec(&tool).unwrap(), "application/json", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(dropped(&server), before + 1.0);
    let trace = server.api.get_ok(
        &format!("/v1/bots/json-bot/conversations/{}/trace", found[0].0),
        Some(&admin),
    );
    assert!(!trace.to_string().contains("execute_tool"), "{trace}");

    // Partial success: a span with no end user is rejected with the reason, the other lands.
    let mut two = otlp_json("5bf92f3577b34da6a3ce929d0e0e4736", Some("u2"), now + 100);
    let orphan = otlp_json("6bf92f3577b34da6a3ce929d0e0e4736", None, now + 200);
    two["resourceSpans"]
        .as_array_mut()
        .unwrap()
        .push(orphan["resourceSpans"][0].clone());
    let reply = post(&serde_json::to_vec(&two).unwrap(), "application/json", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let partial = &reply.json()["partialSuccess"];
    assert_eq!(partial["rejectedSpans"], 1, "{partial}");
    assert!(
        partial["errorMessage"]
            .as_str()
            .unwrap()
            .contains("user.id"),
        "{partial}"
    );
    // A span of a bot outside the key's scope is rejected the same way.
    let mut other = otlp_json("7bf92f3577b34da6a3ce929d0e0e4736", Some("u3"), now + 300);
    other["resourceSpans"][0]["resource"]["attributes"][1]["value"]["stringValue"] =
        json!("other-bot");
    let reply = post(
        &serde_json::to_vec(&other).unwrap(),
        "application/json",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["partialSuccess"]["rejectedSpans"], 1);
    assert!(reply.body.contains("may not write"), "{}", reply.body);
    server.wait_indexed(Some(&admin));
    assert_eq!(message_total(&server, &admin, "json-bot"), 4);
    assert_eq!(message_total(&server, &admin, "other-bot"), 0);

    // Bodies that don't decode: 400 naming the body, nothing stored; every
    // error is a google.rpc.Status in the request's encoding.
    for (body, content_type, extra) in [
        (&b"\xff\x00garbage"[..], "application/x-protobuf", &[][..]),
        (&b"{\"resourceSpans\": 7}"[..], "application/json", &[][..]),
        (&b"not json"[..], "application/json", &[][..]),
        (&b"[]"[..], "application/json", &[][..]),
        // serde alone takes a message from an array of its fields.
        (
            &b"{\"resourceSpans\": [[]]}"[..],
            "application/json",
            &[][..],
        ),
        (
            &b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [[\"x\"]]}]}]}"[..],
            "application/json",
            &[][..],
        ),
        (
            &b"plain bytes"[..],
            "application/json",
            &[("Content-Encoding", "gzip")][..],
        ),
    ] {
        let reply = post(body, content_type, extra);
        assert_eq!(reply.status, 400, "{content_type} {body:?}: {}", reply.body);
        let status = otlp_status(&reply);
        assert_eq!(status.code, 3, "INVALID_ARGUMENT: {status:?}");
        assert!(status.message.contains("body"), "{status:?}");
    }
    let reply = post(&body, "text/plain", &[]);
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert!(
        otlp_status(&reply)
            .message
            .contains("application/x-protobuf")
    );
    let reply = post(&body, "application/json", &[("Content-Encoding", "br")]);
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert!(
        otlp_status(&reply).message.contains("gzip"),
        "{}",
        reply.body
    );
    // The same request gzip-compressed lands (nothing new: it is the first one again).
    let gz = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&body).unwrap();
        encoder.finish().unwrap()
    };
    let reply = post(&gz, "application/json", &[("Content-Encoding", "gzip")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Without a key: 401, like every ingest route.
    let reply = server.api.send(
        "POST",
        "/otlp/v1/traces",
        None,
        Some(&body),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(
        otlp_status(&reply).code,
        16,
        "UNAUTHENTICATED: {}",
        reply.body
    );
    let reply = server.api.send(
        "POST",
        "/otlp/v1/traces",
        None,
        Some(&body),
        &[("Content-Type", "application/x-protobuf")],
    );
    assert_eq!(
        otlp_status(&reply).code,
        16,
        "UNAUTHENTICATED: {}",
        reply.body
    );
    server.wait_indexed(Some(&admin));
    assert_eq!(message_total(&server, &admin, "json-bot"), 4);
}

/// The `google.rpc.Status` of an OTLP error answer, decoded per its
/// `Content-Type` (JSON for a JSON request, protobuf for any other).
fn otlp_status(reply: &Resp) -> otlp::Status {
    match reply.header("content-type") {
        Some("application/json") => {
            let json = reply.json();
            otlp::Status {
                code: json["code"].as_i64().unwrap_or_else(|| panic!("{json}")) as i32,
                message: json["message"].as_str().unwrap().to_string(),
            }
        }
        Some("application/x-protobuf") => {
            <otlp::Status as prost::Message>::decode(&reply.bytes[..]).unwrap()
        }
        other => panic!("an OTLP error answer of type {other:?}: {}", reply.body),
    }
}

/// A Rasa tracker as its tracker store answers it (`GET /conversations/{id}/tracker`):
/// two sessions, intents (one a fallback), actions and a slot. The second
/// session starts ten minutes after the first ended, within the channel's
/// session timeout: only `session_started` separates them.
pub(crate) fn rasa_tracker(sender: &str, start: f64) -> Value {
    let t = |s: f64| start + s;
    json!({"sender_id": sender, "events": [
        {"event": "action", "timestamp": t(0.0), "name": "action_session_start", "policy": null, "confidence": 1.0},
        {"event": "session_started", "timestamp": t(0.1)},
        {"event": "action", "timestamp": t(0.2), "name": "action_listen"},
        {"event": "user", "timestamp": t(1.0), "text": "hello there", "input_channel": "telegram",
         "message_id": "9f86d081884c7d65-m1",
         "parse_data": {"intent": {"name": "greet", "confidence": 0.98}, "entities": []}},
        {"event": "action", "timestamp": t(1.1), "name": "utter_greet", "policy": "RulePolicy", "confidence": 1.0},
        {"event": "bot", "timestamp": t(1.2), "text": "Hi! How can I help?", "metadata": {"utter_action": "utter_greet"}},
        {"event": "user", "timestamp": t(5.0), "text": "blorp zanzibar", "input_channel": "telegram",
         "message_id": "9f86d081884c7d65-m2",
         "parse_data": {"intent": {"name": "nlu_fallback", "confidence": 0.31}}},
        {"event": "action", "timestamp": t(5.1), "name": "action_default_fallback"},
        {"event": "bot", "timestamp": t(5.2), "text": "Sorry, I didn't get that."},
        {"event": "slot", "timestamp": t(5.3), "name": "retries", "value": 1},
        {"event": "action", "timestamp": t(600.0), "name": "action_session_start"},
        {"event": "session_started", "timestamp": t(600.1)},
        {"event": "user", "timestamp": t(601.0), "text": "track my order please", "input_channel": "telegram",
         "message_id": "9f86d081884c7d65-m3",
         "parse_data": {"intent": {"name": "order_status", "confidence": 0.93}}},
        {"event": "bot", "timestamp": t(602.0), "text": "It ships tomorrow."}
    ]})
}

/// What [`rasa_tracker`] of `sender` must have become in `bot`, however it
/// was sent; returns the two conversations' ids.
pub(crate) fn check_rasa_tracker(
    server: &AuthServer,
    admin: &str,
    bot: &str,
    sender: &str,
) -> [String; 2] {
    // Two sessions: two conversations, on the input channel.
    let found = conversations(server, admin, bot);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().all(|(_, channel)| channel == "telegram"),
        "{found:?}"
    );
    assert_eq!(
        messages(server, admin, bot, &found[0].0),
        pairs(&[
            ("user", "hello there"),
            ("bot", "Hi! How can I help?"),
            ("user", "blorp zanzibar"),
            ("bot", "Sorry, I didn't get that.")
        ])
    );
    assert_eq!(
        messages(server, admin, bot, &found[1].0),
        pairs(&[
            ("user", "track my order please"),
            ("bot", "It ships tomorrow.")
        ])
    );
    // Intents are facets; the fallback's answer is unidentified.
    let page = server.api.get_ok(
        &all_time(&format!("/v1/bots/{bot}/conversations?intent=order_status")),
        Some(admin),
    );
    assert_eq!(page["total"], 1, "{page}");
    let first = server.api.get_ok(
        &format!("/v1/bots/{bot}/conversations/{}", found[0].0),
        Some(admin),
    );
    let unidentified: Vec<&Value> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["unidentified"] == true)
        .map(|m| &m["text"])
        .collect();
    assert_eq!(unidentified, [&json!("Sorry, I didn't get that.")]);
    // The debugger: actions and the slot under the input they followed.
    let groups = debugger(server, admin, bot, &found[0].0);
    assert_eq!(
        groups
            .into_iter()
            .filter(|(input, _)| input.is_some())
            .collect::<Vec<_>>(),
        vec![
            (
                Some("hello there".to_string()),
                pairs(&[("action utter_greet", "info")])
            ),
            (
                Some("blorp zanzibar".to_string()),
                pairs(&[
                    ("action action_default_fallback", "info"),
                    ("slot retries", "info")
                ])
            ),
        ]
    );

    // The raw sender id is nowhere in what a reader sees (session ids included).
    for (id, _) in &found {
        let conversation = server
            .api
            .get_ok(&format!("/v1/bots/{bot}/conversations/{id}"), Some(admin));
        assert!(!conversation.to_string().contains(sender), "{conversation}");
    }
    [found[0].0.clone(), found[1].0.clone()]
}

#[test]
fn a_rasa_tracker_replays_into_sessions_with_intents_and_actions() {
    let root = tempfile::tempdir().unwrap();
    let (server, admin, ingest) = keyed_server(
        root.path(),
        &["--set", "ingest.capture_all_traces=true"],
        "rasa-bot",
    );
    let start = (chrono::Utc::now().timestamp() - 3 * 86_400) as f64;
    let tracker = serde_json::to_vec(&rasa_tracker("sender-42", start)).unwrap();
    let post = |path: &str, body: &[u8], content_type: &str| {
        server.api.send(
            "POST",
            path,
            Some(&ingest),
            Some(body),
            &[("Content-Type", content_type)],
        )
    };
    let reply = post("/v1/ingest/rasa?bot=rasa-bot", &tracker, "application/json");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["accepted"], 6, "{answer}");
    assert_eq!(answer["duplicates"], 0, "{answer}");
    assert_eq!(answer["traces"]["accepted"], 4, "{answer}");
    assert_eq!(answer["skipped"], 2, "two action_session_start: {answer}");
    // A replay of the same tracker adds nothing.
    let again = post("/v1/ingest/rasa?bot=rasa-bot", &tracker, "application/json").json();
    assert_eq!(
        (&again["accepted"], &again["duplicates"]),
        (&json!(0), &json!(6)),
        "{again}"
    );
    server.wait_indexed(Some(&admin));
    let [first, second] = check_rasa_tracker(&server, &admin, "rasa-bot", "sender-42");
    // The events before a session's first input: in the debugger, before it
    // (Rasa's `action_session_start` bookkeeping is skipped).
    assert_eq!(
        debugger(&server, &admin, "rasa-bot", &first).remove(0),
        (None, pairs(&[("action action_listen", "info")]))
    );
    assert!(
        debugger(&server, &admin, "rasa-bot", &second)
            .iter()
            .all(|(input, _)| input.is_some())
    );

    // NDJSON of single events, as an event broker sends them; then bad input.
    let ndjson = format!(
        "{}\n{}\n",
        json!({"sender_id": "s-9", "event": "user", "timestamp": start + 10.0, "text": "hi"}),
        json!({"sender_id": "s-9", "event": "bot", "timestamp": start + 11.0, "text": "hey"})
    );
    let reply = post(
        "/v1/ingest/rasa?bot=rasa-bot",
        ndjson.as_bytes(),
        "application/x-ndjson",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["accepted"], 2);
    server.wait_indexed(Some(&admin));
    let before = message_total(&server, &admin, "rasa-bot");
    assert_eq!(before, 8);
    let bad = json!([{"sender_id": "s-1", "event": "user", "timestamp": start, "text": "ok"},
                     {"event": "bot", "timestamp": start, "text": "no sender"}]);
    let reply = post(
        "/v1/ingest/rasa?bot=rasa-bot",
        &serde_json::to_vec(&bad).unwrap(),
        "application/json",
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.body.contains("sender_id") && reply.body.contains("item 1"),
        "{}",
        reply.body
    );
    for (path, status, says) in [
        ("/v1/ingest/rasa", 400, "bot"),
        ("/v1/ingest/rasa?bot=no%20spaces", 400, "bot"),
        ("/v1/ingest/rasa?bot=other-bot", 422, "may not write"),
    ] {
        let reply = post(path, &tracker, "application/json");
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    let reply = post(
        "/v1/ingest/rasa?bot=rasa-bot",
        b"{not json",
        "application/json",
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    server.wait_indexed(Some(&admin));
    assert_eq!(message_total(&server, &admin, "rasa-bot"), before);
}

/// Rasa's event brokers publish each event as it happens: `session_started`,
/// the input and the answer arrive in separate requests, and still make the
/// same conversations as the whole tracker.
#[test]
fn a_rasa_event_broker_sending_one_event_per_request_keeps_sessions_and_fallbacks() {
    let root = tempfile::tempdir().unwrap();
    let (server, admin, ingest) = keyed_server(
        root.path(),
        &["--set", "ingest.capture_all_traces=true"],
        "rasa-broker",
    );
    let start = (chrono::Utc::now().timestamp() - 3 * 86_400) as f64;
    let tracker = rasa_tracker("+4915112345678", start);
    for event in tracker["events"].as_array().unwrap() {
        let mut event = event.clone();
        event["sender_id"] = tracker["sender_id"].clone();
        let reply = server.api.send(
            "POST",
            "/v1/ingest/rasa?bot=rasa-broker",
            Some(&ingest),
            Some(format!("{event}\n").as_bytes()),
            &[("Content-Type", "application/x-ndjson")],
        );
        assert_eq!(reply.status, 200, "{event}: {}", reply.body);
    }
    server.wait_indexed(Some(&admin));
    check_rasa_tracker(&server, &admin, "rasa-broker", "+4915112345678");
}
