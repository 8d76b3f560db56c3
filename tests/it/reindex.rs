//! Issue #6: zero-downtime reindex.
//!
//! 1. A reindex under concurrent ingest and queries: every query answered 200 with the
//!    same results as before, every message ingested before, during and after it findable.
//! 2. `kill -9` at ten moments spread over a reindex: each restart comes back consistent
//!    (one generation, the one `INDEX` names; totals as before) and the job says why it failed.
//! 3. An index built with another schema version: rebuilt at start-up (`rebuild`), or
//!    refused with a message naming `convlog reindex` (`refuse`).
//! 4. The jobs API and the command line: one reindex at a time, cancel, `convlog reindex`
//!    and `convlog jobs` through a server and directly on a stopped data directory.
//! 5. An index of schema 5 (before language analysis, issue #16): served, and kept up to
//!    date, while the reindex that start-up begins builds the current schema; then swapped.
//!
//! Also probed, each in a test of its own: simultaneous POSTs start one job; a cancel
//! accepted late in the run still ends the job "cancelled"; `processed` never exceeds
//! `total`; the remedy a schema refusal names works with the configuration that refused.
//!
//! The 1M-message version of (1) is ignored by default; run it with
//! `cargo test --release --test it reindex -- --ignored`.

use crate::common::{
    ALL_FROM, ALL_TO, Rng, Server, agent, binary, encode, end, generated, micros, rfc3339, run_cli,
};
use crate::oracle::{World, words};
use convlog_gen::GenMessage;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a reindex (or a start-up) may take before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// A client of one server address that can be shared by threads and survives a kill.
#[derive(Clone)]
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn of(server: &Server) -> Http {
        Http {
            agent: agent(),
            base: server.base().to_string(),
        }
    }

    /// One request; `Err` when no HTTP answer came back.
    fn call(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "POST" => self.agent.post(&url).send_empty(),
            "DELETE" => self.agent.delete(&url).call(),
            other => panic!("no method {other}"),
        };
        let mut response = response.map_err(|err| format!("{method} {path}: {err}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|err| format!("{method} {path}: reading the body: {err}"))?;
        Ok((status, body))
    }

    /// A request that must answer `expected`; the JSON body.
    fn expect(&self, method: &str, path: &str, expected: u16) -> Value {
        let (status, body) = self
            .call(method, path)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(status, expected, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{method} {path}: {err}: {body}"))
    }

    fn job(&self, id: &str) -> Value {
        self.expect("GET", &format!("/v1/admin/jobs/{id}"), 200)
    }

    /// Polls a job until it is no longer queued or running.
    fn wait_job(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(id);
            if matches!(job["state"].as_str(), Some("succeeded" | "failed")) {
                return job;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "job {id} did not end within {PATIENCE:?}: {job}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `POST /v1/admin/reindex`, asserting 202 and the job's shape.
    fn start_reindex(&self) -> Value {
        let job = self.expect("POST", "/v1/admin/reindex", 202);
        assert_eq!(job["kind"], "reindex", "{job}");
        assert!(
            matches!(
                job["state"].as_str(),
                Some("queued" | "running" | "succeeded" | "failed")
            ),
            "{job}"
        );
        for key in [
            "id",
            "processed",
            "total",
            "started_at",
            "finished_at",
            "error",
        ] {
            assert!(job.get(key).is_some(), "job without {key}: {job}");
        }
        job
    }

    fn total(&self, path: &str) -> u64 {
        self.expect("GET", path, 200)["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("no total from {path}"))
    }
}

/// What a search answered: the exact total and the ids of the first page, in order.
type Answer = (u64, Vec<String>);

fn answer_of(body: &str) -> Result<Answer, String> {
    let value: Value = serde_json::from_str(body).map_err(|err| format!("{err}: {body}"))?;
    let total = value["total"].as_u64().ok_or("no total")?;
    let items = value
        .get("conversations")
        .or_else(|| value.get("messages"))
        .and_then(Value::as_array)
        .ok_or("no items")?;
    let ids = items
        .iter()
        .map(|item| item["id"].as_str().unwrap_or("?").to_string())
        .collect();
    Ok((total, ids))
}

/// Runs every query once, asserting 200.
fn snapshot(http: &Http, queries: &[String]) -> Vec<Answer> {
    queries
        .iter()
        .map(|path| {
            let (status, body) = http.call("GET", path).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(status, 200, "GET {path}: {body}");
            answer_of(&body).unwrap_or_else(|err| panic!("GET {path}: {err}"))
        })
        .collect()
}

/// Asserts two snapshots of `queries` agree, naming the first query that differs.
fn assert_same(queries: &[String], before: &[Answer], after: &[Answer], when: &str) {
    for ((path, b), a) in queries.iter().zip(before).zip(after) {
        assert_eq!(
            b, a,
            "{when}: GET {path} answered differently (total, first page)"
        );
    }
}

/// Words of the data at a few frequency ranks (most common, common, rarer), for text queries.
fn words_by_rank(messages: &[GenMessage], ranks: &[usize]) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in messages {
        for word in words(&m.text) {
            if word.len() >= 3 && word.chars().all(|c| c.is_ascii_alphabetic()) {
                *counts.entry(word).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(usize, String)> = counts.into_iter().map(|(w, c)| (c, w)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ranks
        .iter()
        .map(|&r| ranked[r.min(ranked.len() - 1)].1.clone())
        .collect()
}

/// A fixed set of searches of `bots` restricted to `[from, to)`: conversation and message
/// search, text, filters, sorts.
fn fixed_queries(bots: &[&str], words: &[String], from: &str, to: &str) -> Vec<String> {
    let (from, to) = (encode(from), encode(to));
    let (w0, w1, w2) = (&words[0], &words[1], &words[2]);
    let mut queries = Vec::new();
    for bot in bots {
        let conv = format!("/v1/bots/{bot}/conversations?from={from}&to={to}&limit=20");
        let msgs = format!("/v1/bots/{bot}/messages?from={from}&to={to}&limit=20");
        queries.extend([
            conv.clone(),
            format!("{conv}&q={}", encode(w0)),
            format!("{conv}&q={}&channel=web", encode(w1)),
            format!("{conv}&q={}&sort=started_at", encode(w2)),
            format!("{conv}&q={}", encode(&format!("{w0} {w2}"))),
            format!("{conv}&channel=whatsapp"),
            msgs.clone(),
            format!("{msgs}&q={}", encode(w1)),
            format!("{msgs}&q={}&role=user", encode(w2)),
        ]);
    }
    queries
}

/// The index generations present in a data directory.
fn generations(data_dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(data_dir)
        .expect("read the data directory")
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("index-"))
        .collect();
    found.sort();
    found
}

/// The generation `INDEX` names.
fn pointer(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("INDEX"))
        .expect("read INDEX")
        .trim()
        .to_string()
}

/// Asserts `INDEX` names an existing generation and no other exists; returns its name.
fn assert_one_generation(data_dir: &Path, when: &str) -> String {
    let named = pointer(data_dir);
    assert_eq!(
        generations(data_dir),
        vec![named.clone()],
        "{when}: INDEX names {named:?}; the generations on disk should be exactly that one"
    );
    named
}

/// Messages renamed so they can't collide with other generated data of the same bot.
fn renamed(mut messages: Vec<GenMessage>, prefix: &str) -> Vec<GenMessage> {
    for m in &mut messages {
        m.id = format!("{prefix}{}", m.id);
        m.user_id = format!("{prefix}{}", m.user_id);
        if let Some(session) = &mut m.session_id {
            *session = format!("{prefix}{session}");
        }
    }
    messages
}

/// Generated messages like [`generated`], ending at `end() + shift_days`.
fn generated_later(
    seed: u64,
    conversations: usize,
    bots: &[&str],
    shift_days: i64,
) -> Vec<GenMessage> {
    let mut config = convlog_gen::GenConfig::new(
        seed,
        conversations,
        end() + chrono::Duration::days(shift_days),
    );
    config.bots = bots.iter().map(|b| b.to_string()).collect();
    config.span_days = 30;
    let mut messages = Vec::new();
    convlog_gen::generate(&config, |m| messages.push(m));
    messages
}

/// Message total of `bot` over all time.
fn message_total(http: &Http, bot: &str) -> u64 {
    http.total(&format!(
        "/v1/bots/{bot}/messages?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ))
}

/// Conversation total of `bot` over all time.
fn conversation_total(http: &Http, bot: &str) -> u64 {
    http.total(&format!(
        "/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ))
}

/// The files of the served generation that record a schema version: its
/// `STATE` and the `meta.json` of both parts of every partition.
fn version_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let generation = data_dir.join(pointer(data_dir));
    let mut files = vec![generation.join("STATE")];
    for entry in std::fs::read_dir(&generation).expect("generation directory") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.push(path.join("conversations").join("meta.json"));
            files.push(path.join("messages").join("meta.json"));
        }
    }
    assert!(files.len() > 2, "the generation has no partition");
    files
}

/// Rewrites the schema version recorded everywhere in the served generation.
fn set_built_schema_version(data_dir: &Path, from: u32, to: u32) {
    for file in version_files(data_dir) {
        let text = std::fs::read_to_string(&file).expect("read a version file");
        // meta.json holds the payload as an escaped JSON string; STATE holds plain JSON.
        let mut replaced = text.clone();
        for (old, new) in [
            (
                format!(r#"\"schema_version\":{from},"#),
                format!(r#"\"schema_version\":{to},"#),
            ),
            (
                format!(r#""schema_version":{from},"#),
                format!(r#""schema_version":{to},"#),
            ),
        ] {
            replaced = replaced.replace(&old, &new);
        }
        assert_ne!(
            replaced,
            text,
            "{} records no schema_version {from}:\n{text}",
            file.display()
        );
        std::fs::write(&file, replaced).expect("write a version file");
    }
}

/// The schema versions recorded in the served generation (each once).
fn built_schema_versions(data_dir: &Path) -> BTreeSet<u64> {
    version_files(data_dir)
        .iter()
        .map(|file| {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            let state = match json["payload"].as_str() {
                Some(payload) => serde_json::from_str(payload).unwrap(),
                None => json,
            };
            state["schema_version"].as_u64().expect("schema_version")
        })
        .collect()
}

/// Runs `convlog ARGS` that is expected to exit by itself within `limit`; (status, stderr).
fn run_expecting_exit(args: &[&str], limit: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(binary())
        .args(args)
        .env("CONVLOG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convlog");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("convlog {args:?} was still running after {limit:?} (it should have exited)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Starts a server on `root`, ingests `messages` and waits until everything is searchable.
fn loaded_server(root: &Path, messages: &[GenMessage], extra: &[&str]) -> Server {
    let server = Server::start(root, extra);
    let (accepted, duplicates) = server.ingest_parallel(messages, 1_000, 2);
    assert_eq!((accepted, duplicates), (messages.len() as u64, 0));
    server.wait_indexed();
    server
}

// ---------------------------------------------------------------------------
// 1. Reindex under concurrent ingest and queries
// ---------------------------------------------------------------------------

/// What the query thread saw while the reindex ran.
#[derive(Default)]
struct QueryLog {
    issued: usize,
    answered_200: usize,
    failures: Vec<String>,
    mismatches: Vec<String>,
}

/// Messages per live ingest batch.
const LIVE_BATCH: usize = 200;
/// Live batches sent after the reindex has ended (into the new generation).
const AFTER_THE_SWAP: usize = 3;

/// The pause after live batch `n` of `pool`: 50 ms (below what a debug build indexes on a
/// loaded 2-core machine, so the reindex's catch-up can overtake it) while more than half
/// the pool is left, then growing as the pool runs down, so that ingest goes on for as much
/// of a slow machine's reindex as it can (the last `AFTER_THE_SWAP` wait for its end).
fn live_pace(n: usize, pool: usize) -> Duration {
    let left = pool.saturating_sub(n + 1 + AFTER_THE_SWAP).max(1);
    let stretch = (pool / 2) as f64 / left as f64;
    Duration::from_secs_f64(0.05 * stretch.clamp(1.0, 100.0))
}

fn reindex_under_load(base_conversations: usize, live_conversations: usize, seed: u64) {
    let bots = ["rxa", "rxb"];
    let base = generated(seed, base_conversations, &bots, 30);
    // Live data lies 10 to 40 days after the base data: no session can join an old one.
    let live = renamed(
        generated_later(seed + 1, live_conversations, &bots, 40),
        "live-",
    );
    let live_from = micros(live.iter().map(|m| m.timestamp.as_str()).min().unwrap());
    assert!(
        live_from > end().timestamp_micros() + 2 * 86_400_000_000,
        "live data overlaps the base range"
    );
    eprintln!(
        "reindex under load: {} base messages, {} live messages",
        base.len(),
        live.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let server = loaded_server(dir.path(), &base, &[]);
    eprintln!("loaded in {:.1}s", started.elapsed().as_secs_f64());
    let http = Http::of(&server);
    let data_dir = server.data_dir().to_path_buf();
    let generation_before = assert_one_generation(&data_dir, "before the reindex");

    let base_to = rfc3339(end().timestamp_micros() + 2 * 86_400_000_000);
    let queries = fixed_queries(
        &bots,
        &words_by_rank(&base, &[0, 40, 400]),
        ALL_FROM,
        &base_to,
    );
    let before = snapshot(&http, &queries);
    assert!(
        before.iter().all(|(total, _)| *total > 0),
        "every fixed query should match something: {before:?}"
    );
    assert_same(
        &queries,
        &before,
        &snapshot(&http, &queries),
        "before (stable)",
    );

    let live_bodies: Vec<Vec<u8>> = live
        .chunks(LIVE_BATCH)
        .map(|chunk| serde_json::to_vec(chunk).unwrap())
        .collect();
    let job = http.start_reindex();
    let id = job["id"].as_str().unwrap().to_string();
    let reindex_started = Instant::now();
    let done = AtomicBool::new(false);
    let acked_during = AtomicUsize::new(0);
    let sent = AtomicUsize::new(0);
    let log = Mutex::new(QueryLog::default());
    let final_job = std::thread::scope(|scope| {
        // Ingest: paced batches from one client from the moment the reindex starts until it
        // has ended, then a few more into the new generation.
        let ingest = scope.spawn(|| {
            let client = server.client();
            let mut after_end = 0;
            for (n, body) in live_bodies.iter().enumerate() {
                // The last `AFTER_THE_SWAP` batches are kept for the new generation.
                while n + AFTER_THE_SWAP >= live_bodies.len() && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if done.load(Ordering::SeqCst) {
                    if after_end == AFTER_THE_SWAP {
                        break;
                    }
                    after_end += 1;
                }
                let reply = client
                    .try_post("/v1/messages", "application/json", body)
                    .unwrap_or_else(|err| panic!("live batch {n}: {err}"));
                assert_eq!(reply.status, 200, "live batch {n}: {}", reply.body);
                if !done.load(Ordering::SeqCst) {
                    acked_during.fetch_add(1, Ordering::SeqCst);
                }
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(live_pace(n, live_bodies.len()));
            }
        });
        // Queries: the fixed set in a loop until the job has ended.
        let querying = scope.spawn(|| {
            let http = http.clone();
            while !done.load(Ordering::SeqCst) {
                for (path, expected) in queries.iter().zip(&before) {
                    let result = http.call("GET", path);
                    let mut log = log.lock().unwrap();
                    log.issued += 1;
                    match result {
                        Ok((200, body)) => {
                            log.answered_200 += 1;
                            match answer_of(&body) {
                                Ok(got) if &got == expected => {}
                                Ok(got) => {
                                    if log.mismatches.len() < 5 {
                                        log.mismatches.push(format!(
                                            "GET {path}: expected {expected:?}, got {got:?}"
                                        ));
                                    }
                                }
                                Err(err) => log.failures.push(format!("GET {path}: {err}")),
                            }
                        }
                        Ok((status, body)) => {
                            if log.failures.len() < 5 {
                                log.failures.push(format!("GET {path}: {status} {body}"));
                            }
                        }
                        Err(err) => {
                            if log.failures.len() < 5 {
                                log.failures.push(err);
                            }
                        }
                    }
                }
            }
        });
        let job = http.wait_job(&id);
        done.store(true, Ordering::SeqCst);
        querying.join().expect("query thread");
        ingest.join().expect("ingest thread");
        job
    });
    let reindex_took = reindex_started.elapsed();
    let log = log.into_inner().unwrap();
    let acked_during = acked_during.into_inner();
    // What was ingested: the first `sent` batches (the generator's output is in time order).
    let sent = sent.into_inner();
    let live: Vec<GenMessage> = live[..(sent * LIVE_BATCH).min(live.len())].to_vec();
    eprintln!(
        "reindex took {:.1}s; {} of {} queries answered 200; {} live messages in {sent} batches, \
         {acked_during} acknowledged during the reindex (of {} prepared)",
        reindex_took.as_secs_f64(),
        log.answered_200,
        log.issued,
        live.len(),
        live_bodies.len()
    );

    assert_eq!(final_job["state"], "succeeded", "{final_job}");
    assert_eq!(final_job["error"], Value::Null, "{final_job}");
    assert!(final_job["finished_at"].is_string(), "{final_job}");
    // (processed can exceed total: conversations that arrived during the build are counted too.)
    assert!(
        final_job["processed"].as_u64() >= final_job["total"].as_u64(),
        "a finished job processed everything: {final_job}"
    );
    let base_world = World::new(&base);
    assert!(
        final_job["total"].as_u64().unwrap() >= base_world.convs.len() as u64,
        "total counts at least the conversations stored before: {final_job}"
    );

    assert!(
        log.issued >= queries.len(),
        "too few queries issued during the reindex"
    );
    assert!(
        log.failures.is_empty(),
        "{} of {} queries during the reindex were not answered 200, e.g. {:?}",
        log.issued - log.answered_200,
        log.issued,
        log.failures
    );
    assert!(
        log.mismatches.is_empty(),
        "queries restricted to the pre-existing data changed during the reindex: {:?}",
        log.mismatches
    );
    assert!(
        acked_during > 0,
        "no live batch was acknowledged while the reindex ran: nothing concurrent was proven"
    );
    assert!(
        sent > acked_during,
        "no live batch was ingested after the reindex ended: the new generation took no writes"
    );

    // After: the same answers, every message findable, one generation.
    server.wait_indexed();
    assert_same(
        &queries,
        &before,
        &snapshot(&http, &queries),
        "after the reindex",
    );
    let generation_after = assert_one_generation(&data_dir, "after the reindex");
    assert_ne!(
        generation_after, generation_before,
        "a successful reindex serves a new generation"
    );
    let all: Vec<GenMessage> = base.iter().chain(&live).cloned().collect();
    let world = World::new(&all);
    for bot in bots {
        let ids: BTreeSet<&str> = all
            .iter()
            .filter(|m| m.bot_id == bot)
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(
            message_total(&http, bot),
            ids.len() as u64,
            "bot {bot}: message total after the reindex = distinct ids ingested"
        );
        let conversations = world.convs.iter().filter(|c| c.bot == bot).count();
        assert_eq!(
            conversation_total(&http, bot),
            conversations as u64,
            "bot {bot}: conversation total after the reindex"
        );
        // The live messages, one by one (those ingested during the build and during the swap).
        let live_ids: BTreeSet<String> = live
            .iter()
            .filter(|m| m.bot_id == bot)
            .map(|m| m.id.clone())
            .collect();
        let listed: Vec<String> = server
            .page_all(
                &format!(
                    "/v1/bots/{bot}/messages?from={}&to={ALL_TO}&limit=100",
                    encode(&base_to)
                ),
                "messages",
            )
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        let found: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            found.len(),
            listed.len(),
            "bot {bot}: a message listed twice"
        );
        let missing: Vec<&String> = live_ids.difference(&found).take(5).collect();
        assert!(
            missing.is_empty(),
            "bot {bot}: {} live messages missing after the swap, e.g. {missing:?}",
            live_ids.difference(&found).count()
        );
        assert_eq!(found, live_ids, "bot {bot}: live messages listed");
    }
}

#[test]
fn reindex_under_concurrent_ingest_and_queries_answers_everything() {
    // ~63k messages before, more during (paced from a pool of ~100k; see `live_pace`).
    reindex_under_load(5_500, 9_000, 61);
}

/// The same at 1M messages: `cargo test --release --test it reindex -- --ignored`.
#[test]
#[ignore = "1M messages: run with cargo test --release --test it reindex -- --ignored"]
fn reindex_of_1m_messages_under_concurrent_ingest_and_queries() {
    reindex_under_load(87_000, 20_000, 62);
}

// ---------------------------------------------------------------------------
// 2. kill -9 during a reindex
// ---------------------------------------------------------------------------

#[test]
fn kill_9_at_ten_moments_of_a_reindex_leaves_a_consistent_service() {
    let bot = "rxkill";
    let messages = generated(71, 1_600, &[bot], 30);
    let dir = tempfile::tempdir().unwrap();
    let mut server = loaded_server(dir.path(), &messages, &[]);
    let data_dir = server.data_dir().to_path_buf();
    let queries = fixed_queries(
        &[bot],
        &words_by_rank(&messages, &[0, 30, 300]),
        ALL_FROM,
        ALL_TO,
    );
    let http = Http::of(&server);
    let expected = snapshot(&http, &queries);
    let (messages_expected, conversations_expected) =
        (message_total(&http, bot), conversation_total(&http, bot));
    assert_eq!(messages_expected, messages.len() as u64);

    // One undisturbed reindex: it works, and it gives the duration to spread the kills over.
    let timer = Instant::now();
    let job = http.start_reindex();
    let job = http.wait_job(job["id"].as_str().unwrap());
    let duration = timer.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_one_generation(&data_dir, "after an undisturbed reindex");
    eprintln!("an undisturbed reindex took {:.2}s", duration.as_secs_f64());

    let mut rng = Rng::new(0x6b69_6c6c);
    let (mut interrupted, mut succeeded) = (0, 0);
    let mut jobs = Vec::new();
    for round in 0..10 {
        // Stratified: the ten kills fall in the ten tenths of 110% of the expected duration
        // (the last ones may land around the swap, or after it).
        let fraction = 1.1 * (round as f64 + (rng.next_u64() % 1000) as f64 / 1000.0) / 10.0;
        let http = Http::of(&server);
        let generation_before = pointer(&data_dir);
        let job = http.start_reindex();
        let id = job["id"].as_str().unwrap().to_string();
        std::thread::sleep(duration.mul_f64(fraction));
        server.kill9();
        let on_disk = generations(&data_dir);

        server.restart();
        let http = Http::of(&server);
        let when = format!(
            "round {round} (killed {:.0}% into the run)",
            fraction * 100.0
        );
        assert_eq!(
            http.call("GET", "/readyz").unwrap().0,
            200,
            "{when}: /readyz after the restart"
        );
        let generation = assert_one_generation(&data_dir, &when);
        assert!(
            on_disk.contains(&generation),
            "{when}: the restart serves {generation:?}, which was not on disk before: {on_disk:?}"
        );
        assert_eq!(
            message_total(&http, bot),
            messages_expected,
            "{when}: messages"
        );
        assert_eq!(
            conversation_total(&http, bot),
            conversations_expected,
            "{when}: conversations"
        );
        assert_same(&queries, &expected, &snapshot(&http, &queries), &when);

        let job = http.job(&id);
        match job["state"].as_str() {
            Some("failed") => {
                let error = job["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("interrupted by a restart"),
                    "{when}: the job failed for another reason: {job}"
                );
                assert!(job["finished_at"].is_string(), "{when}: {job}");
                interrupted += 1;
            }
            Some("succeeded") => succeeded += 1,
            _ => panic!("{when}: after a restart the job is neither failed nor succeeded: {job}"),
        }
        eprintln!(
            "{when}: job {}, served {generation_before} -> {generation}, on disk at the kill {on_disk:?}",
            job["state"]
        );
        jobs.push(id);
    }
    eprintln!("{interrupted} reindexes interrupted, {succeeded} had finished before the kill");
    assert!(
        interrupted >= 5,
        "only {interrupted} of 10 kills interrupted the reindex: nothing was proven"
    );

    // Still fully working: new messages become searchable and a reindex succeeds.
    let http = Http::of(&server);
    let extra = renamed(generated(72, 30, &[bot], 30), "after-");
    server.ingest(&extra);
    server.wait_indexed();
    assert_eq!(
        message_total(&http, bot),
        messages_expected + extra.len() as u64
    );
    let job = http.start_reindex();
    let job = http.wait_job(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_one_generation(&data_dir, "after the final reindex");
    assert_eq!(
        message_total(&http, bot),
        messages_expected + extra.len() as u64
    );
    let listed = http.expect("GET", "/v1/admin/jobs", 200);
    let states: HashMap<&str, &str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    for id in &jobs {
        assert!(
            matches!(states.get(id.as_str()), Some(&"failed" | &"succeeded")),
            "job {id} in the list: {:?}",
            states.get(id.as_str())
        );
    }
}

// ---------------------------------------------------------------------------
// 3. An index built with another schema version
// ---------------------------------------------------------------------------

/// Loads data, notes the answers, stops the server and marks its index as built by schema 1.
fn index_from_an_older_schema(root: &Path, bot: &str) -> (PathBuf, Vec<String>, Vec<Answer>) {
    let messages = generated(81, 1_800, &[bot], 30);
    let mut server = loaded_server(root, &messages, &[]);
    let data_dir = server.data_dir().to_path_buf();
    let queries = fixed_queries(
        &[bot],
        &words_by_rank(&messages, &[0, 30, 300]),
        ALL_FROM,
        ALL_TO,
    );
    let answers = snapshot(&Http::of(&server), &queries);
    assert!(server.terminate().success());
    let current = convlog_engine::index::IndexSchema::load().unwrap().version;
    assert_eq!(
        built_schema_versions(&data_dir),
        BTreeSet::from([current as u64])
    );
    set_built_schema_version(&data_dir, current, 1);
    (data_dir, queries, answers)
}

#[test]
fn an_index_of_another_schema_version_is_rebuilt_or_refused_as_configured() {
    let bot = "rxschema";
    let root = tempfile::tempdir().unwrap();
    let (data_dir, queries, expected) = index_from_an_older_schema(root.path(), bot);

    // index.on_schema_change = "refuse": the service exits non-zero, naming `convlog reindex`.
    let (status, stderr) = run_expecting_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(&data_dir),
            "--set",
            "index.on_schema_change=refuse",
        ],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "refuse: the service started: {stderr}");
    assert!(
        stderr.contains("convlog reindex"),
        "refuse: the message should name `convlog reindex`: {stderr}"
    );
    assert!(
        stderr.contains("schema version 1")
            && stderr.contains(
                &convlog_engine::index::IndexSchema::load()
                    .unwrap()
                    .version
                    .to_string()
            ),
        "refuse: the message should name both versions: {stderr}"
    );
    assert_eq!(
        built_schema_versions(&data_dir),
        BTreeSet::from([1]),
        "refusing must leave the index as it was"
    );

    // Default ("rebuild"): /readyz is red until the index is rebuilt, then every answer is back.
    let mut server = Server::start_unready(root.path(), &[]);
    let http = Http::of(&server);
    let started = Instant::now();
    let mut red = Vec::new();
    loop {
        let (status, body) = http.call("GET", "/readyz").expect("/readyz");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "/readyz: {body}");
        if red.is_empty() {
            red.push(body);
        }
        assert!(started.elapsed() < PATIENCE, "/readyz stayed red");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Green means searchable: checked at once, no waiting.
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "rebuilt at start-up",
    );
    eprintln!(
        "rebuild: ready after {:.2}s; first red answer {:?}",
        started.elapsed().as_secs_f64(),
        red.first()
    );
    assert!(
        !red.is_empty(),
        "/readyz was green from its first answer although the index had to be rebuilt"
    );
    assert!(
        red[0].contains("catching up"),
        "/readyz says why it is red: {}",
        red[0]
    );
    server.terminate();
    assert_eq!(
        built_schema_versions(&data_dir),
        BTreeSet::from([convlog_engine::index::IndexSchema::load().unwrap().version as u64]),
        "the rebuilt index records the current schema version"
    );
    assert_one_generation(&data_dir, "after the rebuild");

    // With the index rebuilt, "refuse" starts normally.
    let server = Server::start_unready(root.path(), &["--set", "index.on_schema_change=refuse"]);
    let http = Http::of(&server);
    let started = Instant::now();
    while http.call("GET", "/readyz").expect("/readyz").0 != 200 {
        assert!(started.elapsed() < PATIENCE, "/readyz stayed red");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "refuse, current schema",
    );
}

/// The refusal says "run `convlog reindex`": that must work with the settings that refused.
#[test]
fn the_remedy_a_schema_refusal_names_works_with_the_same_configuration() {
    let bot = "rxremedy";
    let root = tempfile::tempdir().unwrap();
    let (data_dir, queries, expected) = index_from_an_older_schema(root.path(), bot);
    let config = root.path().join("convlog.toml");
    std::fs::write(&config, "[index]\non_schema_change = \"refuse\"\n").unwrap();
    let config = path_str(&config);
    let data = path_str(&data_dir);

    let (status, stderr) = run_expecting_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config,
            "--data-dir",
            data,
        ],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "the service started: {stderr}");
    assert!(stderr.contains("convlog reindex"), "{stderr}");

    // What the operator is told to do, with the configuration they run with.
    let (status, _, stderr) = run_cli(
        &[
            "reindex",
            "--direct",
            "--config",
            config,
            "--data-dir",
            data,
        ],
        None,
    );
    assert!(
        status.success(),
        "`convlog reindex --direct --config {{file with on_schema_change = \"refuse\"}}` \
         should rebuild the index the refusal complains about; it exited {status}: {stderr}"
    );
    let server = Server::start_unready(root.path(), &["--config", config]);
    let http = Http::of(&server);
    let started = Instant::now();
    while http.call("GET", "/readyz").expect("/readyz").0 != 200 {
        assert!(started.elapsed() < PATIENCE, "/readyz stayed red");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after the remedy",
    );
}

// ---------------------------------------------------------------------------
// 4. Jobs API and command line
// ---------------------------------------------------------------------------

#[test]
fn one_reindex_at_a_time_and_cancel_keeps_the_old_index() {
    let bot = "rxjobs";
    let messages = generated(91, 1_500, &[bot], 30);
    let dir = tempfile::tempdir().unwrap();
    let server = loaded_server(dir.path(), &messages, &[]);
    let data_dir = server.data_dir().to_path_buf();
    let http = Http::of(&server);
    let queries = fixed_queries(
        &[bot],
        &words_by_rank(&messages, &[0, 30, 300]),
        ALL_FROM,
        ALL_TO,
    );
    let expected = snapshot(&http, &queries);

    // A second request while one runs answers the same job.
    let first = http.start_reindex();
    let second = http.start_reindex();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(second["id"], first["id"], "second POST: {second}");
    assert_eq!(second["state"], "running", "{second}");
    let listed = http.expect("GET", "/v1/admin/jobs", 200);
    let reindexes: Vec<&Value> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "reindex")
        .collect();
    assert_eq!(reindexes.len(), 1, "one reindex job in the list: {listed}");
    assert_eq!(reindexes[0]["id"], first["id"]);
    let done = http.wait_job(&id);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["processed"], done["total"], "{done}");
    assert!(done["total"].as_u64().unwrap() > 0, "{done}");
    let generation = assert_one_generation(&data_dir, "after the first reindex");
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after a reindex",
    );
    // A finished job can't be cancelled; an unknown one doesn't exist.
    http.expect("POST", &format!("/v1/admin/jobs/{id}/cancel"), 409);
    http.expect("POST", "/v1/admin/jobs/j_0000000000000000/cancel", 404);
    http.expect("GET", "/v1/admin/jobs/j_0000000000000000", 404);

    // Cancel right away: failed "cancelled", the old generation still serves, the new one is gone.
    let job = http.start_reindex();
    let id = job["id"].as_str().unwrap().to_string();
    let cancel = http.expect("POST", &format!("/v1/admin/jobs/{id}/cancel"), 202);
    assert_eq!(cancel["id"], job["id"]);
    let cancelled = http.wait_job(&id);
    assert_eq!(cancelled["state"], "failed", "{cancelled}");
    assert_eq!(cancelled["error"], "cancelled", "{cancelled}");
    assert!(cancelled["finished_at"].is_string(), "{cancelled}");
    assert_eq!(
        assert_one_generation(&data_dir, "after a cancelled reindex"),
        generation,
        "a cancelled reindex leaves the old generation serving"
    );
    http.expect("POST", &format!("/v1/admin/jobs/{id}/cancel"), 409);
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after a cancel",
    );
    // The old index is still live: new messages become searchable.
    let extra = renamed(generated(92, 20, &[bot], 30), "after-cancel-");
    server.ingest(&extra);
    server.wait_indexed();
    assert_eq!(
        message_total(&http, bot),
        (messages.len() + extra.len()) as u64
    );
    // And the next reindex runs normally.
    let job = http.start_reindex();
    let job = http.wait_job(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_one_generation(&data_dir, "after the reindex following a cancel");
    assert_eq!(
        message_total(&http, bot),
        (messages.len() + extra.len()) as u64
    );
}

/// `DELETE` answered 202 means the job "ends as failed with error cancelled" (docs/api.md),
/// also when the request comes late in the run (here: once all conversations are written).
#[test]
fn a_late_cancel_that_is_accepted_ends_the_job_cancelled() {
    let bot = "rxlate";
    let messages = generated(93, 1_200, &[bot], 30);
    let dir = tempfile::tempdir().unwrap();
    let server = loaded_server(dir.path(), &messages, &[]);
    let data_dir = server.data_dir().to_path_buf();
    let http = Http::of(&server);
    let generation = assert_one_generation(&data_dir, "before");

    let job = http.start_reindex();
    let id = job["id"].as_str().unwrap().to_string();
    // Wait until the build has written every conversation (the job still running), then cancel.
    let started = Instant::now();
    let seen = loop {
        let job = http.job(&id);
        let (processed, total) = (job["processed"].as_u64(), job["total"].as_u64());
        if job["state"] != "running" || (total > Some(0) && processed == total) {
            break job;
        }
        assert!(started.elapsed() < PATIENCE, "{job}");
        std::thread::sleep(Duration::from_millis(2));
    };
    let (status, body) = http
        .call("POST", &format!("/v1/admin/jobs/{id}/cancel"))
        .unwrap();
    let ended = http.wait_job(&id);
    eprintln!("cancel at {seen}: POST …/cancel {status}; job ended {ended}");
    match status {
        202 => {
            assert_eq!(
                (ended["state"].as_str(), ended["error"].as_str()),
                (Some("failed"), Some("cancelled")),
                "POST /v1/admin/jobs/{id}/cancel answered 202 ({body}) while the job was running \
                 ({seen}), so it must end failed \"cancelled\"; it ended: {ended}"
            );
            assert_eq!(
                assert_one_generation(&data_dir, "after a late cancel"),
                generation,
                "a cancelled reindex must not swap in its generation"
            );
        }
        409 => panic!("the job ended before the cancel; nothing was proven: {ended}"),
        other => panic!("DELETE answered {other}: {body}"),
    }
}

/// `processed` of a running or finished job never exceeds its `total` (a progress bar
/// past 100%), also when conversations arrive while the reindex runs.
#[test]
fn reindex_progress_stays_within_its_total_under_ingest() {
    let bot = "rxprogress";
    let messages = generated(94, 1_000, &[bot], 30);
    let live = renamed(generated_later(94, 400, &[bot], 40), "live-");
    let dir = tempfile::tempdir().unwrap();
    let server = loaded_server(dir.path(), &messages, &[]);
    let http = Http::of(&server);
    let job = http.start_reindex();
    let id = job["id"].as_str().unwrap().to_string();
    let done = AtomicBool::new(false);
    let mut seen = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for chunk in live.chunks(50) {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                server.ingest(chunk);
            }
        });
        let started = Instant::now();
        loop {
            let job = http.job(&id);
            let ended = job["state"] != "running";
            seen.push(job);
            if ended {
                break;
            }
            assert!(started.elapsed() < PATIENCE);
            std::thread::sleep(Duration::from_millis(10));
        }
        done.store(true, Ordering::SeqCst);
    });
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    let over: Vec<&Value> = seen
        .iter()
        .filter(|j| j["processed"].as_u64() > j["total"].as_u64())
        .collect();
    assert!(
        over.is_empty(),
        "GET /v1/admin/jobs/{id} reported processed > total {} times, e.g. {}",
        over.len(),
        over[0]
    );
}

/// "A job of a kind that is already running is not started twice", also when the
/// requests arrive at the same time.
#[test]
fn simultaneous_reindex_requests_start_one_job() {
    let bot = "rxrace";
    let messages = generated(95, 300, &[bot], 30);
    let dir = tempfile::tempdir().unwrap();
    let server = loaded_server(dir.path(), &messages, &[]);
    let http = Http::of(&server);
    let barrier = std::sync::Barrier::new(6);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let http = http.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let (status, body) = http.call("POST", "/v1/admin/reindex").unwrap();
                    assert_eq!(status, 202, "{body}");
                    answer_id(&body)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for id in &ids {
        http.wait_job(id);
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    let listed = http.expect("GET", "/v1/admin/jobs", 200);
    let reindexes = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "reindex")
        .count();
    assert_eq!(
        (distinct.len(), reindexes),
        (1, 1),
        "6 simultaneous POST /v1/admin/reindex started {} jobs ({distinct:?}); the job list has {reindexes} reindexes",
        distinct.len()
    );
}

fn answer_id(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["id"].as_str().unwrap().to_string()
}

/// The job lines `convlog jobs` prints: id -> (kind, state).
fn listed_jobs(stdout: &[u8]) -> BTreeMap<String, (String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let id = columns.next()?.to_string();
            let kind = columns.next()?.to_string();
            let state = columns.next()?.to_string();
            Some((id, (kind, state)))
        })
        .collect()
}

#[test]
fn convlog_reindex_and_jobs_through_a_server_and_on_a_stopped_data_dir() {
    let bot = "rxcli";
    let messages = generated(97, 1_000, &[bot], 30);
    let dir = tempfile::tempdir().unwrap();
    let mut server = loaded_server(dir.path(), &messages, &[]);
    let data_dir = server.data_dir().to_path_buf();
    let data = path_str(&data_dir).to_string();
    let http = Http::of(&server);
    let queries = fixed_queries(
        &[bot],
        &words_by_rank(&messages, &[0, 30, 300]),
        ALL_FROM,
        ALL_TO,
    );
    let expected = snapshot(&http, &queries);
    let g0 = assert_one_generation(&data_dir, "before");

    // Through the running server.
    let (status, _, stderr) = run_cli(&["reindex", "--server", server.base()], None);
    assert!(status.success(), "convlog reindex --server: {stderr}");
    assert!(stderr.contains("reindexed"), "{stderr}");
    let g1 = assert_one_generation(&data_dir, "after convlog reindex --server");
    assert_ne!(g1, g0);
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after convlog reindex --server",
    );
    let (status, stdout, stderr) = run_cli(&["jobs", "--server", server.base()], None);
    assert!(status.success(), "convlog jobs --server: {stderr}");
    let listed = listed_jobs(&stdout);
    let reindexes: Vec<_> = listed.iter().filter(|(_, (k, _))| k == "reindex").collect();
    assert_eq!(
        reindexes.len(),
        1,
        "convlog jobs lists the reindex:\n{}",
        String::from_utf8_lossy(&stdout)
    );
    assert_eq!(reindexes[0].1.1, "succeeded");
    let api = http.expect("GET", "/v1/admin/jobs", 200);
    let api_ids: BTreeSet<String> = api["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    let cli_ids: BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(
        cli_ids, api_ids,
        "convlog jobs lists what GET /v1/admin/jobs does"
    );

    // Directly on the data directory: refused while the server holds it.
    let (status, _, stderr) = run_cli(&["reindex", "--direct", "--data-dir", &data], None);
    assert!(
        !status.success(),
        "convlog reindex --direct ran beside a live server"
    );
    assert!(stderr.contains("in use"), "{stderr}");

    // ... and working once it is stopped.
    assert!(server.terminate().success());
    let (status, _, stderr) = run_cli(&["reindex", "--direct", "--data-dir", &data], None);
    assert!(status.success(), "convlog reindex --direct: {stderr}");
    let g2 = assert_one_generation(&data_dir, "after convlog reindex --direct");
    assert_ne!(g2, g1);
    let (status, stdout, stderr) = run_cli(&["jobs", "--direct", "--data-dir", &data], None);
    assert!(status.success(), "convlog jobs --direct: {stderr}");
    let listed_direct = listed_jobs(&stdout);
    assert!(
        listed_direct
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
            .is_superset(&cli_ids)
            && listed_direct[reindexes[0].0].1 == "succeeded",
        "convlog jobs --direct lists the earlier jobs:\n{}",
        String::from_utf8_lossy(&stdout)
    );

    server.restart();
    let http = Http::of(&server);
    assert_one_generation(&data_dir, "restarted after convlog reindex --direct");
    assert_eq!(pointer(&data_dir), g2);
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after convlog reindex --direct",
    );
    assert_eq!(message_total(&http, bot), messages.len() as u64);
}

// ---------------------------------------------------------------------------
// 5. An upgrade from index schema 5 (issue #16): no downtime
// ---------------------------------------------------------------------------

/// Replaces the served index of `data_dir` (its server stopped) with one of
/// schema 5, built from the store the way the release before language
/// analysis built it: the same code this binary keeps such an index up to
/// date with. (The schema it writes is checked against the one that release
/// recorded by `schema_5_builds_what_its_release_wrote`.)
fn downgrade_to_schema_5(data_dir: &Path) {
    use convlog_engine::index::{IndexSchema, LiveIndex, SchemaChange};
    let store = convlog_engine::store::Store::open(&data_dir.join("convlog.db")).unwrap();
    let index = LiveIndex::open(
        data_dir,
        store.clone(),
        convlog_engine::config::Config::defaults().index,
        IndexSchema::older(5).expect("schema 5 is served"),
        SchemaChange::Rebuild,
    )
    .unwrap();
    let started = Instant::now();
    while let Err(why) = index.state().ready() {
        assert!(started.elapsed() < PATIENCE, "schema 5 build: {why}");
        std::thread::sleep(Duration::from_millis(20));
    }
    index.shutdown();
    store.shutdown();
}

/// Words of `messages` by frequency rank whose English stem no other word of
/// theirs shares: schema 5 (exact words) and the current schema (stems) find
/// the same messages for them.
fn same_in_both_schemas(messages: &[GenMessage], ranks: &[usize]) -> Vec<String> {
    let mut spellings: HashMap<String, BTreeSet<String>> = HashMap::new();
    for m in messages {
        for word in words(&m.text) {
            spellings
                .entry(crate::oracle::stem(&word))
                .or_default()
                .insert(word);
        }
    }
    let single: BTreeSet<String> = spellings
        .into_values()
        .filter(|s| s.len() == 1)
        .flatten()
        .collect();
    let ranked = words_by_rank(messages, &(0..5_000).collect::<Vec<_>>());
    let kept: Vec<&String> = ranked.iter().filter(|w| single.contains(*w)).collect();
    ranks
        .iter()
        .map(|&r| kept[r.min(kept.len() - 1)].clone())
        .collect()
}

/// Who answered a search: the schema 5 index (the pointer named it before and
/// after the answer; it moves before the new index is swapped in) or the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Old,
    New,
    Unsure,
}

#[test]
fn an_index_of_schema_5_serves_searches_and_new_messages_while_the_upgrade_reindexes() {
    let bot = "rxv5";
    let words_bot = "rxv5words";
    let root = tempfile::tempdir().unwrap();
    // ~63k messages: a rebuild of some seconds, for searches and ingest to happen during it.
    let messages = generated(91, 5_500, &[bot], 30);
    let at = |minute: usize| {
        rfc3339(end().timestamp_micros() - 86_400_000_000 + minute as i64 * 60_000_000)
    };
    let texts = [
        "my refund arrived",
        "two refunds are pending",
        "it was refunded yesterday",
        "the café is closed",
    ];
    let hand_made: Vec<GenMessage> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            crate::common::message(&format!("w{i}"), words_bot, &format!("u{i}"), text, &at(i))
        })
        .collect();
    let mut server = loaded_server(root.path(), &messages, &[]);
    assert_eq!(server.ingest(&hand_made), (texts.len() as u64, 0));
    server.wait_indexed();
    let http = Http::of(&server);
    let queries = fixed_queries(
        &[bot],
        &same_in_both_schemas(&messages, &[0, 30, 300]),
        ALL_FROM,
        ALL_TO,
    );
    let expected = snapshot(&http, &queries);
    assert!(expected.iter().all(|(total, _)| *total > 0), "{expected:?}");
    assert!(server.terminate().success());
    let data_dir = root.path().join("data");
    downgrade_to_schema_5(&data_dir);
    assert_eq!(built_schema_versions(&data_dir), BTreeSet::from([5]));
    let old_generation = assert_one_generation(&data_dir, "schema 5");

    // How each word search on the hand-made bot answers, per schema, once the
    // message "zyxmarker refunds" below is in: (q, schema 5 total, current
    // total). Prefixes and typos work in both.
    let word_checks: [(&str, u64, u64); 6] = [
        ("refund", 1, 4),
        ("refu*", 4, 4),
        ("refnud~", 1, 1),
        ("\"my refund\"", 1, 1),
        ("cafe", 0, 1),
        ("café", 1, 1),
    ];
    let word_path = |q: &str| {
        format!(
            "/v1/bots/{words_bot}/messages?from={}&to={}&q={}",
            encode(ALL_FROM),
            encode(ALL_TO),
            encode(q)
        )
    };

    // The upgrade: the new binary starts on the schema 5 index, serves it and reindexes.
    let server = Server::start_unready(root.path(), &[]);
    let http = Http::of(&server);
    let served = |answer: &dyn Fn() -> Value| -> (Served, Value) {
        let before = pointer(&data_dir);
        let value = answer();
        let after = pointer(&data_dir);
        let who = match (before == old_generation, after == old_generation) {
            (true, true) => Served::Old,
            (false, false) => Served::New,
            _ => Served::Unsure,
        };
        (who, value)
    };
    // Green from the start: the old index is caught up with the store.
    let started = Instant::now();
    loop {
        match http.call("GET", "/readyz") {
            Ok((status, body)) => {
                assert_eq!(status, 200, "/readyz during the upgrade: {body}");
                break;
            }
            Err(_) => {
                assert!(started.elapsed() < PATIENCE, "the server did not answer");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let jobs = http.expect("GET", "/v1/admin/jobs", 200);
    let job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["kind"] == "reindex")
        .unwrap_or_else(|| panic!("start-up began no reindex: {jobs}"))
        .clone();
    let id = job["id"].as_str().unwrap().to_string();

    // A message ingested during the rebuild is searchable from the old index.
    let marker = crate::common::message("w-new", words_bot, "u-new", "zyxmarker refunds", &at(30));
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&[&marker]).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let marker_path = word_path("zyxmarker");
    loop {
        let (who, value) = served(&|| http.expect("GET", &marker_path, 200));
        if value["total"] == 1 {
            assert_eq!(
                who,
                Served::Old,
                "the message ingested during the rebuild was first found by the new index: \
                 the old one did not take it (or the rebuild ended too soon to tell)"
            );
            break;
        }
        assert_eq!(
            who,
            Served::Old,
            "the rebuild ended before the old index found the new message"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Searches until the job ends: every answer as before the upgrade, /readyz green.
    let (mut old_answers, mut new_answers) = (0, 0);
    let final_job = loop {
        let job = http.job(&id);
        for (path, expected) in queries.iter().zip(&expected) {
            let (status, body) = http.call("GET", path).unwrap();
            assert_eq!(status, 200, "GET {path} during the upgrade: {body}");
            assert_eq!(
                &answer_of(&body).unwrap(),
                expected,
                "GET {path} during the upgrade"
            );
        }
        for (q, old, new) in word_checks {
            let (who, value) = served(&|| http.expect("GET", &word_path(q), 200));
            let total = value["total"].as_u64().unwrap();
            match who {
                Served::Old => {
                    assert_eq!(total, old, "q={q} from the schema 5 index: {value}");
                    old_answers += 1;
                }
                Served::New => {
                    assert_eq!(total, new, "q={q} from the new index: {value}");
                    new_answers += 1;
                }
                Served::Unsure => {}
            }
        }
        let (status, body) = http.call("GET", "/readyz").unwrap();
        assert_eq!(status, 200, "/readyz during the upgrade: {body}");
        if matches!(job["state"].as_str(), Some("succeeded" | "failed")) {
            break job;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the upgrade's reindex did not end: {job}"
        );
    };
    assert_eq!(final_job["state"], "succeeded", "{final_job}");
    eprintln!(
        "schema 5 upgrade: {old_answers} word searches answered by the old index, \
         {new_answers} by the new one, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        old_answers > 0,
        "no search was answered by the schema 5 index"
    );

    // Swapped: the current schema everywhere, the new analysis, nothing lost.
    assert_eq!(
        built_schema_versions(&data_dir),
        BTreeSet::from([convlog_engine::index::IndexSchema::load().unwrap().version as u64])
    );
    assert_ne!(
        assert_one_generation(&data_dir, "after the upgrade"),
        old_generation
    );
    for (q, _, new) in word_checks {
        assert_eq!(http.total(&word_path(q)), new, "q={q} after the upgrade");
    }
    assert_eq!(
        http.total(&marker_path),
        1,
        "the message ingested during the rebuild"
    );
    assert_same(
        &queries,
        &expected,
        &snapshot(&http, &queries),
        "after the upgrade",
    );
}
