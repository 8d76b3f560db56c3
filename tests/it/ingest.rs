//! Acceptance 4: a batch with one bad message gets the documented error and
//! stores nothing; over-limit bodies get 413.

use crate::common::{ALL_FROM, ALL_TO, Reply, Server, message};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const BOT: &str = "shop";
/// Where the bad message sits in its batch.
const BAD: usize = 2;

/// Five valid messages whose texts share the word `marker`, so a search finds any that got stored.
fn valid_batch(marker: &str) -> Vec<Value> {
    (0..5)
        .map(|n| {
            let m = message(
                &format!("{marker}-{n}"),
                BOT,
                "+4915112345678",
                &format!("{marker} please help with order {n}"),
                &format!("2026-11-19T10:0{n}:00Z"),
            );
            serde_json::to_value(m).unwrap()
        })
        .collect()
}

/// The batch with item [`BAD`] changed by `spoil`.
fn batch_with_bad_item(
    marker: &str,
    spoil: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Vec<Value> {
    let mut batch = valid_batch(marker);
    spoil(batch[BAD].as_object_mut().unwrap());
    batch
}

fn server(dir: &tempfile::TempDir) -> Server {
    Server::start(
        dir.path(),
        &[
            "--set",
            "server.max_body=1MiB",
            "--set",
            "ingest.max_text=16KiB",
        ],
    )
}

fn assert_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

fn assert_detail(body: &Value, index: usize, field: &str) {
    let details = body["error"]["details"].as_array().expect("details");
    assert!(
        details
            .iter()
            .any(|d| d["index"] == index && d["field"] == field && d["reason"].is_string()),
        "no detail for index {index}, field {field:?}: {body}"
    );
    assert!(
        details.iter().all(|d| d["index"] == index),
        "only item {index} is bad, yet details name others: {body}"
    );
}

/// Nothing of the marker's batch is stored: not counted, not searchable, and its valid
/// messages are new (not duplicates) when sent again on their own.
fn assert_nothing_stored(server: &Server, marker: &str, ingested_before: f64) {
    server.wait_indexed();
    assert_eq!(
        server.metric("convlog_ingested_messages_total"),
        ingested_before
    );
    for kind in ["messages", "conversations"] {
        let found = server.get_ok(&format!(
            "/v1/bots/{BOT}/{kind}?from={ALL_FROM}&to={ALL_TO}&q={marker}"
        ));
        assert_eq!(
            found["total"], 0,
            "{kind} of the rejected batch are searchable: {found}"
        );
    }
    let mut valid = valid_batch(marker);
    valid.remove(BAD);
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&valid).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"accepted": 4, "duplicates": 0}),
        "the rejected batch left messages behind"
    );
}

/// Sends a batch with one invalid item; expects 422 naming the item and `field`.
fn check_invalid_item(
    marker: &str,
    field: &str,
    spoil: impl FnOnce(&mut serde_json::Map<String, Value>),
) {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let before = server.metric("convlog_ingested_messages_total");
    let batch = batch_with_bad_item(marker, spoil);
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&batch).unwrap(),
    );
    let body = assert_error(&reply, 422, "invalid_message");
    assert_detail(&body, BAD, field);
    assert_nothing_stored(&server, marker, before);
}

#[test]
fn rejects_batch_atomically_when_one_message_misses_a_required_field() {
    check_invalid_item("missingfield", "user_id", |m| {
        m.remove("user_id");
    });
}

#[test]
fn rejects_batch_atomically_when_one_timestamp_is_not_rfc3339() {
    check_invalid_item("badtimestamp", "timestamp", |m| {
        m.insert("timestamp".into(), json!("2026-11-19 10:02"));
    });
}

#[test]
fn rejects_batch_atomically_when_one_role_is_unknown() {
    check_invalid_item("unknownrole", "role", |m| {
        m.insert("role".into(), json!("wizard"));
    });
}

#[test]
fn rejects_batch_atomically_when_one_text_is_over_the_limit() {
    check_invalid_item("longtext", "text", |m| {
        m.insert(
            "text".into(),
            json!(format!("longtext {}", "x".repeat(16 * 1024))),
        );
    });
}

#[test]
fn rejects_batch_atomically_when_one_message_has_an_unknown_field() {
    check_invalid_item("unknownfield", "colour", |m| {
        m.insert("colour".into(), json!("red"));
    });
}

#[test]
fn accepts_text_of_exactly_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let mut m = message("exact-1", BOT, "u1", "", "2026-11-19T10:00:00Z");
    m.text = format!("exactlimit {}", "é".repeat((16 * 1024 - 11) / 2));
    m.text.push_str(&"y".repeat(16 * 1024 - m.text.len()));
    assert_eq!(m.text.len(), 16 * 1024);
    assert_eq!(server.ingest(&[m]), (1, 0));
}

/// A body that is not well-formed: 400 `invalid_json`, nothing stored.
fn check_malformed(marker: &str, content_type: &str, body: Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let before = server.metric("convlog_ingested_messages_total");
    let reply = server.post("/v1/messages", content_type, &body);
    assert_error(&reply, 400, "invalid_json");
    assert_nothing_stored(&server, marker, before);
}

/// The JSON of the marker's valid batch with item [`BAD`] replaced by `bad` (raw bytes).
fn json_array_with(marker: &str, bad: &[u8]) -> Vec<u8> {
    let mut body = b"[".to_vec();
    for (n, item) in valid_batch(marker).iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        if n == BAD {
            body.extend_from_slice(bad);
        } else {
            body.extend(serde_json::to_vec(item).unwrap());
        }
    }
    body.push(b']');
    body
}

fn ndjson_with(marker: &str, bad: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (n, item) in valid_batch(marker).iter().enumerate() {
        if n == BAD {
            body.extend_from_slice(bad);
        } else {
            body.extend(serde_json::to_vec(item).unwrap());
        }
        body.push(b'\n');
    }
    body
}

const BROKEN_JSON: &[u8] = br#"{"id": "broken", "bot_id": "shop", "text": "unterminated}"#;

/// A valid item whose text holds a byte sequence that is not UTF-8.
fn invalid_utf8_item() -> Vec<u8> {
    let mut item = br#"{"id":"bad-utf8","bot_id":"shop","user_id":"u9","channel":"web","role":"user","timestamp":"2026-11-19T10:09:00Z","text":"caf"#.to_vec();
    item.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    item.extend_from_slice(b"\"}");
    item
}

#[test]
fn rejects_batch_atomically_when_one_item_is_malformed_json() {
    check_malformed(
        "brokenjson",
        "application/json",
        json_array_with("brokenjson", BROKEN_JSON),
    );
}

#[test]
fn rejects_ndjson_batch_atomically_when_one_line_is_malformed_json() {
    check_malformed(
        "brokenline",
        "application/x-ndjson",
        ndjson_with("brokenline", BROKEN_JSON),
    );
}

#[test]
fn rejects_batch_atomically_when_one_item_is_invalid_utf8() {
    check_malformed(
        "badutf",
        "application/json",
        json_array_with("badutf", &invalid_utf8_item()),
    );
}

#[test]
fn rejects_ndjson_batch_atomically_when_one_line_is_invalid_utf8() {
    check_malformed(
        "badutfline",
        "application/x-ndjson",
        ndjson_with("badutfline", &invalid_utf8_item()),
    );
}

/// 1.5 MiB of valid messages whose texts share `marker`.
fn oversized_batch(marker: &str) -> Vec<Value> {
    (0..192)
        .map(|n| {
            let m = message(
                &format!("{marker}-{n}"),
                BOT,
                "u1",
                &format!("{marker} {}", "z".repeat(8_000)),
                "2026-11-19T10:00:00Z",
            );
            serde_json::to_value(m).unwrap()
        })
        .collect()
}

fn assert_too_large_and_nothing_stored(server: &Server, reply: Reply, marker: &str, before: f64) {
    assert_error(&reply, 413, "payload_too_large");
    server.wait_indexed();
    assert_eq!(server.metric("convlog_ingested_messages_total"), before);
    let found = server.get_ok(&format!(
        "/v1/bots/{BOT}/messages?from={ALL_FROM}&to={ALL_TO}&q={marker}"
    ));
    assert_eq!(found["total"], 0);
    assert_eq!(server.get("/healthz").status, 200, "the server survives");
}

/// POSTs over a plain socket: the server may answer 413 and close before it has read
/// the body, which HTTP allows; ureq then only reports the broken pipe, so send what the
/// server takes and read its answer (as curl does).
fn post_oversized(server: &Server, content_type: &str, body: &[u8], chunked: bool) -> Reply {
    let address = server.base().strip_prefix("http://").expect("http base");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n{length}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .expect("send the request head");
    for piece in body.chunks(64 * 1024) {
        let sent = if chunked {
            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
            stream.write_all(&framed)
        } else {
            stream.write_all(piece)
        };
        if sent.is_err() {
            break; // the server has answered and closed
        }
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut response = Vec::new();
    // An error after the answer arrived (a reset) keeps what was read.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        body: body.to_string(),
    }
}

#[test]
fn refuses_bodies_over_the_limit_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let before = server.metric("convlog_ingested_messages_total");
    let body = serde_json::to_vec(&oversized_batch("hugebody")).unwrap();
    assert!(body.len() > 1024 * 1024);
    let reply = post_oversized(&server, "application/json", &body, false);
    assert_too_large_and_nothing_stored(&server, reply, "hugebody", before);

    let ndjson: Vec<u8> = oversized_batch("hugelines")
        .iter()
        .flat_map(|m| {
            let mut line = serde_json::to_vec(m).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    let reply = post_oversized(&server, "application/x-ndjson", &ndjson, false);
    assert_too_large_and_nothing_stored(&server, reply, "hugelines", before);
}

#[test]
fn refuses_chunked_bodies_over_the_limit_with_413() {
    // Without a Content-Length the server only learns the size while reading.
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let before = server.metric("convlog_ingested_messages_total");
    let body = serde_json::to_vec(&oversized_batch("hugechunks")).unwrap();
    let reply = post_oversized(&server, "application/json", &body, true);
    assert_too_large_and_nothing_stored(&server, reply, "hugechunks", before);
}

#[test]
fn invalid_message_error_text_names_the_field() {
    // API.md: `message` is "human readable, names the field".
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let batch = batch_with_bad_item("namefield", |m| {
        m.insert("timestamp".into(), json!("yesterday"));
    });
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&batch).unwrap(),
    );
    let body = assert_error(&reply, 422, "invalid_message");
    let text = body["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("timestamp"),
        "message {text:?} does not name the field"
    );
}
