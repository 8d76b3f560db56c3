//! Issue #18, redaction: what end users type (cards, e-mail addresses,
//! phones, IBANs, addresses, the operator's own patterns) is replaced by
//! `[name]` before anything is stored, on every ingest path, while look-alikes
//! (order numbers, timestamps, versions, Luhn-invalid numbers) stay. Then the
//! raw values are in no file of the data directory, not in the server's log,
//! not in the Parquet archive; the same greps find the look-alikes, so they
//! can find what they look for.

use crate::common::{ALL_FROM, ALL_TO, Server, encode, files_under, read_bytes};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use std::path::Path;

/// Raw values, the detector that must replace them, and the text around them.
const SECRETS: &[(&str, &str)] = &[
    ("4111 1111 1111 1111", "card"),
    ("5500-0000-0000-0004", "card"),
    ("6011000990139424", "card"),
    ("jane.doe.pii@example.org", "email"),
    ("+44 20 7946 0958", "phone"),
    ("(555) 867-5309", "phone"),
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("203.0.113.77", "ip"),
    ("2001:db8::8a2e:370:7334", "ip"),
    ("ORD-482913", "order_ref"),
];

/// Look-alikes that must stay as they are.
const KEPT: &[&str] = &[
    "order 918273645 shipped",
    "4111 1111 1111 1112",
    "1234567812345678",
    "at 2026-05-01T12:30:00Z",
    "app version 1.2.3 and v2.10.4.1",
    "ORD-48291 is short",
    "IBAN DE89 3704 0044 0532 0130 09",
    "call 5551234567",
    "pi is 3.14159265358979",
];

const BOT: &str = "pii-bot";

fn server(root: &Path) -> Server {
    Server::start_with_log_level(
        root,
        &[
            "--set",
            r#"privacy.redact=["card","email","phone","iban","ip"]"#,
            "--set",
            r#"privacy.patterns=[{name="order_ref", regex="ORD-[0-9]{6}"}]"#,
            "--set",
            r#"privacy.bots.cards-only.redact=["card"]"#,
            "--set",
            "ingest.capture_all_traces=true",
        ],
        // Everything the server logs, so the log is searched too.
        "debug",
    )
}

fn message(id: &str, bot: &str, user: &str, text: &str, at: &str) -> Value {
    json!({"id": id, "bot_id": bot, "user_id": user, "channel": "web", "role": "user",
           "text": text, "timestamp": at})
}

/// The texts of every message of `bot`, by message id.
fn texts(server: &Server, bot: &str) -> std::collections::BTreeMap<String, String> {
    let page = server.get_ok(&format!(
        "/v1/bots/{bot}/messages?limit=100&from={}&to={}",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every string value in the Parquet objects under `dir`.
fn parquet_strings(dir: &Path) -> String {
    let mut all = String::new();
    for file in files_under(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
    {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for column in batch.columns() {
                if let Some(strings) = column.as_string_opt::<i32>() {
                    for row in 0..strings.len() {
                        if strings.is_valid(row) {
                            all.push_str(strings.value(row));
                            all.push('\n');
                        }
                    }
                }
            }
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn personal_data_is_redacted_on_every_ingest_path_and_stored_nowhere() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path());
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();
    // Past retention (180 days): these go to the Parquet archive.
    let old = (now - chrono::Duration::days(200)).to_rfc3339();

    // JSON and NDJSON batches: each secret in a sentence, and the look-alikes.
    let mut json_batch = Vec::new();
    let mut ndjson = String::new();
    let mut expected = std::collections::BTreeMap::new();
    for (n, (secret, detector)) in SECRETS.iter().enumerate() {
        let text = format!("my {detector} is {secret}, thanks");
        let want = format!("my {detector} is [{detector}], thanks");
        let (hot, archived) = (format!("s{n}"), format!("old-s{n}"));
        expected.insert(hot.clone(), want);
        if n % 2 == 0 {
            json_batch.push(message(&hot, BOT, "u1", &text, &at(60 - n as i64)));
        } else {
            ndjson.push_str(&format!(
                "{}\n",
                message(&hot, BOT, "u1", &text, &at(60 - n as i64))
            ));
        }
        json_batch.push(message(&archived, "pii-old", "u2", &text, &old));
    }
    for (n, text) in KEPT.iter().enumerate() {
        let id = format!("k{n}");
        expected.insert(id.clone(), text.to_string());
        json_batch.push(message(&id, BOT, "u1", text, &at(40 - n as i64)));
        json_batch.push(message(&format!("old-k{n}"), "pii-old", "u2", text, &old));
    }
    // Metadata is redacted too, numbers included.
    json_batch.push(json!({"id": "meta", "bot_id": BOT, "user_id": "u1", "channel": "web",
        "role": "bot", "text": "noted", "timestamp": at(20),
        "metadata": {"email": "jane.doe.pii@example.org", "card": 6011000990139424u64, "note": "ORD-48291 is short"}}));
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&json_batch).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = server.post("/v1/messages", "application/x-ndjson", ndjson.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A trace event: action and detail.
    let trace = json!([{"id": "t1", "bot_id": BOT, "user_id": "u1", "channel": "web",
        "timestamp": at(19), "action": "lookup jane.doe.pii@example.org",
        "detail": {"card": "4111 1111 1111 1111", "kept": "order 918273645 shipped"}}]);
    let reply = server.post(
        "/v1/traces",
        "application/json",
        trace.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The adapters: an OpenTelemetry span and a Rasa event.
    let ns = |minutes: i64| {
        ((now - chrono::Duration::minutes(minutes))
            .timestamp_nanos_opt()
            .unwrap())
        .to_string()
    };
    let otlp = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "convlog.bot_id", "value": {"stringValue": BOT}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "chat", "startTimeUnixNano": ns(10), "endTimeUnixNano": ns(9),
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "user.id", "value": {"stringValue": "u3"}}],
            "events": [{"timeUnixNano": ns(10), "name": "gen_ai.user.message",
                "attributes": [{"key": "content", "value": {"stringValue": "card 4111 1111 1111 1111 please"}}]}]
        }]}]
    }]});
    let reply = server.post(
        "/otlp/v1/traces",
        "application/json",
        otlp.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rasa = json!({"sender_id": "u4", "event": "user", "timestamp": (now.timestamp() - 300) as f64,
        "text": "mail me at jane.doe.pii@example.org", "message_id": "r1"});
    let reply = server.post(
        &format!("/v1/ingest/rasa?bot={BOT}"),
        "application/json",
        rasa.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A bot with its own list: cards only (and the global patterns).
    let own = json!([message(
        "c1",
        "cards-only",
        "u5",
        "jane.doe.pii.kept@example.org and 4111 1111 1111 1111 and ORD-482913",
        &at(5)
    )]);
    let reply = server.post(
        "/v1/messages",
        "application/json",
        own.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.wait_indexed();

    // What a reader sees.
    let stored = texts(&server, BOT);
    for (id, want) in &expected {
        assert_eq!(stored.get(id), Some(want), "message {id}");
    }
    let otel_text = stored
        .iter()
        .find(|(id, _)| id.starts_with("otel-"))
        .map(|(_, text)| text.as_str());
    assert_eq!(otel_text, Some("card [card] please"));
    assert_eq!(
        stored.get("rasa-r1").map(String::as_str),
        Some("mail me at [email]")
    );
    assert_eq!(
        texts(&server, "cards-only")["c1"],
        "jane.doe.pii.kept@example.org and [card] and [order_ref]"
    );
    let meta = server.get_ok(&format!(
        "/v1/bots/{BOT}/messages?q=noted&from={}&to={}",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    let conversation_id = meta["messages"][0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let conversation = server.get_ok(&format!("/v1/bots/{BOT}/conversations/{conversation_id}"));
    let noted = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "meta")
        .unwrap_or_else(|| panic!("{conversation}"));
    assert_eq!(
        noted["metadata"],
        json!({"email": "[email]", "card": "[card]", "note": "ORD-48291 is short"})
    );
    let trace = server.get_ok(&format!(
        "/v1/bots/{BOT}/conversations/{conversation_id}/trace"
    ));
    let trace_text = trace.to_string();
    assert!(trace_text.contains("lookup [email]"), "{trace_text}");
    assert!(
        trace_text.contains("[card]") && trace_text.contains("order 918273645 shipped"),
        "{trace_text}"
    );
    // Search knows nothing of the raw values: their words were never indexed.
    for word in ["4111", "jane", "7946", "482913"] {
        let found = server.get_ok(&format!(
            "/v1/bots/{BOT}/messages?q={word}&from={}&to={}",
            encode(ALL_FROM),
            encode(ALL_TO)
        ));
        let hits: Vec<&Value> = found["messages"].as_array().unwrap().iter().collect();
        assert!(
            hits.iter()
                .all(|m| m["text"].as_str().is_some_and(|t| KEPT.contains(&t))),
            "{word}: {found}"
        );
    }

    // Counted per detector.
    let metrics = server.get("/metrics").body;
    let count = |detector: &str| -> f64 {
        let line = format!("convlog_redactions_total{{detector=\"{detector}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line}in\n{metrics}"))
            .parse()
            .unwrap()
    };
    // Each secret twice (hot and archived batch); metadata, trace, OTLP, Rasa, cards-only on top.
    assert_eq!(count("card"), 3.0 * 2.0 + 1.0 + 1.0 + 1.0 + 1.0);
    assert_eq!(count("email"), 2.0 + 1.0 + 1.0 + 1.0);
    assert_eq!(count("phone"), 4.0);
    assert_eq!(count("iban"), 2.0);
    assert_eq!(count("ip"), 4.0);
    assert_eq!(count("order_ref"), 2.0 + 1.0);

    // Archive the old bot's messages to Parquet.
    let reply = server.post("/v1/admin/archive", "application/json", b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let job = reply.json()["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    loop {
        let state = server.get_ok(&format!("/v1/admin/jobs/{job}"));
        match state["state"].as_str() {
            Some("succeeded") => break,
            Some("failed") => panic!("archive failed: {state}"),
            _ => {
                assert!(started.elapsed().as_secs() < 120, "{state}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    let archived = parquet_strings(&server.data_dir().join("archive"));
    assert!(archived.contains("[iban]") && archived.contains("order 918273645 shipped"));

    // The raw values are in no file: store, WAL, index, archive, log. The
    // look-alikes are found by the same search in the store (and its
    // archive's strings), so the search works.
    let mut files = files_under(server.data_dir());
    files.push(server.log_path().to_path_buf());
    let bytes: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), read_bytes(f)))
        .collect();
    for (secret, _) in SECRETS {
        for (file, content) in &bytes {
            assert!(!contains(content, secret), "{secret:?} is in {file}");
        }
        assert!(!archived.contains(secret), "{secret:?} is in the archive");
    }
    for kept in [
        "order 918273645 shipped",
        "4111 1111 1111 1112",
        "IBAN DE89 3704 0044 0532 0130 09",
    ] {
        assert!(
            bytes
                .iter()
                .any(|(file, content)| file.contains("convlog.db") && contains(content, kept)),
            "{kept:?} should be in the store"
        );
        assert!(archived.contains(kept), "{kept:?} should be in the archive");
    }
}
