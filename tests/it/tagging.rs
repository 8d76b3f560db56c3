//! Auto-tagging (issue #4), through HTTP against the real binary:
//!
//! 1. every built-in rule tags exactly what an independent oracle computes, on
//!    random conversations with planted problems (`tag_details` message ids, the
//!    `tag=` filter and `/tags` counts), with default and random parameters;
//! 2. a rule's new parameters and version, a disabled rule and custom rules from a
//!    config file re-tag everything (automatic full run at start, explicit run);
//! 3. search keeps answering during a full run, whose progress the job API shows;
//! 4. `no_bot_reply` follows the (injected) clock.
//!
//! The oracle below is written from the contract (API.md, "Tags, nodes, flows")
//! and the rule docs, not from the engine: plain loops over the messages in
//! conversation order (by timestamp, ties in ingest order).

use crate::common::{Reply, Rng, Server, agent, encode, micros, rfc3339};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// How long tags may take to show before the test compares what it has.
const TAG_PATIENCE: Duration = Duration::from_secs(40);

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

// ---------------------------------------------------------------------------
// Random conversations with planted problems.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    role: &'static str,
    text: String,
    ts: i64,
    flow: Option<&'static str>,
    step: Option<&'static str>,
    unidentified: Option<bool>,
    flow_completed: Option<bool>,
    confidence: Option<f64>,
}

impl Msg {
    fn is_unidentified(&self) -> bool {
        self.unidentified == Some(true)
    }
}

#[derive(Debug)]
struct Conv {
    channel: &'static str,
    user: String,
    session: Option<String>,
    /// In conversation order: by timestamp, ties in ingest order.
    msgs: Vec<Msg>,
}

struct Dataset {
    bot: String,
    convs: Vec<Conv>,
    /// Request bodies, in the order they must be sent.
    batches: Vec<Vec<Value>>,
}

const CHANNELS: [&str; 5] = ["web", "whatsapp", "sms", "telegram", "facebook"];
const FLOWS: [&str; 3] = ["billing", "password-reset", "onboarding"];
const STEPS: [&str; 3] = ["ask-email", "confirm", "done"];
/// User texts that repeat in every spelling the normalisation must equate (or not).
const USER_TEXTS: [&str; 22] = [
    "Reset password",
    "reset   password",
    " RESET password\t",
    "reset\u{a0}password",
    "reset\npassword",
    "resetpassword",
    "ΟΔΟΣ",
    "οδοσ",
    "οδος",
    "",
    "   ",
    "\t",
    "I want a Refund!",
    "refunded already",
    "money-back please",
    "MONEY   back",
    "back money",
    "chargeback?",
    "sorry",
    "hello",
    "Hello",
    "hello!",
];
const BOT_TEXTS: [&str; 7] = [
    "Sorry, I didn't understand.",
    "sorry",
    "reset password",
    "Reset password",
    "How can I help?",
    "Please enter your e-mail",
    "Refund issued, money back in 3 days",
];
const CONFIDENCES: [f64; 10] = [
    0.0, 0.1, 0.3, 0.49, 0.4999999, 0.5, 0.5000001, 0.75, 0.99, 1.0,
];

fn uniform(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One conversation's messages in generation order (timestamps non-decreasing).
fn random_conversation(rng: &mut Rng, k: usize, now: i64) -> Conv {
    let len = match rng.below(12) {
        0 => 45 + rng.below(16), // around long_conversation's 50
        1 => 1,
        2 | 3 => 2 + rng.below(4),
        _ => 3 + rng.below(18),
    };
    let p_unidentified = *rng.pick(&[0.0, 0.0, 0.1, 0.35, 0.6]);
    let p_agent = *rng.pick(&[0.0, 0.0, 0.04, 0.2]);
    let p_repeat = *rng.pick(&[0.0, 0.3, 0.7]);
    let with_flows = rng.chance(0.5);
    let channel = *rng.pick(&CHANNELS);
    // Old conversations ended long ago, recent ones within the last 10 minutes:
    // never near a channel's timeout, so no_bot_reply has no borderline case.
    let end = if rng.chance(0.25) {
        now - rng.range_i64(MINUTE, 10 * MINUTE)
    } else {
        now - 3 * DAY - rng.range_i64(0, 20 * DAY)
    };
    let gaps: Vec<i64> = (0..len)
        .map(|i| {
            if i == 0 || rng.chance(0.12) {
                0 // ties: ingest order decides
            } else {
                rng.range_i64(1, 240) * 1_000_000 + rng.range_i64(0, 1000) * 1000
            }
        })
        .collect();
    let mut ts = end - gaps.iter().sum::<i64>();
    let mut msgs = Vec::with_capacity(len);
    let mut previous_role = "bot";
    for (i, gap) in gaps.into_iter().enumerate() {
        ts += gap;
        let roll = uniform(rng);
        let role = if roll < p_agent {
            "agent"
        } else if roll < p_agent + 0.03 {
            "system"
        } else if previous_role == "user" {
            if rng.chance(0.75) { "bot" } else { "user" }
        } else if rng.chance(0.8) {
            "user"
        } else {
            "bot"
        };
        previous_role = role;
        let text = match role {
            "user" if rng.chance(p_repeat) => rng.pick(&USER_TEXTS).to_string(),
            "user" => format!("question {k} {i} about order {}", rng.below(1000)),
            _ if rng.chance(0.5) => rng.pick(&BOT_TEXTS).to_string(),
            _ => format!("answer {k} {i}: sorry for the wait"),
        };
        let unidentified = if rng.chance(p_unidentified) {
            Some(true)
        } else {
            *rng.pick(&[None, Some(false)])
        };
        let (flow, step, flow_completed) = if with_flows && rng.chance(0.5) {
            (
                Some(*rng.pick(&FLOWS)),
                rng.chance(0.8).then(|| *rng.pick(&STEPS)),
                *rng.pick(&[None, Some(false), Some(true)]),
            )
        } else {
            // A completion flag without a flow must not count as "the last flow message".
            (None, None, rng.chance(0.1).then_some(true))
        };
        let confidence = match role {
            "user" if rng.chance(0.6) => Some(if rng.chance(0.7) {
                *rng.pick(&CONFIDENCES)
            } else {
                rng.below(101) as f64 / 100.0
            }),
            // Confidence on other roles never counts.
            "bot" | "system" if rng.chance(0.2) => Some(0.05),
            _ => None,
        };
        msgs.push(Msg {
            id: format!("k{k}-{i}"),
            role,
            text,
            ts,
            flow,
            step,
            unidentified,
            flow_completed,
            confidence,
        });
    }
    // Planted runs: unidentified bot answers, sometimes with a user or system
    // message between them (which doesn't break a run) — 2 or 3 in a row.
    if len >= 4 && rng.chance(0.3) {
        let run = 2 + rng.below(2);
        let start = rng.below(len - run);
        for (j, m) in msgs[start..].iter_mut().take(run + 1).enumerate() {
            if j % 2 == 0 || m.role == "bot" {
                m.role = "bot";
                m.unidentified = Some(true);
            }
        }
    }
    Conv {
        channel,
        user: format!("+4470{k:08}"),
        session: rng.chance(0.5).then(|| format!("s-{k}")),
        msgs,
    }
}

fn message_json(bot: &str, conv: &Conv, m: &Msg) -> Value {
    let mut value = json!({
        "id": m.id,
        "bot_id": bot,
        "user_id": conv.user,
        "channel": conv.channel,
        "role": m.role,
        "text": m.text,
        "timestamp": rfc3339(m.ts),
    });
    let object = value.as_object_mut().unwrap();
    let mut put = |key: &str, v: Option<Value>| {
        if let Some(v) = v {
            object.insert(key.to_string(), v);
        }
    };
    put("session_id", conv.session.clone().map(Value::from));
    put("flow", m.flow.map(Value::from));
    put("step", m.step.map(Value::from));
    put("unidentified", m.unidentified.map(Value::from));
    put("flow_completed", m.flow_completed.map(Value::from));
    put("confidence", m.confidence.map(Value::from));
    value
}

/// `count` random conversations, their messages shuffled across conversations in
/// batches of 500; each conversation is then put in conversation order.
fn dataset(seed: u64, count: usize, bot: &str) -> Dataset {
    let mut rng = Rng::new(seed);
    let now = now_micros();
    let mut convs: Vec<Conv> = (0..count)
        .map(|k| random_conversation(&mut rng, k, now))
        .collect();
    let mut order: Vec<(usize, usize)> = convs
        .iter()
        .enumerate()
        .flat_map(|(k, c)| (0..c.msgs.len()).map(move |i| (k, i)))
        .collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut position: Vec<Vec<usize>> = convs.iter().map(|c| vec![0; c.msgs.len()]).collect();
    for (p, &(k, i)) in order.iter().enumerate() {
        position[k][i] = p;
    }
    let batches = order
        .chunks(500)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&(k, i)| message_json(bot, &convs[k], &convs[k].msgs[i]))
                .collect()
        })
        .collect();
    for (conv, position) in convs.iter_mut().zip(&position) {
        let mut indexed: Vec<(usize, Msg)> = conv.msgs.drain(..).enumerate().collect();
        indexed.sort_by_key(|(i, m)| (m.ts, position[*i]));
        conv.msgs = indexed.into_iter().map(|(_, m)| m).collect();
    }
    Dataset {
        bot: bot.to_string(),
        convs,
        batches,
    }
}

fn ingest(server: &Server, data: &Dataset) {
    for batch in &data.batches {
        let reply = server.post(
            "/v1/messages",
            "application/json",
            &serde_json::to_vec(batch).unwrap(),
        );
        assert_eq!(reply.status, 200, "ingest: {}", reply.body);
        assert_eq!(reply.json()["accepted"].as_u64(), Some(batch.len() as u64));
    }
}

// ---------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------

/// Rule parameters as configured on the server.
#[derive(Debug, Clone)]
struct Params {
    unidentified_n: usize,
    user_n: usize,
    threshold: f64,
    max_messages: usize,
    /// Rules switched off.
    disabled: Vec<&'static str>,
    /// Rule versions other than 1.
    versions: BTreeMap<&'static str, u32>,
    /// Whether the custom rules of [`CUSTOM_RULES`] are configured.
    custom: bool,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            unidentified_n: 2,
            user_n: 2,
            threshold: 0.5,
            max_messages: 50,
            disabled: Vec::new(),
            versions: BTreeMap::new(),
            custom: false,
        }
    }
}

impl Params {
    fn args(&self) -> Vec<String> {
        let mut sets = vec![
            format!(
                "tagging.rules.repeated_unidentified.n={}",
                self.unidentified_n
            ),
            format!("tagging.rules.user_repeated.n={}", self.user_n),
            format!(
                "tagging.rules.low_confidence.threshold={:?}",
                self.threshold
            ),
            format!(
                "tagging.rules.long_conversation.max_messages={}",
                self.max_messages
            ),
        ];
        for rule in &self.disabled {
            sets.push(format!("tagging.rules.{rule}.enabled=false"));
        }
        for (rule, version) in &self.versions {
            sets.push(format!("tagging.rules.{rule}.version={version}"));
        }
        sets.into_iter()
            .flat_map(|s| ["--set".to_string(), s])
            .collect()
    }

    fn version(&self, rule: &str) -> u64 {
        self.versions.get(rule).copied().unwrap_or(1).into()
    }
}

/// Custom rules, given to the server as a config file.
const CUSTOM_RULES: &str = r#"
[[tagging.custom]]
name = "refund_request"
kind = "keywords"
role = "user"
words = ["refund", "Money back", "chargeback"]

[[tagging.custom]]
name = "apology"
version = 3
kind = "keywords"
words = ["sorry"]
min_matches = 2

[[tagging.custom]]
name = "chatty_user"
kind = "threshold"
metric = "user_messages"
op = ">="
value = 8
"#;

/// Tag → the message ids that triggered it.
type Tags = BTreeMap<String, Vec<String>>;

fn session_timeout(channel: &str) -> i64 {
    match channel {
        "web" | "whatsapp" => DAY,
        _ => 30 * MINUTE,
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

fn contains_phrase(text: &str, phrase: &str) -> bool {
    let (text, phrase) = (words(text), words(phrase));
    text.windows(phrase.len()).any(|w| w == phrase.as_slice())
}

fn ids<'a>(msgs: impl IntoIterator<Item = &'a Msg>) -> Vec<String> {
    msgs.into_iter().map(|m| m.id.clone()).collect()
}

/// The tags the contract says `conv` earns at `now`.
fn expected_tags(conv: &Conv, params: &Params, now: i64) -> Tags {
    let msgs = &conv.msgs;
    let mut tags = Tags::new();

    let unidentified: Vec<&Msg> = msgs.iter().filter(|m| m.is_unidentified()).collect();
    if !unidentified.is_empty() {
        tags.insert("unidentified_response".into(), ids(unidentified));
    }

    // Runs of unidentified messages; an identified bot message ends a run.
    let mut runs: Vec<Vec<&Msg>> = vec![Vec::new()];
    for m in msgs {
        if m.is_unidentified() {
            runs.last_mut().unwrap().push(m);
        } else if m.role == "bot" {
            runs.push(Vec::new());
        }
    }
    let in_runs: Vec<&Msg> = runs
        .into_iter()
        .filter(|run| run.len() >= params.unidentified_n)
        .flatten()
        .collect();
    if !in_runs.is_empty() {
        tags.insert("repeated_unidentified".into(), ids(in_runs));
    }

    if let Some(last_flow) = msgs.iter().rev().find(|m| m.flow.is_some())
        && last_flow.flow_completed != Some(true)
    {
        tags.insert("dropoff".into(), vec![last_flow.id.clone()]);
    }

    if let Some(agent) = msgs.iter().find(|m| m.role == "agent") {
        tags.insert("agent_handoff".into(), vec![agent.id.clone()]);
    }

    let low: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.role == "user" && m.confidence.is_some_and(|c| c < params.threshold))
        .collect();
    if !low.is_empty() {
        tags.insert("low_confidence".into(), ids(low));
    }

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.role == "user") {
        let text = normalise(&m.text);
        if !text.is_empty() {
            *counts.entry(text).or_default() += 1;
        }
    }
    let repeated: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.role == "user")
        .filter(|m| {
            counts
                .get(&normalise(&m.text))
                .is_some_and(|&n| n >= params.user_n)
        })
        .collect();
    if !repeated.is_empty() {
        tags.insert("user_repeated".into(), ids(repeated));
    }

    let last = msgs.last().expect("conversations are not empty");
    let silence = now - last.ts;
    let timeout = session_timeout(conv.channel);
    assert!(
        (silence - timeout).abs() > 5 * MINUTE,
        "generated data must not sit on a timeout"
    );
    if last.role == "user" && silence > timeout {
        tags.insert("no_bot_reply".into(), vec![last.id.clone()]);
    }

    if msgs.len() > params.max_messages {
        tags.insert("long_conversation".into(), Vec::new());
    }

    for rule in &params.disabled {
        tags.remove(*rule);
    }

    if params.custom {
        let refunds: Vec<&Msg> = msgs
            .iter()
            .filter(|m| m.role == "user")
            .filter(|m| {
                ["refund", "Money back", "chargeback"]
                    .iter()
                    .any(|p| contains_phrase(&m.text, p))
            })
            .collect();
        if !refunds.is_empty() {
            tags.insert("refund_request".into(), ids(refunds));
        }
        let sorry: Vec<&Msg> = msgs
            .iter()
            .filter(|m| contains_phrase(&m.text, "sorry"))
            .collect();
        if sorry.len() >= 2 {
            tags.insert("apology".into(), ids(sorry));
        }
        if msgs.iter().filter(|m| m.role == "user").count() >= 8 {
            tags.insert("chatty_user".into(), Vec::new());
        }
    }
    tags
}

fn expected_version(params: &Params, rule: &str) -> u64 {
    if rule == "apology" {
        3
    } else {
        params.version(rule)
    }
}

fn expected_all(data: &Dataset, params: &Params) -> Vec<Tags> {
    let now = now_micros();
    data.convs
        .iter()
        .map(|c| expected_tags(c, params, now))
        .collect()
}

/// Conversations per tag.
fn tag_counts(expected: &[Tags]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for tags in expected {
        for tag in tags.keys() {
            *counts.entry(tag.clone()).or_default() += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------
// What the server says.
// ---------------------------------------------------------------------------

/// `[from, to)` around every generated conversation.
fn range() -> String {
    let now = now_micros();
    format!(
        "from={}&to={}",
        encode(&rfc3339(now - 60 * DAY)),
        encode(&rfc3339(now + DAY))
    )
}

/// `GET /v1/bots/{bot}/tags` (all time) as name → conversations, zeros left out.
fn server_counts(server: &Server, bot: &str) -> BTreeMap<String, u64> {
    let reply = server.get_ok(&format!("/v1/bots/{bot}/tags"));
    reply["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags: {reply}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["conversations"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Waits (bounded) until `/tags` shows `expected` with the index caught up.
fn wait_for_counts(server: &Server, bot: &str, expected: &BTreeMap<String, u64>) {
    let started = Instant::now();
    loop {
        server.wait_indexed();
        if &server_counts(server, bot) == expected || started.elapsed() > TAG_PATIENCE {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Compares everything the server shows about tags with the oracle; returns the differences.
fn differences(server: &Server, data: &Dataset, params: &Params, expected: &[Tags]) -> Vec<String> {
    let bot = &data.bot;
    let mut problems = Vec::new();
    let listed = server.page_all(
        &format!("/v1/bots/{bot}/conversations?{}&limit=100", range()),
        "conversations",
    );
    if listed.len() != data.convs.len() {
        problems.push(format!(
            "{} conversations listed, {} generated",
            listed.len(),
            data.convs.len()
        ));
    }
    // Conversation id → generated index, and the expected conversation ids per tag.
    let mut key_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for summary in &listed {
        let id = summary["id"].as_str().unwrap();
        let detail = server.get_ok(&format!("/v1/bots/{bot}/conversations/{id}"));
        let message_ids: Vec<&str> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let k: usize = message_ids[0][1..]
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        key_of.insert(id.to_string(), k);
        let conv = &data.convs[k];
        let want_order: Vec<&str> = conv.msgs.iter().map(|m| m.id.as_str()).collect();
        if message_ids != want_order {
            problems.push(format!(
                "{id} (k{k}): messages in order {message_ids:?}, expected {want_order:?}"
            ));
        }
        let mut got = Tags::new();
        for detail_tag in detail["tag_details"].as_array().unwrap() {
            let tag = detail_tag["tag"].as_str().unwrap().to_string();
            if detail_tag["rule"].as_str() != Some(tag.as_str()) {
                problems.push(format!("{id}: tag {tag} has rule {}", detail_tag["rule"]));
            }
            if detail_tag["rule_version"].as_u64() != Some(expected_version(params, &tag)) {
                problems.push(format!(
                    "{id}: tag {tag} has rule_version {}, expected {}",
                    detail_tag["rule_version"],
                    expected_version(params, &tag)
                ));
            }
            if detail_tag["reason"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{id}: tag {tag} has no reason"));
            }
            let triggered = detail_tag["message_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect();
            got.insert(tag, triggered);
        }
        let listed_tags: BTreeSet<&str> = detail["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let detail_tags: BTreeSet<&str> = got.keys().map(String::as_str).collect();
        if listed_tags != detail_tags {
            problems.push(format!(
                "{id}: tags {listed_tags:?} but tag_details {detail_tags:?}"
            ));
        }
        let want = &expected[k];
        for tag in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
            if want.get(tag) != got.get(tag) {
                problems.push(format!(
                    "{id} (k{k}, {}): {tag}: expected {:?}, got {:?}; messages {:?}",
                    conv.channel,
                    want.get(tag),
                    got.get(tag),
                    conv.msgs
                ));
            }
        }
        for tag in want.keys() {
            expected_ids
                .entry(tag.clone())
                .or_default()
                .insert(id.to_string());
        }
    }
    // The `tag=` filter of search.
    let mut known: BTreeSet<String> = expected_ids.keys().cloned().collect();
    known.extend(
        [
            "unidentified_response",
            "repeated_unidentified",
            "dropoff",
            "agent_handoff",
            "low_confidence",
            "user_repeated",
            "no_bot_reply",
            "long_conversation",
        ]
        .map(String::from),
    );
    for tag in &known {
        let found: BTreeSet<String> = server
            .page_all(
                &format!(
                    "/v1/bots/{bot}/conversations?{}&tag={tag}&limit=100",
                    range()
                ),
                "conversations",
            )
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        let want = expected_ids.get(tag).cloned().unwrap_or_default();
        if found != want {
            let missing: Vec<_> = want.difference(&found).collect();
            let extra: Vec<_> = found.difference(&want).collect();
            problems.push(format!(
                "tag={tag}: {} found, {} expected; missing {missing:?}, extra {extra:?}",
                found.len(),
                want.len()
            ));
        }
    }
    let counts = server_counts(server, bot);
    let want_counts = tag_counts(expected);
    if counts != want_counts {
        problems.push(format!("/tags: {counts:?}, expected {want_counts:?}"));
    }
    // With from/to, /tags counts the conversations with a message in the range:
    // [now - 60 days, now - 1 day) holds the old conversations whole and none of
    // the recent ones (they span at most a few hours before now).
    let now = now_micros();
    let (from, to) = (now - 60 * DAY, now - DAY);
    let old: Vec<Tags> = data
        .convs
        .iter()
        .zip(expected)
        .filter(|(c, _)| c.msgs.last().unwrap().ts < to)
        .map(|(c, tags)| {
            assert!(c.msgs[0].ts >= from && c.msgs.last().unwrap().ts < now - 2 * DAY);
            tags.clone()
        })
        .collect();
    let reply = server.get_ok(&format!(
        "/v1/bots/{bot}/tags?from={}&to={}",
        encode(&rfc3339(from)),
        encode(&rfc3339(to))
    ));
    let ranged: BTreeMap<String, u64> = reply["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["conversations"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    if ranged != tag_counts(&old) {
        problems.push(format!(
            "/tags?from&to (old conversations): {ranged:?}, expected {:?}",
            tag_counts(&old)
        ));
    }
    problems
}

fn assert_no_differences(problems: &[String], what: &str) {
    assert!(
        problems.is_empty(),
        "{what}: {} differences, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Starts a server with `params`, ingests `data` and compares with the oracle.
fn check_against_oracle(data: &Dataset, params: &Params) {
    let dir = tempfile::tempdir().unwrap();
    let args = params.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(dir.path(), &args);
    ingest(&server, data);
    let expected = expected_all(data, params);
    wait_for_counts(&server, &data.bot, &tag_counts(&expected));
    assert_no_differences(
        &differences(&server, data, params, &expected),
        &format!("{params:?}"),
    );
}

#[test]
fn every_builtin_rule_tags_what_the_oracle_computes() {
    let data = dataset(0x7a61_2026, 400, "tagbot");
    let expected = expected_all(&data, &Params::default());
    // The planted problems are there: every rule fires on some conversations, not on all.
    let counts = tag_counts(&expected);
    for rule in [
        "unidentified_response",
        "repeated_unidentified",
        "dropoff",
        "agent_handoff",
        "low_confidence",
        "user_repeated",
        "no_bot_reply",
        "long_conversation",
    ] {
        let n = counts.get(rule).copied().unwrap_or(0);
        assert!(n > 5 && n < 395, "{rule}: {n} of 400 in the data");
    }
    check_against_oracle(&data, &Params::default());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random data under random rule parameters.
    #[test]
    fn builtin_rules_with_random_parameters_match_the_oracle(
        seed in any::<u64>(),
        unidentified_n in 1usize..5,
        user_n in 1usize..5,
        threshold in prop_oneof![Just(0.0), Just(0.5), Just(1.0), (0u32..=100).prop_map(|p| f64::from(p) / 100.0)],
        max_messages in 1usize..60,
    ) {
        let params = Params {
            unidentified_n,
            user_n,
            threshold,
            max_messages,
            ..Params::default()
        };
        check_against_oracle(&dataset(seed, 250, "propbot"), &params);
    }
}

// ---------------------------------------------------------------------------
// Rule changes, disabled rules, custom rules.
// ---------------------------------------------------------------------------

/// Polls a job until it is no longer running; returns every state seen, then the final job.
fn follow_job(server: &Server, id: &str) -> (Vec<Value>, Value) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let job = server.get_ok(&format!("/v1/admin/jobs/{id}"));
        let state = job["state"].as_str().unwrap().to_string();
        if state != "queued" && state != "running" {
            return (seen, job);
        }
        seen.push(job);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job {id} still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest tagging job, as listed by `GET /v1/admin/jobs`.
fn tagging_jobs(server: &Server) -> Vec<Value> {
    server.get_ok("/v1/admin/jobs")["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "tagging")
        .cloned()
        .collect()
}

fn assert_job_succeeded(job: &Value, conversations: u64) {
    assert_eq!(job["kind"], "tagging", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["error"], Value::Null, "{job}");
    assert_eq!(job["total"].as_u64(), Some(conversations), "{job}");
    assert_eq!(job["processed"].as_u64(), Some(conversations), "{job}");
    assert!(
        job["started_at"].is_string() && job["finished_at"].is_string(),
        "{job}"
    );
}

/// Restarts on the same data with `params` (and the custom rules file when asked);
/// the changed rule set must start a full run by itself.
fn restart_with(
    server: &mut Server,
    root: &Path,
    params: &Params,
    jobs_before: usize,
    conversations: u64,
) {
    assert!(server.terminate().success());
    let mut args = params.args();
    if params.custom {
        let file = root.join("custom.toml");
        std::fs::write(&file, CUSTOM_RULES).unwrap();
        args.extend(["--config".to_string(), file.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    *server = Server::start(root, &args);
    let jobs = tagging_jobs(server);
    assert_eq!(
        jobs.len(),
        jobs_before + 1,
        "a changed rule set starts a full run at start-up: {jobs:?}"
    );
    let (_, job) = follow_job(server, jobs[0]["id"].as_str().unwrap());
    assert_job_succeeded(&job, conversations);
}

fn check(server: &Server, data: &Dataset, params: &Params, what: &str) -> Vec<Tags> {
    let expected = expected_all(data, params);
    wait_for_counts(server, &data.bot, &tag_counts(&expected));
    assert_no_differences(&differences(server, data, params, &expected), what);
    expected
}

#[test]
fn new_parameters_disabled_and_custom_rules_retag_every_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(0x5eed_0002, 300, "rulebot");
    let conversations = data.convs.len() as u64;
    let mut params = Params::default();
    let mut server = Server::start(dir.path(), &[]);
    ingest(&server, &data);
    let before = check(&server, &data, &params, "default rules");
    let jobs = tagging_jobs(&server).len();

    // n = 3, version 2: runs of exactly 2 lose the tag, the rest are re-made by version 2.
    params.unidentified_n = 3;
    params.versions.insert("repeated_unidentified", 2);
    restart_with(&mut server, dir.path(), &params, jobs, conversations);
    let after = check(&server, &data, &params, "repeated_unidentified n=3 v2");
    let count = |tags: &[Tags]| {
        tags.iter()
            .filter(|t| t.contains_key("repeated_unidentified"))
            .count()
    };
    assert!(
        count(&after) > 0 && count(&after) < count(&before),
        "the data must have runs of 2 and of 3: {} then {}",
        count(&before),
        count(&after)
    );

    // An explicit full run changes nothing more.
    let reply = server.post("/v1/admin/tagging", "application/json", b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let job = reply.json();
    assert_eq!(job["kind"], "tagging", "{job}");
    let (_, job) = follow_job(&server, job["id"].as_str().unwrap());
    assert_job_succeeded(&job, conversations);
    check(&server, &data, &params, "explicit full run");

    // A disabled rule's tags go away.
    let jobs = tagging_jobs(&server).len();
    params.disabled.push("agent_handoff");
    restart_with(&mut server, dir.path(), &params, jobs, conversations);
    check(&server, &data, &params, "agent_handoff disabled");
    assert!(!server_counts(&server, &data.bot).contains_key("agent_handoff"));

    // Custom rules from a config file.
    let jobs = tagging_jobs(&server).len();
    params.custom = true;
    restart_with(&mut server, dir.path(), &params, jobs, conversations);
    let custom = check(&server, &data, &params, "custom rules");
    for tag in ["refund_request", "apology", "chatty_user"] {
        assert!(
            custom.iter().any(|t| t.contains_key(tag)),
            "no conversation earns {tag}: the data must plant it"
        );
    }
}

// ---------------------------------------------------------------------------
// A full run on ~50k messages: search keeps answering, progress shows.
// ---------------------------------------------------------------------------

#[test]
fn search_answers_during_a_full_run_and_the_job_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let messages = crate::common::generated(0x3a61, 4500, &["loadbot"], 30);
    assert!(messages.len() > 40_000, "{} messages", messages.len());
    server.ingest_parallel(&messages, 1000, 2);
    server.wait_indexed();
    let all = format!(
        "/v1/bots/loadbot/conversations?from={}&to={}&limit=1",
        crate::common::ALL_FROM,
        crate::common::ALL_TO
    );
    let conversations = server.get_ok(&all)["total"].as_u64().unwrap();

    // Incremental tagging settles first (counts stable over a few polls).
    let mut settled = (BTreeMap::new(), 0);
    let started = Instant::now();
    while settled.1 < 4 && started.elapsed() < TAG_PATIENCE {
        server.wait_indexed();
        let counts = server_counts(&server, "loadbot");
        settled = if counts == settled.0 && !counts.is_empty() {
            (counts, settled.1 + 1)
        } else {
            (counts, 0)
        };
        std::thread::sleep(Duration::from_millis(250));
    }
    let incremental = settled.0;

    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicU64::new(0));
    let queries = [
        format!("{all}&q=password"),
        format!("{all}&tag=unidentified_response&channel=web"),
        format!("{all}&q=order%20OR%20refund&tag=dropoff&flagged=false"),
        "/v1/bots/loadbot/tags".to_string(),
        format!(
            "/v1/bots/loadbot/messages?from={}&to={}&q=help&limit=5",
            crate::common::ALL_FROM,
            crate::common::ALL_TO
        ),
    ];
    let searchers: Vec<_> = (0..2)
        .map(|t| {
            let (stop, running, during) = (stop.clone(), running.clone(), during.clone());
            let queries = queries.clone();
            let base = server.base().to_string();
            std::thread::spawn(move || {
                let agent = agent();
                let mut failures = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let path = &queries[i % queries.len()];
                    i += 1;
                    let overlapped = running.load(Ordering::Relaxed);
                    let status = match agent.get(format!("{base}{path}")).call() {
                        Ok(mut response) => {
                            let _ = response.body_mut().read_to_string();
                            response.status().as_u16()
                        }
                        Err(err) => {
                            failures.push(format!("GET {path}: {err}"));
                            continue;
                        }
                    };
                    if status != 200 {
                        failures.push(format!("GET {path}: {status}"));
                    } else if overlapped && running.load(Ordering::Relaxed) {
                        during.fetch_add(1, Ordering::Relaxed);
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    running.store(true, Ordering::Relaxed);
    let first = server.post("/v1/admin/tagging", "application/json", b"");
    assert_eq!(first.status, 202, "{}", first.body);
    let first = first.json();
    assert_eq!(first["kind"], "tagging", "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    // A second request while it runs gets the same job back.
    let second = server.post("/v1/admin/tagging", "application/json", b"");
    assert_eq!(second.status, 202, "{}", second.body);
    let second = second.json();
    let (seen, job) = follow_job(&server, &id);
    running.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = searchers
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();

    assert!(
        failures.is_empty(),
        "searches failed during the run: {failures:?}"
    );
    let during = during.load(Ordering::Relaxed);
    assert!(during > 0, "no search overlapped the run");
    assert_job_succeeded(&job, conversations);
    let processed: Vec<u64> = seen
        .iter()
        .map(|j| j["processed"].as_u64().unwrap())
        .collect();
    assert!(
        processed.windows(2).all(|w| w[0] <= w[1]),
        "processed went back: {processed:?}"
    );
    assert!(
        seen.iter()
            .all(|j| j["total"].as_u64() == Some(conversations) || j["total"] == 0),
        "{seen:?}"
    );
    eprintln!(
        "full run over {} messages: {} polls while running, processed {:?}..{:?}, {during} searches answered during it",
        messages.len(),
        seen.len(),
        processed.first(),
        processed.last()
    );
    // The same rules over the same data: a full run agrees with the incremental tagging.
    server.wait_indexed();
    assert_eq!(server_counts(&server, "loadbot"), incremental);
    assert!(
        tagging_jobs(&server).iter().any(|j| j["id"] == id.as_str()),
        "GET /v1/admin/jobs lists the run"
    );
    if second["id"] != id.as_str() {
        // Only once the first had finished may another start.
        assert!(
            micros(job["finished_at"].as_str().unwrap())
                <= micros(second["created_at"].as_str().unwrap()),
            "a second job started while the first ran: {job} / {second}"
        );
    }
}

/// docs/api.md: "A job of a kind that is already running is not started twice".
/// Requests that arrive together must get one job.
#[test]
fn concurrent_requests_for_a_full_run_get_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let messages = crate::common::generated(0x3a62, 1500, &["racebot"], 30);
    server.ingest_parallel(&messages, 1000, 2);
    let barrier = Arc::new(Barrier::new(4));
    let starts: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let barrier = barrier.clone();
                let client = server.client();
                scope.spawn(move || {
                    barrier.wait();
                    client
                        .try_post("/v1/admin/tagging", "application/json", b"")
                        .expect("POST /v1/admin/tagging")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let jobs: Vec<Value> = starts
        .iter()
        .map(|r| {
            assert_eq!(r.status, 202, "{}", r.body);
            r.json()
        })
        .collect();
    let ids: BTreeSet<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    let finished: Vec<Value> = ids.iter().map(|id| follow_job(&server, id).1).collect();
    // Another job may only start once the previous one finished.
    let mut spans: Vec<(i64, i64)> = finished
        .iter()
        .map(|j| {
            (
                micros(j["created_at"].as_str().unwrap()),
                micros(j["finished_at"].as_str().unwrap()),
            )
        })
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "POST /v1/admin/tagging x4 at once started {} overlapping jobs: {finished:#?}",
        ids.len()
    );
}

// ---------------------------------------------------------------------------
// no_bot_reply and the clock.
// ---------------------------------------------------------------------------

/// The common [`Server`] with `CONVLOG_CLOCK_OFFSET` set, answering `(status, JSON)`.
struct ClockServer(Server);

impl ClockServer {
    fn start(root: &Path, offset: Option<&str>, args: &[&str]) -> ClockServer {
        let env: Vec<(&str, &str)> = offset
            .map(|offset| ("CONVLOG_CLOCK_OFFSET", offset))
            .into_iter()
            .collect();
        ClockServer(Server::start_with_env(root, args, &env, "warn"))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let reply = self.0.get(path);
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let reply = self.0.post(path, "application/json", &body);
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        )
    }

    /// The tags of the conversation holding message `message_id`, once it is searchable.
    fn try_tags_of(&self, bot: &str, message_id: &str) -> Option<Tags> {
        let (status, page) = self.get(&format!(
            "/v1/bots/{bot}/messages?{}&q={}&limit=100",
            range(),
            encode(message_id)
        ));
        assert_eq!(status, 200, "{page}");
        let hit = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == message_id)?
            .clone();
        let conversation = hit["conversation_id"].as_str().unwrap();
        let (status, detail) = self.get(&format!("/v1/bots/{bot}/conversations/{conversation}"));
        assert_eq!(status, 200, "{detail}");
        let tags = detail["tag_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tag"].as_str().unwrap().to_string(),
                    t["message_ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect();
        Some(tags)
    }

    /// Like [`ClockServer::try_tags_of`], for a message known to be searchable.
    fn tags_of(&self, bot: &str, message_id: &str) -> Tags {
        self.try_tags_of(bot, message_id)
            .unwrap_or_else(|| panic!("message {message_id} not found"))
    }

    fn terminate(mut self) {
        let status = self.0.terminate();
        assert!(status.success(), "exit after SIGTERM: {status}");
    }
}

/// Polls until `check` holds for the tags of the conversation of `message_id`.
fn wait_tags(
    server: &ClockServer,
    bot: &str,
    message_id: &str,
    what: &str,
    check: impl Fn(&Tags) -> bool,
) -> Tags {
    let started = Instant::now();
    loop {
        let tags = server.try_tags_of(bot, message_id);
        if let Some(tags) = &tags
            && check(tags)
        {
            return tags.clone();
        }
        assert!(
            started.elapsed() < TAG_PATIENCE,
            "{what}: conversation of {message_id} has {tags:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn no_bot_reply_waits_for_the_session_timeout_of_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let bot = "clockbot";
    // telegram gets a 4 s timeout: its conversation must turn by itself, without a restart.
    let args = ["--set", "sessions.channels.telegram=4s"];
    let server = ClockServer::start(dir.path(), None, &args);
    let now = now_micros();
    let msg = |id: &str, user: &str, channel: &str, role: &str, ts: i64| {
        json!({"id": id, "bot_id": bot, "user_id": user, "channel": channel,
               "role": role, "text": format!("words of {id}"), "timestamp": rfc3339(ts)})
    };
    let batch = json!([
        // sms (30 min): the user's last message is 5 minutes old.
        msg("sms1", "u-sms", "sms", "user", now - 10 * MINUTE),
        msg("sms2", "u-sms", "sms", "bot", now - 9 * MINUTE),
        msg("sms3", "u-sms", "sms", "user", now - 5 * MINUTE),
        // web (24 h): the same.
        msg("web1", "u-web", "web", "user", now - 10 * MINUTE),
        msg("web2", "u-web", "web", "user", now - 5 * MINUTE),
        // sms, answered: never tagged.
        msg("ans1", "u-ans", "sms", "user", now - 10 * MINUTE),
        msg("ans2", "u-ans", "sms", "bot", now - 5 * MINUTE),
        // telegram (4 s): the user just wrote.
        msg("tg1", "u-tg", "telegram", "user", now),
        // A sentinel the tagger tags at once: once it shows, this batch was evaluated.
        msg("ag1", "u-ag", "facebook", "agent", now - 5 * MINUTE),
        msg("ag2", "u-ag", "facebook", "bot", now - 4 * MINUTE),
    ]);
    let (status, body) = server.post("/v1/messages", &batch);
    assert_eq!(status, 200, "{body}");
    wait_tags(&server, bot, "ag1", "sentinel", |t| {
        t.contains_key("agent_handoff")
    });
    let untagged = |id: &str| !server.tags_of(bot, id).contains_key("no_bot_reply");
    let elapsed = Duration::from_micros((now_micros() - now) as u64);
    if elapsed < Duration::from_secs(3) {
        assert!(untagged("tg1"), "telegram tagged before its 4 s timeout");
    }
    for id in ["sms3", "web2", "ans2"] {
        assert!(untagged(id), "{id}: tagged before its timeout");
    }
    // The telegram session ends 4 s after its last message: tagged without a restart.
    let tags = wait_tags(&server, bot, "tg1", "telegram after 4 s", |t| {
        t.contains_key("no_bot_reply")
    });
    assert_eq!(tags["no_bot_reply"], vec!["tg1".to_string()]);
    for id in ["sms3", "web2", "ans2"] {
        assert!(untagged(id), "{id}: tagged before its timeout");
    }
    server.terminate();

    // Two hours later: the sms session ended, the web one (24 h) did not.
    let server = ClockServer::start(dir.path(), Some("+2h"), &args);
    let tags = wait_tags(&server, bot, "sms3", "sms at +2h", |t| {
        t.contains_key("no_bot_reply")
    });
    assert_eq!(tags["no_bot_reply"], vec!["sms3".to_string()]);
    // An explicit full run at the same clock agrees.
    let (status, job) = server.post("/v1/admin/tagging", &json!({}));
    assert_eq!(status, 202, "{job}");
    let started = Instant::now();
    loop {
        let (_, job) = server.get(&format!("/v1/admin/jobs/{}", job["id"].as_str().unwrap()));
        if job["state"] == "succeeded" {
            break;
        }
        assert_ne!(job["state"], "failed", "{job}");
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(untagged_at(&server, bot, "web2"), "web tagged at +2h");
    assert!(
        untagged_at(&server, bot, "ans2"),
        "an answered conversation tagged"
    );
    assert!(server.tags_of(bot, "sms3").contains_key("no_bot_reply"));
    assert!(server.tags_of(bot, "tg1").contains_key("no_bot_reply"));
    server.terminate();

    // A day later: the web session ended too.
    let server = ClockServer::start(dir.path(), Some("+25h"), &args);
    let tags = wait_tags(&server, bot, "web2", "web at +25h", |t| {
        t.contains_key("no_bot_reply")
    });
    assert_eq!(tags["no_bot_reply"], vec!["web2".to_string()]);
    assert!(
        untagged_at(&server, bot, "ans2"),
        "an answered conversation tagged"
    );
    server.terminate();
}

fn untagged_at(server: &ClockServer, bot: &str, id: &str) -> bool {
    !server.tags_of(bot, id).contains_key("no_bot_reply")
}

// ---------------------------------------------------------------------------
// Sessions that merge.
// ---------------------------------------------------------------------------

/// Tag → message ids of every conversation of `bot`, by conversation id.
fn all_tags(server: &Server, bot: &str) -> BTreeMap<String, Tags> {
    server
        .page_all(
            &format!("/v1/bots/{bot}/conversations?{}&limit=100", range()),
            "conversations",
        )
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap();
            let detail = server.get_ok(&format!("/v1/bots/{bot}/conversations/{id}"));
            let tags = detail["tag_details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["tag"].as_str().unwrap().to_string(),
                        t["message_ids"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m.as_str().unwrap().to_string())
                            .collect(),
                    )
                })
                .collect();
            (id.to_string(), tags)
        })
        .collect()
}

/// A late message that bridges two sessions merges them: the survivor is tagged
/// over the merged messages and the other one's tags don't linger in `/tags`.
#[test]
fn merged_sessions_are_tagged_as_one_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let bot = "mergebot";
    let day = now_micros() - 3 * DAY;
    let msg = |id: &str, role: &str, minute: i64, unidentified: bool| {
        json!({"id": id, "bot_id": bot, "user_id": "u-merge", "channel": "sms", "role": role,
               "text": format!("text {id}"), "unidentified": unidentified,
               "timestamp": rfc3339(day + minute * MINUTE)})
    };
    let post = |batch: Value| {
        let reply = server.post(
            "/v1/messages",
            "application/json",
            &serde_json::to_vec(&batch).unwrap(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    // Two sms sessions 49 minutes apart (timeout 30 min), each with an agent and one
    // unidentified bot answer.
    post(json!([
        msg("a1", "user", 0, false),
        msg("a2", "agent", 1, false),
        msg("a3", "bot", 2, true),
        msg("b1", "user", 51, false),
        msg("b2", "bot", 52, true),
        msg("b3", "agent", 53, false),
        msg("b4", "user", 54, false),
    ]));
    let before: BTreeMap<String, u64> = [
        ("agent_handoff", 2),
        ("unidentified_response", 2),
        ("no_bot_reply", 1),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_string(), n))
    .collect();
    wait_for_counts(&server, bot, &before);
    assert_eq!(server_counts(&server, bot), before);

    // The late message bridges them: one conversation, one run of 2 unidentified
    // answers (the user messages between don't break it).
    post(json!([msg("late", "user", 26, false)]));
    let after: BTreeMap<String, u64> = [
        ("agent_handoff", 1),
        ("unidentified_response", 1),
        ("repeated_unidentified", 1),
        ("no_bot_reply", 1),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_string(), n))
    .collect();
    wait_for_counts(&server, bot, &after);
    let tags = all_tags(&server, bot);
    assert_eq!(tags.len(), 1, "{tags:?}");
    let survivor = tags.values().next().unwrap();
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let want: Tags = [
        ("agent_handoff", ids(&["a2"])),
        ("unidentified_response", ids(&["a3", "b2"])),
        ("repeated_unidentified", ids(&["a3", "b2"])),
        ("no_bot_reply", ids(&["b4"])),
    ]
    .into_iter()
    .map(|(t, m)| (t.to_string(), m))
    .collect();
    assert_eq!(survivor, &want);
    assert_eq!(server_counts(&server, bot), after);
    for (tag, n) in &after {
        let found = server.page_all(
            &format!(
                "/v1/bots/{bot}/conversations?{}&tag={tag}&limit=100",
                range()
            ),
            "conversations",
        );
        assert_eq!(found.len() as u64, *n, "tag={tag}: {found:?}");
    }
}

// ---------------------------------------------------------------------------
// Incremental updates and interrupted full runs.
// ---------------------------------------------------------------------------

/// Later messages of a conversation re-tag it: tags come and go with the messages.
#[test]
fn later_messages_add_and_remove_tags() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let bot = "incbot";
    let start = now_micros() - 3 * HOUR;
    let msg = |id: &str, role: &str, minute: i64, extra: Value| {
        let mut m = json!({"id": id, "bot_id": bot, "user_id": "u-inc", "channel": "sms",
               "session_id": "inc-1", "role": role, "text": format!("text {id}"),
               "timestamp": rfc3339(start + minute * MINUTE)});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let post = |batch: Value| {
        let reply = server.post(
            "/v1/messages",
            "application/json",
            &serde_json::to_vec(&batch).unwrap(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };
    let tags_now = |want: &BTreeMap<String, u64>| {
        wait_for_counts(&server, bot, want);
        let all = all_tags(&server, bot);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_values().next().unwrap()
    };

    // The user's last message got no reply (sms: 30 min), and a flow was left.
    post(json!([
        msg("m1", "user", 0, json!({})),
        msg(
            "m2",
            "bot",
            1,
            json!({"flow": "billing", "step": "ask-email"})
        ),
        msg("m3", "user", 2, json!({"confidence": 0.2})),
    ]));
    let tags = tags_now(&counts(&[
        ("no_bot_reply", 1),
        ("dropoff", 1),
        ("low_confidence", 1),
    ]));
    assert_eq!(tags["no_bot_reply"], vec!["m3".to_string()]);
    assert_eq!(tags["dropoff"], vec!["m2".to_string()]);

    // A late reply in the same session: no_bot_reply goes; the flow completes.
    post(json!([msg(
        "m4",
        "bot",
        3,
        json!({"flow": "billing", "step": "done", "flow_completed": true})
    )]));
    tags_now(&counts(&[("low_confidence", 1)]));

    // Two fallbacks in a row, then the user repeats themself.
    post(json!([
        msg("m5", "bot", 4, json!({"unidentified": true})),
        msg("m6", "user", 5, json!({})),
        msg("m7", "bot", 6, json!({"unidentified": true})),
        msg("m8", "user", 7, json!({"text": "text m6"})),
    ]));
    let tags = tags_now(&counts(&[
        ("low_confidence", 1),
        ("unidentified_response", 1),
        ("repeated_unidentified", 1),
        ("user_repeated", 1),
        ("no_bot_reply", 1),
    ]));
    assert_eq!(tags["repeated_unidentified"], vec!["m5", "m7"]);
    assert_eq!(tags["user_repeated"], vec!["m6", "m8"]);
    assert_eq!(tags["no_bot_reply"], vec!["m8"]);
}

/// A full run that is cancelled or killed leaves the rule set unrecorded: the next
/// start runs it again, and in the end no tag of the old rule version remains.
#[test]
fn an_interrupted_full_run_is_done_again_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(0x5eed_0003, 300, "crashbot");
    let conversations = data.convs.len() as u64;
    // One conversation per batch, so that a run lasts long enough to interrupt.
    let slow = [
        "--set",
        "tagging.batch_size=1",
        "--set",
        "tagging.threads=1",
    ];
    let mut server = Server::start(dir.path(), &slow);
    ingest(&server, &data);
    check(&server, &data, &Params::default(), "default rules");
    assert!(server.terminate().success());

    let mut params = Params::default();
    params.versions.insert("dropoff", 2);
    params.versions.insert("low_confidence", 5);
    let mut args = params.args();
    args.extend(slow.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // 1. Cancelled through the API.
    server = Server::start(dir.path(), &args);
    let job = tagging_jobs(&server)[0].clone();
    let id = job["id"].as_str().unwrap().to_string();
    let reply = server.post(
        &format!("/v1/admin/jobs/{id}/cancel"),
        "application/json",
        b"",
    );
    let (_, job) = follow_job(&server, &id);
    let interrupted_cancel = job["state"] == "failed";
    if interrupted_cancel {
        assert_eq!(
            job["error"], "cancelled",
            "{job}; the cancel answered {} {}",
            reply.status, reply.body
        );
        assert!(job["processed"].as_u64().unwrap() < conversations, "{job}");
    } else {
        eprintln!("the run finished before it could be cancelled: {job}");
    }
    assert!(server.terminate().success());

    // 2. Killed mid-run.
    server = Server::start(dir.path(), &args);
    let jobs = tagging_jobs(&server);
    assert_eq!(
        jobs[0]["state"], "running",
        "an unfinished run starts again at the next start: {jobs:?}"
    );
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    server.kill9();

    // 3. The next start marks it failed and runs again to the end.
    server = Server::start(dir.path(), &args);
    let killed = server.get_ok(&format!("/v1/admin/jobs/{id}"));
    assert_eq!(killed["state"], "failed", "{killed}");
    assert!(
        killed["error"]
            .as_str()
            .is_some_and(|e| e.contains("restart")),
        "{killed}"
    );
    let jobs = tagging_jobs(&server);
    assert_ne!(jobs[0]["id"], id.as_str(), "{jobs:?}");
    let (_, job) = follow_job(&server, jobs[0]["id"].as_str().unwrap());
    assert_job_succeeded(&job, conversations);
    check(&server, &data, &params, "after an interrupted run");

    // 4. Once a run has finished, the same rules start no other.
    let count = tagging_jobs(&server).len();
    assert!(server.terminate().success());
    server = Server::start(dir.path(), &args);
    assert_eq!(tagging_jobs(&server).len(), count);
    let missing = server.get("/v1/admin/jobs/j_0000000000000000");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(
        missing.json()["error"]["code"],
        "not_found",
        "{}",
        missing.body
    );
}
