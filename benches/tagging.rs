//! W3 of BENCHMARKS.md: a full tagging run over every conversation.
//!
//! Generates N messages with the project's seeded generator, loads them into a
//! fresh data directory through the library (`App::open` + `ingest_blocking`),
//! then measures, on the same data:
//!
//! - **end to end**: `App::start_full_tagging` (the job behind `POST
//!   /v1/admin/tagging`) with `tagging.threads` = 1 and 2, the app reopened per
//!   setting: SQLite reads, the rules on the rayon pool, SQLite writes. Twice per
//!   setting: with unchanged rules (stored tags mostly equal, little is written)
//!   and with new rule versions (every tag rewritten, as after a config change);
//! - **engine only**: `convlog_engine::tag::evaluate` over the same conversations
//!   held in memory, on 1 and 2 rayon threads (plus the time to read them);
//! - **DuckDB**: the same 8 built-in rules in SQL (`benches/tagging_duckdb.py`)
//!   over the same messages exported from the store, 1 and 2 threads, checking
//!   that DuckDB's conversations per tag equal convlog's `tags` table.
//!
//! ```sh
//! cargo bench --bench tagging                      # 1M messages
//! cargo bench --bench tagging -- --messages 100000 --runs 5
//! cargo bench --bench tagging -- --smoke           # tiny, a few seconds
//! ```
//!
//! Medians over `--runs`. The machines are shared and noisy: read the ratios
//! (1 vs 2 threads, convlog vs DuckDB, measured in the same run) before the
//! absolute figures.

#[path = "common/mod.rs"]
mod common;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use common::median;
use convlog::app::App;
use convlog_core::Micros;
use convlog_engine::config::{Config, Sources};
use convlog_engine::jobs::JobState;
use convlog_engine::store::tagging::{TagCandidate, meta, placed_heads, with_messages};
use convlog_engine::tag::builtin::NAMES as BUILTIN_RULES;
use convlog_engine::tag::evaluate;
use convlog_engine::tag::rules::ConversationFacts;
use convlog_gen::GenConfig;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Benchmarks a full tagging run (W3).
#[derive(Debug, Parser)]
#[command(name = "tagging")]
struct Args {
    /// Messages to generate and load.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Measured repetitions per figure (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Tiny mode: 5,000 messages, one run each; checks that everything works.
    #[arg(long)]
    smoke: bool,
    /// Keep the data directory here (reused when it already holds a loaded store).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip the DuckDB peer.
    #[arg(long)]
    no_duckdb: bool,
    /// Before each measured block, wait up to this many seconds for the machine to
    /// be quiet (other processes below a quarter of the cores over 3 s); 0: don't wait.
    #[arg(long, default_value_t = 0)]
    wait_quiet: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tagging bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[tagging] {}", message.as_ref());
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// (busy, total) jiffies of all CPUs, from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Waits up to `seconds` until the machine's other load stays below a quarter of
/// the cores for 3 s (this process is idle meanwhile); logs what it found.
fn wait_quiet(seconds: u64, what: &str) {
    if seconds == 0 {
        return;
    }
    let started = Instant::now();
    let mut busy = 1.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let Some((busy0, total0)) = cpu_jiffies() else {
            return;
        };
        std::thread::sleep(Duration::from_secs(3));
        let Some((busy1, total1)) = cpu_jiffies() else {
            return;
        };
        busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        if busy < 0.25 {
            log(format!(
                "machine quiet ({:.0}% busy) before {what}",
                busy * 100.0
            ));
            return;
        }
    }
    log(format!(
        "machine still {:.0}% busy after {seconds}s; measuring {what} anyway",
        busy * 100.0
    ));
}

/// The configuration of the data directory, with `overrides` (`key=value`).
fn config(dir: &Path, overrides: &[String]) -> anyhow::Result<Config> {
    let mut overrides = overrides.to_vec();
    overrides.push("index.refresh_interval=1s".into());
    Ok(Config::load(&Sources {
        data_dir: Some(dir.display().to_string()),
        overrides,
        ..Sources::default()
    })?)
}

/// `convlog_index_lag` of the app's metrics.
fn index_lag(app: &App) -> Option<u64> {
    app.render_metrics().lines().find_map(|line| {
        line.strip_prefix("convlog_index_lag ")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    })
}

/// Waits until the indexer and the incremental tagger have caught up with the store.
fn wait_idle(app: &App) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        let head = app.store.head();
        let tagged: u64 = app
            .store
            .read(|conn| meta(conn, "tag_position"))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let lag = index_lag(app);
        if tagged >= head && lag == Some(0) {
            // Stay caught up for a moment: the tagger's own writes move the head.
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(1500) {
                return Ok(());
            }
        } else {
            quiet_since = None;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "store head {head}, tagger at {tagged}, index lag {lag:?}: not idle after 30 min"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Generates about `messages` messages and loads them; returns (messages, conversations, seconds).
fn load(dir: &Path, args: &Args, messages: usize, end: Micros) -> anyhow::Result<(u64, f64)> {
    let app = App::open(config(dir, &[])?)?;
    let end = chrono::DateTime::from_timestamp_micros(end).expect("valid end");
    // ~11.4 messages per generated conversation; a little more, then cut at N.
    let mut generator = GenConfig::new(args.seed, messages / 11 + 10, end);
    generator.bots = vec!["w3".into()];
    let started = Instant::now();
    let loaded = common::load(&app, &generator, messages)?;
    let seconds = started.elapsed().as_secs_f64();
    log(format!(
        "loaded {loaded} messages in {seconds:.1}s; waiting for the index and the tagger"
    ));
    wait_idle(&app)?;
    app.shutdown();
    Ok((loaded, seconds))
}

/// Counts of the store: (messages, conversations).
fn store_size(db: &Path) -> anyhow::Result<(u64, u64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let messages: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let conversations: i64 =
        conn.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))?;
    Ok((messages as u64, conversations as u64))
}

/// One full run through the job API: (seconds, processed, store changes it made).
fn full_run(app: &App, runtime: &tokio::runtime::Runtime) -> anyhow::Result<(f64, u64, u64)> {
    let head = app.store.head();
    let started = Instant::now();
    let job = runtime.block_on(app.start_full_tagging())?;
    loop {
        let record = runtime.block_on(app.jobs.get(&job.id))?;
        match record.state {
            JobState::Succeeded => {
                let seconds = started.elapsed().as_secs_f64();
                ensure!(
                    record.processed == record.total,
                    "processed {} of {}",
                    record.processed,
                    record.total
                );
                // Conversations whose stored tags changed (each one is re-indexed).
                let changes = app.store.head().saturating_sub(head);
                return Ok((seconds, record.processed, changes));
            }
            JobState::Failed => bail!("tagging job failed: {:?}", record.error),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Built-in rules at `version` (to force every stored tag to be rewritten).
fn versions(version: u32) -> Vec<String> {
    BUILTIN_RULES
        .iter()
        .map(|rule| format!("tagging.rules.{rule}.version={version}"))
        .collect()
}

struct EndToEnd {
    /// Median seconds with unchanged rules.
    unchanged: f64,
    /// Median seconds with new rule versions.
    new_versions: f64,
    conversations: u64,
    /// Conversations a run with unchanged rules still rewrote (last run).
    rewritten: u64,
}

/// Full runs with `threads`: `runs` with the stored rules, then `runs` with new versions.
fn end_to_end(
    dir: &Path,
    threads: usize,
    runs: usize,
    quiet: u64,
    next_version: &mut u32,
) -> anyhow::Result<EndToEnd> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let threads_set = format!("tagging.threads={threads}");
    let mut unchanged = Vec::new();
    let mut conversations = 0;
    let mut rewritten = 0;
    {
        let mut overrides = versions(*next_version - 1);
        overrides.push(threads_set.clone());
        let app = App::open(config(dir, &overrides)?)?;
        wait_idle(&app)?;
        for run in 0..runs {
            wait_quiet(quiet, "a full run");
            let (seconds, processed, changes) = full_run(&app, &runtime)?;
            log(format!(
                "end to end, {threads} thread(s), rules unchanged, run {run}: {seconds:.2}s, {changes} conversations rewritten"
            ));
            rewritten = changes;
            unchanged.push(seconds);
            conversations = processed;
            wait_idle(&app)?;
        }
        app.shutdown();
    }
    let mut new_versions = Vec::new();
    for run in 0..runs {
        let mut overrides = versions(*next_version);
        *next_version += 1;
        overrides.push(threads_set.clone());
        let app = App::open(config(dir, &overrides)?)?;
        wait_idle(&app)?;
        wait_quiet(quiet, "a full run");
        let (seconds, _, changes) = full_run(&app, &runtime)?;
        log(format!(
            "end to end, {threads} thread(s), new rule versions, run {run}: {seconds:.2}s, {changes} conversations rewritten"
        ));
        new_versions.push(seconds);
        // The index follows the rewritten tags before the next measurement.
        wait_idle(&app)?;
        app.shutdown();
    }
    Ok(EndToEnd {
        unchanged: median(&unchanged),
        new_versions: median(&new_versions),
        conversations,
        rewritten,
    })
}

struct Engine {
    read_seconds: f64,
    one: f64,
    two: f64,
    tags: BTreeMap<String, u64>,
}

/// The rule engine alone over conversations held in memory.
fn engine_only(dir: &Path, runs: usize, quiet: u64, now: Micros) -> anyhow::Result<Engine> {
    let app = App::open(config(dir, &[])?)?;
    wait_idle(&app)?;
    wait_quiet(quiet, "reading every conversation");
    let started = Instant::now();
    let mut candidates: Vec<TagCandidate> = Vec::new();
    let mut after = None;
    loop {
        let heads = app.store.read(|conn| placed_heads(conn, after, 4096))?;
        let Some(last) = heads.last() else { break };
        after = Some(last.place);
        candidates.extend(app.store.read(|conn| with_messages(conn, &heads))?);
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let rules = app.config.tagging.rules.clone();
    let sessions = app.config.sessions.clone();
    app.shutdown();
    drop(app);
    let evaluate_one = |candidate: &TagCandidate| {
        let facts = ConversationFacts {
            now,
            session_timeout: sessions.timeout(&candidate.channel).as_micros() as Micros,
        };
        evaluate(&rules, &candidate.messages, facts)
    };
    let mut tags = BTreeMap::new();
    for results in candidates.iter().map(evaluate_one) {
        for tag in results {
            *tags.entry(tag.tag).or_default() += 1;
        }
    }
    let mut timings = BTreeMap::new();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let mut seconds = Vec::new();
        wait_quiet(quiet, "the engine");
        for _ in 0..runs.max(3) {
            let started = Instant::now();
            let fired: usize = if threads == 1 {
                candidates.iter().map(|c| evaluate_one(c).len()).sum()
            } else {
                pool.install(|| candidates.par_iter().map(|c| evaluate_one(c).len()).sum())
            };
            seconds.push(started.elapsed().as_secs_f64());
            std::hint::black_box(fired);
        }
        log(format!("engine only, {threads} thread(s): {seconds:.3?}s"));
        timings.insert(threads, median(&seconds));
    }
    Ok(Engine {
        read_seconds,
        one: timings[&1],
        two: timings[&2],
        tags,
    })
}

/// Conversations per built-in tag in the store's `tags` table.
fn stored_tag_counts(db: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = conn.prepare("SELECT tag, count(*) FROM tags GROUP BY tag")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn csv_field(out: &mut impl Write, value: Option<&str>) -> std::io::Result<()> {
    match value {
        None => Ok(()),
        Some(text) => write!(out, "\"{}\"", text.replace('"', "\"\"")),
    }
}

/// Writes every message with its conversation's channel as CSV; returns the rows.
fn export_csv(db: &Path, path: &Path) -> anyhow::Result<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        out,
        "conversation_id,seq,msg_id,role,text,ts,flow,step,unidentified,flow_completed,confidence,channel"
    )?;
    let mut statement = conn.prepare(
        "SELECT m.conversation_id, m.seq, m.msg_id, m.role, m.text, m.ts, m.flow, m.step,
                m.unidentified, m.flow_completed, m.confidence, c.channel
         FROM messages m JOIN conversations c ON c.id = m.conversation_id",
    )?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        write!(out, "{},{},", row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)?;
        csv_field(&mut out, Some(&row.get::<_, String>(2)?))?;
        out.write_all(b",")?;
        csv_field(&mut out, Some(&row.get::<_, String>(3)?))?;
        out.write_all(b",")?;
        csv_field(&mut out, Some(&row.get::<_, String>(4)?))?;
        write!(out, ",{},", row.get::<_, i64>(5)?)?;
        csv_field(&mut out, row.get::<_, Option<String>>(6)?.as_deref())?;
        out.write_all(b",")?;
        csv_field(&mut out, row.get::<_, Option<String>>(7)?.as_deref())?;
        let flag = |b: i64| if b != 0 { "true" } else { "false" };
        write!(out, ",{},{},", flag(row.get(8)?), flag(row.get(9)?))?;
        if let Some(confidence) = row.get::<_, Option<f64>>(10)? {
            write!(out, "{confidence:?}")?;
        }
        out.write_all(b",")?;
        csv_field(&mut out, Some(&row.get::<_, String>(11)?))?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

struct Duck {
    version: String,
    load_seconds: f64,
    /// threads → (median seconds over the in-memory table, over Parquet).
    seconds: BTreeMap<usize, (f64, f64)>,
    counts: BTreeMap<String, u64>,
}

/// Runs the DuckDB peer; `None` when duckdb can't be imported.
fn duckdb(dir: &Path, runs: usize, quiet: u64, now: Micros) -> anyhow::Result<Option<Duck>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tagging_duckdb.py");
    let csv = dir.join("w3-messages.csv");
    let parquet = dir.join("w3-messages.parquet");
    let started = Instant::now();
    let rows = export_csv(&dir.join("convlog.db"), &csv)?;
    log(format!(
        "exported {rows} messages to {} in {:.1}s",
        csv.display(),
        started.elapsed().as_secs_f64()
    ));
    wait_quiet(quiet, "DuckDB");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--csv")
        .arg(&csv)
        .arg("--parquet")
        .arg(&parquet)
        .args(["--now", &now.to_string(), "--threads", "1,2"])
        .args(["--runs", &runs.to_string()])
        .output()
        .context("running python3")?;
    let _ = std::fs::remove_file(&csv);
    if output.status.code() == Some(3) {
        log(format!(
            "DuckDB peer skipped: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        return Ok(None);
    }
    ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{}: not JSON", script.display()))?;
    ensure!(
        result["rows"].as_u64() == Some(rows),
        "DuckDB loaded {} rows of {rows}",
        result["rows"]
    );
    let mut seconds = BTreeMap::new();
    for (threads, run) in result["runs"].as_object().context("runs")? {
        seconds.insert(
            threads.parse()?,
            (
                run["median"].as_f64().context("median")?,
                run["parquet_median"].as_f64().context("parquet_median")?,
            ),
        );
    }
    let counts = result["counts"]
        .as_object()
        .context("counts")?
        .iter()
        .map(|(tag, n)| (tag.clone(), n.as_u64().unwrap_or(0)))
        .collect();
    Ok(Some(Duck {
        version: result["duckdb"].as_str().unwrap_or("?").to_string(),
        load_seconds: result["load_seconds"].as_f64().unwrap_or(0.0),
        seconds,
        counts,
    }))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let (messages, runs) = if args.smoke {
        (5_000, 1)
    } else {
        (args.messages, args.runs)
    };
    ensure!(
        messages > 0 && runs > 0,
        "--messages and --runs must be at least 1"
    );
    let temp;
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let db = dir.join("convlog.db");
    // Every conversation ended long before "now": no_bot_reply is not on a boundary.
    let now = chrono::Utc::now().timestamp_micros();
    let end = now - 2 * 24 * 3_600_000_000 - now % 3_600_000_000;
    let load_seconds = if db.exists() {
        log(format!("reusing the store in {}", dir.display()));
        None
    } else {
        log(format!(
            "generating and loading {messages} messages into {}",
            dir.display()
        ));
        Some(load(&dir, args, messages, end)?.1)
    };
    let (stored_messages, conversations) = store_size(&db)?;
    let per_second = |seconds: f64| stored_messages as f64 / seconds;

    // Rule versions only go up from what the store holds.
    let mut next_version = 2 + std::fs::read_to_string(dir.join("w3-version"))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let quiet = args.wait_quiet;
    let one = end_to_end(&dir, 1, runs, quiet, &mut next_version)?;
    let two = end_to_end(&dir, 2, runs, quiet, &mut next_version)?;
    std::fs::write(dir.join("w3-version"), (next_version - 2).to_string())?;
    ensure!(
        one.conversations == conversations && two.conversations == conversations,
        "a full run processed {} / {} of {conversations} conversations",
        one.conversations,
        two.conversations
    );
    let engine = engine_only(&dir, runs, quiet, chrono::Utc::now().timestamp_micros())?;
    let stored = stored_tag_counts(&db)?;
    ensure!(
        engine.tags == stored,
        "the engine's tags {:?} differ from the stored ones {stored:?}",
        engine.tags
    );
    let duck = if args.no_duckdb {
        None
    } else {
        duckdb(&dir, runs, quiet, chrono::Utc::now().timestamp_micros())?
    };
    let mut failures = Vec::new();
    if let Some(duck) = &duck {
        let builtin: BTreeMap<String, u64> = stored
            .iter()
            .filter(|(tag, _)| BUILTIN_RULES.contains(&tag.as_str()))
            .map(|(tag, n)| (tag.clone(), *n))
            .collect();
        if duck.counts != builtin {
            failures.push(format!(
                "DuckDB's conversations per tag {:?} differ from convlog's {builtin:?}",
                duck.counts
            ));
        }
    }

    // The table.
    let e2e_one = per_second(one.unchanged);
    let e2e_two = per_second(two.unchanged);
    let rewrite_one = per_second(one.new_versions);
    let rewrite_two = per_second(two.new_versions);
    let engine_one = per_second(engine.one);
    let engine_two = per_second(engine.two);
    println!();
    println!(
        "W3 — full tagging run: {} messages, {} conversations, seed {}, {} run(s) per figure (medians)",
        thousands(stored_messages as f64),
        thousands(conversations as f64),
        args.seed,
        runs
    );
    println!(
        "machine: {}, {} cores; convlog {}; {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env!("CARGO_PKG_VERSION"),
        duck.as_ref()
            .map_or("DuckDB: skipped".to_string(), |d| format!(
                "DuckDB {}",
                d.version
            ))
    );
    if let Some(seconds) = load_seconds {
        println!(
            "load (library, batches of 10,000, indexer and tagger running): {seconds:.1}s, {} msg/s",
            thousands(per_second(seconds))
        );
    }
    println!();
    println!("| figure | 1 thread | 2 threads | 2 / 1 | bar |");
    println!("| --- | ---: | ---: | ---: | --- |");
    let ratio_bar = |ratio: f64| format!("≥ 1.8×: {}", verdict(ratio >= 1.8));
    println!(
        "| convlog end to end, rules unchanged (msg/s) | {} | {} | {:.2}× | ≥ 1M msg/s: {}; {} |",
        thousands(e2e_one),
        thousands(e2e_two),
        e2e_two / e2e_one,
        verdict(e2e_two >= 1e6),
        ratio_bar(e2e_two / e2e_one)
    );
    println!(
        "| convlog end to end, new rule versions (msg/s) | {} | {} | {:.2}× | ≥ 1M msg/s: {}; {} |",
        thousands(rewrite_one),
        thousands(rewrite_two),
        rewrite_two / rewrite_one,
        verdict(rewrite_two >= 1e6),
        ratio_bar(rewrite_two / rewrite_one)
    );
    println!(
        "| rule engine only, in memory (msg/s) | {} | {} | {:.2}× | {} |",
        thousands(engine_one),
        thousands(engine_two),
        engine_two / engine_one,
        ratio_bar(engine_two / engine_one)
    );
    println!(
        "| reading every conversation from SQLite (msg/s) | {} | — | — | — |",
        thousands(per_second(engine.read_seconds))
    );
    if let Some(duck) = &duck {
        let (mem_one, pq_one) = duck.seconds[&1];
        let (mem_two, pq_two) = duck.seconds[&2];
        println!(
            "| DuckDB, same 8 rules, in-memory table (msg/s) | {} | {} | {:.2}× | — |",
            thousands(per_second(mem_one)),
            thousands(per_second(mem_two)),
            mem_one / mem_two
        );
        println!(
            "| DuckDB, same 8 rules, over Parquet (msg/s) | {} | {} | {:.2}× | — |",
            thousands(per_second(pq_one)),
            thousands(per_second(pq_two)),
            pq_one / pq_two
        );
        println!(
            "| convlog end to end / DuckDB in-memory | {:.2}× | {:.2}× | — | ≥ 1×: {} |",
            mem_one / one.unchanged,
            mem_two / two.unchanged,
            verdict(mem_two / two.unchanged >= 1.0)
        );
        println!(
            "| convlog end to end, new versions / DuckDB in-memory | {:.2}× | {:.2}× | — | ≥ 1×: {} |",
            mem_one / one.new_versions,
            mem_two / two.new_versions,
            verdict(mem_two / two.new_versions >= 1.0)
        );
        println!(
            "| rule engine / DuckDB in-memory | {:.2}× | {:.2}× | — | — |",
            mem_one / engine.one,
            mem_two / engine.two
        );
        println!();
        println!(
            "DuckDB: CSV → Parquet (zstd) → table in {:.1}s (not timed above); conversations per tag equal convlog's: {}",
            duck.load_seconds,
            if failures.is_empty() { "yes" } else { "NO" }
        );
    }
    println!(
        "a full run with unchanged rules still rewrote the tags of {} of {} conversations (store changes, each re-indexed)",
        thousands(two.rewritten as f64),
        thousands(conversations as f64)
    );
    println!("tags: {stored:?}");
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
