//! The web UI: its pure modules under `node --test` (`ui/test/`), and the whole UI
//! in a real browser (issue #7): headless Chromium, driven by `tests/ui/run.mjs`
//! (playwright-core), against the real server loaded with generated data and
//! debug traces.
//!
//! The unit tests need `node`; the browser tests also `/usr/bin/chromium` and
//! `tests/ui/node_modules` (`cd tests/ui && npm ci`). Without them a test says why
//! and passes, unless `CONVLOG_REQUIRE_BROWSER=1`.
//! Screenshots go to `$CONVLOG_UI_SCREENSHOTS`, else under the cargo target tmp dir
//! (`node tests/ui/run.mjs URL` alone refreshes `docs/screenshots/`).

use crate::common::{Server, agent, encode, micros, rfc3339};
use chrono::Utc;
use convlog_gen::{GenConfig, GenMessage, TextStyle, generate};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const BOT: &str = "demo";
/// The whole browser run; it takes well under a minute on a quiet machine.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing prerequisite fails the test rather than skipping it.
fn required() -> bool {
    std::env::var("CONVLOG_REQUIRE_BROWSER").as_deref() == Ok("1")
}

fn has_node() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The UI's modules without DOM (URL and filter state from the server's filter
/// descriptor, ranges, formatting) pass their unit tests: `node --test` on
/// `ui/test/*.test.mjs`, with `node:test` only (no npm packages).
#[test]
fn ui_modules_pass_their_node_unit_tests() {
    if !has_node() {
        assert!(
            !required(),
            "CONVLOG_REQUIRE_BROWSER=1 but node is not on PATH for the UI unit tests"
        );
        eprintln!("skipping the UI unit tests: node is not on PATH");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("ui/test"))
        .expect("ui/test")
        .map(|entry| entry.expect("ui/test entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no ui/test/*.test.mjs");
    let mut command = Command::new("node");
    command.arg("--test").args(&files).current_dir(root());
    let (ok, output) = run_with_limit(command, Duration::from_secs(120));
    assert!(ok, "node --test ui/test failed:\n{output}");
}

/// Why the browser tests can't run here, if they can't.
fn missing_prerequisite() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "{CHROMIUM} is missing (apt-get install -y chromium)"
        ));
    }
    if !root()
        .join("tests/ui/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some("tests/ui/node_modules is missing (cd tests/ui && npm ci)".to_string());
    }
    if !has_node() {
        return Some("node is not on PATH".to_string());
    }
    None
}

#[test]
fn web_ui_in_headless_chromium() {
    if let Some(why) = missing_prerequisite() {
        if required() {
            panic!("CONVLOG_REQUIRE_BROWSER=1 but the browser tests can't run: {why}");
        }
        eprintln!("skipping the web UI browser tests: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Bulk actions in small chunks, so the page shows one's progress.
    let server = Server::start(dir.path(), &["--set", "review.bulk_chunk=5"]);

    // Two days of traffic ending now, so the UI's default range (the last 24 hours) has some.
    let mut config = GenConfig::new(7, 300, Utc::now());
    config.span_days = 2;
    // The demo's text (the README's screenshots come from this run).
    config.text = TextStyle::Realistic;
    let mut messages = Vec::new();
    generate(&config, |m| messages.push(m));
    for chunk in messages.chunks(2_000) {
        server.ingest(chunk);
    }
    server.wait_indexed();
    wait_tagged(&server);

    // Debug traces: one conversation has them already; for another the browser turns debug
    // logging on and then posts events as the bot runtime would.
    let candidates = single_session_conversations(&messages);
    assert!(candidates.len() >= 2, "too few generated conversations");
    let traced = &candidates[0];
    let pending = &candidates[1];
    let traced_id = conversation_id(&server, &traced[0]);
    let pending_id = conversation_id(&server, &pending[0]);
    assert_ne!(traced_id, pending_id);
    let mut reply = agent()
        .put(format!(
            "{}/v1/bots/{BOT}/conversations/{traced_id}/debug",
            server.base()
        ))
        .send_empty()
        .expect("PUT debug");
    let body = reply.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(reply.status().as_u16(), 200, "debug on: {body}");
    let events = trace_events(traced);
    let body = serde_json::to_vec(&events).unwrap();
    let reply = server.post("/v1/traces", "application/json", &body);
    assert_eq!(reply.status, 200, "traces: {}", reply.body);
    assert_eq!(reply.json()["dropped"], 0, "traces dropped: {}", reply.body);

    let user_inputs: Vec<Value> = pending
        .iter()
        .filter(|m| m.role == "user")
        .map(|m| json!({"message_id": m.id, "timestamp": m.timestamp}))
        .collect();
    let fixture = json!({
        "traced": {"conversation_id": traced_id, "events": events.len()},
        "debug": {"conversation_id": pending_id, "user_id": pending[0].user_id,
                  "channel": pending[0].channel, "inputs": user_inputs},
    });
    let fixture_path = dir.path().join("fixture.json");
    std::fs::write(&fixture_path, serde_json::to_vec_pretty(&fixture).unwrap()).unwrap();

    let shots = std::env::var_os("CONVLOG_UI_SCREENSHOTS")
        .map(|dir| root().join(dir))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    let mut command = Command::new("node");
    command
        .arg(root().join("tests/ui/run.mjs"))
        .arg(server.base())
        .args(["--bot", BOT, "--auth", "--fixture"])
        .arg(&fixture_path)
        .arg("--screenshots")
        .arg(&shots)
        .current_dir(root().join("tests/ui"));
    let (ok, output) = run_with_limit(command, RUN_LIMIT);
    println!("{output}");
    assert!(
        ok,
        "browser tests failed:\n{output}\n--- server log ---\n{}",
        server.log_tail()
    );
}

/// Waits until the tagger has caught up: the tag counts are non-zero and stop changing.
fn wait_tagged(server: &Server) {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let tags = server.get_ok(&format!("/v1/bots/{BOT}/tags")).to_string();
        if tags == last && tags.contains("\"conversations\"") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "tagging did not settle: {tags}"
        );
        last = tags;
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// Generated conversations (by message-id prefix) that are surely one session each: short,
/// without an explicit session id, with at least two user messages, in the last day but
/// not the newest (the browser test works on the newest one).
fn single_session_conversations(messages: &[GenMessage]) -> Vec<Vec<GenMessage>> {
    let mut by_conversation: BTreeMap<String, Vec<GenMessage>> = BTreeMap::new();
    for m in messages {
        let key = m.id.rsplit_once('-').map(|(k, _)| k.to_string()).unwrap();
        by_conversation.entry(key).or_default().push(m.clone());
    }
    let now = Utc::now().timestamp_micros();
    let hour = 3_600_000_000i64;
    let mut out: Vec<Vec<GenMessage>> = by_conversation
        .into_values()
        .filter(|ms| {
            let first = micros(&ms[0].timestamp);
            let last = micros(&ms[ms.len() - 1].timestamp);
            ms.iter().all(|m| m.session_id.is_none())
                && ms.iter().filter(|m| m.role == "user").count() >= 2
                && last - first < 10 * 60_000_000
                && first > now - 20 * hour
                && last < now - 2 * hour
        })
        .collect();
    // Different users, so the two can't be one session.
    out.sort_by_key(|ms| std::cmp::Reverse(ms.len()));
    let mut picked: Vec<Vec<GenMessage>> = Vec::new();
    for ms in out {
        if picked
            .iter()
            .all(|p| p[0].user_id != ms[0].user_id || p[0].channel != ms[0].channel)
        {
            picked.push(ms);
        }
        if picked.len() == 2 {
            break;
        }
    }
    picked
}

/// The conversation a stored message belongs to, via message search around its timestamp.
fn conversation_id(server: &Server, message: &GenMessage) -> String {
    let at = micros(&message.timestamp);
    let path = format!(
        "/v1/bots/{BOT}/messages?from={}&to={}&channel={}&limit=100",
        encode(&rfc3339(at)),
        encode(&rfc3339(at + 1_000)),
        message.channel
    );
    let page = server.get_ok(&path);
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message.id.as_str())
        .and_then(|m| m["conversation_id"].as_str())
        .unwrap_or_else(|| panic!("message {} not found: {page}", message.id))
        .to_string()
}

/// What a bot runtime would log for each user input of a conversation.
fn trace_events(conversation: &[GenMessage]) -> Vec<Value> {
    let first = &conversation[0];
    let mut events = Vec::new();
    for (i, m) in conversation.iter().filter(|m| m.role == "user").enumerate() {
        let at = micros(&m.timestamp);
        let intent = m.intent.clone().unwrap_or_else(|| "none".to_string());
        let steps = [
            (
                "nlu.classify",
                "debug",
                14.0 + i as f64,
                json!({"intent": intent, "confidence": m.confidence}),
            ),
            (
                "flow.resolve",
                "info",
                2.5,
                json!({"flow": m.flow, "candidates": 3}),
            ),
            (
                "api.call",
                if i == 1 { "warn" } else { "info" },
                120.0 + 40.0 * i as f64,
                json!({"endpoint": "/orders", "status": if i == 1 { 504 } else { 200 }}),
            ),
            (
                "reply.render",
                "debug",
                1.2,
                json!({"template": format!("t{i}")}),
            ),
        ];
        for (j, (action, level, duration, detail)) in steps.into_iter().enumerate() {
            events.push(json!({
                "bot_id": BOT, "user_id": first.user_id, "channel": first.channel,
                "timestamp": rfc3339(at + 50_000 * (j as i64 + 1)), "message_id": m.id,
                "action": action, "level": level, "duration_ms": duration, "detail": detail,
            }));
        }
    }
    events
}

/// Runs a command to completion or until `limit` (then kills it); returns (success, stdout + stderr).
fn run_with_limit(mut command: Command, limit: Duration) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}
