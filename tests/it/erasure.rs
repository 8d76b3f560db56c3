//! Issue #18, erasure: `POST /v1/admin/erase {"bot_id", "user_id"}` removes
//! one end user of one bot from the hot store, the index and the Parquet
//! archive (the objects holding their rows rewritten, the manifest updated),
//! and a crash at any step ends, after a restart, in the same state.

use crate::archive::{duckdb, duckdb_available, files_and_manifest, run_job};
use crate::archive_s3::start_s3s;
use crate::common::{ALL_FROM, ALL_TO, Server, encode, run_cli};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const BOT: &str = "shop";
/// Raw user ids, and a word only their messages hold.
const USERS: [(&str, &str); 3] = [
    ("alice@example.org", "zebracorn"),
    ("+4915112345678", "quokkafish"),
    ("visitor-93", "lemurhawk"),
];
const ERASED: usize = 0;

/// Each user: three conversations 200 days ago (archived) and two recent ones
/// (hot), four messages each, with a trace event per conversation.
fn ingest(server: &Server) {
    let now = chrono::Utc::now();
    let mut messages = Vec::new();
    let mut traces = Vec::new();
    for (u, (user, word)) in USERS.iter().enumerate() {
        for c in 0..5 {
            // A day apart: each its own conversation.
            let start = if c < 3 {
                now - chrono::Duration::days(200 + c)
            } else {
                now - chrono::Duration::days(c - 2)
            };
            for m in 0..4 {
                let at = start + chrono::Duration::seconds(m * 10);
                messages.push(json!({
                    "id": format!("u{u}-c{c}-m{m}"), "bot_id": BOT, "user_id": user,
                    "channel": "telegram", "role": if m % 2 == 0 { "user" } else { "bot" },
                    "text": format!("{word} message {m} of conversation {c}"),
                    "timestamp": at.to_rfc3339(),
                }));
            }
            traces.push(json!({
                "id": format!("t-u{u}-c{c}"), "bot_id": BOT, "user_id": user, "channel": "telegram",
                "timestamp": (start + chrono::Duration::seconds(5)).to_rfc3339(),
                "action": format!("lookup {word}"),
            }));
        }
    }
    let reply = server.post(
        "/v1/messages",
        "application/json",
        &serde_json::to_vec(&messages).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = server.post(
        "/v1/traces",
        "application/json",
        &serde_json::to_vec(&traces).unwrap(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.wait_indexed();
}

fn search(server: &Server, target: &str, q: &str) -> u64 {
    server.get_ok(&format!(
        "/v1/bots/{BOT}/{target}?q={q}&from={}&to={}",
        encode(ALL_FROM),
        encode(ALL_TO)
    ))["total"]
        .as_u64()
        .unwrap()
}

/// Hot conversations and messages per user word, as search sees them.
fn hot_counts(server: &Server) -> BTreeMap<&'static str, (u64, u64)> {
    USERS
        .iter()
        .map(|(_, word)| {
            (
                *word,
                (
                    search(server, "conversations", word),
                    search(server, "messages", word),
                ),
            )
        })
        .collect()
}

/// Archived message rows per user word, and whether every message id is unique.
fn archived_counts(archive: &Path) -> (BTreeMap<String, u64>, bool) {
    let rows = duckdb(
        archive,
        "SELECT split_part(text, ' ', 1) AS word, count(*), count(DISTINCT message_id)
           FROM read_parquet('messages/*/*/*.parquet', hive_partitioning = true)
          GROUP BY word ORDER BY word",
    );
    let mut counts = BTreeMap::new();
    let mut unique = true;
    for row in rows {
        counts.insert(
            row[0].as_str().unwrap().to_string(),
            row[1].as_u64().unwrap(),
        );
        unique &= row[1] == row[2];
    }
    (counts, unique)
}

fn erase(server: &Server, user: &str) -> Value {
    run_job(
        server,
        "/v1/admin/erase",
        json!({"bot_id": BOT, "user_id": user})
            .to_string()
            .as_bytes(),
    )
}

/// What must hold once `USERS[ERASED]` is erased, whatever happened on the
/// way; `archive` is where the archive's objects are files.
fn check_erased(server: &Server, archive: &Path, before: &BTreeMap<&str, (u64, u64)>) {
    let (erased_word, others) = (USERS[ERASED].1, &USERS[1..]);
    assert_eq!(hot_counts(server)[erased_word], (0, 0));
    for (_, word) in others {
        assert_eq!(hot_counts(server)[word], before[word], "{word}");
    }
    // The debugger's events went with the conversations.
    let db = rusqlite::Connection::open_with_flags(
        server.data_dir().join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let traces: i64 = db
        .query_row(
            "SELECT count(*) FROM traces WHERE action = ?1",
            [format!("lookup {erased_word}")],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(traces, 0);
    let unfinished: i64 = db
        .query_row(
            "SELECT count(*) FROM erasures WHERE state != 'done'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(unfinished, 0);
    // Every object on disk is one the manifest knows, with its checksum.
    let (files, manifest) = files_and_manifest(&db, archive);
    assert_eq!(files, manifest);
    if duckdb_available() {
        let (counts, unique) = archived_counts(archive);
        assert!(!counts.contains_key(erased_word), "{counts:?}");
        assert!(unique, "count(*) = count(DISTINCT message_id)");
        for (_, word) in others {
            assert_eq!(counts.get(*word), Some(&(3 * 4)), "{word}: {counts:?}");
        }
    }
}

fn server(root: &Path, extra: &[String], env: &[(&str, &str)]) -> Server {
    let mut args = vec!["--set", "ingest.capture_all_traces=true"];
    args.extend(extra.iter().map(String::as_str));
    Server::start_with_env(root, &args, env, "warn")
}

#[test]
fn an_erased_user_is_gone_from_store_index_and_archive_and_others_stay() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), &[], &[]);
    let archive = server.data_dir().join("archive");
    ingest(&server);
    run_job(&server, "/v1/admin/archive", b"");
    let before = hot_counts(&server);
    assert_eq!(
        before[USERS[ERASED].1],
        (2, 8),
        "two hot conversations: {}",
        server.get_ok(&format!(
            "/v1/bots/{BOT}/conversations?q={}&from={}&to={}",
            USERS[ERASED].1,
            encode(ALL_FROM),
            encode(ALL_TO)
        ))
    );

    // The erased user's hot conversation, reviewed and shared.
    let page = server.get_ok(&format!(
        "/v1/bots/{BOT}/conversations?q={}&from={}&to={}",
        USERS[ERASED].1,
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    let id = page["conversations"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/bots/{BOT}/conversations/{id}");
    for (sub, body) in [
        ("labels/refund", json!({})),
        ("flag", json!({"note": "angry"})),
    ] {
        let reply = server.put(
            &format!("{path}/{sub}"),
            "application/json",
            body.to_string().as_bytes(),
        );
        assert!(reply.status < 300, "{sub}: {}", reply.body);
    }
    let share = server.post(&format!("{path}/share"), "application/json", b"{}");
    assert!(share.status < 300, "{}", share.body);
    let shared = share.json()["api_url"].as_str().unwrap().to_string();
    assert_eq!(server.get(&shared).status, 200);

    let job = erase(&server, USERS[ERASED].0);
    let result = &job["result"];
    assert_eq!(
        (&result["conversations"], &result["messages"]),
        (&json!(2), &json!(8)),
        "{job}"
    );
    assert!(result["archive_objects"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(
        result["archive_rows"],
        3 * 4 + 3,
        "messages and conversations rows: {job}"
    );
    check_erased(&server, &archive, &before);
    assert_eq!(server.get(&path).status, 404);
    assert_eq!(server.get(&shared).status, 404);

    // Again: nothing left to remove, still a success.
    let again = erase(&server, USERS[ERASED].0);
    assert_eq!(
        (
            &again["result"]["conversations"],
            &again["result"]["archive_objects"]
        ),
        (&json!(0), &json!(0)),
        "{again}"
    );
    check_erased(&server, &archive, &before);
    // And from the command line through the server.
    let (status, stdout, stderr) = run_cli(
        &[
            "erase",
            "--bot",
            BOT,
            "--user",
            USERS[ERASED].0,
            "--server",
            server.base(),
            "--json",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    let again: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(again["conversations"], 0, "{again}");

    // The audit log says who erased what and when, never the raw id.
    let audit = server.get_ok("/v1/admin/audit?limit=100");
    let entries: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "erase")
        .collect();
    assert_eq!(
        entries.len(),
        3,
        "HTTP twice, the command line once: {audit}"
    );
    assert!(entries[0]["target"].as_str().unwrap().starts_with("user "));
    assert_eq!(entries[0]["bot_id"], BOT);
    assert!(!audit.to_string().contains(USERS[ERASED].0));
    assert!(
        !std::fs::read_to_string(server.log_path())
            .unwrap()
            .contains(USERS[ERASED].0)
    );

    // Bad requests name the field and change nothing.
    for (body, field) in [
        (json!({"user_id": "x"}), "bot_id"),
        (json!({"bot_id": "no spaces", "user_id": "x"}), "bot_id"),
        (json!({"bot_id": BOT}), "user_id"),
        (json!({"bot_id": BOT, "user_id": "  "}), "user_id"),
        (json!({"bot_id": BOT, "user_id": 42}), "user_id"),
        (json!({"bot_id": BOT, "user_id": "x", "why": "gdpr"}), "why"),
        (json!(["x"]), "body"),
    ] {
        let reply = server.post(
            "/v1/admin/erase",
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.body.contains(field), "{body}: {}", reply.body);
    }
    check_erased(&server, &archive, &before);

    // The command line on the data directory itself (no server holds it):
    // the second user goes, the third stays.
    let mut server = server;
    server.terminate();
    let data_dir = server.data_dir().display().to_string();
    let (status, stdout, stderr) = run_cli(
        &[
            "erase",
            "--bot",
            BOT,
            "--user",
            USERS[1].0,
            "--data-dir",
            &data_dir,
            "--direct",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    // The sentence goes to stderr (stdout is for --json).
    assert!(
        stderr.contains("erased 2 conversations (8 messages)"),
        "{stderr}"
    );
    assert!(stdout.is_empty() && !stderr.contains(USERS[1].0));
    server.restart();
    server.wait_indexed();
    let after = hot_counts(&server);
    assert_eq!(after[USERS[1].1], (0, 0));
    assert_eq!(after[USERS[2].1], before[USERS[2].1]);
    if duckdb_available() {
        let (counts, _) = archived_counts(&archive);
        assert!(!counts.contains_key(USERS[1].1), "{counts:?}");
        assert_eq!(counts.get(USERS[2].1), Some(&(3 * 4)), "{counts:?}");
    }
}

#[test]
fn a_crash_at_any_step_of_an_erasure_ends_in_the_same_state_after_a_restart() {
    for step in ["erase.after_hot", "erase.after_rewrite", "erase.after_swap"] {
        let root = tempfile::tempdir().unwrap();
        let mut server = server(root.path(), &[], &[("CONVLOG_FAILPOINTS", step)]);
        let archive = server.data_dir().join("archive");
        ingest(&server);
        run_job(&server, "/v1/admin/archive", b"");
        let before = hot_counts(&server);
        // The job may reach the failpoint before the answer is sent.
        let body = json!({"bot_id": BOT, "user_id": USERS[ERASED].0}).to_string();
        if let Ok(reply) = server.try_post("/v1/admin/erase", "application/json", body.as_bytes()) {
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
        let status = server
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{step}: the server did not reach the failpoint"));
        assert!(!status.success(), "{step}: the server should have aborted");
        server.set_env("CONVLOG_FAILPOINTS", None);
        server.restart();
        wait_for_erasures(&server, step);
        check_erased(&server, &archive, &before);
    }
}

/// After a restart: waits until no erasure job runs (start-up carries an
/// unfinished one on) and the index has caught up.
fn wait_for_erasures(server: &Server, context: &str) {
    let started = std::time::Instant::now();
    loop {
        let jobs = server.get_ok("/v1/admin/jobs");
        let running = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "erase" && j["state"] == "running");
        if !running {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{context}: {jobs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_indexed();
}

/// A real `kill -9` at moments from before the request is answered to the
/// end of the job: after a restart the erasure is either finished, or it
/// never started (no erasure recorded, every row still there; the client got
/// no answer and asks again) — never half.
#[test]
fn kill_9_at_any_moment_of_an_erasure_finishes_it_or_leaves_it_unstarted() {
    for delay_ms in [1u64, 15, 40, 100, 250] {
        let root = tempfile::tempdir().unwrap();
        let mut server = server(root.path(), &[], &[]);
        let archive = server.data_dir().join("archive");
        ingest(&server);
        run_job(&server, "/v1/admin/archive", b"");
        let before = hot_counts(&server);
        let client = server.client();
        let body = json!({"bot_id": BOT, "user_id": USERS[ERASED].0}).to_string();
        let request = std::thread::spawn(move || {
            let _ = client.try_post("/v1/admin/erase", "application/json", body.as_bytes());
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        request.join().unwrap();
        server.restart();
        let context = format!("kill -9 after {delay_ms} ms");
        wait_for_erasures(&server, &context);
        let db = rusqlite::Connection::open_with_flags(
            server.data_dir().join("convlog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let recorded: i64 = db
            .query_row("SELECT count(*) FROM erasures", [], |row| row.get(0))
            .unwrap();
        if recorded == 0 {
            assert_eq!(
                hot_counts(&server),
                before,
                "{context}: nothing may be half gone"
            );
            erase(&server, USERS[ERASED].0);
            server.wait_indexed();
        }
        check_erased(&server, &archive, &before);
    }
}

/// The same on S3 (the in-process s3s server): the bucket's objects are
/// rewritten, the manifest agrees with them.
#[test]
fn an_erasure_rewrites_the_archive_on_s3() {
    let root = tempfile::tempdir().unwrap();
    let s3 = start_s3s(&root.path().join("s3"));
    let server = server(root.path(), &s3.args("archive"), &[]);
    let archive = s3
        .files
        .clone()
        .expect("s3s keeps objects as files")
        .join("archive");
    ingest(&server);
    run_job(&server, "/v1/admin/archive", b"");
    let before = hot_counts(&server);
    let job = erase(&server, USERS[ERASED].0);
    assert_eq!(job["result"]["archive_rows"], 3 * 4 + 3, "{job}");
    check_erased(&server, &archive, &before);
}
