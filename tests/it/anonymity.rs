//! Acceptance 5: the raw `user_id` is stored nowhere: not in the data directory,
//! not in the log, not in answers.

use crate::common::{ALL_FROM, ALL_TO, Server, encode, files_under, generated, read_bytes};
use crate::oracle::words;
use convlog_gen::GenMessage;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The distinct user ids of `messages` that no text or metadata repeats (those may legitimately be stored).
fn checkable_user_ids(messages: &[GenMessage]) -> Vec<String> {
    let ids: BTreeSet<&str> = messages.iter().map(|m| m.user_id.as_str()).collect();
    let content: String = messages
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m.text,
                m.metadata
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    ids.into_iter()
        .filter(|id| !content.contains(id))
        .map(str::to_string)
        .collect()
}

/// Which of `ids` occur in `bytes`. A table of two-byte prefixes skips almost every
/// position cheaply (the tests run unoptimised).
fn occurring<'a>(bytes: &[u8], ids: &'a [String]) -> BTreeSet<&'a str> {
    let mut prefixes = vec![false; 1 << 16];
    let mut lengths = BTreeSet::new();
    let set: HashSet<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
    for id in ids {
        let b = id.as_bytes();
        assert!(b.len() >= 2, "user id {id:?} is too short to search for");
        prefixes[usize::from(b[0]) << 8 | usize::from(b[1])] = true;
        lengths.insert(b.len());
    }
    let mut found: BTreeSet<&'a str> = BTreeSet::new();
    for i in 0..bytes.len().saturating_sub(1) {
        if !prefixes[usize::from(bytes[i]) << 8 | usize::from(bytes[i + 1])] {
            continue;
        }
        for &len in &lengths {
            if let Some(window) = bytes.get(i..i + len)
                && set.contains(window)
            {
                let id = ids
                    .iter()
                    .find(|id| id.as_bytes() == window)
                    .expect("in set");
                found.insert(id);
            }
        }
    }
    found
}

/// Every file of `dir` that holds one of `ids`, with the ids found.
fn leaks(dir: &Path, ids: &[String]) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter_map(|file| {
            let found = occurring(&read_bytes(&file), ids);
            (!found.is_empty()).then(|| {
                format!(
                    "{}: {:?}",
                    file.display(),
                    found.iter().take(3).collect::<Vec<_>>()
                )
            })
        })
        .collect()
}

#[test]
fn raw_user_ids_are_stored_nowhere_in_the_data_directory_the_log_or_answers() {
    let messages = generated(66, 400, &["anon1", "anon2"], 30);
    let ids = checkable_user_ids(&messages);
    let distinct = messages
        .iter()
        .map(|m| &m.user_id)
        .collect::<BTreeSet<_>>()
        .len();
    assert!(
        ids.len() * 10 >= distinct * 9,
        "only {} of {distinct} user ids can be checked",
        ids.len()
    );

    let dir = tempfile::tempdir().unwrap();
    // Debug logging and captured traces: the widest paths a user id could take.
    let mut server = Server::start_with_log_level(
        dir.path(),
        &["--set", "ingest.capture_all_traces=true"],
        "debug",
    );
    let (accepted, _) = server.ingest_parallel(&messages, 1_000, 2);
    assert_eq!(accepted as usize, messages.len());
    let traces: Vec<_> = messages
        .iter()
        .step_by(10)
        .map(|m| {
            json!({"bot_id": m.bot_id, "user_id": m.user_id, "channel": m.channel,
                   "timestamp": m.timestamp, "message_id": m.id, "action": "reply", "duration_ms": 12})
        })
        .collect();
    let reply = server.post(
        "/v1/traces",
        "application/json",
        &serde_json::to_vec(&traces).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.wait_indexed();

    // Answers show pseudonyms, never the raw id, and a raw id is not a searchable word.
    let mut answers = String::new();
    for bot in ["anon1", "anon2"] {
        for c in server.page_all(
            &format!("/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=100"),
            "conversations",
        ) {
            answers.push_str(&c.to_string());
        }
        let first = server.get_ok(&format!(
            "/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=5"
        ));
        for c in first["conversations"].as_array().unwrap() {
            answers.push_str(
                &server
                    .get(&format!(
                        "/v1/bots/{bot}/conversations/{}",
                        c["id"].as_str().unwrap()
                    ))
                    .body,
            );
        }
    }
    let shown = occurring(answers.as_bytes(), &ids);
    assert!(shown.is_empty(), "answers show raw user ids: {shown:?}");
    for id in ids.iter().step_by(ids.len().div_ceil(40)) {
        let longest = words(id).into_iter().max_by_key(|w| w.len()).unwrap();
        let found = server.get_ok(&format!(
            "/v1/bots/anon1/conversations?from={ALL_FROM}&to={ALL_TO}&q={}",
            encode(&format!("\"{longest}\""))
        ));
        let in_texts = messages
            .iter()
            .any(|m| m.bot_id == "anon1" && words(&m.text).contains(&longest));
        if !in_texts {
            assert_eq!(found["total"], 0, "a word of user id {id:?} is searchable");
        }
    }

    let running = leaks(server.data_dir(), &ids);
    let status = server.terminate();
    assert!(status.success());
    let stopped = leaks(server.data_dir(), &ids);
    let log = occurring(&read_bytes(server.log_path()), &ids);
    assert!(
        running.is_empty(),
        "raw user ids in the data directory while running:\n{}",
        running.join("\n")
    );
    assert!(
        stopped.is_empty(),
        "raw user ids in the data directory after shutdown:\n{}",
        stopped.join("\n")
    );
    assert!(log.is_empty(), "raw user ids in the debug log: {log:?}");
    let files = files_under(server.data_dir());
    assert!(
        files.iter().any(|f| f.ends_with("convlog.db")),
        "the scan saw the store: {files:?}"
    );
}
