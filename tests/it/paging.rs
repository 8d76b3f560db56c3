//! Acceptance 2: a cursor visits every match exactly once while messages keep arriving.

use crate::common::{ALL_FROM, ALL_TO, Server, encode, message, rfc3339};
use convlog_gen::GenMessage;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CONVERSATIONS: usize = 5_200;
const BOT: &str = "pager";

/// 2026-11-01T00:00:00Z in microseconds: conversation `i` starts `i` minutes later.
const START: i64 = 1_793_491_200_000_000;
const MINUTE: i64 = 60_000_000;

/// A message of conversation `i` (explicit session `s-i`), `offset` after its start.
fn conversation_message(i: usize, n: usize, offset: i64) -> GenMessage {
    let mut m = message(
        &format!("m-{i}-{n}"),
        BOT,
        &format!("user-{i}"),
        &format!("hello pagination number {i} part {n}"),
        &rfc3339(START + i as i64 * MINUTE + offset),
    );
    m.session_id = Some(format!("s-{i}"));
    m.channel = "sms".to_string();
    m
}

fn ids(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

/// Loads 5,200 two-message conversations; returns their ids.
fn load(server: &Server) -> BTreeSet<String> {
    let messages: Vec<GenMessage> = (0..CONVERSATIONS)
        .flat_map(|i| {
            [
                conversation_message(i, 0, 0),
                conversation_message(i, 1, 30_000_000),
            ]
        })
        .collect();
    let (accepted, _) = server.ingest_parallel(&messages, 1_000, 2);
    assert_eq!(accepted as usize, messages.len());
    server.wait_indexed();
    let all = server.page_all(
        &format!("/v1/bots/{BOT}/conversations?from={ALL_FROM}&to={ALL_TO}&q=pagination&limit=100"),
        "conversations",
    );
    let known: BTreeSet<String> = all
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(known.len(), CONVERSATIONS);
    known
}

/// Keeps ingesting until `stop`: messages that move not-yet-visited conversations to the top
/// of the order (a later `last_message_at`), earlier messages, and brand-new matching conversations.
fn keep_ingesting(server: &Server, stop: &AtomicBool, batches: &AtomicUsize) {
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        for k in 0..40 {
            // Oldest conversations come last in the default order: bump those first.
            let i = (round * 40 + k) % CONVERSATIONS;
            let later = 40 * 24 * 60 * MINUTE + round as i64 * MINUTE;
            batch.push(conversation_message(i, 2 + round, later));
        }
        for k in 0..5 {
            batch.push(conversation_message(CONVERSATIONS + round * 5 + k, 0, 0));
        }
        server.ingest(&batch);
        batches.fetch_add(1, Ordering::Relaxed);
        round += 1;
        std::thread::sleep(Duration::from_millis(40));
    }
}

fn page_through(server: &Server, between_pages: impl Fn(usize)) -> (u64, Vec<String>) {
    let path =
        format!("/v1/bots/{BOT}/conversations?from={ALL_FROM}&to={ALL_TO}&q=pagination&limit=100");
    let first = server.get_ok(&path);
    let total = first["total"].as_u64().expect("total");
    let mut visited = ids(&first);
    let mut cursor = first["next_cursor"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(c) = cursor {
        between_pages(pages);
        pages += 1;
        let page = server.get_ok(&format!("{path}&cursor={}", encode(&c)));
        visited.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_string);
        // A cursor that never runs out would hang the test.
        assert!(
            visited.len() as u64 <= 2 * total + 200,
            "the cursor keeps going past {total} matches"
        );
    }
    (total, visited)
}

fn assert_exactly_once(known: &BTreeSet<String>, total: u64, visited: &[String]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in visited {
        *seen.entry(id).or_default() += 1;
    }
    let repeated: Vec<&&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .take(10)
        .collect();
    let missing: Vec<&String> = known
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .take(10)
        .collect();
    assert!(
        repeated.is_empty() && missing.is_empty(),
        "{} ids repeated (e.g. {repeated:?}), {} missing (e.g. {missing:?}) of {} visited",
        seen.values().filter(|n| **n > 1).count(),
        known
            .iter()
            .filter(|id| !seen.contains_key(id.as_str()))
            .count(),
        visited.len()
    );
    assert_eq!(
        visited.len() as u64,
        total,
        "pages visited a different number of matches than the first page's total"
    );
}

#[test]
fn cursor_visits_every_match_once_while_messages_arrive() {
    // Hour partitions: the 5,200 conversations (one a minute) fill 87 of them, so
    // pages cross partition boundaries, and the messages that arrive 40 days
    // later stretch their conversations far past their own partition.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "index.partition_span=1h"]);
    let known = load(&server);
    assert!(server.metric("convlog_index_partitions") >= 80.0);
    let stop = AtomicBool::new(false);
    let batches = AtomicUsize::new(0);
    let (total, visited) = std::thread::scope(|scope| {
        let ingester = scope.spawn(|| keep_ingesting(&server, &stop, &batches));
        // Let some updates land before the first page, then keep paging slowly so that many
        // index refreshes (100 ms) happen between pages.
        while batches.load(Ordering::Relaxed) < 3 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let result = page_through(&server, |_| std::thread::sleep(Duration::from_millis(60)));
        stop.store(true, Ordering::Relaxed);
        ingester.join().expect("ingest thread");
        result
    });
    let updates = batches.load(Ordering::Relaxed);
    eprintln!(
        "{} ids visited over {} pages while {updates} batches arrived",
        visited.len(),
        visited.len().div_ceil(100)
    );
    assert!(
        updates >= 20,
        "only {updates} batches arrived while paging: the test proves little"
    );
    assert!(total >= CONVERSATIONS as u64);
    assert_exactly_once(&known, total, &visited);
}

#[test]
fn cursor_visits_every_match_once_while_other_clients_search() {
    // Every first-page search opens a point-in-time view; a paging client must not lose its
    // own view (and with it exactly-once) because other clients searched meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let known = load(&server);
    let stop = AtomicBool::new(false);
    let batches = AtomicUsize::new(0);
    let (total, visited) = std::thread::scope(|scope| {
        let ingester = scope.spawn(|| keep_ingesting(&server, &stop, &batches));
        while batches.load(Ordering::Relaxed) < 3 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // More single-page searches than `search.max_open_cursors` (256 by default), once, mid-way.
        let other_clients = |page: usize| {
            if page == 10 {
                for n in 0..300 {
                    server.get_ok(&format!(
                        "/v1/bots/{BOT}/conversations?from={ALL_FROM}&to={ALL_TO}&q=number+{n}"
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(60));
        };
        let result = page_through(&server, other_clients);
        stop.store(true, Ordering::Relaxed);
        ingester.join().expect("ingest thread");
        result
    });
    assert_exactly_once(&known, total, &visited);
}
