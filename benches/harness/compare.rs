//! convlog's side of the comparison (W3 over HTTP, W4 after a restart with a short
//! retention) and the peers' figures folded into the run's rows.

use super::data::Dataset;
use super::peers::{self, PeerResult};
use super::report::{Check, PEERS, Row, Shape};
use super::server::{self, Server};
use super::workloads::{Answer, QueryRun, QuerySpec};
use super::{Args, Peers, RunOutcome, log, peer_duckdb, peer_pg, peer_sqlite};
use anyhow::Context;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the peers need from convlog's run.
pub struct ConvlogSide {
    /// The names of the W2 workloads (`W2a`, …), in order.
    pub names: Vec<&'static str>,
    /// Their queries, one workload after the other.
    pub specs: Vec<QuerySpec>,
    /// How many queries each workload has.
    pub mix_sizes: Vec<usize>,
    /// convlog's answer to each spec.
    pub answers: Vec<Answer>,
    /// The timed one-client run of each workload.
    pub runs: Vec<QueryRun>,
}

fn seconds_between(job: &serde_json::Value) -> Option<f64> {
    let at = |key: &str| {
        chrono::DateTime::parse_from_rfc3339(job[key].as_str()?)
            .ok()
            .map(|t| t.timestamp_micros())
    };
    Some((at("finished_at")? - at("started_at")?) as f64 / 1e6)
}

/// W3: a full tagging run through `POST /v1/admin/tagging`; msg/s over the job's own span.
pub fn tagging(server: &Server, messages: usize) -> anyhow::Result<Option<(f64, f64)>> {
    let agent = server::agent();
    let Some((job, wall)) = server.job(&agent, "/v1/admin/tagging", Duration::from_secs(1800))?
    else {
        return Ok(None);
    };
    let seconds = seconds_between(&job).unwrap_or(wall.as_secs_f64());
    Ok(Some((messages as f64 / seconds, seconds)))
}

fn find<'r>(rows: &'r mut [Row], workload: &str, figure: &str) -> Option<&'r mut Row> {
    rows.iter_mut()
        .find(|r| r.workload == workload && r.figure.starts_with(figure))
}

fn geomean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// Runs the chosen peers on the data convlog stored and adds their figures;
/// returns DuckDB's figures for W4.
pub fn run_peers(
    args: &Args,
    chosen: Peers,
    tmp: &Path,
    data_dir: &Path,
    data: &Dataset,
    side: &ConvlogSide,
    outcome: &mut RunOutcome,
) -> anyhow::Result<Option<peer_duckdb::Duck>> {
    let db = data_dir.join("convlog.db");
    let started = Instant::now();
    let conversations = peers::conversations(&db)?;
    log(format!(
        "peers: {} conversations read from convlog's store in {:.1}s",
        conversations.len(),
        started.elapsed().as_secs_f64()
    ));
    let specs: Vec<&QuerySpec> = side.specs.iter().collect();
    let wait = |what: &str| {
        if args.wait_quiet > 0 {
            let (waited, busy) = server::wait_quiet(Duration::from_secs(args.wait_quiet));
            log(format!(
                "{what}: machine {} after {:.0} s ({:.0}% busy)",
                if busy < 0.25 { "quiet" } else { "still busy" },
                waited.as_secs_f64(),
                busy * 100.0
            ));
        }
    };
    let mut results: Vec<(usize, PeerResult)> = Vec::new();
    if chosen.postgres {
        wait("PostgreSQL");
        let result = peer_pg::run_peer(
            &db,
            &conversations,
            &specs,
            &side.mix_sizes,
            args.batch,
            args.clients,
            &log,
        )
        .context("PostgreSQL peer")?;
        results.push((0, result));
    }
    if chosen.sqlite {
        wait("SQLite");
        let file = tmp.join("peer-conversations.jsonl");
        peers::write_conversations(&file, &conversations)?;
        let result =
            peer_sqlite::run_peer(tmp, &db, &file, &specs, &side.mix_sizes, args.batch, &log)
                .context("SQLite peer")?;
        let _ = std::fs::remove_file(&file);
        results.push((1, result));
    }
    for (_, result) in &mut results {
        result.mismatches = peers::compare(result.name, &specs, &side.answers, &result.answers);
        log(format!(
            "{}: W1 {:.0} msg/s; {} of {} answers equal to convlog's",
            result.version,
            result.ingest_messages as f64 / result.ingest.as_secs_f64(),
            result.answers.len()
                - result
                    .mismatches
                    .iter()
                    .filter(|m| !m.contains(" more queries differ"))
                    .count(),
            result.answers.len()
        ));
        outcome.failures.extend(result.mismatches.iter().cloned());
        outcome.versions.push(result.version.clone());
    }
    add_rows(&mut outcome.rows, side, &results, &mut outcome.notes);

    let mut duck = None;
    if chosen.duckdb {
        wait("DuckDB");
        log("DuckDB: W3 tagging and W4 Parquet over the exported messages…");
        let runs = if args.smoke { 1 } else { 3 };
        let result = peer_duckdb::run(tmp, &db, chrono::Utc::now().timestamp_micros(), runs, 2)
            .context("DuckDB peer")?;
        let ours = peers::tag_counts(&db)?;
        if ours != result.counts {
            outcome.failures.push(format!(
                "DuckDB: conversations per tag differ from convlog's: convlog {ours:?}, DuckDB {:?}",
                result.counts
            ));
        }
        outcome.versions.push(format!("DuckDB {}", result.version));
        let rate = result.rows as f64 / result.tagging_s;
        if let Some(row) = find(&mut outcome.rows, "W3", "full tagging run") {
            *row = row.clone().peer(2, vec![rate]);
        }
        outcome.notes.push(format!(
            "DuckDB {}: the same 8 tagging rules as one SQL statement (benches/tagging_duckdb.py) over an in-memory table loaded from the exported messages (load not timed), {} threads, median of {runs}; conversations per tag {} convlog's; peak RSS of the Python process {} MiB",
            result.version,
            result.threads,
            if ours == result.counts { "equal to" } else { "DIFFERENT from" },
            result.peak_rss_kib / 1024
        ));
        let _ = data;
        duck = Some(result);
    }
    Ok(duck)
}

/// Adds the peers' columns to convlog's rows, and the rows that only exist with peers.
fn add_rows(
    rows: &mut Vec<Row>,
    side: &ConvlogSide,
    results: &[(usize, PeerResult)],
    notes: &mut Vec<String>,
) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (peer, r) in results {
        let peer = *peer;
        let rate = r.ingest_messages as f64 / r.ingest.as_secs_f64();
        if let Some(row) = find(rows, "W1", "ingest msg/s") {
            *row = row.clone().peer(peer, vec![rate]).ratio(0, true, Some(2.0));
            if !row.bar.contains("peer") {
                row.bar.push_str("; ≥ 2× each peer");
            }
        }
        for (k, &workload) in side.names.iter().enumerate() {
            let s = r.runs[k].summary();
            if let Some(row) = rows
                .iter_mut()
                .find(|row| row.workload == workload && row.figure.ends_with(": p50 / p99 / max"))
            {
                *row = row
                    .clone()
                    .peer(peer, vec![s.p50_ms, s.p99_ms, s.max_ms])
                    .ratio(1, false, None);
            }
        }
        for (class, result) in &r.runs[0].by_class {
            let s = super::stats::summarize(&result.latencies);
            if let Some(row) = find(rows, "W2a", &format!("  {class}: p50 / p99")) {
                *row = row
                    .clone()
                    .peer(peer, vec![s.p50_ms, s.p99_ms])
                    .ratio(1, false, None);
            }
        }
        if let Some(row) = find(rows, "W6", "peak RSS (VmHWM) through ingest") {
            *row = row
                .clone()
                .peer(peer, vec![mib(r.hwm_ingest_kib)])
                .ratio(0, false, None);
        }
        notes.push(format!(
            "{}: W1 = {}; {:.1} s untimed after it (conversation facet values from convlog's store, statistics); memory = {}; size = {}",
            r.version,
            r.ingest_how,
            r.prepare.as_secs_f64(),
            r.memory_note,
            r.size_note
        ));
        notes.extend(r.notes.iter().cloned());
    }
    // W6 while serving W2.
    for row in rows.iter_mut().filter(|r| {
        r.workload == "W6" && r.figure.contains("serving") && r.peers.iter().all(Option::is_none)
    }) {
        for (peer, r) in results {
            *row = row
                .clone()
                .peer(*peer, vec![mib(r.hwm_serving_kib)])
                .ratio(0, false, None);
        }
    }

    // Data on disk.
    let ours = rows
        .iter()
        .find(|r| r.workload == "data" && r.figure.starts_with("store (SQLite + WAL)"))
        .map(|r| r.values.iter().take(2).sum::<f64>())
        .unwrap_or(f64::NAN);
    let mut size = Row::info(
        "data",
        "on disk: convlog store + index; peers data + indexes",
        vec![ours],
        Shape::MiB,
    );
    for (peer, r) in results {
        size = size.peer(*peer, vec![r.size_bytes as f64 / 1048576.0]);
    }
    rows.push(size.ratio(0, false, None));

    // Correctness.
    let mut equal = Row::info(
        "check",
        "answers equal to convlog's (total, every facet count, top 20 ids)",
        vec![side.answers.len() as f64],
        Shape::Count,
    );
    for (peer, r) in results {
        let differ = r
            .mismatches
            .iter()
            .filter(|m| !m.contains(" more queries differ"))
            .count()
            + r.mismatches
                .iter()
                .filter_map(|m| {
                    m.split(": ")
                        .nth(1)?
                        .strip_suffix(" more queries differ")?
                        .parse::<usize>()
                        .ok()
                })
                .sum::<usize>();
        equal = equal.peer(*peer, vec![(r.answers.len() - differ) as f64]);
    }
    rows.push(equal);

    // The peer bars of W2: the faster peer's p99 per query class, geometric mean.
    let mut classes: Vec<(String, f64, Vec<Option<f64>>)> = Vec::new();
    for (k, run) in side.runs.iter().enumerate() {
        for (class, result) in &run.by_class {
            let ours = super::stats::summarize(&result.latencies).p99_ms;
            let theirs = (0..PEERS.len())
                .map(|p| {
                    let (_, r) = results.iter().find(|(i, _)| *i == p)?;
                    let c = r.runs[k].by_class.get(class)?;
                    Some(super::stats::summarize(&c.latencies).p99_ms)
                })
                .collect();
            classes.push((class.clone(), ours, theirs));
        }
    }
    if results.is_empty() || classes.is_empty() {
        return;
    }
    let faster: Vec<f64> = classes
        .iter()
        .map(|(_, _, t)| t.iter().flatten().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let ours_all: Vec<f64> = classes.iter().map(|(_, o, _)| *o).collect();
    let ours_g = geomean(&ours_all);
    let faster_g = geomean(&faster);
    let mut row = Row::info(
        "W2",
        &format!("p99, geometric mean over {} query classes", classes.len()),
        vec![ours_g],
        Shape::Ms(1),
    );
    for (peer, _) in results {
        let theirs: Vec<f64> = classes.iter().filter_map(|(_, _, t)| t[*peer]).collect();
        row = row.peer(*peer, vec![geomean(&theirs)]);
    }
    rows.push(row.ratio(0, false, None));
    rows.push(
        Row::info(
            "W2",
            "the faster peer's p99 ÷ convlog's, per class, geometric mean",
            vec![faster_g / ours_g],
            Shape::Times,
        )
        .bar(
            "≥ 10×",
            Check {
                index: 0,
                at_most: false,
                limit: 10.0,
            },
        ),
    );
    let slower: Vec<&str> = classes
        .iter()
        .zip(&faster)
        .filter(|((_, ours, _), faster)| ours > faster)
        .map(|((class, _, _), _)| class.as_str())
        .collect();
    rows.push(
        Row::info(
            "W2",
            "query classes where convlog's p99 is above the faster peer's",
            vec![slower.len() as f64],
            Shape::Count,
        )
        .bar(
            "0 (not slower than either peer)",
            Check {
                index: 0,
                at_most: true,
                limit: 0.0,
            },
        )
        .with_data(json!(slower)),
    );
    // Per query (same query, one client each): how often a peer answered faster.
    let ours: Vec<Duration> = side
        .runs
        .iter()
        .flat_map(|r| r.per_query.iter().copied())
        .collect();
    let mut per_query = Row::info(
        "W2",
        "queries in W2a–c; how many of them each peer answered faster than convlog",
        vec![ours.len() as f64],
        Shape::Count,
    );
    for (peer, r) in results {
        let theirs: Vec<Duration> = r
            .runs
            .iter()
            .flat_map(|run| run.per_query.iter().copied())
            .collect();
        let faster = ours.iter().zip(&theirs).filter(|(o, t)| t < o).count();
        per_query = per_query.peer(*peer, vec![faster as f64]);
    }
    rows.push(per_query);
}

/// W4: restarts convlog with a retention of one day (the data ends two days ago),
/// archives through `POST /v1/admin/archive`, and sets DuckDB's Parquet COPY beside it.
pub fn archive(
    args: &Args,
    tmp: &Path,
    data_dir: &Path,
    data: &Dataset,
    duck: Option<&peer_duckdb::Duck>,
    outcome: &mut RunOutcome,
) -> anyhow::Result<()> {
    let mut server = Server::start(
        args.server_bin(),
        data_dir,
        &tmp.join("server-archive.log"),
        &["--set", "retention.period=1d"],
    )?;
    let agent = server::agent();
    server.wait_ready(&agent, Duration::from_secs(120))?;
    log("W4: POST /v1/admin/archive with retention 1 day…");
    let result = server.job(&agent, "/v1/admin/archive", Duration::from_secs(1800));
    drop(server);
    let archived = match result {
        Ok(Some((job, wall))) => {
            let rows = job["processed"].as_u64().unwrap_or(0);
            let seconds = seconds_between(&job).unwrap_or(wall.as_secs_f64());
            Some((
                rows,
                seconds,
                // The messages table, which DuckDB writes in the same layout.
                server::disk_usage(&data_dir.join("archive").join("messages")),
            ))
        }
        Ok(None) => {
            outcome
                .notes
                .push("W4: this build has no POST /v1/admin/archive (404): not measured".into());
            None
        }
        Err(err) => {
            outcome.notes.push(format!("W4: archive failed: {err:#}"));
            if !args.smoke {
                outcome
                    .failures
                    .push(format!("W4: archive failed: {err:#}"));
            }
            None
        }
    };
    let (rate, size) = match archived {
        Some((rows, seconds, bytes)) => {
            if rows == 0 {
                outcome
                    .notes
                    .push("W4: the archive job processed 0 rows".into());
            }
            (rows as f64 / seconds, bytes as f64 / 1048576.0)
        }
        None => (f64::NAN, f64::NAN),
    };
    let _ = data;
    let mut speed = Row::info(
        "W4",
        "archive expired messages to Parquet (zstd): rows/s",
        vec![rate],
        Shape::Count,
    );
    let mut bytes = Row::info(
        "W4",
        "messages Parquet size, same partitions (DuckDB: fewer columns; bar: benches/archive.rs)",
        vec![size],
        Shape::MiB,
    );
    if rate.is_finite() {
        speed = speed.bar(
            "≥ 500,000",
            Check {
                index: 0,
                at_most: false,
                limit: 500_000.0,
            },
        );
    } else {
        speed.bar = "≥ 500,000 (not measured)".into();
    }
    if let Some(duck) = duck {
        speed = speed
            .peer(2, vec![duck.rows as f64 / duck.archive_s])
            .ratio(0, true, None);
        // Not the size bar: DuckDB's copy here lacks columns convlog's rows
        // carry (position, pseudonym, session, tags, labels, flag, archived_at).
        // `cargo bench --bench archive` compares the same rows and columns.
        bytes = bytes.peer(2, vec![duck.archive_bytes as f64 / 1048576.0]);
        bytes = bytes.ratio(0, false, None);
        outcome.notes.push(format!(
            "DuckDB W4: COPY (every message, convlog's archive columns, by conversation and time) TO '…' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (bot_id, date)) from the in-memory table, {} threads",
            duck.threads
        ));
    }
    outcome.rows.push(speed);
    outcome.rows.push(bytes);
    Ok(())
}
