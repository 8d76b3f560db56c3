//! Operability (issue #22): a real Prometheus scrapes a test server while it
//! ingests, searches, refuses and archives, and its HTTP API shows every
//! metric family moving as it should; `promtool check metrics` passes on the
//! exposition. Needs Debian's `prometheus` package (CI installs it;
//! `CONVLOG_REQUIRE_PROMETHEUS=1` makes its absence a failure).

use crate::archive::run_job;
use crate::common::{Server, end, generated, message, remove_at_exit};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `prometheus` and `promtool` run here.
fn prometheus_available() -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("prometheus") && runs("promtool");
    if !ok {
        assert!(
            std::env::var_os("CONVLOG_REQUIRE_PROMETHEUS").is_none(),
            "CONVLOG_REQUIRE_PROMETHEUS is set but prometheus or promtool is missing"
        );
        eprintln!("skipping: prometheus is not installed (apt-get install prometheus)");
    }
    ok
}

/// `promtool check metrics` on an exposition: its complaints, if any.
fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The `convlog_…` names in a text.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("convlog_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// What a value must satisfy.
type Check = Box<dyn Fn(f64) -> bool>;

/// A Prometheus scraping one target every second, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: convlog\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: crate::common::agent(),
        };
        let started = Instant::now();
        while prometheus
            .agent
            .get(format!("{}/-/ready", prometheus.base))
            .call()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus did not get ready: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// The values of an instant query, by the labels of each series.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let mut response = self
            .agent
            .get(format!("{}/api/v1/query", self.base))
            .query("query", promql)
            .call()
            .unwrap_or_else(|err| panic!("query {promql}: {err}"));
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `promql` (one series) satisfies `ok`; its value.
    fn wait_for(&self, promql: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let started = Instant::now();
        loop {
            let values = self.query(promql);
            if let [(_, value)] = values.as_slice()
                && ok(*value)
            {
                return *value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{promql}: expected {what}, Prometheus has {values:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_sees_every_family_move_through_ingest_search_refusals_and_an_archive_pass() {
    if !prometheus_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    // 200 days after the generated data ends: all of it is past a 180-day retention.
    let now = (end() + chrono::Duration::days(200)).to_rfc3339();
    let server = Server::start_with_env(
        root.path(),
        &["--set", "retention.schedule=1h"],
        &[("CONVLOG_CLOCK_AT", &now)],
        "warn",
    );
    let target = server.base().trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(root.path(), &target);
    let ready = prometheus.wait_for("convlog_ready", "1", |v| v == 1.0);
    assert_eq!(ready, 1.0);
    assert_eq!(
        prometheus.query("convlog_archive_schedule_seconds")[0].1,
        3600.0
    );
    let started = prometheus.query("convlog_process_start_time_seconds")[0].1;
    let first_success = prometheus.query("convlog_archive_last_success_timestamp_seconds")[0].1;

    // Ingest, with one card number to redact.
    let mut messages = generated(22, 60, &["shop"], 10);
    let mut card = message(
        "card-1",
        "shop",
        "u-card",
        "my card is 4111 1111 1111 1111",
        // Recent at the server's clock: it stays hot when the rest is archived.
        &(end() + chrono::Duration::days(199)).to_rfc3339(),
    );
    card.channel = "web".into();
    messages.push(card);
    let (accepted, _) = server.ingest(&messages);
    assert_eq!(accepted as usize, messages.len());
    let total = messages.len() as f64;
    server.wait_settled();
    // A search, a refused search, a refused ingest, a refused Host.
    let search = "/v1/bots/shop/conversations?from=2000-01-01T00:00:00Z";
    assert_eq!(server.get(search).status, 200);
    assert_eq!(
        server.get("/v1/bots/shop/conversations?limit=x").status,
        400
    );
    let refused = server.post("/v1/messages", "application/json", br#"[{"bot_id": 7}]"#);
    assert!(
        (400..500).contains(&refused.status),
        "a bad ingest body: {}",
        refused.body
    );
    let foreign = crate::common::agent()
        .get(format!("{}/v1/bots", server.base()))
        .header("Host", "evil.example")
        .call()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // A stray object the manifest doesn't know, old at the server's clock:
    // the pass removes it.
    let stray = server
        .data_dir()
        .join("archive/messages/bot_id=stray/date=2020-01-01");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("part-0000009999.parquet"), b"not parquet").unwrap();
    // An archive pass, as a job.
    let job = run_job(&server, "/v1/admin/archive", b"");
    assert_eq!(job["state"], "succeeded", "{job}");

    let route = "/v1/bots/{bot}/conversations";
    let sel = |name: &str, labels: &str| format!("{name}{{{labels}}}");
    let cases: Vec<(String, &str, Check)> = vec![
        (
            sel(
                "convlog_http_requests_total",
                &format!("route=\"{route}\",method=\"GET\",status=\"2xx\""),
            ),
            "a served search",
            Box::new(|v| v >= 1.0),
        ),
        (
            sel(
                "convlog_http_requests_total",
                &format!("route=\"{route}\",method=\"GET\",status=\"4xx\""),
            ),
            "a refused search",
            Box::new(|v| v >= 1.0),
        ),
        (
            sel(
                "convlog_http_request_duration_seconds_count",
                &format!("route=\"{route}\",method=\"GET\""),
            ),
            "two timed searches",
            Box::new(|v| v >= 2.0),
        ),
        (
            "sum(convlog_ingest_rejects_total)".into(),
            "the refused ingest",
            Box::new(|v| v >= 1.0),
        ),
        (
            sel("convlog_auth_refusals_total", "reason=\"foreign_host\""),
            "the foreign Host",
            Box::new(|v| v == 1.0),
        ),
        (
            "convlog_ingested_messages_total".into(),
            "every message",
            Box::new(move |v| v == total),
        ),
        (
            sel("convlog_redactions_total", "detector=\"card\""),
            "the card",
            Box::new(|v| v >= 1.0),
        ),
        (
            sel(
                "convlog_jobs_finished_total",
                "kind=\"archive\",outcome=\"succeeded\"",
            ),
            "the archive job",
            Box::new(|v| v == 1.0),
        ),
        (
            sel(
                "convlog_job_duration_seconds_count",
                "kind=\"archive\",outcome=\"succeeded\"",
            ),
            "its duration",
            Box::new(|v| v == 1.0),
        ),
        (
            sel("convlog_job_running", "kind=\"archive\""),
            "no archive running",
            Box::new(|v| v == 0.0),
        ),
        (
            sel("convlog_archive_passes_total", "outcome=\"succeeded\""),
            "one pass",
            Box::new(|v| v == 1.0),
        ),
        (
            "convlog_archive_rows_total".into(),
            "rows archived",
            Box::new(|v| v > 60.0),
        ),
        (
            "convlog_archive_bytes_total".into(),
            "bytes archived",
            Box::new(|v| v > 0.0),
        ),
        (
            "convlog_archive_objects_total".into(),
            "objects written",
            Box::new(|v| v >= 2.0),
        ),
        (
            "convlog_archive_last_success_timestamp_seconds".into(),
            // The server's clock stands still (CONVLOG_CLOCK_AT): the pass's time is its start.
            "the pass's success",
            Box::new(move |v| v >= first_success),
        ),
        (
            "sum(convlog_archive_failures_total)".into(),
            "no failure",
            Box::new(|v| v == 0.0),
        ),
        (
            "convlog_archive_orphans_removed_total".into(),
            "the stray object",
            Box::new(|v| v == 1.0),
        ),
        (
            "convlog_index_position".into(),
            "the index past start",
            Box::new(|v| v > 0.0),
        ),
        (
            sel("convlog_index_segments", "kind=\"message\""),
            "message segments",
            Box::new(|v| v >= 1.0),
        ),
        (
            sel("convlog_index_size_bytes", "kind=\"message\""),
            "index bytes",
            Box::new(|v| v > 0.0),
        ),
        (
            "count(convlog_index_partition_documents)".into(),
            "series per partition",
            Box::new(|v| v >= 2.0),
        ),
        (
            "convlog_store_size_bytes".into(),
            "a store file",
            Box::new(|v| v > 0.0),
        ),
        (
            "convlog_store_wal_size_bytes".into(),
            "a WAL size",
            Box::new(|v| v >= 0.0),
        ),
        (
            "convlog_disk_free_bytes".into(),
            "free disk",
            Box::new(|v| v > 0.0),
        ),
        (
            "convlog_tagger_lag".into(),
            "the tagger caught up",
            Box::new(|v| v == 0.0),
        ),
        (
            "convlog_tagger_last_full_run_timestamp_seconds".into(),
            "the start-up full run",
            Box::new(move |v| v >= started - 1.0),
        ),
        (
            "convlog_process_cpu_seconds_total".into(),
            "CPU used",
            Box::new(|v| v > 0.0),
        ),
        (
            "convlog_process_resident_memory_bytes".into(),
            "memory held",
            Box::new(|v| v > 1e6),
        ),
        (
            "convlog_process_open_fds".into(),
            "open files",
            Box::new(|v| v > 3.0),
        ),
        (
            "convlog_process_threads".into(),
            "threads",
            Box::new(|v| v > 2.0),
        ),
        (
            "convlog_index_lag".into(),
            "the index caught up",
            Box::new(|v| v == 0.0),
        ),
        (
            "convlog_index_lag_seconds".into(),
            "no wait",
            Box::new(|v| v == 0.0),
        ),
        (
            "sum(convlog_index_deleted_documents)".into(),
            "a count of deleted documents",
            Box::new(|v| v >= 0.0),
        ),
        (
            sel("convlog_job_progress_ratio", "kind=\"archive\""),
            "no progress while idle",
            Box::new(|v| v == 0.0),
        ),
    ];
    for (promql, what, ok) in &cases {
        prometheus.wait_for(promql, what, ok);
    }
    // The archived messages left the index: only the recent one is searchable.
    prometheus.wait_for(
        "convlog_index_documents{kind=\"message\"}",
        "one message left",
        |v| v == 1.0,
    );

    let exposition = server.get("/metrics").body;
    // Every family the alert rules and the dashboard use is exported.
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/convlog.json",
    ] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        for name in metric_names(&text) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| exposition.contains(&format!("# TYPE {family} ")))
                .unwrap_or(&name);
            assert!(
                exposition.contains(&format!("# TYPE {family} ")),
                "{file} uses {name}, which /metrics doesn't export"
            );
        }
    }
    promtool_check_metrics(&exposition)
        .unwrap_or_else(|problems| panic!("promtool check metrics:\n{problems}"));
}

#[test]
fn json_log_lines_carry_the_request_id_the_audit_log_records_and_no_colours() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start_with_log_level(
        root.path(),
        &["--set", "log.format=json"],
        "info,convlog::http=debug",
    );
    let messages = generated(5, 3, &["shop"], 2);
    server.ingest(&messages);
    server.wait_settled();
    let conversation =
        server.get_ok("/v1/bots/shop/conversations?from=2000-01-01T00:00:00Z")["conversations"][0]
            ["id"]
            .as_str()
            .unwrap()
            .to_string();
    // An audited change (a flag), with the client's request id.
    let reply = crate::common::agent()
        .put(format!(
            "{}/v1/bots/shop/conversations/{conversation}/flag",
            server.base()
        ))
        .header("x-request-id", "obs-flag-1")
        .content_type("application/json")
        .send(&br#"{"note": "checked"}"#[..])
        .unwrap();
    assert_eq!(reply.status(), 200);
    let audit = server.get_ok("/v1/admin/audit?limit=100");
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["request_id"] == "obs-flag-1")
        .unwrap_or_else(|| panic!("no audit entry with the request id: {audit}"));
    assert_eq!(entry["bot_id"], "shop", "{entry}");

    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file");
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
    let request = lines
        .iter()
        .find(|l| l["fields"]["request_id"] == "obs-flag-1")
        .unwrap_or_else(|| panic!("no log line with the request id:\n{log}"));
    let fields = &request["fields"];
    assert_eq!(
        fields["route"], "/v1/bots/{bot}/conversations/{id}/flag",
        "{request}"
    );
    assert_eq!(fields["method"], "PUT");
    assert_eq!(fields["status"], 200);
    assert!(fields["elapsed_ms"].as_f64().is_some(), "{request}");
}

#[test]
fn text_log_to_a_file_has_no_colours_and_a_bad_format_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let server = Server::start_with_log_level(root.path(), &[], "info,convlog::http=debug");
    assert_eq!(server.get("/v1/bots").status, 200);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("request"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log}"
    );
    drop(server);
    let (status, _, stderr) = crate::common::run_cli(
        &[
            "serve",
            "--set",
            "log.format=xml",
            "--set",
            &format!("server.data_dir={}", root.path().join("x").display()),
        ],
        None,
    );
    assert!(!status.success());
    assert!(stderr.contains("log.format"), "{stderr}");
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests_fire_the_archive_alert() {
    if !prometheus_available() {
        return;
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        // alerts_test.yml fires ConvlogArchiveNotSucceeding on a last-success series that stopped.
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&deploy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/convlog.json"),
        )
        .unwrap(),
    )
    .expect("the Grafana dashboard is JSON");
    assert_eq!(dashboard["uid"], "convlog");
}

#[test]
fn a_failed_archive_pass_is_counted_against_its_step_and_its_job() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let now = (end() + chrono::Duration::days(200)).to_rfc3339();
    let server = Server::start_with_env(root.path(), &[], &[("CONVLOG_CLOCK_AT", &now)], "warn");
    server.ingest(&generated(23, 20, &["shop"], 5));
    server.wait_settled();
    // A file where the archive's `messages` directory goes: every upload fails
    // (even for root, unlike a read-only directory).
    let archive = server.data_dir().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(archive.join("messages"), b"in the way").unwrap();
    let job = crate::archive::finish_job(&server, "/v1/admin/archive", b"");
    assert_eq!(job["state"], "failed", "{job}");
    for (name, expected) in [
        ("convlog_archive_failures_total{step=\"write\"}", 1.0),
        ("convlog_archive_failures_total{step=\"manifest\"}", 0.0),
        ("convlog_archive_passes_total{outcome=\"failed\"}", 1.0),
        ("convlog_archive_passes_total{outcome=\"succeeded\"}", 0.0),
        ("convlog_archive_objects_total", 0.0),
        (
            "convlog_jobs_finished_total{kind=\"archive\",outcome=\"failed\"}",
            1.0,
        ),
    ] {
        assert_eq!(server.metric(name), expected, "{name}");
    }
}
