//! Retention and the Parquet archive (issue #5), through HTTP against the real
//! binary: archives on the local filesystem and on a real S3 server (s3s-fs in
//! this process; Garage too when its binary is installed), read back with the
//! parquet crate and with DuckDB; the retention boundary under a stopped clock;
//! a crash after every step of the state machine; restore round trips.

use crate::common::{
    ALL_FROM, ALL_TO, Server, agent, encode, end, generated, message, remove_at_exit,
};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use convlog_gen::GenMessage;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `CONVLOG_CLOCK_AT` for an instant `days` (may be fractional) after the generated data ends.
fn clock_after_end(seconds: i64) -> String {
    (end() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

const DAY: i64 = 86_400;

/// Starts `path` as a job (202) and waits for it to succeed; returns the finished job.
pub fn run_job(server: &Server, path: &str, body: &[u8]) -> Value {
    let job = finish_job(server, path, body);
    if job["state"] == "failed" {
        panic!("job {path} failed: {job}\n{}", server.log_tail());
    }
    job
}

/// Starts `path` as a job (202) and waits for it to end, succeeded or failed.
pub fn finish_job(server: &Server, path: &str, body: &[u8]) -> Value {
    let reply = server.post(path, "application/json", body);
    assert_eq!(reply.status, 202, "POST {path}: {}", reply.body);
    let id = reply.json()["id"].as_str().expect("job id").to_string();
    let started = Instant::now();
    loop {
        let job = server.get_ok(&format!("/v1/admin/jobs/{id}"));
        if matches!(job["state"].as_str(), Some("succeeded" | "failed")) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job {path} still running: {job}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn archive(server: &Server) -> Value {
    run_job(server, "/v1/admin/archive", b"")
}

/// A message row as read back from the archive.
#[derive(Debug, Clone, PartialEq)]
struct ArchivedMessage {
    bot_id: String,
    date: String,
    message_id: String,
    conversation_id: String,
    channel: String,
    ts: i64,
    labels: Vec<String>,
    tags: Vec<String>,
}

/// Every `*.parquet` object under `dir/messages`, with its partition values.
fn archived_messages(dir: &Path) -> Vec<ArchivedMessage> {
    let mut rows = Vec::new();
    for file in parquet_files(&dir.join("messages")) {
        let partition = |name: &str| -> String {
            file.components()
                .filter_map(|c| c.as_os_str().to_str())
                .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("{} has no {name}= partition", file.display()))
        };
        let (bot_id, date) = (partition("bot_id"), partition("date"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let text = |name: &str, row: usize| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_string::<i32>()
                    .value(row)
                    .to_string()
            };
            let list = |name: &str, row: usize| -> Vec<String> {
                let values = batch
                    .column_by_name(name)
                    .unwrap()
                    .as_list::<i32>()
                    .value(row);
                let values = values.as_string::<i32>();
                (0..values.len())
                    .map(|i| values.value(i).to_string())
                    .collect()
            };
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            for row in 0..batch.num_rows() {
                rows.push(ArchivedMessage {
                    bot_id: bot_id.clone(),
                    date: date.clone(),
                    message_id: text("message_id", row),
                    conversation_id: text("conversation_id", row),
                    channel: text("channel", row),
                    ts: ts.value(row),
                    labels: list("labels", row),
                    tags: list("tags", row),
                });
            }
        }
    }
    rows
}

/// Archive objects as (key, SHA-256).
type Objects = BTreeSet<(String, String)>;

/// The Parquet objects under `archive_dir` and the manifest's (in the store
/// `conn` opens): equal when every object on disk is the manifest's, with its
/// checksum.
pub fn files_and_manifest(conn: &rusqlite::Connection, archive_dir: &Path) -> (Objects, Objects) {
    let manifest = conn
        .prepare("SELECT key, sha256 FROM archive_objects")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let files = parquet_files(archive_dir)
        .into_iter()
        .map(|f| {
            let key = f.strip_prefix(archive_dir).unwrap().display().to_string();
            let bytes = std::fs::read(&f).unwrap();
            (key, convlog_engine::archive::target::sha256_hex(&bytes))
        })
        .collect();
    (files, manifest)
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = crate::common::files_under(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// (bot, message id) of every message in the hot store.
pub fn hot_messages(data_dir: &Path) -> BTreeSet<(String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = conn.prepare("SELECT bot_id, msg_id FROM messages").unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Messages the store holds in conversations whose last message is before `cutoff` (micros).
fn due_messages(data_dir: &Path, cutoff: i64) -> u64 {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(
        "SELECT COALESCE(SUM(message_count), 0) FROM conversations WHERE last_message_at < ?1",
        [cutoff],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as u64
}

fn micros_of(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_micros()
}

fn ingest_all(server: &Server, messages: &[GenMessage]) {
    for chunk in messages.chunks(1000) {
        server.ingest(chunk);
    }
}

/// Checks the archive's central promise: every ingested message is in exactly
/// one of hot store and archive, and no message is archived twice.
fn assert_exactly_once(messages: &[GenMessage], data_dir: &Path, archive_dir: &Path) -> usize {
    let hot = hot_messages(data_dir);
    let archived = archived_messages(archive_dir);
    let mut seen = HashSet::new();
    for row in &archived {
        assert!(
            seen.insert((row.bot_id.clone(), row.message_id.clone())),
            "message {} of {} archived twice",
            row.message_id,
            row.bot_id
        );
        assert!(
            !hot.contains(&(row.bot_id.clone(), row.message_id.clone())),
            "message {} is both hot and archived",
            row.message_id
        );
    }
    for m in messages {
        let key = (m.bot_id.clone(), m.id.clone());
        assert!(
            hot.contains(&key) || seen.contains(&key),
            "message {} of {} is neither hot nor archived",
            m.id,
            m.bot_id
        );
    }
    assert_eq!(hot.len() + archived.len(), messages.len());
    archived.len()
}

/// Python with DuckDB, when available; `CONVLOG_REQUIRE_DUCKDB=1` (set by CI) makes its absence fail.
pub fn duckdb_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CONVLOG_REQUIRE_DUCKDB").is_err(),
            "CONVLOG_REQUIRE_DUCKDB is set but `python3 -c 'import duckdb'` fails"
        );
        eprintln!("skipping the DuckDB checks: the Python package duckdb is not installed");
    }
    ok
}

/// Runs SQL in DuckDB with `cwd` as working directory; rows as JSON arrays.
pub fn duckdb(cwd: &Path, sql: &str) -> Vec<Vec<Value>> {
    let script = "import duckdb, json, sys\n\
                  rows = duckdb.sql(sys.argv[1]).fetchall()\n\
                  print(json.dumps([[v if isinstance(v, (int, float, str)) or v is None else str(v) for v in r] for r in rows]))";
    let output = std::process::Command::new("python3")
        .args(["-c", script, sql])
        .current_dir(cwd)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("DuckDB rows as JSON")
}

/// The SQL blocks of `archive/README.md` marked `duckdb`.
fn readme_duckdb_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/archive/README.md"))
        .expect("archive/README.md");
    let mut queries = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim()) {
            (None, "```sql duckdb") => current = Some(String::new()),
            (Some(sql), "```") => {
                queries.push(std::mem::take(sql));
                current = None;
            }
            (Some(sql), _) => {
                sql.push_str(line);
                sql.push('\n');
            }
            _ => {}
        }
    }
    queries
}

#[test]
fn archive_moves_expired_conversations_to_parquet_that_duckdb_reads() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let messages = generated(51, 700, &["shop", "help"], 30);
    // 165 days after the data ends, a 180-day retention has the cutoff 15 days before its end.
    let now = clock_after_end(165 * DAY);
    let server = Server::start_with_env(
        root.path(),
        &["--set", "retention.batch_messages=1500"],
        &[("CONVLOG_CLOCK_AT", &now)],
        "warn",
    );
    ingest_all(&server, &messages);
    server.wait_settled();
    let data_dir = server.data_dir().to_path_buf();
    let cutoff = micros_of(&now) - 180 * DAY * 1_000_000;
    let due = due_messages(&data_dir, cutoff);
    assert!(
        due > 1000 && (due as usize) < messages.len() - 1000,
        "the cutoff should split the data: {due} of {}",
        messages.len()
    );

    // A label on a conversation about to be archived travels with its rows.
    let oldest = {
        let conn = rusqlite::Connection::open_with_flags(
            data_dir.join("convlog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let id: i64 = conn
            .query_row(
                "SELECT id FROM conversations WHERE bot_id = 'shop' AND last_message_at < ?1
                  ORDER BY id LIMIT 1",
                [cutoff],
                |row| row.get(0),
            )
            .unwrap();
        format!("c_{id:x}")
    };
    let put = agent()
        .put(format!(
            "{}/v1/bots/shop/conversations/{oldest}/labels/Refund",
            server.base()
        ))
        .send_empty()
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    server.wait_settled();

    // The dry run says what a pass would do, and does nothing.
    let dry = server.post("/v1/admin/archive?dry_run=true", "application/json", b"");
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json()["plan"]["messages"].as_u64(), Some(due));
    assert!(parquet_files(&data_dir.join("archive")).is_empty());

    let job = archive(&server);
    assert_eq!(job["processed"].as_u64(), Some(due), "{job}");
    server.wait_indexed();

    let archive_dir = data_dir.join("archive");
    let archived = assert_exactly_once(&messages, &data_dir, &archive_dir);
    assert_eq!(archived as u64, due);
    assert!(
        parquet_files(&archive_dir.join("conversations")).len() >= 2,
        "conversations tables for both bots"
    );
    let rows = archived_messages(&archive_dir);
    let labelled: Vec<&ArchivedMessage> = rows
        .iter()
        .filter(|r| r.conversation_id == oldest)
        .collect();
    assert!(!labelled.is_empty(), "{oldest} was archived");
    assert!(labelled.iter().all(|r| r.labels == ["Refund"]));
    assert!(rows.iter().any(|r| !r.tags.is_empty()), "tags are archived");
    for row in &rows {
        assert!(
            row.ts < cutoff,
            "{} archived though newer than the cutoff",
            row.message_id
        );
        let date = chrono::DateTime::from_timestamp_micros(row.ts)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(row.date, date, "partition date is the message's UTC date");
    }

    // Archived conversations left search and reads; the rest is still there.
    let reply = server.get(&format!("/v1/bots/shop/conversations/{oldest}"));
    assert_eq!(reply.status, 404, "{}", reply.body);
    let hot = hot_messages(&data_dir);
    let hot_shop_conversations = {
        let conn = rusqlite::Connection::open_with_flags(
            data_dir.join("convlog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM conversations WHERE bot_id = 'shop'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap() as u64
    };
    let search = server.get_ok(&format!(
        "/v1/bots/shop/conversations?from={}&to={}&limit=1",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    assert_eq!(search["total"].as_u64(), Some(hot_shop_conversations));
    assert!(!hot.is_empty());

    // The partitions endpoint agrees with the files.
    let partitions = server.get_ok("/v1/admin/archive/partitions");
    let listed: BTreeMap<(String, String), u64> = partitions["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    p["bot_id"].as_str().unwrap().to_string(),
                    p["date"].as_str().unwrap().to_string(),
                ),
                p["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &rows {
        *counted
            .entry((row.bot_id.clone(), row.date.clone()))
            .or_default() += 1;
    }
    assert_eq!(listed, counted);

    // A second pass finds nothing due and writes nothing.
    let objects_before = parquet_files(&archive_dir);
    let job = archive(&server);
    assert_eq!(job["processed"].as_u64(), Some(0));
    assert_eq!(parquet_files(&archive_dir), objects_before);

    // No raw user id in any archive file.
    let raw_ids: BTreeSet<&str> = messages.iter().map(|m| m.user_id.as_str()).collect();
    for file in &objects_before {
        let bytes = std::fs::read(file).unwrap();
        for id in &raw_ids {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "raw user id {id} in {}",
                file.display()
            );
        }
    }

    if duckdb_available() {
        // Read with hive partitioning: counts, distinct ids and per-day per-channel counts.
        let expected_total = rows.len() as i64;
        let got = duckdb(
            &archive_dir,
            "SELECT count(*), count(DISTINCT bot_id || '/' || message_id)
               FROM read_parquet('messages/*/*/*.parquet', hive_partitioning = true)",
        );
        assert_eq!(
            got,
            vec![vec![
                Value::from(expected_total),
                Value::from(expected_total)
            ]]
        );
        let mut per_day: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for row in &rows {
            *per_day
                .entry((row.bot_id.clone(), row.date.clone(), row.channel.clone()))
                .or_default() += 1;
        }
        // What was ingested, by message date and channel, for the archived ids.
        let archived_ids: HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.bot_id.as_str(), r.message_id.as_str()))
            .collect();
        let mut ingested: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for m in &messages {
            if archived_ids.contains(&(m.bot_id.as_str(), m.id.as_str())) {
                let date = m.timestamp[..10].to_string();
                *ingested
                    .entry((m.bot_id.clone(), date, m.channel.clone()))
                    .or_default() += 1;
            }
        }
        let got: BTreeMap<(String, String, String), i64> = duckdb(
            &archive_dir,
            "SELECT bot_id, CAST(date AS VARCHAR), channel, count(*)
               FROM read_parquet('messages/*/*/*.parquet', hive_partitioning = true)
              GROUP BY ALL",
        )
        .into_iter()
        .map(|r| {
            (
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                    r[2].as_str().unwrap().to_string(),
                ),
                r[3].as_i64().unwrap(),
            )
        })
        .collect();
        assert_eq!(got, per_day);
        assert_eq!(got, ingested);
        // The example queries of the archive contract run as written (from the data directory).
        let queries = readme_duckdb_queries();
        assert!(queries.len() >= 3, "archive/README.md has DuckDB examples");
        for sql in queries {
            let result = duckdb(&data_dir, &sql);
            assert!(!result.is_empty(), "no rows from the README query {sql}");
        }
    }
}

#[test]
fn retention_boundary_is_exact_to_the_second() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let now = "2026-11-20T12:00:00Z";
    let mut server = Server::start_with_env(
        root.path(),
        &["--set", "retention.bots.short=30d"],
        &[("CONVLOG_CLOCK_AT", now)],
        "warn",
    );
    let at = |offset_seconds: i64| {
        (chrono::DateTime::parse_from_rfc3339(now).unwrap()
            + chrono::Duration::seconds(offset_seconds))
        .to_rfc3339()
    };
    let boundary = -180 * DAY;
    let batch = vec![
        message(
            "inside",
            "edge",
            "u-inside",
            "one second inside",
            &at(boundary + 1),
        ),
        message(
            "outside",
            "edge",
            "u-outside",
            "one second past",
            &at(boundary - 1),
        ),
        // A per-bot period: 30 days for `short`.
        message("short-in", "short", "u-1", "hot", &at(-30 * DAY + 1)),
        message("short-out", "short", "u-2", "archived", &at(-30 * DAY - 1)),
    ];
    server.ingest(&batch);
    server.wait_settled();
    archive(&server);
    let hot = hot_messages(server.data_dir());
    let archived: BTreeSet<String> = archived_messages(&server.data_dir().join("archive"))
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    assert_eq!(
        hot.iter()
            .map(|(_, id)| id.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["inside", "short-in"])
    );
    assert_eq!(
        archived,
        BTreeSet::from(["outside".to_string(), "short-out".to_string()])
    );

    // Two seconds later the inside message is past the boundary too.
    server.kill9();
    server.set_env("CONVLOG_CLOCK_AT", Some(&at(2)));
    server.restart();
    archive(&server);
    assert!(
        hot_messages(server.data_dir())
            .iter()
            .all(|(bot, _)| bot == "short")
    );
    let archived = archived_messages(&server.data_dir().join("archive"));
    assert!(archived.iter().any(|r| r.message_id == "inside"));
}

#[test]
fn keep_flagged_holds_flagged_conversations_hot() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let now = "2026-11-20T12:00:00Z";
    let server = Server::start_with_env(
        root.path(),
        &["--set", "retention.keep_flagged=true"],
        &[("CONVLOG_CLOCK_AT", now)],
        "warn",
    );
    server.ingest(&[
        message("a", "b1", "u-a", "old and flagged", "2026-01-01T00:00:00Z"),
        message("b", "b1", "u-b", "old", "2026-01-01T00:00:00Z"),
    ]);
    server.wait_settled();
    let list = server.get_ok(&format!(
        "/v1/bots/b1/conversations?from={}&to={}&q=flagged",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    let id = list["conversations"][0]["id"].as_str().unwrap().to_string();
    let put = agent()
        .put(format!(
            "{}/v1/bots/b1/conversations/{id}/flag",
            server.base()
        ))
        .send_empty()
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    server.wait_settled();
    // The command line, through the running server: the dry run names what is due.
    let (status, stdout, stderr) = crate::common::run_cli(
        &["archive", "--dry-run", "--json", "--server", server.base()],
        None,
    );
    assert!(status.success(), "{stderr}");
    let plan: Value = serde_json::from_slice(&stdout).expect("the plan as JSON");
    assert_eq!(plan["messages"], 1, "{plan}");
    assert_eq!(plan["bots"]["b1"], serde_json::json!([1, 1]), "{plan}");
    let (status, _, stderr) = crate::common::run_cli(&["archive", "--server", server.base()], None);
    assert!(status.success(), "{stderr}");
    let hot: Vec<String> = hot_messages(server.data_dir())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(hot, ["a"]);
}

#[test]
fn restore_input_errors_name_the_field_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start(root.path(), &[]);
    for (body, field) in [
        (
            r#"{"bot_id":"b","from":"yesterday","to":"2026-01-01T00:00:00Z"}"#,
            "from",
        ),
        (
            r#"{"bot_id":"b","from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}"#,
            "to",
        ),
        (
            r#"{"bot_id":"no spaces","from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}"#,
            "bot_id",
        ),
        (r#"{"bot_id":"b","from":"2026-01-01T00:00:00Z"}"#, "body"),
        (
            r#"{"bot_id":"b","from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z","x":1}"#,
            "unknown field `x`",
        ),
        (
            r#"["b","2026-01-01T00:00:00Z","2026-01-02T00:00:00Z"]"#,
            "body",
        ),
    ] {
        let reply = server.post("/v1/admin/restore", "application/json", body.as_bytes());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.body.contains(field), "{body}: {}", reply.body);
    }
    let reply = server.post("/v1/admin/archive?dry_run=maybe", "application/json", b"");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let jobs = server.get_ok("/v1/admin/jobs");
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|job| job["kind"] != "restore" && job["kind"] != "archive"),
        "{jobs}"
    );
}

/// The steps of a run, each with a failpoint right after it.
pub const STEPS: [&str; 6] = [
    "archive.after_plan",
    "archive.after_write",
    "archive.after_verify",
    "archive.after_manifest",
    "archive.after_delete",
    "archive.after_index",
];

/// Every step of a run, and a crash right after it: the restarted service
/// finishes the run, and each message ends in exactly one place.
#[test]
fn a_crash_after_any_archive_step_loses_and_duplicates_nothing() {
    let runs_per_step: usize = std::env::var("CONVLOG_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let local = |_: &Path| (Vec::new(), PathBuf::from("archive"));
    // One thread per step: the runs mostly wait on servers starting and stopping.
    std::thread::scope(|scope| {
        for (s, step) in STEPS.iter().enumerate() {
            scope.spawn(move || crash_runs(1000 + 100 * s as u64, step, runs_per_step, &local));
        }
    });
}

/// Where a crash run's archive goes: extra server arguments, and the directory
/// holding the objects as files (relative paths are under the data directory).
pub type ArchiveAt<'a> = &'a (dyn Fn(&Path) -> (Vec<String>, PathBuf) + Sync);

/// `runs` crashes at `step` (at different runs of a pass), each on fresh data
/// from seeds `seed..`, checked for exactly-once after the restarted service's pass.
pub fn crash_runs(seed: u64, step: &str, runs: usize, archive_at: ArchiveAt<'_>) {
    let now = clock_after_end(170 * DAY);
    {
        for run in 0..runs {
            let seed = seed + run as u64;
            let root = tempfile::tempdir().unwrap();
            let _cleanup = remove_at_exit(root.path());
            let messages = generated(seed, 40, &["a", "b"], 20);
            let (extra, archive_dir) = archive_at(root.path());
            // Small runs, and the crash at a different run of the pass each time.
            let failpoint = format!("{step}@{}", 1 + run % 3);
            let mut args = vec![
                "--set".to_string(),
                "retention.batch_messages=25".to_string(),
            ];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut server = Server::start_with_env(
                root.path(),
                &args,
                &[
                    ("CONVLOG_CLOCK_AT", &now),
                    ("CONVLOG_FAILPOINTS", &failpoint),
                ],
                "error",
            );
            ingest_all(&server, &messages);
            server.wait_indexed();
            // The job may reach the failpoint before the answer is sent.
            if let Ok(reply) = server.try_post("/v1/admin/archive", "application/json", b"") {
                assert_eq!(reply.status, 202, "{}", reply.body);
            }
            let Some(status) = server.wait_exit(Duration::from_secs(60)) else {
                panic!(
                    "{failpoint}: the server did not reach the failpoint; jobs: {}\n{}",
                    server.get("/v1/admin/jobs").body,
                    server.log_tail()
                );
            };
            assert!(
                !status.success(),
                "{failpoint}: the server should have aborted"
            );
            server.set_env("CONVLOG_FAILPOINTS", None);
            server.restart();
            archive(&server);
            let data_dir = server.data_dir().to_path_buf();
            let archive_dir = data_dir.join(archive_dir);
            let archived = assert_exactly_once(&messages, &data_dir, &archive_dir);
            assert!(archived > 0, "{failpoint}: something was due");
            // One object per manifest entry: a redone batch wrote its key once.
            let conn = rusqlite::Connection::open_with_flags(
                data_dir.join("convlog.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let (files, manifest) = files_and_manifest(&conn, &archive_dir);
            assert_eq!(files, manifest, "{failpoint}: files and manifest differ");
            let unfinished: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM archive_runs WHERE state NOT IN ('done')",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(unfinished, 0, "{failpoint}: runs left unfinished");
            // The index followed: archived conversations are not found any more.
            server.wait_indexed();
            let hot_conversations: i64 = conn
                .query_row("SELECT COUNT(*) FROM conversations", [], |row| row.get(0))
                .unwrap();
            let mut searched = 0;
            for bot in ["a", "b"] {
                searched += server.get_ok(&format!(
                    "/v1/bots/{bot}/conversations?from={}&to={}&limit=1",
                    encode(ALL_FROM),
                    encode(ALL_TO)
                ))["total"]
                    .as_i64()
                    .unwrap();
            }
            assert_eq!(
                searched, hot_conversations,
                "{failpoint}: index and store differ"
            );
        }
    }
}

#[test]
fn objects_the_manifest_does_not_know_are_removed_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start(root.path(), &["--set", "retention.orphan_grace=1h"]);
    server.ingest(&[message(
        "old",
        "g",
        "u-old",
        "long ago",
        "2025-01-01T00:00:00Z",
    )]);
    server.wait_settled();
    archive(&server);
    let archive_dir = server.data_dir().join("archive");
    let kept = parquet_files(&archive_dir);
    assert_eq!(kept.len(), 2, "a messages and a conversations object");
    // A leftover no manifest lists (as a run rolled back while the bucket was down leaves).
    let orphan = archive_dir.join("messages/bot_id=g/date=2025-01-01/part-0000009999.parquet");
    std::fs::write(&orphan, b"PAR1 leftover").unwrap();
    archive(&server);
    assert!(orphan.exists(), "younger than the grace period: kept");
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(touched.success());
    archive(&server);
    assert!(!orphan.exists(), "older than the grace period: removed");
    assert_eq!(parquet_files(&archive_dir), kept, "manifested objects stay");
}

#[test]
fn the_schedule_archives_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start(root.path(), &["--set", "retention.schedule=1s"]);
    server.ingest(&[message(
        "old",
        "s",
        "u-old",
        "long ago",
        "2025-01-01T00:00:00Z",
    )]);
    let started = Instant::now();
    while !hot_messages(server.data_dir()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no scheduled pass archived the old message"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = archived_messages(&server.data_dir().join("archive"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message_id, "old");
}

#[test]
fn messages_never_join_a_held_conversation() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start_with_env(
        root.path(),
        &[],
        &[("CONVLOG_CLOCK_AT", "2026-11-20T12:00:00Z")],
        "warn",
    );
    let mut explicit = message("e1", "h", "u-1", "explicit session", "2026-01-01T00:00:00Z");
    explicit.session_id = Some("sess-1".into());
    server.ingest(&[
        explicit.clone(),
        message("t1", "h", "u-2", "timed session", "2026-01-01T00:00:00Z"),
    ]);
    server.wait_settled();
    archive(&server);
    assert!(hot_messages(server.data_dir()).is_empty());
    let body = r#"{"bot_id":"h","from":"2025-12-31T00:00:00Z","to":"2026-01-02T00:00:00Z"}"#;
    let job = run_job(&server, "/v1/admin/restore", body.as_bytes());
    assert_eq!(job["processed"], 2, "{job}");
    let restored = hot_messages(server.data_dir());

    // The restored conversation's explicit session can't take new messages: 409, nothing stored.
    let mut late = explicit.clone();
    late.id = "e2".into();
    late.timestamp = "2026-01-01T00:01:00Z".into();
    let batch = serde_json::to_vec(&[late]).unwrap();
    let reply = server.post("/v1/messages", "application/json", &batch);
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.body.contains("sess-1"), "{}", reply.body);
    assert_eq!(hot_messages(server.data_dir()), restored);

    // A message that would join the restored timed session by timeout starts its own.
    server.ingest(&[message(
        "t2",
        "h",
        "u-2",
        "a minute later",
        "2026-01-01T00:01:00Z",
    )]);
    let conn = rusqlite::Connection::open_with_flags(
        server.data_dir().join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let conversation_of = |id: &str| -> i64 {
        conn.query_row(
            "SELECT conversation_id FROM messages WHERE msg_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert_ne!(conversation_of("t1"), conversation_of("t2"));
    let count: i64 = conn
        .query_row(
            "SELECT message_count FROM conversations WHERE id = ?1",
            [conversation_of("t1")],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(count, 1, "the restored conversation is unchanged");
}

#[test]
fn a_corrupt_archive_object_fails_the_restore_as_corrupt_and_restores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start_with_env(
        root.path(),
        &[],
        &[("CONVLOG_CLOCK_AT", "2026-11-20T12:00:00Z")],
        "warn",
    );
    server.ingest(&[
        message("c1", "k", "u-1", "first", "2026-01-01T00:00:00Z"),
        message("c2", "k", "u-1", "second", "2026-01-01T00:01:00Z"),
    ]);
    server.wait_settled();
    archive(&server);
    assert!(hot_messages(server.data_dir()).is_empty());
    // The conversations object is intact, the messages object is not: the
    // restore reads the first, then finds the second damaged.
    let damaged = parquet_files(&server.data_dir().join("archive/messages"));
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    std::fs::write(
        &damaged[0],
        b"PAR1 these are not the bytes that were written",
    )
    .unwrap();

    let body = r#"{"bot_id":"k","from":"2025-12-31T00:00:00Z","to":"2026-01-02T00:00:00Z"}"#;
    let job = finish_job(&server, "/v1/admin/restore", body.as_bytes());
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("corrupt archive object messages/bot_id=k/date=2026-01-01/"),
        "{error}"
    );
    assert!(error.contains("checksum"), "{error}");
    assert!(
        hot_messages(server.data_dir()).is_empty(),
        "nothing comes back from a damaged run"
    );
}
