//! The end-to-end benchmark harness (BENCHMARKS.md, workloads W1, W2a/b/c and W6).
//!
//! It generates N messages up front, starts the release `convlog` binary on a
//! fresh data directory, loads the data over HTTP from concurrent clients
//! (W1: throughput, acknowledgement latency, time to searchable), then measures
//! query latency over HTTP (W2a text, W2b filters + facets, W2c text + filters +
//! facets) and the server's memory (W6). It prints one Markdown table with the
//! bars and writes the same to `target/bench-results.json`. With `--runs K` it
//! repeats everything K times (a fresh server and data directory each time) and
//! reports the median of every figure.
//!
//! ```sh
//! cargo bench --bench harness -- --messages 1000000 --runs 3
//! # on a shared machine: wait for quiet and drop runs others disturbed
//! cargo bench --bench harness -- --messages 1000000 --runs 3 --wait-quiet 900 --max-others 15
//! cargo bench --bench harness -- --messages 20000 --queries 50 --smoke   # CI
//! ```

#[path = "harness/compare.rs"]
mod compare;
#[path = "harness/data.rs"]
mod data;
#[path = "harness/peer_duckdb.rs"]
mod peer_duckdb;
#[path = "harness/peer_pg.rs"]
mod peer_pg;
#[path = "harness/peer_sqlite.rs"]
mod peer_sqlite;
#[path = "harness/peers.rs"]
mod peers;
#[path = "harness/report.rs"]
mod report;
#[path = "harness/server.rs"]
mod server;
#[path = "harness/stats.rs"]
mod stats;
#[path = "harness/workloads.rs"]
mod workloads;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use report::{Check, Row, Shape, mib, thousands};
use serde_json::{Value, json};
use server::Server;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use workloads::QueryRun;

/// Benchmarks convlog end to end over HTTP.
#[derive(Debug, Parser)]
#[command(name = "harness")]
struct Args {
    /// Messages to generate and ingest.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Queries per query workload (W2a, W2b, W2c).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Concurrent ingest clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Messages per ingest request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seed of the generated data and of the query mix.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// End of the generated time span (RFC 3339); default: two days ago, to the hour
    /// (every session has ended, so time-dependent tags don't change during the run).
    #[arg(long)]
    end: Option<String>,
    /// Peers run on the same data in the same run: any of postgres, sqlite, duckdb; or none.
    #[arg(long, default_value = "postgres,sqlite,duckdb")]
    peers: String,
    /// Print each peer's SQL for one query of each class and exit.
    #[arg(long)]
    show_sql: bool,
    /// Internal: run the SQLite peer's job file in this process.
    #[arg(long, hide = true)]
    sqlite_peer: Option<PathBuf>,
    /// Repeat the whole run this many times (fresh server and data directory) and report medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Before each run, wait up to this many seconds for the machine to be quiet
    /// (other processes below a quarter of the cores over 5 s); 0: don't wait.
    #[arg(long, default_value_t = 0)]
    wait_quiet: u64,
    /// Discard a run (and run another, up to 3× --runs in all) when other processes
    /// used more than this percentage of the cores during its ingest or W2; 100: keep all.
    #[arg(long, default_value_t = 100.0)]
    max_others: f64,
    /// Tiny CI mode: check that everything works and exit quickly; no bar is enforced.
    #[arg(long)]
    smoke: bool,
    /// Keep the temporary data directory (its path is printed) as the query
    /// workloads left it, to profile queries on it: skips W4, which archives
    /// the store away.
    #[arg(long)]
    keep: bool,
    /// The server binary to measure, instead of this build's: another build's,
    /// to compare two builds on the same data and queries in one session.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Send messages without their `lang` (`en`), as builds before #16 require;
    /// a build that takes it finds English from `search.default_language`.
    #[arg(long)]
    without_lang: bool,
    /// Where to write the JSON results (default: target/bench-results.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    /// The server binary measured: `--server`, or this build's.
    fn server_bin(&self) -> &Path {
        self.server
            .as_deref()
            .unwrap_or(Path::new(env!("CARGO_BIN_EXE_convlog")))
    }
}

/// Bars of BENCHMARKS.md at 1M and at 10M messages.
struct Bars {
    at_10m: bool,
}

impl Bars {
    fn pick<T>(&self, at_1m: T, at_10m: T) -> T {
        if self.at_10m { at_10m } else { at_1m }
    }
    fn scale(&self) -> &'static str {
        self.pick("1M", "10M")
    }
}

/// What one run produced.
struct RunOutcome {
    rows: Vec<Row>,
    notes: Vec<String>,
    failures: Vec<String>,
    details: Value,
    /// Share of the machine's cores other processes used during ingest and during W2.
    others: (f64, f64),
    /// The peers' versions.
    versions: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(job) = &args.sqlite_peer {
        return match peer_sqlite::child(job) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("harness (SQLite peer): error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    // On ctrl-c, stop the PostgreSQL cluster (pg_ctl detaches it from the terminal).
    std::thread::spawn(|| {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            peer_pg::stop_all();
            eprintln!("harness: interrupted");
            std::process::exit(130);
        }
    });
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("harness: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[harness] {}", message.as_ref());
}

fn at_most(index: usize, limit: f64) -> Check {
    Check {
        index,
        at_most: true,
        limit,
    }
}

/// Which peers run.
#[derive(Debug, Clone, Copy, Default)]
struct Peers {
    postgres: bool,
    sqlite: bool,
    duckdb: bool,
}

impl Peers {
    fn parse(text: &str) -> anyhow::Result<Peers> {
        let mut peers = Peers::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "postgres" | "postgresql" | "pg" => peers.postgres = true,
                "sqlite" | "fts5" => peers.sqlite = true,
                "duckdb" => peers.duckdb = true,
                "none" => {}
                other => bail!("--peers: unknown peer {other:?} (postgres, sqlite, duckdb, none)"),
            }
        }
        Ok(peers)
    }

    fn any(self) -> bool {
        self.postgres || self.sqlite || self.duckdb
    }
}

/// `--show-sql`: each peer's statement for one query of each class.
fn show_sql() {
    let day = 86_400_000_000i64;
    let base = workloads::Params {
        bot: "demo".into(),
        from: 1_700_000_000_000_000,
        to: 1_700_000_000_000_000 + 30 * day,
        text: Some(workloads::Text::Word("refund".into())),
        channel: None,
        tag: None,
        flagged: None,
        limit: 20,
    };
    let filtered = workloads::Params {
        to: base.from + 7 * day,
        text: None,
        channel: Some("web".into()),
        tag: Some("low_confidence".into()),
        flagged: Some(false),
        ..base.clone()
    };
    let classes = [
        (
            "W2a (word; a phrase binds \"w1 w2\" the same way)",
            base.clone(),
        ),
        ("W2b (filters + facets)", filtered.clone()),
        (
            "W2c (word + filters + facets)",
            workloads::Params {
                text: Some(workloads::Text::Word("refund".into())),
                ..filtered
            },
        ),
        (
            "W2d (the default view: last 24 hours, every facet)",
            workloads::Params {
                from: base.to - day,
                text: None,
                ..base.clone()
            },
        ),
    ];
    for (class, params) in classes {
        println!("### {class}\n\nconvlog: `GET {}`\n", params.path());
        let (pg, pg_args) = peer_pg::sql(&params);
        println!("PostgreSQL, parameters {pg_args:?}:\n\n```sql\n{pg}\n```\n");
        let (lite, lite_args) = peer_sqlite::sql(&params);
        println!("SQLite FTS5, parameters {lite_args:?}:\n\n```sql\n{lite}\n```\n");
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    if args.show_sql {
        show_sql();
        return Ok(());
    }
    let peers = Peers::parse(&args.peers)?;
    if peers.postgres {
        peer_pg::bin_dir()?;
    }
    if peers.duckdb {
        peer_duckdb::check()?;
    }
    ensure!(args.messages > 0, "--messages must be at least 1");
    ensure!(args.batch > 0, "--batch must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    let machine = report::Machine::detect();
    let end = match &args.end {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--end {text:?} is not RFC 3339"))?
            .with_timezone(&chrono::Utc),
        None => {
            let now = chrono::Utc::now().timestamp() - 2 * 86_400;
            chrono::DateTime::from_timestamp(now - now % 3600, 0).expect("valid time")
        }
    };

    log(format!(
        "generating {} messages (seed {})…",
        thousands(args.messages as u64),
        args.seed
    ));
    let started = Instant::now();
    let data = data::build(&data::Spec {
        seed: args.seed,
        messages: args.messages,
        batch_size: args.batch,
        end,
        span_days: 30,
        bots: vec!["demo".to_string()],
        without_lang: args.without_lang,
    })?;
    log(format!(
        "{} messages in {} requests ({}, text {}) in {:.1}s; marker words for {}/{} batches",
        thousands(data.messages as u64),
        data.batches.len(),
        mib(data.body_bytes),
        mib(data.text_bytes),
        started.elapsed().as_secs_f64(),
        data.markers.iter().filter(|m| m.is_some()).count(),
        data.markers.len(),
    ));

    let mut outcomes = Vec::new();
    let mut run_errors: Vec<String> = Vec::new();
    let mut discarded = 0;
    let mut attempt = 0;
    while outcomes.len() < args.runs && attempt < args.runs * 3 {
        attempt += 1;
        let number = outcomes.len() + 1;
        if args.runs > 1 {
            log(format!("run {number} of {} (attempt {attempt})", args.runs));
        }
        if args.wait_quiet > 0 {
            let (waited, busy) = server::wait_quiet(Duration::from_secs(args.wait_quiet));
            log(format!(
                "machine {} after {:.0} s (others used {:.0}% of the cores in the last 5 s)",
                if busy < 0.25 { "quiet" } else { "still busy" },
                waited.as_secs_f64(),
                busy * 100.0
            ));
        }
        let outcome = match one_run(args, peers, &machine, &data) {
            Ok(outcome) => outcome,
            // Keep what the runs before it measured: report them, then fail.
            Err(err) if !outcomes.is_empty() => {
                log(format!("run {number} failed: {err:#}"));
                run_errors.push(format!("run {number} failed: {err:#}"));
                break;
            }
            Err(err) => return Err(err),
        };
        let (ingest_others, query_others) = outcome.others;
        if ingest_others.max(query_others) * 100.0 > args.max_others {
            log(format!(
                "discarding this run: other processes used {:.0}% of the cores during ingest, {:.0}% during W2 (limit {}%)",
                ingest_others * 100.0,
                query_others * 100.0,
                args.max_others
            ));
            discarded += 1;
            continue;
        }
        if args.runs > 1 {
            println!(
                "\nrun {number} of {} ({})\n",
                args.runs,
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            println!("{}", report::table(&outcome.rows));
            for note in &outcome.notes {
                println!("- {note}");
            }
        }
        outcomes.push(outcome);
    }

    ensure!(
        !outcomes.is_empty(),
        "every run was discarded: the machine was never quiet enough (--max-others)"
    );
    let all_rows: Vec<Vec<Row>> = outcomes.iter().map(|o| o.rows.clone()).collect();
    let rows = report::median_rows(&all_rows);
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let conversations = rows
        .iter()
        .find(|r| r.workload == "data" && r.figure.starts_with("messages / conversations"))
        .and_then(|r| r.values.get(1).copied())
        .unwrap_or(0.0);
    let versions = outcomes
        .last()
        .map(|o| o.versions.join(", "))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "none".into());
    let header = format!(
        "convlog benchmark — {date}\nmachine: {} ({} cores, {:.0} GiB), kernel {}\n{}; convlog {} ({}); peers: {versions}\ndata: {} messages, {} conversations (convlog_gen, seed {})\nmode: {}{}",
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.kernel,
        machine.rustc,
        env!("CARGO_PKG_VERSION"),
        machine.commit,
        thousands(data.messages as u64),
        thousands(conversations as u64),
        args.seed,
        if args.smoke {
            "smoke (no bar enforced)"
        } else {
            "full"
        },
        match (outcomes.len(), discarded) {
            (1, 0) => String::new(),
            (n, 0) => format!("; figures are medians of {n} runs"),
            (n, d) => format!(
                "; figures are medians of {n} runs ({d} more discarded: other processes above {}% of the cores)",
                args.max_others
            ),
        }
    );
    println!("\n{header}\n");
    println!("{}", report::table(&rows));
    if args.runs > 1 {
        for row in rows.iter().filter(|r| r.check.is_some()) {
            let index = row.check.map_or(0, |c| c.index);
            if let Some((min, max)) = report::spread(&all_rows, row, index) {
                let unit = match row.shape {
                    Shape::Ms(_) => " ms",
                    Shape::Seconds => " s",
                    Shape::MiB => " MiB",
                    _ => "",
                };
                println!(
                    "- {} {}: runs ranged {}{unit} … {}{unit}",
                    row.workload,
                    row.figure,
                    short(min),
                    short(max)
                );
            }
        }
    }
    if let Some(last) = outcomes.last() {
        for note in &last.notes {
            println!("- {note}");
        }
    }

    let failures: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.failures.clone())
        .chain(run_errors)
        .collect();
    let results = json!({
        "date": date,
        "machine": machine.to_json(),
        "convlog_version": env!("CARGO_PKG_VERSION"),
        "args": {"messages": args.messages, "queries": args.queries, "peers": args.peers, "clients": args.clients, "batch": args.batch,
                 "seed": args.seed, "smoke": args.smoke, "runs": args.runs, "max_others": args.max_others, "discarded_runs": discarded},
        "data": {"messages": data.messages, "body_bytes": data.body_bytes, "text_bytes": data.text_bytes,
                 "bots": data.bots, "conversations_asked": data.conversations_asked,
                 "from": workloads::rfc3339(data.min_ts), "to": workloads::rfc3339(data.max_ts)},
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "runs": outcomes.iter().map(|o| json!({
            "rows": o.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "notes": o.notes,
            "details": o.details,
            "failures": o.failures,
        })).collect::<Vec<_>>(),
        "failures": failures,
    });
    let json_path = args.json.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_BIN_EXE_convlog"))
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("target"))
            .join("bench-results.json")
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    log(format!("results written to {}", json_path.display()));

    if !failures.is_empty() {
        bail!("checks failed:\n  {}", failures.join("\n  "));
    }
    if args.smoke {
        log("smoke run OK");
    }
    Ok(())
}

/// A number for the spread line: no decimals when large.
fn short(value: f64) -> String {
    if !value.is_finite() {
        "never".to_string()
    } else if value >= 1000.0 {
        thousands(value.round() as u64)
    } else {
        format!("{value:.2}")
    }
}

/// Starts a server on a fresh data directory, measures, stops it, then runs the
/// peers on the data it stored.
fn one_run(
    args: &Args,
    peers: Peers,
    machine: &report::Machine,
    data: &data::Dataset,
) -> anyhow::Result<RunOutcome> {
    let tmp = tempfile::Builder::new()
        .prefix("convlog-bench-")
        .tempdir()?;
    let data_dir = tmp.path().join("data");
    let mut server = Server::start(
        args.server_bin(),
        &data_dir,
        &tmp.path().join("server.log"),
        &[],
    )?;
    log(format!(
        "server pid {} at {} on {}",
        server.pid,
        server.base,
        data_dir.display()
    ));
    let agent = server::agent();
    server.wait_ready(&agent, Duration::from_secs(60))?;
    let result = measure(args, machine, data, &server, &data_dir);
    if result.is_err() {
        eprintln!("server log (last lines):\n{}", server.log_tail());
    }
    drop(server);
    let (mut outcome, side) = result?;
    let duck = if peers.any() {
        compare::run_peers(
            args,
            peers,
            tmp.path(),
            &data_dir,
            data,
            &side,
            &mut outcome,
        )?
    } else {
        None
    };
    if !args.keep {
        compare::archive(
            args,
            tmp.path(),
            &data_dir,
            data,
            duck.as_ref(),
            &mut outcome,
        )?;
    }
    outcome.rows.sort_by_key(|row| {
        [
            "W1", "W2a", "W2b", "W2c", "W2d", "W2", "check", "W3", "W4", "W6", "machine", "data",
        ]
        .iter()
        .position(|w| *w == row.workload)
        .unwrap_or(usize::MAX)
    });
    if args.keep {
        let kept = tmp.keep();
        log(format!("kept {}", kept.display()));
    }
    Ok(outcome)
}

/// Everything between a ready server and its rows.
fn measure(
    args: &Args,
    machine: &report::Machine,
    data: &data::Dataset,
    server: &Server,
    data_dir: &Path,
) -> anyhow::Result<(RunOutcome, compare::ConvlogSide)> {
    let agent = server::agent();
    let bars = Bars {
        at_10m: data.messages > 3_000_000,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    // W1: ingest.
    log(format!(
        "W1: ingesting with {} clients, batches of {}…",
        args.clients, args.batch
    ));
    let load_before = server::load_average();
    let server_cpu_before = server::cpu(server.pid);
    let client_cpu_before = server::cpu(std::process::id()).total;
    let machine_before = server::machine_busy();
    let window_started = Instant::now();
    let ingest = workloads::ingest(server, data, args.clients)?;
    let machine_ingest = server::machine_busy() - machine_before;
    let window_ingest = window_started.elapsed().as_secs_f64();
    let client_cpu_ingest = server::cpu(std::process::id()).total - client_cpu_before;
    let server_cpu_ingest = server::cpu(server.pid).since(&server_cpu_before);
    let foreign_ingest = (machine_ingest - client_cpu_ingest - server_cpu_ingest.total).max(0.0);
    // A minute per million messages (two at least), so a backlog is measured, not cut off.
    let patience = Duration::from_secs((data.messages as u64 / 1_000_000 * 60).max(120));
    let searchable = workloads::time_to_searchable(server, data, &ingest, patience)?;
    let server_cpu_total = server::cpu(server.pid).since(&server_cpu_before);
    let metrics = server.metrics(&agent)?;
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
    let memory_ingest = server::memory(server.pid)?;
    let store_bytes: u64 = ["convlog.db", "convlog.db-wal", "convlog.db-shm"]
        .iter()
        .map(|f| server::disk_usage(&data_dir.join(f)))
        .sum();
    let index_bytes = server::index_disk_usage(data_dir);
    let segments_ingest = server::index_segments(data_dir);
    let dir_bytes = server::disk_usage(data_dir);
    let ack = stats::summarize(&ingest.latencies);
    let rate = ingest.rate();
    let searchable_s = searchable.elapsed.map_or(f64::NAN, |d| d.as_secs_f64());
    log(format!(
        "W1: {:.0} msg/s, ack p50 {:.0} ms p99 {:.0} ms; searchable after {} s",
        rate,
        ack.p50_ms,
        ack.p99_ms,
        short(searchable_s)
    ));
    if ingest.accepted + ingest.duplicates != data.messages as u64 {
        failures.push(format!(
            "ingest answered {} accepted + {} duplicates for {} messages sent",
            ingest.accepted, ingest.duplicates, data.messages
        ));
    }
    if searchable.elapsed.is_none() {
        failures.push("the last batch never became searchable".into());
    }
    rows.push(
        Row::info(
            "W1",
            &format!(
                "ingest msg/s ({} clients × batches of {})",
                args.clients, args.batch
            ),
            vec![rate],
            Shape::Count,
        )
        .bar(
            "≥ 100,000",
            Check {
                index: 0,
                at_most: false,
                limit: 100_000.0,
            },
        )
        .with_data(
            json!({"elapsed_s": ingest.elapsed.as_secs_f64(), "messages": data.messages,
                          "accepted": ingest.accepted, "duplicates": ingest.duplicates}),
        ),
    );
    rows.push(
        Row::info(
            "W1",
            "durable ack latency p50 / p99 / max",
            vec![ack.p50_ms, ack.p99_ms, ack.max_ms],
            Shape::Ms(0),
        )
        .with_data(ack.to_json()),
    );
    rows.push(
        Row::info(
            "W1",
            "time to searchable (last ack → lag 0 and found)",
            vec![searchable_s],
            Shape::Seconds,
        )
        .bar("≤ 1.5 s", at_most(0, 1.5))
        .with_data(json!({
            "lag_zero_after_s": searchable.lag_zero_after.map(|d| d.as_secs_f64()),
            "found_after_s": searchable.found_after.map(|d| d.as_secs_f64()),
            "marker": searchable.marker, "marker_total": searchable.marker_total})),
    );
    rows.push(Row::info(
        "W1",
        "  of which: last batch found / index lag 0",
        vec![
            searchable.found_after.map_or(f64::NAN, |d| d.as_secs_f64()),
            searchable
                .lag_zero_after
                .map_or(f64::NAN, |d| d.as_secs_f64()),
        ],
        Shape::Seconds,
    ));
    // CPU time is much less disturbed by other processes than wall time.
    let per_million = 1e6 / data.messages as f64;
    let cores = machine.cores as f64;
    rows.push(Row::info(
        "W1",
        "server CPU-s per 1M messages: during ingest / until searchable",
        vec![
            server_cpu_ingest.total * per_million,
            server_cpu_total.total * per_million,
        ],
        Shape::Seconds,
    ));
    rows.push(Row::info(
        "W1",
        &format!(
            "msg/s the server's CPU use allows on {} cores (ingest + index)",
            machine.cores
        ),
        vec![data.messages as f64 / (server_cpu_total.total / cores)],
        Shape::Count,
    ));

    // W2: queries, after everything is indexed and background work has settled.
    let (idle_wait, idle) = server::wait_idle(
        server.pid,
        Duration::from_secs(if args.smoke { 5 } else { 60 }),
    );
    log(format!(
        "server {} after {:.1} s",
        if idle { "idle" } else { "still busy" },
        idle_wait.as_secs_f64()
    ));
    let segments_before_w2 = server::index_segments(data_dir);
    let plan = workloads::plan(server, data)?;
    log(format!(
        "W2: {} conversations; frequent {:?}…, half-words {:?}; tag filter: {}",
        thousands(plan.total_conversations),
        plan.frequent.iter().take(3).collect::<Vec<_>>(),
        plan.half,
        plan.tag
            .as_deref()
            .unwrap_or("none (no tags in this build)")
    ));
    log(format!(
        "W2 samples: medium {:?}, rare {:?}, phrases {:?}",
        plan.medium.iter().take(5).collect::<Vec<_>>(),
        plan.rare.iter().take(5).collect::<Vec<_>>(),
        plan.phrases.iter().take(5).collect::<Vec<_>>()
    ));
    if plan.total_conversations == 0 {
        failures.push("search over the whole range finds no conversation".into());
    }
    let mixes = workloads::workloads(data, &plan, args.queries, args.seed);
    // Every query once before measuring: the warm-up, and the answers the peers
    // are checked against.
    let specs: Vec<workloads::QuerySpec> = mixes
        .iter()
        .flat_map(|mix| mix.specs.iter().cloned())
        .collect();
    log(format!(
        "W2: asking all {} queries once (warm-up; the answers peers must match)…",
        specs.len()
    ));
    let answers = workloads::answers(server, &specs)?;
    let peak_reset = server::reset_peak(server.pid);
    log(format!(
        "{}: {} queries each, one client…",
        mixes.iter().map(|m| m.name).collect::<Vec<_>>().join("/"),
        args.queries
    ));
    let server_cpu_queries_before = server::cpu(server.pid);
    let client_cpu_queries_before = server::cpu(std::process::id()).total;
    let machine_queries_before = server::machine_busy();
    let queries_started = Instant::now();
    let mut query_cpu_ms = Vec::new();
    let mut timed = |mix: &[workloads::QuerySpec]| -> anyhow::Result<QueryRun> {
        let before = server::cpu(server.pid).total;
        let run = workloads::run_queries(server, mix, 1)?;
        query_cpu_ms.push((server::cpu(server.pid).total - before) * 1e3 / mix.len().max(1) as f64);
        Ok(run)
    };
    let runs: Vec<QueryRun> = mixes
        .iter()
        .map(|mix| timed(&mix.specs))
        .collect::<anyhow::Result<_>>()?;
    let queries_wall = queries_started.elapsed().as_secs_f64();
    let server_cpu_queries = server::cpu(server.pid).since(&server_cpu_queries_before);
    let foreign_queries = (server::machine_busy()
        - machine_queries_before
        - server_cpu_queries.total
        - (server::cpu(std::process::id()).total - client_cpu_queries_before))
        .max(0.0);
    let w2a_two = if args.smoke {
        None
    } else {
        log("W2a again with two clients…");
        Some(workloads::run_queries(server, &mixes[0].specs, 2)?)
    };
    let memory_serving = server::memory(server.pid)?;
    let segments_serving = server::index_segments(data_dir);

    for (mix, run) in mixes.iter().zip(&runs) {
        let (workload, figure) = (mix.name, &mix.figure);
        let bar = bars.pick(mix.bars.0, mix.bars.1);
        let s = run.summary();
        if run.count() == 0 {
            failures.push(format!("{workload}: no queries ran"));
        } else if run.nonzero() == 0 {
            failures.push(format!("{workload}: every answer had total 0"));
        }
        rows.push(
            Row::info(
                workload,
                &format!("{figure}: p50 / p99 / max"),
                vec![s.p50_ms, s.p99_ms, s.max_ms],
                Shape::Ms(1),
            )
            .bar(
                &format!("p99 ≤ {bar} ms ({})", bars.scale()),
                at_most(1, bar),
            )
            .with_data(json!({"summary": s.to_json(), "classes": classes_json(run)})),
        );
        rows.push(Row::text(
            workload,
            "matches: sum of totals (answers with total > 0)",
            format!(
                "{} ({}/{})",
                thousands(run.total_matches()),
                run.nonzero(),
                run.count()
            ),
        ));
    }
    rows.push(Row::info(
        "W2",
        "server CPU per query, mean: W2a / W2b / W2c / W2d",
        query_cpu_ms,
        Shape::Ms(1),
    ));
    for (class, result) in &runs[0].by_class {
        let s = stats::summarize(&result.latencies);
        rows.push(Row::info(
            "W2a",
            &format!("  {class}: p50 / p99"),
            vec![s.p50_ms, s.p99_ms],
            Shape::Ms(1),
        ));
    }
    if let Some(two) = &w2a_two {
        let s = two.summary();
        let rate = two.count() as f64 / two.wall.as_secs_f64();
        rows.push(
            Row::info(
                "W2a",
                "two clients: p50 / p99, queries/s",
                vec![s.p50_ms, s.p99_ms, rate],
                Shape::MsRate,
            )
            .with_data(json!({"summary": s.to_json()})),
        );
    }

    // W6: memory.
    let rss_bar = bars.pick(512.0, 1536.0);
    let to_mib = |kib: u64| kib as f64 / 1024.0;
    if memory_ingest.hwm_kib == 0 {
        failures.push("could not read the server's VmHWM".into());
    }
    rows.push(
        Row::info(
            "W6",
            "peak RSS (VmHWM) through ingest + indexing",
            vec![to_mib(memory_ingest.hwm_kib)],
            Shape::MiB,
        )
        .bar(
            &format!("≤ {rss_bar} MiB ({})", bars.scale()),
            at_most(0, rss_bar),
        )
        .with_data(json!(memory_ingest)),
    );
    rows.push(
        Row::info(
            "W6",
            if peak_reset {
                "peak RSS (VmHWM) serving W2"
            } else {
                "peak RSS (VmHWM, could not reset) serving W2"
            },
            vec![to_mib(memory_serving.hwm_kib)],
            Shape::MiB,
        )
        .bar(
            &format!("≤ {rss_bar} MiB ({})", bars.scale()),
            at_most(0, rss_bar),
        )
        .with_data(json!(memory_serving)),
    );
    rows.push(Row::info(
        "W6",
        "RSS after W2: anonymous / file-backed (mmapped index and SQLite)",
        vec![
            to_mib(memory_serving.anon_kib),
            to_mib(memory_serving.file_kib),
        ],
        Shape::MiB,
    ));

    rows.push(Row::info(
        "machine",
        "other processes' share of the cores: during ingest / during W2",
        vec![
            foreign_ingest / window_ingest / cores * 100.0,
            foreign_queries / queries_wall / cores * 100.0,
        ],
        Shape::Percent,
    ));

    // Data.
    rows.push(Row::info(
        "data",
        "messages / conversations (server count)",
        vec![data.messages as f64, plan.total_conversations as f64],
        Shape::Count,
    ));
    rows.push(Row::text(
        "data",
        "request bodies / message text",
        format!("{} / {}", mib(data.body_bytes), mib(data.text_bytes)),
    ));
    rows.push(Row::info(
        "data",
        "store (SQLite + WAL) / index / data dir on disk",
        vec![
            store_bytes as f64 / 1048576.0,
            index_bytes as f64 / 1048576.0,
            dir_bytes as f64 / 1048576.0,
        ],
        Shape::MiB,
    ));
    for (when, info) in [
        ("when searchable", &segments_ingest),
        ("after W2", &segments_serving),
    ] {
        let text: Vec<String> = info
            .iter()
            .map(|i| {
                let name = if i.name.is_empty() {
                    "index"
                } else {
                    i.name.as_str()
                };
                format!(
                    "{name}: {} seg, {} docs ({} deleted)",
                    i.segments,
                    thousands(i.docs),
                    thousands(i.deleted)
                )
            })
            .collect();
        rows.push(
            Row::text(
                "data",
                &format!("index segments {when}"),
                if text.is_empty() {
                    "unknown".into()
                } else {
                    text.join("; ")
                },
            )
            .with_data(json!(info)),
        );
    }

    // Where the time went.
    let max_lag = ingest
        .progress
        .iter()
        .map(|p| p.store_position - p.index_position)
        .fold(0.0, f64::max);
    let batch_count = metric("convlog_ingest_batch_seconds_count");
    let server_batch_ms = if batch_count > 0.0 {
        metric("convlog_ingest_batch_seconds_sum") / batch_count * 1e3
    } else {
        0.0
    };
    let ingest_s = ingest.elapsed.as_secs_f64();
    let notes = vec![
        format!(
            "server CPU during ingest: {:.1}s in {:.1}s ({:.0}% of {} cores): {}",
            server_cpu_ingest.total,
            ingest_s,
            server_cpu_ingest.total / ingest_s / cores * 100.0,
            machine.cores,
            cpu_line(&server_cpu_ingest)
        ),
        format!(
            "server CPU from the start of ingest until searchable: {:.1}s: {}",
            server_cpu_total.total,
            cpu_line(&server_cpu_total)
        ),
        format!(
            "harness (client) CPU during ingest: {:.1}s ({:.0}% of {} cores)",
            client_cpu_ingest,
            client_cpu_ingest / ingest_s / cores * 100.0,
            machine.cores
        ),
        format!(
            "server-side time per ingest request (convlog_ingest_batch_seconds mean): {server_batch_ms:.1} ms; index commits: {}; largest index lag seen while ingesting: {} changes",
            metric("convlog_index_commits_total"),
            max_lag
        ),
        format!(
            "other processes on the machine: {:.1} CPU-s during ingest ({:.0}% of {} cores), {:.1} CPU-s during the one-client W2 runs ({:.0}%); load average {:.1} before ingest, {:.1} at the end",
            foreign_ingest,
            foreign_ingest / window_ingest / cores * 100.0,
            machine.cores,
            foreign_queries,
            foreign_queries / queries_wall / cores * 100.0,
            load_before,
            server::load_average()
        ),
        format!(
            "server CPU during the one-client W2 runs: {:.1}s in {:.1}s: {}",
            server_cpu_queries.total,
            queries_wall,
            cpu_line(&server_cpu_queries)
        ),
        format!(
            "W2 started once the server was idle (< 5% of a core over 1 s): waited {:.1} s{}; index before W2: {}",
            idle_wait.as_secs_f64(),
            if idle { "" } else { ", gave up waiting" },
            segments_before_w2
                .iter()
                .map(|i| format!("{} {} seg", i.name, i.segments))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "W2 plan: {} discovery queries, then every query once (warm-up) before measuring; W2a cycles frequent/medium/rare word/phrase; half-words {}; tag filter: {}",
            plan.discovery_queries,
            plan.half
                .iter()
                .map(|(w, share)| format!("{w} ({:.0}%)", share * 100.0))
                .collect::<Vec<_>>()
                .join(", "),
            plan.tag
                .as_deref()
                .unwrap_or("none (no tags in this build)")
        ),
    ];
    let details = json!({
        "ingest_progress": ingest.progress.iter().map(|p| json!({
            "at_s": stats::round3(p.at_s), "ingested": p.ingested, "store_position": p.store_position,
            "index_position": p.index_position,
        })).collect::<Vec<_>>(),
        "server_cpu_ingest": server_cpu_ingest.threads,
        "server_cpu_until_searchable": server_cpu_total.threads,
        "server_cpu_queries": server_cpu_queries.threads,
        "foreign_cpu_s": {"ingest": foreign_ingest, "queries": foreign_queries},
        "plan": {"frequent": plan.frequent, "medium": plan.medium, "rare": plan.rare,
                 "phrases": plan.phrases, "half": plan.half, "tag": plan.tag},
    });
    // W3: a full tagging run over every conversation (rules unchanged).
    log("W3: full tagging run (POST /v1/admin/tagging)…");
    let mut notes = notes;
    match compare::tagging(server, data.messages)? {
        Some((rate, seconds)) => {
            rows.push(
                Row::info(
                    "W3",
                    "full tagging run msg/s (POST /v1/admin/tagging, rules unchanged)",
                    vec![rate],
                    Shape::Count,
                )
                .bar(
                    "≥ 1,000,000; ≥ 1× DuckDB",
                    Check {
                        index: 0,
                        at_most: false,
                        limit: 1_000_000.0,
                    },
                )
                .ratio(0, true, Some(1.0))
                .with_data(json!({"seconds": seconds})),
            );
        }
        None => notes.push("W3: this build has no POST /v1/admin/tagging".into()),
    }

    let side = compare::ConvlogSide {
        names: mixes.iter().map(|mix| mix.name).collect(),
        mix_sizes: mixes.iter().map(|mix| mix.specs.len()).collect(),
        specs,
        answers,
        runs,
    };
    Ok((
        RunOutcome {
            rows,
            notes,
            failures,
            details,
            others: (
                foreign_ingest / window_ingest / cores,
                foreign_queries / queries_wall / cores,
            ),
            versions: Vec::new(),
        },
        side,
    ))
}

/// Threads by CPU seconds, busiest first.
fn cpu_line(cpu: &server::Cpu) -> String {
    let mut threads: Vec<_> = cpu.threads.iter().filter(|(_, s)| **s >= 0.05).collect();
    threads.sort_by(|a, b| b.1.total_cmp(a.1));
    threads
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.1}s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn classes_json(run: &QueryRun) -> Value {
    run.by_class
        .iter()
        .map(|(class, result)| {
            (
                class.to_string(),
                json!({
                    "summary": stats::summarize(&result.latencies).to_json(),
                    "total_matches": result.totals.iter().sum::<u64>(),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
