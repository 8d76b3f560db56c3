//! Acceptance 7: health, readiness, metrics, the API description and the command line.

use crate::common::{ALL_FROM, ALL_TO, Server, generated, run_cli};

/// The metric families `/metrics` exports (from the brief and the exposition's own HELP lines;
/// neither README nor API.md lists them).
const METRICS: &[(&str, &str)] = &[
    ("convlog_ingested_messages_total", "counter"),
    ("convlog_duplicate_messages_total", "counter"),
    ("convlog_rejected_batches_total", "counter"),
    ("convlog_traces_stored_total", "counter"),
    ("convlog_traces_dropped_total", "counter"),
    ("convlog_ingest_batch_seconds", "histogram"),
    ("convlog_ingest_backlog_wait_seconds", "histogram"),
    ("convlog_query_seconds", "histogram"),
    ("convlog_store_position", "gauge"),
    ("convlog_index_position", "gauge"),
    ("convlog_index_lag", "gauge"),
    ("convlog_index_commits_total", "counter"),
    ("convlog_ready", "gauge"),
];

#[test]
fn healthz_answers_200_and_readyz_turns_200_once_the_index_caught_up_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let health = server.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(server.get("/readyz").status, 200);

    // Leave the index behind the store (kill right after the acknowledgement), then restart.
    let messages = generated(5, 1_500, &["ops"], 30);
    server.ingest_parallel(&messages, 1_000, 2);
    server.kill9();
    server.restart(); // returns once /readyz is 200
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(server.metric("convlog_ready"), 1.0);
    // Caught up means: everything stored before the restart is searchable now. (The index
    // may lag newer changes, such as tags the tagging job writes after the start.)
    let found = server.get_ok(&format!(
        "/v1/bots/ops/messages?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ));
    assert_eq!(
        found["total"].as_u64(),
        Some(messages.len() as u64),
        "ready, yet not every stored message is searchable"
    );
    assert_eq!(server.get("/healthz").status, 200);
}

/// The server turns transparent huge pages off for itself: zeroing a 2 MiB
/// page at each first touch after the allocator purged it cost more CPU than
/// indexing (docs/benchmarks.md, "Transparent huge pages off").
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let Some(thp) = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
    else {
        eprintln!("skipping: this kernel's /proc/PID/status has no THP_enabled (Linux < 5.0)");
        return;
    };
    assert_eq!(thp.trim(), "0", "{status}");
}

#[test]
fn metrics_export_every_documented_family() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // One ingest and one search so histograms have samples.
    server.ingest(&generated(6, 3, &["ops"], 1));
    server.get_ok("/v1/bots/ops/conversations");
    let text = server.get("/metrics").body;
    for (name, kind) in METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no {kind} {name} in:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#')),
            "no sample of {name}"
        );
    }
    assert!(server.metric("convlog_ingested_messages_total") > 0.0);
}

#[test]
fn ingest_waits_while_the_index_is_more_than_max_backlog_changes_behind() {
    const MAX_BACKLOG: u64 = 200;
    const BATCH: usize = 50;
    const CLIENTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    // Commits 2 s apart: a burst gets far ahead of the index unless ingest waits for it.
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            &format!("index.max_backlog={MAX_BACKLOG}"),
            "--set",
            "index.refresh_interval=2s",
        ],
    );
    let messages = generated(8, 1_000, &["backlog"], 30);
    let done = std::sync::atomic::AtomicBool::new(false);
    let largest = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut largest: f64 = 0.0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                largest = largest.max(server.metric("convlog_index_lag"));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            largest
        });
        let (accepted, _) = server.ingest_parallel(&messages, BATCH, CLIENTS);
        assert_eq!(accepted, messages.len() as u64, "every batch acknowledged");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        sampler.join().unwrap()
    });
    // A request checks the backlog before it writes, so the requests already past the
    // check (one per client) can add a batch's conversations each; the tagging job
    // (which doesn't wait) can change each of those once more.
    let bound = (2 * (MAX_BACKLOG + (CLIENTS * BATCH) as u64)) as f64;
    assert!(
        largest <= bound,
        "the index fell {largest} changes behind during the burst; the bound is {bound}"
    );
    assert!(
        largest > 0.0,
        "the sampler saw no lag at all: nothing was tested"
    );
    assert!(server.metric("convlog_ingest_backlog_wait_seconds_count") > 0.0);
    server.wait_indexed();
    let found = server.get_ok(&format!(
        "/v1/bots/backlog/messages?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ));
    assert_eq!(found["total"].as_u64(), Some(messages.len() as u64));
}

#[test]
fn ingest_that_waits_past_the_request_timeout_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // An index that commits once an hour stays behind the first batch for the whole test.
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            "index.max_backlog=1",
            "--set",
            "index.refresh_interval=1h",
            "--set",
            "server.request_timeout=2s",
        ],
    );
    let messages = generated(9, 20, &["stalled"], 1);
    let (first, rest) = messages.split_at(messages.len() / 2);
    server.ingest(first);
    let head = server.metric("convlog_store_position");
    assert!(server.metric("convlog_index_lag") > 1.0);
    let body = serde_json::to_vec(rest).unwrap();
    let reply = server.post("/v1/messages", "application/json", &body);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("timeout"), "{}", reply.body);
    assert_eq!(
        server.metric("convlog_store_position"),
        head,
        "a refused batch changed the store"
    );
}

#[test]
fn openapi_description_is_json_listing_the_contract_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let reply = server.get("/v1/openapi.json");
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/messages",
        "/v1/bots/{bot}/conversations",
        "/v1/bots/{bot}/messages",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "openapi lacks {path}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn serve_refuses_a_config_file_with_an_unknown_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[index]\nrefresh_intervall = \"2s\"\n").unwrap();
    let data = dir.path().join("data");
    let (status, _, stderr) = run_cli(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(!status.success(), "serve started with an unknown key");
    assert!(
        stderr.contains("refresh_intervall"),
        "stderr does not name the key:\n{stderr}"
    );
}

#[test]
fn default_generate_output_is_accepted_by_the_server() {
    let (status, stdout, stderr) =
        run_cli(&["generate", "--seed", "1", "--conversations", "10"], None);
    assert!(status.success(), "{stderr}");
    let lines = stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines >= 10, "{lines} lines generated");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let reply = server.post("/v1/messages", "application/x-ndjson", &stdout);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["accepted"], lines as u64);
    assert_eq!(reply.json()["duplicates"], 0);
}
