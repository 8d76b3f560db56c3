//! The time-partitioned index (issue #15): retention drops whole partitions
//! while searches run, and what the partitions on disk are.
//!
//! Searches over many partitions are checked against the oracle in
//! `search_oracle.rs` (its fixture uses 6-hour partitions), and paging across
//! partition boundaries while messages arrive in `paging.rs`.

use crate::common::{
    ALL_FROM, ALL_TO, Server, agent, encode, end, generated, message, remove_at_exit, rfc3339,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const SPAN: i64 = 6 * 3_600_000_000;
const DAY: i64 = 86_400_000_000;
/// `retention.batch_messages` of the retention test.
const BATCH: i64 = 600;

/// The partition directories of the generation being served.
fn partition_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let generation = std::fs::read_to_string(data_dir.join("INDEX")).expect("INDEX pointer");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir.join(generation.trim()))
        .expect("generation directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('p'))
        })
        .collect();
    dirs.sort();
    dirs
}

/// The store, read-only, beside the running server.
fn open_store(data_dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        data_dir.join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// The partitions the store's conversations are placed in.
fn placed_partitions(data_dir: &Path) -> BTreeSet<i64> {
    let conn = open_store(data_dir);
    let mut statement = conn.prepare("SELECT placed_at FROM conversations").unwrap();
    statement
        .query_map([], |row| row.get::<_, i64>(0))
        .unwrap()
        .map(|placed| placed.unwrap().div_euclid(SPAN) * SPAN)
        .collect()
}

/// The rows of a two-integer query on the store.
fn store_query(data_dir: &Path, sql: &str) -> Vec<(i64, i64)> {
    let conn = open_store(data_dir);
    let mut statement = conn.prepare(sql).unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn total(server: &Server, path: &str) -> u64 {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()["total"].as_u64().expect("total")
}

#[test]
fn retention_drops_whole_partitions_while_searches_run() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let messages = generated(1515, 900, &["shop"], 20);
    // 170 days after the data ends a 180-day retention has its cutoff 10 days before the end.
    let now = (end() + chrono::Duration::days(170)).to_rfc3339();
    let server = Server::start_with_env(
        root.path(),
        &[
            "--set",
            "index.partition_span=6h",
            "--set",
            &format!("retention.batch_messages={BATCH}"),
        ],
        &[("CONVLOG_CLOCK_AT", &now)],
        "warn",
    );
    let (accepted, _) = server.ingest_parallel(&messages, 1_000, 2);
    assert_eq!(accepted as usize, messages.len());
    server.wait_settled();
    let data_dir = server.data_dir().to_path_buf();
    // Runs are smaller than what is due, and larger than any one partition.
    let largest = store_query(
        &data_dir,
        &format!("SELECT placed_at / {SPAN}, SUM(message_count) FROM conversations GROUP BY 1"),
    )
    .into_iter()
    .map(|(_, messages)| messages)
    .max()
    .unwrap();
    assert!(largest < BATCH, "a partition holds {largest} messages");

    // Every partition a conversation is placed in exists on disk, and only those.
    let before = partition_dirs(&data_dir);
    let placed = placed_partitions(&data_dir);
    assert_eq!(before.len(), placed.len(), "{before:?}");
    assert!(placed.len() >= 60, "only {} partitions", placed.len());
    assert_eq!(
        server.metric("convlog_index_partitions") as usize,
        placed.len()
    );

    // Conversations with a message after the cutoff stay; searching only after it
    // must answer the same all along, and every search must answer.
    let cutoff = crate::common::micros(&now) - 180 * DAY;
    let kept_path = format!(
        "/v1/bots/shop/conversations?from={}&to={ALL_TO}",
        crate::common::encode(&rfc3339(cutoff + DAY))
    );
    let all_path = format!("/v1/bots/shop/conversations?from={ALL_FROM}&to={ALL_TO}&limit=5");
    let text_path =
        format!("/v1/bots/shop/conversations?from={ALL_FROM}&to={ALL_TO}&q=order&limit=5");
    let kept = total(&server, &kept_path);
    let all_before = total(&server, &all_path);
    assert!(
        kept > 50 && kept + 100 < all_before,
        "{kept} of {all_before}"
    );

    let done = AtomicBool::new(false);
    let searches = AtomicUsize::new(0);
    let job = std::thread::scope(|scope| {
        let searchers: Vec<_> = (0..2)
            .map(|n| {
                let (server, done, searches) = (&server, &done, &searches);
                let (kept_path, all_path, text_path) = (&kept_path, &all_path, &text_path);
                scope.spawn(move || {
                    let mut last_all = u64::MAX;
                    while !done.load(Ordering::Relaxed) {
                        assert_eq!(total(server, kept_path), kept, "kept range changed");
                        let all = total(server, if n == 0 { all_path } else { text_path });
                        if n == 0 {
                            assert!(all <= last_all && all >= kept, "{all} after {last_all}");
                            last_all = all;
                        }
                        searches.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let job = crate::archive::run_job(&server, "/v1/admin/archive", b"");
        server.wait_settled();
        std::thread::sleep(Duration::from_millis(200));
        done.store(true, Ordering::Relaxed);
        for searcher in searchers {
            searcher
                .join()
                .expect("searches failed while partitions were dropped");
        }
        job
    });
    assert!(
        job["result"]["conversations"].as_u64().unwrap_or(0) > 100,
        "{job}"
    );
    assert!(job["result"]["runs"].as_u64().unwrap_or(0) >= 4, "{job}");
    assert!(searches.load(Ordering::Relaxed) >= 10);

    // Each run took whole partitions: every archived partition's conversations
    // left the store in one run (a run's deletions are consecutive changes,
    // ending at its `delete_change`).
    let run_ends: Vec<i64> = store_query(
        &data_dir,
        "SELECT id, delete_change FROM archive_runs WHERE state = 'done' ORDER BY delete_change",
    )
    .into_iter()
    .map(|(_, end)| end)
    .collect();
    let mut runs_of: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
    for (change, placed_at) in store_query(
        &data_dir,
        "SELECT change_seq, placed_at FROM tombstones WHERE placed_at IS NOT NULL",
    ) {
        let run = run_ends.partition_point(|&end| end < change);
        assert!(run < run_ends.len(), "tombstone {change} after every run");
        runs_of
            .entry(placed_at.div_euclid(SPAN))
            .or_default()
            .insert(run);
    }
    assert!(runs_of.len() >= 20, "{} partitions archived", runs_of.len());
    let split: Vec<_> = runs_of.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(split.is_empty(), "partitions split across runs: {split:?}");

    // The archived days' partitions are gone from disk and from searches; the rest answer as before.
    let after = partition_dirs(&data_dir);
    let placed_after = placed_partitions(&data_dir);
    assert_eq!(after.len(), placed_after.len(), "{after:?}");
    assert!(
        after.len() + 20 <= before.len(),
        "{} partitions before, {} after",
        before.len(),
        after.len()
    );
    assert_eq!(
        server.metric("convlog_index_partitions") as usize,
        after.len()
    );
    assert_eq!(total(&server, &kept_path), kept);
    let count = |sql: &str| -> u64 {
        open_store(&data_dir)
            .query_row(sql, [cutoff - DAY], |row| row.get::<_, i64>(0))
            .unwrap() as u64
    };
    assert_eq!(
        total(&server, &all_path),
        count("SELECT COUNT(*) FROM conversations WHERE ?1 = ?1")
    );
    // A conversation has a message before a time exactly when its first message is.
    let old = format!(
        "/v1/bots/shop/conversations?from={ALL_FROM}&to={}",
        crate::common::encode(&rfc3339(cutoff - DAY))
    );
    assert_eq!(
        total(&server, &old),
        count("SELECT COUNT(*) FROM conversations WHERE started_at < ?1")
    );
}

#[test]
fn review_changes_rewrite_the_conversation_document_not_its_messages() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    // In order, one batch after another: no late message merges two sessions.
    let messages = generated(2027, 300, &["shop"], 3);
    for batch in messages.chunks(500) {
        server.ingest(batch);
    }
    server.wait_settled();
    let deleted_messages = r#"convlog_index_deleted_documents{kind="message"}"#;
    let live_messages = r#"convlog_index_documents{kind="message"}"#;
    // The tagging job already changed conversations (their tags) and no message document went.
    assert_eq!(server.metric(deleted_messages), 0.0);
    assert_eq!(server.metric(live_messages) as usize, messages.len());

    let page = server.get_ok(&format!(
        "/v1/bots/shop/conversations?from={ALL_FROM}&to={ALL_TO}&limit=40"
    ));
    let ids: Vec<String> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 40);
    let put = |path: &str| -> Value {
        let mut response = agent()
            .put(format!("{}{path}", server.base()))
            .send_empty()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "PUT {path}");
        response.body_mut().read_json().unwrap()
    };
    let mut labelled_messages = 0;
    for (n, id) in ids.iter().enumerate() {
        let path = format!("/v1/bots/shop/conversations/{id}");
        if n % 2 == 0 {
            labelled_messages += put(&format!("{path}/labels/Refund"))["message_count"]
                .as_u64()
                .unwrap();
        } else {
            put(&format!("{path}/flag"));
        }
    }
    server.wait_settled();
    assert_eq!(
        server.metric(deleted_messages),
        0.0,
        "labels and flags rewrote message documents"
    );
    assert_eq!(server.metric(live_messages) as usize, messages.len());

    // Message search still filters by them, through the conversations.
    let labelled = server.get_ok(&format!(
        "/v1/bots/shop/messages?from={ALL_FROM}&to={ALL_TO}&label=refund&limit=1"
    ));
    assert_eq!(labelled["total"].as_u64(), Some(labelled_messages));
    let flagged = server.get_ok(&format!(
        "/v1/bots/shop/messages?from={ALL_FROM}&to={ALL_TO}&flagged=true&label=refund"
    ));
    assert_eq!(flagged["total"].as_u64(), Some(0));
}

/// Tokens indexed in the text fields of one kind of document, over every partition.
fn text_tokens(data_dir: &Path, kind: &str) -> u64 {
    let mut tokens = 0;
    for dir in partition_dirs(data_dir) {
        let index = tantivy::Index::open_in_dir(dir.join(kind)).expect("partition index");
        let searcher = index.reader().expect("reader").searcher();
        let schema = index.schema();
        for (field, entry) in schema.fields() {
            if matches!(entry.field_type(), tantivy::schema::FieldType::Str(o) if o.get_indexing_options().is_some_and(|i| i.tokenizer() != "raw"))
            {
                for segment in searcher.segment_readers() {
                    tokens += segment.inverted_index(field).unwrap().total_num_tokens();
                }
            }
        }
    }
    tokens
}

#[test]
fn a_conversation_text_is_indexed_once_in_its_message_documents() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    // One conversation growing a message at a time, each indexed before the next arrives:
    // every message re-creates the conversation document.
    let base = end().timestamp_micros() - DAY;
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    for (n, word) in words.iter().enumerate() {
        let text = format!("{word} says the user");
        let at = rfc3339(base + n as i64 * 60_000_000);
        server.ingest(&[message(&format!("m{n}"), "once", "u1", &text, &at)]);
        server.wait_indexed();
    }
    let data_dir = server.data_dir();
    assert!(text_tokens(data_dir, "messages") >= 4 * words.len() as u64);
    assert_eq!(
        text_tokens(data_dir, "conversations"),
        0,
        "conversation documents hold text: each new message re-indexed the text before it"
    );

    // Conversation search still reads the conversation as a whole: words of different
    // messages together, a phrase within one message only, negation over all of them.
    let total = |q: &str| {
        server.get_ok(&format!(
            "/v1/bots/once/conversations?from={ALL_FROM}&to={ALL_TO}&q={}",
            encode(q)
        ))["total"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(total("alpha foxtrot"), 1);
    assert_eq!(total("\"alpha says\""), 1);
    assert_eq!(total("\"user bravo\""), 0, "a phrase across two messages");
    assert_eq!(total("alpha -echo"), 0);
    assert_eq!(total("golf OR delta"), 1);
    assert_eq!(total("-golf"), 1);
    assert_eq!(total("bot:alpha"), 0);
}
