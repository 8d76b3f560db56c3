//! W5 of BENCHMARKS.md: a full reindex from the store, and search while it runs.
//!
//! Generates N messages (the project's seeded generator), loads them with
//! `convlog ingest --direct` into a fresh data directory, starts the release
//! `convlog serve` on it, measures a fixed mix of searches over HTTP (before),
//! then times `POST /v1/admin/reindex` until the job has succeeded while the
//! same searches run in a loop (during). Reported: messages/s of the reindex
//! (messages ÷ the job's `finished_at − started_at`, and ÷ the wall time from
//! the POST to seeing it succeeded), searches answered / issued during it, and
//! p50/p99 search latency during vs before. `--runs K` reindexes K times on the
//! same data and reports medians.
//!
//! ```sh
//! cargo bench --bench reindex -- --messages 1000000 --runs 3
//! cargo bench --bench reindex -- --messages 50000 --runs 1        # quick look
//! ```

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use anyhow::{Context, ensure};
use clap::Parser;
use convlog_gen::GenConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// W5: full reindex throughput and search availability during it.
#[derive(Debug, Parser)]
#[command(name = "reindex")]
struct Args {
    /// Messages to generate and load.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Reindex this many times on the same data and report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Threads issuing searches (before and during the reindex); 0 times the reindex alone.
    #[arg(long, default_value_t = 1)]
    query_threads: usize,
    /// Before each reindex, wait up to this many seconds for other processes to use less
    /// than a quarter of the cores (over 5 s); 0: don't wait.
    #[arg(long, default_value_t = 0)]
    wait_quiet: u64,
    /// Searches per thread in the "before" measurement.
    #[arg(long, default_value_t = 1_000)]
    before_queries: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Keep the data directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const BOT: &str = "w5";
const FROM: &str = "2026-01-01T00%3A00%3A00Z";
const TO: &str = "2027-01-01T00%3A00%3A00Z";

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("reindex bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[w5] {}", message.as_ref());
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_convlog")
}

/// Generates `count` messages into `convlog ingest --direct`; returns words by frequency.
fn load(data_dir: &Path, count: usize, seed: u64) -> anyhow::Result<Vec<String>> {
    let end = chrono::DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
        .expect("valid")
        .with_timezone(&chrono::Utc);
    // About 11.5 messages per conversation; generate a little more and stop at `count`.
    let config = GenConfig {
        bots: vec![BOT.to_string()],
        ..GenConfig::new(seed, count / 10 + 10, end)
    };
    let mut counts: HashMap<String, u64> = HashMap::new();
    common::ingest_direct(Path::new(binary()), data_dir, &config, count, |message| {
        for word in message.text.split(|c: char| !c.is_ascii_alphabetic()) {
            if word.len() >= 3 {
                *counts.entry(word.to_ascii_lowercase()).or_default() += 1;
            }
        }
    })?;
    let mut ranked: Vec<(u64, String)> = counts.into_iter().map(|(w, c)| (c, w)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(ranked.into_iter().map(|(_, w)| w).collect())
}

/// `convlog serve` on the data directory, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts it with the one launcher the tests use too (`convlog-testkit`).
    fn start(data_dir: &Path, log_file: &Path) -> anyhow::Result<Server> {
        let patience = Duration::from_secs(600);
        let convlog_testkit::Started { mut child, base } =
            convlog_testkit::Launch::new(Path::new(binary()), data_dir, log_file)
                .spawn(patience)
                .map_err(anyhow::Error::msg)?;
        let agent = convlog_testkit::agent(Duration::from_secs(60));
        convlog_testkit::wait_ready(&mut child, &base, &agent, patience)
            .map_err(anyhow::Error::msg)?;
        Ok(Server { child, base })
    }

    fn http(&self) -> Http {
        Http {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
            base: self.base.clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    fn post(&self, path: &str) -> Result<(u16, String), String> {
        self.answer(self.agent.post(format!("{}{path}", self.base)).send_empty())
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), String> {
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    fn json(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(path).map_err(anyhow::Error::msg)?;
        ensure!(status == 200, "GET {path}: {status} {body}");
        Ok(serde_json::from_str(&body)?)
    }
}

/// The search mix: text (a common, a mid-frequency and a rarer word; two words), filters,
/// message search; all over the whole data.
fn query_mix(words: &[String]) -> Vec<String> {
    let word = |rank: usize| words[rank.min(words.len() - 1)].clone();
    let conv = format!("/v1/bots/{BOT}/conversations?from={FROM}&to={TO}&limit=20");
    let msgs = format!("/v1/bots/{BOT}/messages?from={FROM}&to={TO}&limit=20");
    vec![
        format!("{conv}&q={}", word(0)),
        format!("{conv}&q={}", word(50)),
        format!("{conv}&q={}", word(2_000)),
        format!("{conv}&q={}+{}", word(10), word(200)),
        format!("{conv}&channel=web"),
        format!("{conv}&channel=whatsapp&q={}", word(20)),
        format!("{msgs}&q={}", word(30)),
        format!("{msgs}&q={}&role=user", word(300)),
    ]
}

/// Searches answered and their latencies (of those answered 200).
#[derive(Default)]
struct Sample {
    issued: u64,
    answered: u64,
    errors: Vec<String>,
    latencies: Vec<Duration>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.issued += other.issued;
        self.answered += other.answered;
        self.errors.extend(other.errors.into_iter().take(5));
        self.latencies.extend(other.latencies);
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

/// Runs the mix from `threads` threads, each until `stop` says so.
fn search_load(
    http: &Http,
    queries: &[String],
    threads: usize,
    stop: &(dyn Fn(u64) -> bool + Sync),
) -> Sample {
    let total = Mutex::new(Sample::default());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (http, total) = (http.clone(), &total);
            scope.spawn(move || {
                let mut sample = Sample::default();
                let mut n = t;
                while !stop(sample.issued) {
                    let path = &queries[n % queries.len()];
                    n += 1;
                    let started = Instant::now();
                    let result = http.get(path);
                    let took = started.elapsed();
                    sample.issued += 1;
                    match result {
                        Ok((200, _)) => {
                            sample.answered += 1;
                            sample.latencies.push(took);
                        }
                        Ok((status, body)) => {
                            sample.errors.push(format!("GET {path}: {status} {body}"))
                        }
                        Err(err) => sample.errors.push(format!("GET {path}: {err}")),
                    }
                }
                total.lock().unwrap().merge(sample);
            });
        }
    });
    total.into_inner().unwrap()
}

fn micros(text: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("timestamp {text:?}"))?
        .timestamp_micros())
}

/// Polls a job until it has ended; the job and the time since `started`.
fn wait_job(http: &Http, id: &str, started: Instant) -> anyhow::Result<(Value, Duration)> {
    loop {
        let job = http.json(&format!("/v1/admin/jobs/{id}"))?;
        match job["state"].as_str() {
            Some("succeeded" | "failed") => return Ok((job, started.elapsed())),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One reindex: (server-side seconds, wall seconds, searches during it).
fn one_reindex(
    http: &Http,
    queries: &[String],
    threads: usize,
) -> anyhow::Result<(f64, f64, Sample)> {
    let started = Instant::now();
    let (status, body) = http.post("/v1/admin/reindex").map_err(anyhow::Error::msg)?;
    ensure!(status == 202, "POST /v1/admin/reindex: {status} {body}");
    let id = serde_json::from_str::<Value>(&body)?["id"]
        .as_str()
        .context("job id")?
        .to_string();
    let done = AtomicBool::new(false);
    let (job, wall, sample) = std::thread::scope(|scope| {
        let load =
            scope.spawn(|| search_load(http, queries, threads, &|_| done.load(Ordering::SeqCst)));
        let result = wait_job(http, &id, started);
        done.store(true, Ordering::SeqCst);
        let sample = load.join().expect("search threads");
        result.map(|(job, wall)| (job, wall, sample))
    })?;
    ensure!(job["state"] == "succeeded", "the reindex failed: {job}");
    let server = (micros(job["finished_at"].as_str().context("finished_at")?)?
        - micros(job["started_at"].as_str().context("started_at")?)?) as f64
        / 1e6;
    Ok((server, wall.as_secs_f64(), sample))
}

/// CPU seconds used by the whole machine since boot (all cores, not idle).
fn machine_busy() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    busy / 100.0
}

/// CPU seconds used by process `pid` (user + system).
fn process_cpu(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with the last ')'), from the state on:
    // utime is the 12th, stime the 13th.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    (field(11) + field(12)) / 100.0
}

/// Measures what processes other than ours (this one and the server) use of the cores.
struct OthersMeter {
    pids: Vec<u32>,
    machine: f64,
    own: f64,
    started: Instant,
}

impl OthersMeter {
    fn start(pids: &[u32]) -> OthersMeter {
        OthersMeter {
            pids: pids.to_vec(),
            machine: machine_busy(),
            own: pids.iter().map(|&p| process_cpu(p)).sum(),
            started: Instant::now(),
        }
    }

    /// Share of all cores used by other processes since `start`.
    fn share(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let own: f64 = self.pids.iter().map(|&p| process_cpu(p)).sum::<f64>() - self.own;
        let others = machine_busy() - self.machine - own;
        (others / self.started.elapsed().as_secs_f64() / cores).max(0.0)
    }
}

/// Waits until other processes use less than a quarter of the cores over 5 s, or `timeout`.
fn wait_quiet(pids: &[u32], timeout: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let meter = OthersMeter::start(pids);
        std::thread::sleep(Duration::from_secs(5));
        let share = meter.share();
        if share < 0.25 || started.elapsed() >= timeout {
            return share;
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

fn run(args: &Args) -> anyhow::Result<bool> {
    ensure!(args.runs >= 1 && args.messages >= 1_000);
    let root = tempfile::Builder::new().prefix("convlog-w5-").tempdir()?;
    let root_path: PathBuf = if args.keep {
        root.keep()
    } else {
        root.path().to_path_buf()
    };
    let data_dir = root_path.join("data");
    log(format!(
        "loading {} messages with convlog ingest --direct into {}",
        thousands(args.messages as f64),
        data_dir.display()
    ));
    let loading = Instant::now();
    let words = load(&data_dir, args.messages, args.seed)?;
    log(format!("loaded in {:.1}s", loading.elapsed().as_secs_f64()));

    let log_path = root_path.join("server.log");
    let mut server = Server::start(&data_dir, &log_path)?;
    let result = measure(args, &server, &words, &root_path);
    if result.is_err() {
        // Say what became of the server: a refused connection usually means it died.
        let status = server.child.try_wait().ok().flatten();
        log(match status {
            Some(status) => format!("the server exited with {status}"),
            None => "the server is still running".to_string(),
        });
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "--- server log (last lines) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    drop(server);
    result
}

/// Everything measured against a running server; true when W5's bars are met.
fn measure(
    args: &Args,
    server: &Server,
    words: &[String],
    root_path: &Path,
) -> anyhow::Result<bool> {
    let http = server.http();
    let stored = http.json(&format!(
        "/v1/bots/{BOT}/messages?from={FROM}&to={TO}&limit=1"
    ))?["total"]
        .as_u64()
        .context("total")?;
    let conversations = http.json(&format!(
        "/v1/bots/{BOT}/conversations?from={FROM}&to={TO}&limit=1"
    ))?["total"]
        .as_u64()
        .context("total")?;
    ensure!(
        stored == args.messages as u64,
        "{stored} messages searchable, {} loaded",
        args.messages
    );
    let queries = query_mix(words);

    log("searches before the reindex");
    let per_thread = args.before_queries as u64;
    let before = search_load(&http, &queries, args.query_threads, &|issued| {
        issued >= per_thread
    });
    ensure!(
        before.errors.is_empty(),
        "searches failed before the reindex: {:?}",
        before.errors
    );

    let mut server_rates = Vec::new();
    let mut wall_rates = Vec::new();
    let mut seconds = Vec::new();
    let mut during = Sample::default();
    let mut others = Vec::new();
    let mut server_cores = Vec::new();
    let pids = [std::process::id(), server.child.id()];
    for run in 1..=args.runs {
        if args.wait_quiet > 0 {
            let share = wait_quiet(&pids, Duration::from_secs(args.wait_quiet));
            log(format!(
                "other processes use {:.0}% of the cores",
                share * 100.0
            ));
        }
        log(format!("reindex {run}/{}", args.runs));
        let meter = OthersMeter::start(&pids);
        let server_cpu = process_cpu(server.child.id());
        let (server_s, wall_s, sample) = one_reindex(&http, &queries, args.query_threads)?;
        let share = meter.share();
        let cores = (process_cpu(server.child.id()) - server_cpu) / wall_s;
        others.push(share);
        server_cores.push(cores);
        log(format!(
            "  {server_s:.2}s (job), {wall_s:.2}s (wall); {} of {} searches answered; \
             the server used {cores:.2} cores, other processes {:.0}% of the cores meanwhile",
            sample.answered,
            sample.issued,
            share * 100.0
        ));
        server_rates.push(stored as f64 / server_s);
        wall_rates.push(stored as f64 / wall_s);
        seconds.push(server_s);
        during.merge(sample);
    }
    let after = http.json(&format!(
        "/v1/bots/{BOT}/messages?from={FROM}&to={TO}&limit=1"
    ))?["total"]
        .as_u64()
        .context("total")?;
    ensure!(
        after == stored,
        "{after} messages searchable after, {stored} before"
    );

    let rate = median(server_rates.clone());
    let availability = during.answered as f64 / during.issued.max(1) as f64;
    let rate_ok = rate >= 100_000.0;
    // Without search threads there is nothing to check.
    let availability_ok = during.answered == during.issued;
    let verdict = |ok: bool| if ok { "meets" } else { "MISS" };
    println!();
    println!(
        "W5 — full reindex of {} messages ({} conversations), {} run(s), {} search thread(s); {}",
        thousands(stored as f64),
        thousands(conversations as f64),
        args.runs,
        args.query_threads,
        machine()
    );
    println!();
    println!("| figure | value | bar | verdict |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| reindex msg/s (job started → finished), median | {} | ≥ 100,000 | {} |",
        thousands(rate),
        verdict(rate_ok)
    );
    println!(
        "| reindex msg/s (POST → seen succeeded), median | {} | | |",
        thousands(median(wall_rates))
    );
    println!(
        "| reindex duration, median | {:.2} s | | |",
        median(seconds)
    );
    if during.issued > 0 {
        println!(
            "| searches answered / issued during the reindex | {} / {} ({:.2}%) | 100% | {} |",
            during.answered,
            during.issued,
            availability * 100.0,
            verdict(availability_ok)
        );
        println!(
            "| search p50 before → during | {} → {} | | |",
            ms(before.percentile(0.50)),
            ms(during.percentile(0.50))
        );
        println!(
            "| search p99 before → during | {} → {} | | |",
            ms(before.percentile(0.99)),
            ms(during.percentile(0.99))
        );
    } else {
        println!("| searches during the reindex | none issued (--query-threads 0) | | |");
    }
    println!();
    println!(
        "per run (msg/s, job): {}; cores the server used: {}; other processes' share of the \
         cores: {}",
        server_rates
            .iter()
            .map(|r| thousands(*r))
            .collect::<Vec<_>>()
            .join(", "),
        server_cores
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        others
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !during.errors.is_empty() {
        println!(
            "failed searches, e.g.: {:?}",
            &during.errors[..during.errors.len().min(5)]
        );
    }
    if args.keep {
        println!("data kept in {}", root_path.display());
    }
    Ok(rate_ok && availability_ok)
}
