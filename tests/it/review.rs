//! Acceptance of the review workflow (issue #3) through HTTP against the real binary:
//! debug traces, share links, bulk actions and bad input. The concurrent
//! label/flag rounds with a `kill -9` live in `review_concurrency.rs`.
//!
//! Helpers here are shared with the other `review_*` files.

use crate::common::{ALL_FROM, ALL_TO, Server, agent, generated};
use chrono::Utc;
use convlog_gen::GenMessage;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One HTTP answer with its headers.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    headers: Vec<(String, String)>,
}

impl Answer {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }

    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stable error code of an error body, if any.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(String::from)
    }
}

/// Sends `method url` with an optional JSON body; `Err` when no answer came (e.g. the server died).
pub fn try_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Result<Answer, ureq::Error> {
    let response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("PUT", Some(b)) => agent
            .put(url)
            .content_type("application/json")
            .send(b.as_bytes()),
        ("PUT", None) => agent.put(url).send_empty(),
        ("POST", Some(b)) => agent
            .post(url)
            .content_type("application/json")
            .send(b.as_bytes()),
        ("POST", None) => agent.post(url).send_empty(),
        _ => panic!("unsupported method {method}"),
    };
    let mut response = response?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.body_mut().read_to_string()?;
    Ok(Answer {
        status,
        body,
        headers,
    })
}

/// Like [`try_send`], panicking when no answer came.
pub fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&str>) -> Answer {
    try_send(agent, method, url, body).unwrap_or_else(|err| panic!("{method} {url}: {err}"))
}

/// A tiny client bound to a base URL.
pub struct Client {
    pub base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            agent: agent(),
        }
    }

    pub fn try_req(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, ureq::Error> {
        try_send(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        send(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    /// `method path`, asserting `status`; the answer.
    pub fn expect(&self, status: u16, method: &str, path: &str, body: Option<&str>) -> Answer {
        let answer = self.req(method, path, body);
        assert_eq!(
            answer.status, status,
            "{method} {path} {body:?}: expected {status}, got {}: {}",
            answer.status, answer.body
        );
        answer
    }

    /// `method path`, asserting 200; the JSON body.
    pub fn ok(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        self.expect(200, method, path, body).json()
    }

    /// Pages through conversation search (`query` without `limit`/`cursor`); every conversation.
    pub fn all_conversations(&self, bot: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/bots/{bot}/conversations?{query}&limit=100");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode(c)));
            }
            let mut page = self.ok("GET", &path, None);
            out.append(page["conversations"].as_array_mut().expect("conversations"));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return out,
            }
        }
    }

    /// The ids of every conversation a search finds, checking that `total` agrees.
    pub fn search_ids(&self, bot: &str, query: &str) -> BTreeSet<String> {
        let total = self.ok(
            "GET",
            &format!("/v1/bots/{bot}/conversations?{query}&limit=1"),
            None,
        )["total"]
            .as_u64()
            .expect("total");
        let ids: BTreeSet<String> = self
            .all_conversations(bot, query)
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect();
        assert_eq!(
            ids.len() as u64,
            total,
            "search {query}: total {total} but paging gave {} distinct ids",
            ids.len()
        );
        ids
    }

    /// `total` of a conversation search.
    pub fn total(&self, bot: &str, query: &str) -> u64 {
        self.ok(
            "GET",
            &format!("/v1/bots/{bot}/conversations?{query}&limit=1"),
            None,
        )["total"]
            .as_u64()
            .expect("total")
    }
}

/// The query string covering all test data.
pub fn all_time() -> String {
    format!("from={ALL_FROM}&to={ALL_TO}")
}

/// A facet object as a map of counts, zero counts dropped.
pub fn facet(value: &Value) -> BTreeMap<String, u64> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("facet is not an object: {value}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `/labels` as a map name → conversations.
pub fn labels_list(value: &Value) -> BTreeMap<String, u64> {
    value["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("no labels array: {value}"))
        .iter()
        .map(|l| {
            (
                l["name"].as_str().expect("name").to_string(),
                l["conversations"].as_u64().expect("conversations"),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Message id → conversation id of one bot, from the server.
pub fn conversation_of(server: &Server, bot: &str) -> BTreeMap<String, String> {
    server.message_conversations(bot).into_iter().collect()
}

// Small utilities kept here so this file does not depend on the rest of the harness.

pub use crate::common::encode;

/// UTC microseconds of an RFC 3339 text.
pub fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?}: {err}"))
        .timestamp_micros()
}

/// RFC 3339 text of UTC microseconds.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp_micros(micros)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Every file under `dir`, recursively (files may vanish while the server runs).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A hand-made message.
pub fn msg(id: &str, bot: &str, user: &str, role: &str, text: &str, ts: &str) -> GenMessage {
    GenMessage {
        id: id.to_string(),
        bot_id: bot.to_string(),
        user_id: user.to_string(),
        channel: "web".to_string(),
        role: role.to_string(),
        text: text.to_string(),
        timestamp: ts.to_string(),
        session_id: None,
        flow: None,
        step: None,
        node_id: None,
        node_type: None,
        node_name: None,
        intent: None,
        confidence: None,
        unidentified: None,
        flow_completed: None,
        metadata: None,
        lang: None,
    }
}

/// The ids of one bot's conversations keyed by a message id they contain.
fn id_of(map: &BTreeMap<String, String>, message_id: &str) -> String {
    map.get(message_id)
        .unwrap_or_else(|| panic!("message {message_id} not found in search"))
        .clone()
}

fn seconds_between(a: &str, b: &str) -> i64 {
    (micros(b) - micros(a)) / 1_000_000
}

// ---------------------------------------------------------------------------------------------
// 2. Traces
// ---------------------------------------------------------------------------------------------

const TRACE_DAY: &str = "2026-11-15";

fn at(time: &str) -> String {
    format!("{TRACE_DAY}T{time}Z")
}

fn event(
    user: &str,
    ts: &str,
    action: &str,
    message_id: Option<&str>,
    duration: Option<f64>,
) -> Value {
    let mut e = json!({
        "bot_id": "acme", "user_id": user, "channel": "web",
        "timestamp": at(ts), "action": action,
        "detail": {"step": action}, "level": "debug",
    });
    if let Some(id) = message_id {
        e["message_id"] = json!(id);
    }
    if let Some(d) = duration {
        e["duration_ms"] = json!(d);
    }
    e
}

/// (input message id or None, [actions]) of a trace answer, checking the events are in time order.
fn trace_shape(trace: &Value) -> Vec<(Option<String>, Vec<String>)> {
    trace["inputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no inputs: {trace}"))
        .iter()
        .map(|group| {
            let events = group["events"].as_array().expect("events");
            let times: Vec<i64> = events
                .iter()
                .map(|e| micros(e["timestamp"].as_str().expect("timestamp")))
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "events not in time order: {group}"
            );
            let sum: f64 = events
                .iter()
                .filter_map(|e| e["duration_ms"].as_f64())
                .sum();
            let total = group["total_duration_ms"]
                .as_f64()
                .expect("total_duration_ms");
            assert!(
                (sum - total).abs() < 1e-9,
                "total_duration_ms {total} != {sum}: {group}"
            );
            (
                group["message"]["id"].as_str().map(String::from),
                events
                    .iter()
                    .map(|e| e["action"].as_str().expect("action").to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn review_traces_group_under_their_input_and_are_dropped_without_debug() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());

    // Conversation T: a greeting, then three user inputs each answered by the bot.
    // Conversation Q (another user): same shape, debug stays off.
    let mut batch = Vec::new();
    for (user, p) in [("tr-user", "t"), ("tr-quiet", "q")] {
        batch.push(msg(
            &format!("{p}g0"),
            "acme",
            user,
            "bot",
            "Welcome!",
            &at("09:59:50"),
        ));
        for i in 1..=3 {
            let minute = format!("10:0{}", i - 1);
            batch.push(msg(
                &format!("{p}u{i}"),
                "acme",
                user,
                "user",
                &format!("question {i}"),
                &at(&format!("{minute}:00")),
            ));
            batch.push(msg(
                &format!("{p}b{i}"),
                "acme",
                user,
                "bot",
                &format!("answer {i}"),
                &at(&format!("{minute}:02")),
            ));
        }
    }
    server.ingest(&batch);
    server.wait_indexed();
    let ids = conversation_of(&server, "acme");
    let t = id_of(&ids, "tu1");
    let q = id_of(&ids, "qu1");
    assert_ne!(t, q);
    for m in ["tg0", "tb1", "tu2", "tb2", "tu3", "tb3"] {
        assert_eq!(id_of(&ids, m), t, "message {m} should be in conversation T");
    }

    let conv = format!("/v1/bots/acme/conversations/{t}");
    assert_eq!(c.ok("GET", &conv, None)["debug"], json!(false));
    let on = c.ok("PUT", &format!("{conv}/debug"), None);
    assert_eq!(on["debug"], json!(true), "{on}");
    assert_eq!(on["id"], json!(t));
    assert_eq!(c.ok("GET", &conv, None)["debug"], json!(true));
    let listed = c.ok("GET", "/v1/bots/acme/debug", None);
    let listed_ids: Vec<&str> = listed["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed_ids, vec![t.as_str()], "{listed}");
    assert_eq!(listed["conversations"][0]["debug"], json!(true));

    // Events per input: untargeted (by time), one naming the input, one naming the bot's
    // reply, one naming an unknown message (falls back to time). Plus one before the
    // first input and one naming u1 but arriving after u2.
    let mut events = vec![event(
        "tr-user",
        "09:59:55",
        "session.start",
        None,
        Some(0.5),
    )];
    let mut expected: Vec<(Option<String>, Vec<String>)> =
        vec![(None, vec!["session.start".into()])];
    for i in 1..=3 {
        let minute = format!("10:0{}", i - 1);
        let e = |s: &str| format!("{minute}:{s}");
        events.push(event(
            "tr-user",
            &e("00.300"),
            &format!("nlu-{i}"),
            None,
            Some(12.25),
        ));
        events.push(event(
            "tr-user",
            &e("00.800"),
            &format!("step-{i}"),
            Some(&format!("tu{i}")),
            Some(3.0),
        ));
        events.push(event(
            "tr-user",
            &e("01.500"),
            &format!("reply-{i}"),
            Some(&format!("tb{i}")),
            None,
        ));
        events.push(event(
            "tr-user",
            &e("01.900"),
            &format!("api-{i}"),
            Some("no-such-message"),
            Some(40.0),
        ));
        expected.push((
            Some(format!("tu{i}")),
            vec![
                format!("nlu-{i}"),
                format!("step-{i}"),
                format!("reply-{i}"),
                format!("api-{i}"),
            ],
        ));
    }
    events.push(event(
        "tr-user",
        "10:01:30",
        "late-audit-1",
        Some("tu1"),
        Some(1.0),
    ));
    expected[1].1.push("late-audit-1".into());
    // An event at exactly the time of an input belongs to that input.
    events.push(event("tr-user", "10:01:00", "at-u2", None, None));
    expected[2].1.insert(0, "at-u2".into());
    // Post in a scrambled order, in two batches.
    events.reverse();
    events.swap(0, 5);
    let (first, second) = events.split_at(7);
    let mut stored = 0;
    for part in [first, second] {
        let answer = c.ok(
            "POST",
            "/v1/traces",
            Some(&Value::Array(part.to_vec()).to_string()),
        );
        assert_eq!(answer["dropped"], json!(0), "{answer}");
        stored += answer["accepted"].as_u64().expect("accepted");
    }
    assert_eq!(stored, events.len() as u64);

    let trace = c.ok("GET", &format!("{conv}/trace"), None);
    assert_eq!(trace["conversation_id"], json!(t));
    assert_eq!(trace["debug"], json!(true));
    assert_eq!(trace_shape(&trace), expected, "{trace}");
    // The input message objects are the user messages, and the event fields come back.
    for (i, group) in trace["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .skip(1)
    {
        assert_eq!(group["message"]["role"], json!("user"));
        assert_eq!(group["message"]["text"], json!(format!("question {i}")));
    }
    let nlu = &trace["inputs"][1]["events"][0];
    assert_eq!(nlu["detail"], json!({"step": "nlu-1"}), "{nlu}");
    assert_eq!(nlu["level"], json!("debug"));
    assert_eq!(nlu["duration_ms"].as_f64(), Some(12.25));
    assert_eq!(
        nlu["timestamp"].as_str().map(micros),
        Some(micros(&at("10:00:00.300")))
    );
    assert_eq!(trace["inputs"][1]["events"][2]["message_id"], json!("tb1"));
    assert_eq!(
        trace["inputs"][1]["total_duration_ms"].as_f64(),
        Some(12.25 + 3.0 + 40.0 + 1.0)
    );

    // ?message_id= narrows to one input.
    for (i, group) in expected.iter().enumerate().skip(1) {
        let one = c.ok("GET", &format!("{conv}/trace?message_id=tu{i}"), None);
        assert_eq!(trace_shape(&one), vec![group.clone()], "{one}");
    }

    // Debug off on Q: nothing is kept and the drop counter rises.
    let dropped_before = server.metric("convlog_traces_dropped_total");
    let quiet: Vec<Value> = (1..=3)
        .flat_map(|i| {
            let minute = format!("10:0{}", i - 1);
            vec![
                event(
                    "tr-quiet",
                    &format!("{minute}:00.300"),
                    "nlu",
                    None,
                    Some(1.0),
                ),
                event(
                    "tr-quiet",
                    &format!("{minute}:01.000"),
                    "reply",
                    Some(&format!("qb{i}")),
                    None,
                ),
            ]
        })
        .collect();
    let answer = c.ok(
        "POST",
        "/v1/traces",
        Some(&Value::Array(quiet.clone()).to_string()),
    );
    assert_eq!(answer, json!({"accepted": 0, "dropped": quiet.len()}));
    // Events of nobody's conversation are dropped too.
    let stray = json!([event("nobody", "10:00:00", "nlu", None, None)]).to_string();
    assert_eq!(
        c.ok("POST", "/v1/traces", Some(&stray)),
        json!({"accepted": 0, "dropped": 1})
    );
    assert_eq!(
        server.metric("convlog_traces_dropped_total"),
        dropped_before + quiet.len() as f64 + 1.0
    );
    let quiet_trace = c.ok(
        "GET",
        &format!("/v1/bots/acme/conversations/{q}/trace"),
        None,
    );
    assert_eq!(quiet_trace["debug"], json!(false));
    assert_eq!(
        trace_shape(&quiet_trace),
        (1..=3)
            .map(|i| (Some(format!("qu{i}")), vec![]))
            .collect::<Vec<_>>(),
        "every user input has a group and no events were kept: {quiet_trace}"
    );

    // Debug off on T: new events are dropped, the old ones stay.
    let off = c.ok("DELETE", &format!("{conv}/debug"), None);
    assert_eq!(off["debug"], json!(false));
    assert_eq!(
        c.ok("GET", "/v1/bots/acme/debug", None),
        json!({"conversations": []})
    );
    let dropped_before = server.metric("convlog_traces_dropped_total");
    let more = json!([event("tr-user", "10:02:01", "after-off", None, None)]).to_string();
    assert_eq!(
        c.ok("POST", "/v1/traces", Some(&more)),
        json!({"accepted": 0, "dropped": 1})
    );
    assert_eq!(
        server.metric("convlog_traces_dropped_total"),
        dropped_before + 1.0
    );
    let trace = c.ok("GET", &format!("{conv}/trace"), None);
    assert_eq!(trace["debug"], json!(false));
    assert_eq!(trace_shape(&trace), expected, "{trace}");

    // Debug switches and stored events survive kill -9.
    let on = c.ok(
        "PUT",
        &format!("/v1/bots/acme/conversations/{q}/debug"),
        None,
    );
    assert_eq!(on["debug"], json!(true));
    server.kill9();
    server.restart();
    let c = Client::new(server.base());
    let trace = c.ok("GET", &format!("{conv}/trace"), None);
    assert_eq!(trace_shape(&trace), expected, "after restart: {trace}");
    let listed = c.ok("GET", "/v1/bots/acme/debug", None);
    assert_eq!(
        listed["conversations"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["conversations"][0]["id"], json!(q));
    let late = json!([event(
        "tr-quiet",
        "10:02:01.500",
        "after-restart",
        None,
        Some(2.0)
    )])
    .to_string();
    assert_eq!(
        c.ok("POST", "/v1/traces", Some(&late)),
        json!({"accepted": 1, "dropped": 0})
    );
    let quiet_trace = c.ok(
        "GET",
        &format!("/v1/bots/acme/conversations/{q}/trace"),
        None,
    );
    assert_eq!(
        trace_shape(&quiet_trace),
        vec![
            (Some("qu1".to_string()), vec![]),
            (Some("qu2".to_string()), vec![]),
            (Some("qu3".to_string()), vec!["after-restart".to_string()]),
        ]
    );
}

#[test]
fn review_trace_totals_without_durations_are_plain_zero() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());
    server.ingest(&[
        msg("z1", "acme", "zero", "user", "hi", &at("11:00:00")),
        msg("z2", "acme", "zero", "bot", "hello", &at("11:00:01")),
        msg("z3", "acme", "zero", "user", "bye", &at("11:00:10")),
    ]);
    server.wait_indexed();
    let id = id_of(&conversation_of(&server, "acme"), "z1");
    let conv = format!("/v1/bots/acme/conversations/{id}");
    c.ok("PUT", &format!("{conv}/debug"), None);
    let events = json!([event("zero", "11:00:00.500", "nlu", None, None)]).to_string();
    assert_eq!(
        c.ok("POST", "/v1/traces", Some(&events))["accepted"],
        json!(1)
    );
    let answer = c.expect(200, "GET", &format!("{conv}/trace"), None);
    let trace = answer.json();
    assert_eq!(trace_shape(&trace).len(), 2);
    // A group whose events carry no duration, and a group with no events, total 0 —
    // serialised as 0, not as the negative zero `-0.0`.
    assert!(
        !answer.body.contains("\"total_duration_ms\":-0"),
        "total_duration_ms serialised as negative zero: {}",
        answer.body
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Share links
// ---------------------------------------------------------------------------------------------

const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every token that differs from `token` in exactly one character (plus case flips).
fn one_character_changes(token: &str) -> Vec<String> {
    let chars: Vec<char> = token.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        let position = BASE64URL.find(chars[i]).unwrap_or(0);
        for replacement in [
            BASE64URL.as_bytes()[(position + 1) % 64] as char,
            BASE64URL.as_bytes()[(position + 37) % 64] as char,
        ] {
            let mut changed = chars.clone();
            changed[i] = replacement;
            out.push(changed.iter().collect());
        }
    }
    out.push(chars[..chars.len() - 1].iter().collect());
    out.push(format!("{token}A"));
    out.push(format!("A{token}"));
    out.push(token.to_uppercase());
    out.push(token.to_lowercase());
    out.retain(|t| t != token);
    out
}

fn assert_no_token_leak(data_dir: &Path, log: &Path, tokens: &[&str]) {
    for path in files_under(data_dir) {
        let bytes = read_bytes(&path);
        for token in tokens {
            assert!(
                !contains_bytes(&bytes, token.as_bytes()),
                "share token {token} found in {}",
                path.display()
            );
        }
    }
    let log_text = String::from_utf8_lossy(&read_bytes(log)).into_owned();
    for token in tokens {
        let lines: Vec<&str> = log_text.lines().filter(|l| l.contains(token)).collect();
        assert!(
            lines.is_empty(),
            "share token {token} found in the server's stderr log {}:\n{}",
            log.display(),
            lines.join("\n")
        );
    }
}

#[test]
fn review_share_links_open_one_conversation_until_revoked_or_expired() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with_log_level(root.path(), &[], "debug");
    let c = Client::new(server.base());
    let mut batch = Vec::new();
    for (bot, user, p) in [
        ("acme", "sh-a", "a"),
        ("acme", "sh-b", "b"),
        ("other", "sh-a", "c"),
    ] {
        batch.push(msg(
            &format!("{p}1"),
            bot,
            user,
            "user",
            &format!("secret words of {p}"),
            "2026-11-16T08:00:00Z",
        ));
        batch.push(msg(
            &format!("{p}2"),
            bot,
            user,
            "bot",
            &format!("reply to {p}"),
            "2026-11-16T08:00:03Z",
        ));
        batch.push(msg(
            &format!("{p}3"),
            bot,
            user,
            "user",
            &format!("more of {p}"),
            "2026-11-16T08:01:00Z",
        ));
    }
    // An older conversation of the same user, so the private view would have a `history`.
    batch.push(msg(
        "a0",
        "acme",
        "sh-a",
        "user",
        "earlier",
        "2026-11-14T08:00:00Z",
    ));
    server.ingest(&batch);
    server.wait_indexed();
    let acme = conversation_of(&server, "acme");
    let (a, b) = (id_of(&acme, "a1"), id_of(&acme, "b1"));
    let other = id_of(&conversation_of(&server, "other"), "c1");
    let private = c.ok("GET", &format!("/v1/bots/acme/conversations/{a}"), None);

    // Create: ttl 2h, the default (7 days), 90 days; invalid ttls.
    let started = Utc::now().to_rfc3339();
    let share = |id: &str, body: Option<&str>| {
        let answer = c.expect(
            200,
            "POST",
            &format!("/v1/bots/acme/conversations/{id}/share"),
            body,
        );
        let v = answer.json();
        let token = v["token"].as_str().expect("token").to_string();
        assert_eq!(v["url"], json!(format!("/shared/{token}")), "{v}");
        assert_eq!(v["api_url"], json!(format!("/v1/shared/{token}")), "{v}");
        let expires = v["expires_at"].as_str().expect("expires_at").to_string();
        (token, expires)
    };
    let (short, short_expires) = share(&a, Some(r#"{"ttl": "2h"}"#));
    let (default, default_expires) = share(&a, None);
    let (long, long_expires) = share(&b, Some(r#"{"ttl": "90d"}"#));
    for (expires, hours) in [
        (&short_expires, 2),
        (&default_expires, 7 * 24),
        (&long_expires, 90 * 24),
    ] {
        let delta = seconds_between(&started, expires) - hours * 3600;
        assert!(
            (-5..=120).contains(&delta),
            "expires_at {expires} is not {hours}h after {started}"
        );
    }
    assert!(short != default && default != long, "tokens must be unique");
    for bad in [
        r#"{"ttl": "91d"}"#,
        r#"{"ttl": "soon"}"#,
        r#"{"ttl": "0s"}"#,
        r#"{"ttl": ""}"#,
        // Exactly <number><unit>, as the API description's pattern says.
        r#"{"ttl": " 7d"}"#,
        r#"{"ttl": 5}"#,
        r#"{"expires": "2h"}"#,
        "{",
    ] {
        let answer = c.expect(
            400,
            "POST",
            &format!("/v1/bots/acme/conversations/{a}/share"),
            Some(bad),
        );
        assert!(answer.error_code().is_some(), "{}", answer.body);
    }
    // Sharing a conversation of another bot (or none) is 404.
    c.expect(
        404,
        "POST",
        &format!("/v1/bots/acme/conversations/{other}/share"),
        None,
    );
    c.expect(
        404,
        "POST",
        "/v1/bots/acme/conversations/c_fffffff/share",
        None,
    );

    // The token opens exactly that conversation, read-only, with private headers.
    let open = c.expect(200, "GET", &format!("/v1/shared/{short}"), None);
    assert_eq!(
        open.header("cache-control"),
        Some("no-store"),
        "{:?}",
        open.headers
    );
    assert_eq!(
        open.header("referrer-policy"),
        Some("no-referrer"),
        "{:?}",
        open.headers
    );
    let shared = open.json();
    assert_eq!(shared["id"], json!(a));
    assert_eq!(shared["bot_id"], json!("acme"));
    assert!(
        shared.get("history").is_none(),
        "a shared view has no history: {shared}"
    );
    assert!(shared["tag_details"].is_array(), "{shared}");
    let message_ids: Vec<&str> = shared["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(message_ids, vec!["a1", "a2", "a3"]);
    for key in [
        "user",
        "channel",
        "started_at",
        "last_message_at",
        "message_count",
        "tags",
    ] {
        assert_eq!(shared[key], private[key], "field {key}");
    }
    // The review stays private unless the link was made to show it (issue #13).
    for key in ["labels", "flagged", "flag_note", "debug"] {
        assert!(
            shared.get(key).is_none(),
            "{key} in a shared view: {shared}"
        );
    }
    for leak in ["reply to b", "of c", "earlier"] {
        assert!(
            !open.body.contains(leak),
            "{leak:?} leaked into the shared view: {}",
            open.body
        );
    }
    assert_eq!(
        c.ok("GET", &format!("/v1/shared/{default}"), None)["id"],
        json!(a)
    );
    assert_eq!(
        c.ok("GET", &format!("/v1/shared/{long}"), None)["id"],
        json!(b)
    );
    // Query parameters don't redirect it to another conversation.
    for query in [
        format!("?id={b}"),
        format!("?conversation_id={b}"),
        "?bot_id=other".to_string(),
    ] {
        let answer = c.req("GET", &format!("/v1/shared/{short}{query}"), None);
        if answer.status == 200 {
            assert_eq!(answer.json()["id"], json!(a), "{query}: {}", answer.body);
        } else {
            assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        }
    }

    // Nothing else accepts it. Paths outside `/v1/shared/` are probed with a separate token
    // (`probe`, left out of the leak check): the server can't know such a segment is a token.
    let (probe, _) = share(&a, Some(r#"{"ttl": "1h"}"#));
    for path in [
        format!("/v1/shared/{probe}/anything"),
        format!("/v1/shared/{probe}/messages"),
        format!("/v1/shared/{probe}/{b}"),
        format!("/v1/shared/{a}"),
        format!("/v1/shared/{b}"),
        format!("/v1/shared/{other}"),
        "/v1/shared/".to_string(),
        format!("/v1/bots/acme/conversations/{probe}"),
        format!("/v1/bots/other/conversations/{probe}"),
        format!("/v1/bots/acme/conversations/{b}/{probe}"),
        format!("/v1/bots/acme/shared/{probe}"),
        format!("/v1/bots/other/shared/{probe}"),
    ] {
        let answer = c.req("GET", &path, None);
        assert_eq!(answer.status, 404, "GET {path}: {}", answer.body);
    }
    assert_eq!(
        c.req("GET", "/v1/shared/x", None).error_code().as_deref(),
        Some("not_found")
    );
    // `/shared/{token}` is the web UI's page for a link: the same static shell for
    // every token, which then asks `/v1/shared/{token}`; it carries no conversation.
    let page = c.req("GET", &format!("/shared/{probe}"), None);
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(&probe) && !page.body.contains("\"messages\""),
        "{}",
        page.body
    );

    // A single-character change is 404.
    for altered in one_character_changes(&short) {
        let answer = c.req("GET", &format!("/v1/shared/{}", encode(&altered)), None);
        assert_eq!(
            answer.status, 404,
            "altered token {altered} (from {short}): {}",
            answer.body
        );
        assert_eq!(answer.error_code().as_deref(), Some("not_found"));
    }

    // Revocation: only by the owning bot, only that token.
    c.expect(
        404,
        "DELETE",
        &format!("/v1/bots/other/shares/{default}"),
        None,
    );
    c.expect(200, "GET", &format!("/v1/shared/{default}"), None);
    c.expect(
        404,
        "DELETE",
        "/v1/bots/acme/shares/AAAAAAAAAAAAAAAAAAAAAA",
        None,
    );
    c.expect(
        200,
        "DELETE",
        &format!("/v1/bots/acme/shares/{default}"),
        None,
    );
    let gone = c.expect(404, "GET", &format!("/v1/shared/{default}"), None);
    assert_eq!(gone.error_code().as_deref(), Some("not_found"));
    c.expect(200, "GET", &format!("/v1/shared/{short}"), None);

    // The tokens are nowhere in the data directory or the (debug-level) log.
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log_path().to_path_buf();
    assert_no_token_leak(server.data_dir(), &log, &[&short, &default, &long]);
    let data_dir = server.data_dir().to_path_buf();
    server.kill9();
    assert_no_token_leak(&data_dir, &log, &[&short, &default, &long]);

    // Expiry with the injected clock.
    server.set_env("CONVLOG_LOG", Some("debug"));
    let mut check = |offset: &str, expected: &[(&str, u16)]| {
        server.set_env("CONVLOG_CLOCK_OFFSET", Some(offset));
        server.restart();
        let c = Client::new(server.base());
        for (token, status) in expected {
            let answer = c.req("GET", &format!("/v1/shared/{token}"), None);
            assert_eq!(
                answer.status, *status,
                "clock {offset}, token {token}: {}",
                answer.body
            );
            if *status == 200 {
                assert_eq!(
                    answer.json()["id"],
                    json!(if *token == long { &b } else { &a })
                );
            } else {
                assert_eq!(answer.error_code().as_deref(), Some("not_found"));
            }
        }
        // Revoked stays revoked.
        assert_eq!(
            c.req("GET", &format!("/v1/shared/{default}"), None).status,
            404
        );
        server.kill9();
    };
    check("+1h", &[(&short, 200), (&long, 200)]);
    check("+3h", &[(&short, 404), (&long, 200)]);
    check("+89d", &[(&short, 404), (&long, 200)]);
    check("+91d", &[(&short, 404), (&long, 404)]);
    assert_no_token_leak(&data_dir, &log, &[&short, &default, &long]);
}

// ---------------------------------------------------------------------------------------------
// 4. Bulk actions
// ---------------------------------------------------------------------------------------------

fn day_before_end(days: i64) -> String {
    rfc3339((crate::common::end() - chrono::Duration::days(days)).timestamp_micros())
}

/// A bulk answer without its `action_id` (which the undo tests follow).
fn counts(mut outcome: Value) -> Value {
    let action = outcome
        .as_object_mut()
        .and_then(|o| o.remove("action_id"))
        .unwrap_or_else(|| panic!("no action_id: {outcome}"));
    assert!(action.is_null() || action.is_u64(), "{action}");
    outcome
}

#[test]
fn review_bulk_changes_exactly_what_search_matches() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());
    server.ingest_parallel(&generated(0xB01C, 600, &["bulk"], 30), 2000, 2);
    server.wait_indexed();
    let all = all_time();
    let everything = c.search_ids("bulk", &all);

    let filter = format!(
        "from={}&to={}&channel=web&channel=whatsapp",
        day_before_end(25),
        day_before_end(3)
    );
    let matched = c.search_ids("bulk", &filter);
    let total = matched.len() as u64;
    assert!(
        total > 100,
        "the filter should span several pages, matched {total}"
    );
    assert!(total < everything.len() as u64);
    let bulk = format!("/v1/bots/bulk/conversations/bulk?{filter}");
    let body = |extra: &str| format!(r#"{{"add_labels": ["Reviewed-Bulk"], "flag": true{extra}}}"#);

    // Dry run: counts, changes nothing.
    let dry = counts(c.ok("POST", &bulk, Some(&body(r#", "dry_run": true"#))));
    assert_eq!(
        dry,
        json!({"matched": total, "changed": 0, "dry_run": true})
    );
    server.wait_indexed();
    assert_eq!(c.total("bulk", &format!("{all}&label=Reviewed-Bulk")), 0);
    assert_eq!(c.total("bulk", &format!("{all}&flagged=true")), 0);
    assert_eq!(
        labels_list(&c.ok("GET", &format!("/v1/bots/bulk/labels?{all}"), None)),
        BTreeMap::new()
    );

    // The real run changes exactly the matched conversations.
    let run = counts(c.ok("POST", &bulk, Some(&body(""))));
    assert_eq!(
        run,
        json!({"matched": total, "changed": total, "dry_run": false})
    );
    let sample = matched.iter().next().unwrap();
    let one = c.ok(
        "GET",
        &format!("/v1/bots/bulk/conversations/{sample}"),
        None,
    );
    assert_eq!(
        one["labels"],
        json!(["Reviewed-Bulk"]),
        "visible at once: {one}"
    );
    assert_eq!(one["flagged"], json!(true));
    server.wait_indexed();
    assert_eq!(
        c.search_ids("bulk", &format!("{all}&label=reviewed-bulk")),
        matched
    );
    assert_eq!(
        c.search_ids("bulk", &format!("{all}&flagged=true")),
        matched
    );
    let rest: BTreeSet<String> = everything.difference(&matched).cloned().collect();
    assert_eq!(c.search_ids("bulk", &format!("{all}&flagged=false")), rest);
    for conv in c.all_conversations("bulk", &all) {
        let id = conv["id"].as_str().unwrap();
        let inside = matched.contains(id);
        assert_eq!(conv["flagged"], json!(inside), "{conv}");
        assert_eq!(
            conv["labels"],
            if inside {
                json!(["Reviewed-Bulk"])
            } else {
                json!([])
            },
            "{conv}"
        );
    }
    let page = c.ok(
        "GET",
        &format!("/v1/bots/bulk/conversations?{all}&limit=1"),
        None,
    );
    assert_eq!(
        facet(&page["facets"]["label"]),
        BTreeMap::from([("Reviewed-Bulk".to_string(), total)])
    );
    assert_eq!(
        facet(&page["facets"]["flagged"]),
        [("true", total), ("false", rest.len() as u64)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect()
    );
    assert_eq!(
        labels_list(&c.ok("GET", &format!("/v1/bots/bulk/labels?{all}"), None)),
        BTreeMap::from([("Reviewed-Bulk".to_string(), total)])
    );

    // A second identical run (and one spelled differently) changes nothing.
    assert_eq!(
        counts(c.ok("POST", &bulk, Some(&body("")))),
        json!({"matched": total, "changed": 0, "dry_run": false})
    );
    let lower = r#"{"add_labels": ["reviewed-bulk"], "flag": true}"#;
    assert_eq!(
        counts(c.ok("POST", &bulk, Some(lower))),
        json!({"matched": total, "changed": 0, "dry_run": false})
    );

    // The label filter sees the new label; remove it again on a narrower filter that uses it.
    assert_eq!(
        c.search_ids("bulk", &format!("{filter}&label=REVIEWED-bulk")),
        matched
    );
    let web_only = format!(
        "from={}&to={}&channel=web&label=REVIEWED-bulk",
        day_before_end(25),
        day_before_end(3)
    );
    let web_ids = c.search_ids("bulk", &web_only);
    assert!(!web_ids.is_empty() && web_ids.len() < matched.len());
    let remove = r#"{"remove_labels": ["Reviewed-BULK"], "flag": false}"#;
    let path = format!("/v1/bots/bulk/conversations/bulk?{web_only}");
    let dry = counts(c.ok(
        "POST",
        &path,
        Some(r#"{"remove_labels": ["Reviewed-BULK"], "flag": false, "dry_run": true}"#),
    ));
    assert_eq!(
        dry,
        json!({"matched": web_ids.len(), "changed": 0, "dry_run": true})
    );
    let run = counts(c.ok("POST", &path, Some(remove)));
    assert_eq!(
        run,
        json!({"matched": web_ids.len(), "changed": web_ids.len(), "dry_run": false})
    );
    server.wait_indexed();
    let left: BTreeSet<String> = matched.difference(&web_ids).cloned().collect();
    assert_eq!(
        c.search_ids("bulk", &format!("{all}&label=Reviewed-Bulk")),
        left
    );
    assert_eq!(c.search_ids("bulk", &format!("{all}&flagged=true")), left);
    // The filter now matches nothing; running it again matches and changes nothing.
    assert_eq!(
        counts(c.ok("POST", &path, Some(remove))),
        json!({"matched": 0, "changed": 0, "dry_run": false})
    );

    // Partial overlap: flag a whole channel where some are already flagged.
    let whatsapp = format!("{all}&channel=whatsapp");
    let whatsapp_ids = c.search_ids("bulk", &whatsapp);
    let already = whatsapp_ids.intersection(&left).count() as u64;
    assert!(already > 0 && already < whatsapp_ids.len() as u64);
    let run = counts(c.ok(
        "POST",
        &format!("/v1/bots/bulk/conversations/bulk?{whatsapp}"),
        Some(r#"{"flag": true}"#),
    ));
    assert_eq!(
        run,
        json!({"matched": whatsapp_ids.len(), "changed": whatsapp_ids.len() as u64 - already, "dry_run": false})
    );

    // Dry runs count exactly what search finds, whatever the filter.
    let facets = c.ok(
        "GET",
        &format!("/v1/bots/bulk/conversations?{all}&limit=1"),
        None,
    )["facets"]
        .clone();
    let first_key = |dimension: &str| -> String {
        facet(&facets[dimension])
            .into_keys()
            .next()
            .unwrap_or_else(|| panic!("no {dimension} facet: {facets}"))
    };
    let (flow, node) = (first_key("flow"), first_key("node"));
    // Tags may not have been computed yet; a tag nobody has is a filter too.
    let tag = facet(&facets["tag"])
        .into_keys()
        .next()
        .unwrap_or("dropoff".to_string());
    for query in [
        format!("{all}&q=order"),
        format!("{all}&q={}", encode("help OR (cancel -refund)")),
        format!("{all}&q={}", encode("user:\"i need\"")),
        format!("{all}&tag={}", encode(&tag)),
        format!("{all}&flow={}", encode(&flow)),
        format!("{all}&flow={}&dropoff=true", encode(&flow)),
        format!("{all}&node={}", encode(&node)),
        format!("{all}&flagged=false&channel=sms&channel=telegram"),
        format!("{all}&label=Reviewed-Bulk&q=order"),
        format!("{filter}&flagged=true"),
    ] {
        let total = c.total("bulk", &query);
        let dry = counts(c.ok(
            "POST",
            &format!("/v1/bots/bulk/conversations/bulk?{query}"),
            Some(r#"{"add_labels": ["never-applied"], "dry_run": true}"#),
        ));
        assert_eq!(
            dry,
            json!({"matched": total, "changed": 0, "dry_run": true}),
            "filter {query}"
        );
    }

    // The default time range is the same as search's.
    let default_total = c.total("bulk", "channel=web");
    let dry = counts(c.ok(
        "POST",
        "/v1/bots/bulk/conversations/bulk?channel=web",
        Some(r#"{"add_labels": ["x"], "dry_run": true}"#),
    ));
    assert_eq!(dry["matched"], json!(default_total));
}

/// What reviewers' work a conversation carries: labels, flag time and note.
fn review_state(c: &Client, bot: &str) -> BTreeMap<String, Value> {
    c.all_conversations(bot, &all_time())
        .into_iter()
        .map(|conv| {
            let id = conv["id"].as_str().unwrap().to_string();
            let state = json!([conv["labels"], conv["flagged_at"], conv["flag_note"]]);
            (id, state)
        })
        .collect()
}

#[test]
fn review_bulk_undo_puts_back_what_the_action_changed_and_leaves_what_people_changed_since() {
    let root = tempfile::tempdir().expect("tempdir");
    // One conversation per transaction: the action's progress can be watched.
    let server = Server::start(root.path(), &["--set", "review.bulk_chunk=1"]);
    let c = Client::new(server.base());
    server.ingest_parallel(&generated(0xB0D0, 400, &["undo", "other"], 10), 2000, 2);
    server.wait_indexed();
    let all = all_time();
    let web = format!("{all}&channel=web");
    let web_ids: Vec<String> = c.search_ids("undo", &web).into_iter().collect();
    let others: Vec<String> = c
        .search_ids("undo", &format!("{all}&channel=whatsapp"))
        .into_iter()
        .collect();
    assert!(
        web_ids.len() > 20 && others.len() > 5,
        "{} {}",
        web_ids.len(),
        others.len()
    );
    let conv = |id: &str| format!("/v1/bots/undo/conversations/{id}");

    // People's work before the action: a label it removes (in its own
    // spelling), a flag with a note, a label it leaves alone.
    for id in &web_ids[..6] {
        c.ok("PUT", &format!("{}/labels/Old-Label", conv(id)), None);
    }
    for id in &web_ids[3..9] {
        c.ok(
            "PUT",
            &format!("{}/flag", conv(id)),
            Some(r#"{"note": "look at this"}"#),
        );
    }
    c.ok("PUT", &format!("{}/labels/keep", conv(&web_ids[10])), None);
    c.ok(
        "PUT",
        &format!("{}/labels/Old-Label", conv(&others[0])),
        None,
    );
    server.wait_indexed();
    let before = review_state(&c, "undo");

    // The action, watched while it runs: its progress only moves forward.
    let bulk = format!("/v1/bots/undo/conversations/bulk?{web}");
    let action = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            c.ok(
                "POST",
                &bulk,
                Some(
                    r#"{"add_labels": ["triaged"], "remove_labels": ["old-label"], "flag": true}"#,
                ),
            )
        });
        let mut seen = Vec::new();
        while !running.is_finished() {
            let listed = c.ok("GET", "/v1/bots/undo/conversations/bulk", None);
            if let Some(action) = listed["actions"].as_array().and_then(|a| a.first()) {
                seen.push((action["state"].clone(), action["done"].as_u64().unwrap()));
            }
        }
        let done: Vec<u64> = seen.iter().map(|(_, done)| *done).collect();
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(
            seen.iter().any(|(state, done)| state == "running"
                && *done > 0
                && *done < web_ids.len() as u64),
            "no progress seen part-way: {seen:?}"
        );
        running.join().unwrap()
    });
    assert_eq!(action["matched"], json!(web_ids.len()));
    assert_eq!(action["changed"], json!(web_ids.len()));
    let id = action["action_id"].as_u64().expect("an action id");
    let listed = c.ok("GET", "/v1/bots/undo/conversations/bulk", None);
    let recorded = &listed["actions"][0];
    assert_eq!(recorded["id"], json!(id));
    assert_eq!(recorded["state"], "done");
    assert_eq!(recorded["done"], json!(web_ids.len()));
    assert_eq!(recorded["add_labels"], json!(["triaged"]));
    assert_eq!(recorded["remove_labels"], json!(["old-label"]));
    assert_eq!(recorded["flag"], json!(true));
    // Another bot sees none of it.
    assert_eq!(
        c.ok("GET", "/v1/bots/other/conversations/bulk", None),
        json!({"actions": []})
    );
    c.expect(
        404,
        "POST",
        &format!("/v1/bots/other/conversations/bulk/{id}/undo"),
        None,
    );

    // People change some of it afterwards: unflag one, give another a note of
    // their own, label a third by hand.
    c.ok("DELETE", &format!("{}/flag", conv(&web_ids[12])), None);
    c.ok(
        "PUT",
        &format!("{}/flag", conv(&web_ids[13])),
        Some(r#"{"note": "mine now"}"#),
    );
    c.ok(
        "PUT",
        &format!("{}/labels/by-hand", conv(&web_ids[14])),
        None,
    );
    let touched = [&web_ids[12], &web_ids[13], &web_ids[14]];

    let undone = c.ok(
        "POST",
        &format!("/v1/bots/undo/conversations/bulk/{id}/undo"),
        None,
    );
    assert_eq!(undone["state"], "undone", "{undone}");
    assert_eq!(undone["restored"], json!(web_ids.len()), "{undone}");
    server.wait_indexed();
    let after = review_state(&c, "undo");
    for (conversation, was) in &before {
        if touched.contains(&conversation) {
            continue;
        }
        assert_eq!(&after[conversation], was, "{conversation} is not as it was");
    }
    // What people did since stays.
    assert_eq!(after[&web_ids[12]], before[&web_ids[12]]);
    let mine = c.ok("GET", &conv(&web_ids[13]), None);
    assert_eq!(mine["flag_note"], "mine now");
    assert_eq!(mine["labels"], json!([]));
    assert_eq!(
        c.ok("GET", &conv(&web_ids[14]), None)["labels"],
        json!(["by-hand"])
    );
    assert_eq!(c.total("undo", &format!("{all}&label=triaged")), 0);
    assert_eq!(c.total("undo", &format!("{all}&label=Old-Label")), 6 + 1);

    // Undone once; the second time is a conflict; an unknown action is 404.
    c.expect(
        409,
        "POST",
        &format!("/v1/bots/undo/conversations/bulk/{id}/undo"),
        None,
    );
    c.expect(
        404,
        "POST",
        "/v1/bots/undo/conversations/bulk/999/undo",
        None,
    );
    c.expect(
        404,
        "POST",
        "/v1/bots/undo/conversations/bulk/nine/undo",
        None,
    );

    // Conversations named one by one: another bot's and unknown ids don't match.
    let named = json!({
        "add_labels": ["picked"],
        "conversation_ids": [web_ids[0], web_ids[1], others[1]],
    });
    let other_bot = c.search_ids("other", &all).into_iter().next().unwrap();
    let mut with_foreign = named.clone();
    with_foreign["conversation_ids"]
        .as_array_mut()
        .unwrap()
        .extend([json!(other_bot), json!("c_ffffff")]);
    let dry = {
        let mut body = with_foreign.clone();
        body["dry_run"] = json!(true);
        c.ok(
            "POST",
            "/v1/bots/undo/conversations/bulk",
            Some(&body.to_string()),
        )
    };
    assert_eq!(
        counts(dry),
        json!({"matched": 3, "changed": 0, "dry_run": true})
    );
    let run = c.ok(
        "POST",
        "/v1/bots/undo/conversations/bulk",
        Some(&with_foreign.to_string()),
    );
    assert_eq!(
        counts(run),
        json!({"matched": 3, "changed": 3, "dry_run": false})
    );
    server.wait_indexed();
    let picked = c.search_ids("undo", &format!("{all}&label=picked"));
    assert_eq!(
        picked,
        BTreeSet::from([web_ids[0].clone(), web_ids[1].clone(), others[1].clone()])
    );
    assert_eq!(c.total("other", &format!("{all}&label=picked")), 0);
    // Ids with filters, too many ids, a bad id: 400 naming the field, nothing changed.
    let many: Vec<String> = (0..5001).map(|i| format!("c_{i:x}")).collect();
    for (query, body) in [
        ("?channel=web", named.to_string()),
        (
            "",
            json!({"flag": true, "conversation_ids": many}).to_string(),
        ),
        (
            "",
            json!({"flag": true, "conversation_ids": ["not an id"]}).to_string(),
        ),
        (
            "",
            json!({"flag": true, "conversation_ids": "c_1"}).to_string(),
        ),
    ] {
        let answer = c.req(
            "POST",
            &format!("/v1/bots/undo/conversations/bulk{query}"),
            Some(&body),
        );
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(answer.body.contains("conversation_ids"), "{}", answer.body);
    }
    assert_eq!(
        c.ok("GET", "/v1/bots/undo/conversations/bulk", None)["actions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn review_bulk_action_cut_by_a_crash_is_listed_as_interrupted_and_what_it_did_can_be_undone() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with_env(
        root.path(),
        &["--set", "review.bulk_chunk=10"],
        &[("CONVLOG_FAILPOINTS", "bulk.after_chunk@4")],
        "error",
    );
    server.ingest_parallel(&generated(0xC0DE, 200, &["cut"], 10), 2000, 2);
    server.wait_indexed();
    let all = all_time();
    let total = Client::new(server.base()).total("cut", &all);
    assert!(total > 50, "{total}");
    // The server aborts after the fourth chunk, before it answers.
    let cut = Client::new(server.base()).try_req(
        "POST",
        &format!("/v1/bots/cut/conversations/bulk?{all}"),
        Some(r#"{"add_labels": ["half"], "flag": true}"#),
    );
    assert!(cut.is_err(), "answered: {:?}", cut.map(|a| a.body));
    assert!(
        server
            .wait_exit(Duration::from_secs(60))
            .is_some_and(|s| !s.success())
    );
    server.set_env("CONVLOG_FAILPOINTS", None);
    server.restart();
    server.wait_indexed();
    let c = Client::new(server.base());
    let action = c.ok("GET", "/v1/bots/cut/conversations/bulk", None)["actions"][0].clone();
    assert_eq!(action["state"], "interrupted", "{action}");
    assert_eq!(action["finished_at"], Value::Null, "{action}");
    assert_eq!(action["matched"], json!(total), "{action}");
    assert_eq!(action["done"], json!(40), "four chunks of ten: {action}");
    assert_eq!(action["changed"], json!(40), "{action}");
    // Exactly what it recorded is in the store and the index.
    assert_eq!(c.total("cut", &format!("{all}&label=half")), 40);
    assert_eq!(c.total("cut", &format!("{all}&flagged=true")), 40);
    let id = action["id"].as_u64().unwrap();
    let undone = c.ok(
        "POST",
        &format!("/v1/bots/cut/conversations/bulk/{id}/undo"),
        None,
    );
    assert_eq!(undone["restored"], json!(40), "{undone}");
    server.wait_indexed();
    assert_eq!(c.total("cut", &format!("{all}&label=half")), 0);
    assert_eq!(c.total("cut", &format!("{all}&flagged=true")), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn review_bad_input_is_rejected_and_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());
    server.ingest(&[
        msg(
            "x1",
            "acme",
            "bad-1",
            "user",
            "hello",
            "2026-11-17T09:00:00Z",
        ),
        msg("x2", "acme", "bad-1", "bot", "hi", "2026-11-17T09:00:01Z"),
        msg(
            "y1",
            "other",
            "bad-2",
            "user",
            "hello",
            "2026-11-17T09:00:00Z",
        ),
    ]);
    server.wait_indexed();
    let id = id_of(&conversation_of(&server, "acme"), "x1");
    let foreign = id_of(&conversation_of(&server, "other"), "y1");
    let conv = format!("/v1/bots/acme/conversations/{id}");

    // Unknown conversations (never existed, malformed, or of another bot) → 404 not_found.
    for unknown in [
        "c_fffffff",
        "c_0",
        "nonsense",
        "c_",
        "c_zz",
        foreign.as_str(),
    ] {
        let base = format!("/v1/bots/acme/conversations/{unknown}");
        for (method, path, body) in [
            ("GET", base.clone(), None),
            ("PUT", format!("{base}/labels/vip"), None),
            ("DELETE", format!("{base}/labels/vip"), None),
            ("PUT", format!("{base}/flag"), None),
            ("PUT", format!("{base}/flag"), Some(r#"{"note": "n"}"#)),
            ("DELETE", format!("{base}/flag"), None),
            ("PUT", format!("{base}/debug"), None),
            ("DELETE", format!("{base}/debug"), None),
            ("GET", format!("{base}/trace"), None),
            ("POST", format!("{base}/share"), None),
        ] {
            let answer = c.req(method, &path, body);
            assert_eq!(answer.status, 404, "{method} {path}: {}", answer.body);
            assert_eq!(
                answer.error_code().as_deref(),
                Some("not_found"),
                "{method} {path}: {}",
                answer.body
            );
        }
    }
    // The other bot's conversation was not touched.
    let untouched = c.ok(
        "GET",
        &format!("/v1/bots/other/conversations/{foreign}"),
        None,
    );
    assert_eq!(
        (
            untouched["labels"].clone(),
            untouched["flagged"].clone(),
            untouched["debug"].clone()
        ),
        (json!([]), json!(false), json!(false))
    );

    // Labels: 1–64 characters after trimming, counted in characters.
    let x64 = "x".repeat(64);
    let e64 = "é".repeat(64);
    for bad in [
        "x".repeat(65),
        "é".repeat(65),
        "   ".to_string(),
        format!(" {} ", "y".repeat(65)),
    ] {
        for method in ["PUT", "DELETE"] {
            let path = format!("{conv}/labels/{}", encode(&bad));
            let answer = c.req(method, &path, None);
            assert_eq!(
                answer.status, 400,
                "{method} label {bad:?}: {}",
                answer.body
            );
            assert!(answer.error_code().is_some(), "{}", answer.body);
        }
    }
    c.ok("PUT", &format!("{conv}/labels/{}", encode(&x64)), None);
    c.ok("PUT", &format!("{conv}/labels/{}", encode(&e64)), None);
    let trimmed = c.ok("PUT", &format!("{conv}/labels/{}", encode("  VIP  ")), None);
    let mut labels: Vec<String> = trimmed["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    labels.sort();
    let mut expected = vec![x64.clone(), e64.clone(), "VIP".to_string()];
    expected.sort();
    assert_eq!(labels, expected);
    // A 65-character label filter is refused too.
    c.expect(
        400,
        "GET",
        &format!(
            "/v1/bots/acme/conversations?{}&label={}",
            all_time(),
            "x".repeat(65)
        ),
        None,
    );

    // Flag bodies.
    for bad in [
        r#"{"note": 5}"#,
        "not json",
        r#"{"note": "x", "extra": 1}"#,
        "[1]",
        r#"["rude"]"#,
        r#""note""#,
        r#"{"note": "#,
        &format!(r#"{{"note": "{}"}}"#, "n".repeat(5000)),
    ] {
        let answer = c.req("PUT", &format!("{conv}/flag"), Some(bad));
        assert_eq!(answer.status, 400, "flag body {bad:?}: {}", answer.body);
        assert!(answer.error_code().is_some(), "{}", answer.body);
    }
    let now = c.ok("GET", &conv, None);
    assert_eq!(
        now["flagged"],
        json!(false),
        "a refused flag changed the conversation: {now}"
    );
    assert!(now["flag_note"].is_null());
    let flagged = c.ok(
        "PUT",
        &format!("{conv}/flag"),
        Some(r#"{"note": "rude reply"}"#),
    );
    assert_eq!(flagged["flagged"], json!(true));
    assert_eq!(flagged["flag_note"], json!("rude reply"));
    assert!(flagged["flagged_at"].is_string(), "{flagged}");

    // Bulk without a change, or with bad content.
    let bulk = format!("/v1/bots/acme/conversations/bulk?{}", all_time());
    for bad in [
        "{}".to_string(),
        r#"{"dry_run": true}"#.to_string(),
        r#"{"add_labels": [], "remove_labels": []}"#.to_string(),
        r#"{"add_labels": [], "dry_run": false}"#.to_string(),
        r#"{"flag": null}"#.to_string(),
        format!(r#"{{"add_labels": ["{}"]}}"#, "z".repeat(65)),
        r#"{"add_labels": ["   "]}"#.to_string(),
        r#"{"add_labels": "vip"}"#.to_string(),
        r#"{"flag": "yes"}"#.to_string(),
        r#"{"labels": ["vip"]}"#.to_string(),
        r#"[["vip"]]"#.to_string(),
        "{".to_string(),
        String::new(),
    ] {
        let answer = c.req("POST", &bulk, Some(&bad));
        assert_eq!(answer.status, 400, "bulk body {bad:?}: {}", answer.body);
        assert!(answer.error_code().is_some(), "{}", answer.body);
    }
    let answer = c.req(
        "POST",
        &format!("{bulk}&bogus=1"),
        Some(r#"{"flag": true}"#),
    );
    assert_eq!(
        answer.status, 400,
        "unknown filter parameter: {}",
        answer.body
    );
    let answer = c.req(
        "POST",
        &format!("{bulk}&flagged=maybe"),
        Some(r#"{"flag": true}"#),
    );
    assert_eq!(answer.status, 400, "bad flagged value: {}", answer.body);
    let after = c.ok("GET", &conv, None);
    assert_eq!(
        after["labels"], trimmed["labels"],
        "refused bulk changed labels"
    );
    assert_eq!(after["flag_note"], json!("rude reply"));
}

// ---------------------------------------------------------------------------------------------
// Visibility: the store at once, search within the refresh interval
// ---------------------------------------------------------------------------------------------

#[test]
fn review_changes_show_at_once_and_in_search_within_the_refresh_interval() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());
    server.ingest(&[
        msg("v1", "acme", "vis", "user", "hello", "2026-11-18T09:00:00Z"),
        msg("v2", "acme", "vis", "bot", "hi", "2026-11-18T09:00:01Z"),
    ]);
    server.wait_indexed();
    let id = id_of(&conversation_of(&server, "acme"), "v1");
    let conv = format!("/v1/bots/acme/conversations/{id}");
    let all = all_time();
    // Refresh interval 100 ms; allow generous slack for a loaded 2-core machine.
    let patience = Duration::from_secs(3);
    let wait_for = |query: &str, want: u64| -> Duration {
        let started = Instant::now();
        loop {
            let total = c.total("acme", query);
            if total == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < patience,
                "search {query} still shows {total} (want {want}) after {patience:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for round in 0..3 {
        let label = format!("Visible-{round}");
        let put = c.ok("PUT", &format!("{conv}/labels/{label}"), None);
        assert!(put["labels"].as_array().unwrap().contains(&json!(label)));
        assert!(
            c.ok("GET", &conv, None)["labels"]
                .as_array()
                .unwrap()
                .contains(&json!(label))
        );
        let took = wait_for(&format!("{all}&label={}", label.to_lowercase()), 1);
        eprintln!("label visible in search after {took:?}");
        c.ok("PUT", &format!("{conv}/flag"), None);
        assert_eq!(c.ok("GET", &conv, None)["flagged"], json!(true));
        wait_for(&format!("{all}&flagged=true"), 1);
        c.ok(
            "DELETE",
            &format!("{conv}/labels/{}", label.to_uppercase()),
            None,
        );
        c.ok("DELETE", &format!("{conv}/flag"), None);
        let now = c.ok("GET", &conv, None);
        assert_eq!(
            (now["labels"].clone(), now["flagged"].clone()),
            (json!([]), json!(false))
        );
        wait_for(&format!("{all}&label={label}"), 0);
        wait_for(&format!("{all}&flagged=true"), 0);
    }
}
