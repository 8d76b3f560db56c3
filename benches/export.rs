//! The export's memory (issue #20): `GET /v1/bots/{bot}/conversations/export`
//! of every message (NDJSON) and every conversation (CSV) of a store of N
//! messages, with the server's peak resident memory during the download
//! against its resident memory before it.
//!
//! Generates N messages (the project's seeded generator), loads them with
//! `convlog ingest --direct`, starts the release `convlog serve` on the data
//! directory and waits for the index. A search over the whole range warms the
//! index (its pages are mapped by any search); then for each run the peak is
//! reset (`/proc/PID/clear_refs`), the export is downloaded — by a client
//! reading as fast as it can, and by one that stalls for 5 s half-way, which
//! is what makes a server without back-pressure buffer the rest — and the
//! growth is `VmHWM` after minus `VmRSS` before. The resident anonymous memory
//! (`RssAnon`, the heap) is sampled every 10 ms too. Figures are medians of
//! `--runs`; the bar is a growth under 50 MiB at 1M messages.
//!
//! ```sh
//! cargo bench --bench export                         # 1M messages, 3 runs
//! cargo bench --bench export -- --messages 100000 --runs 1
//! ```

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use anyhow::{Context, ensure};
use clap::Parser;
use common::median;
use convlog_gen::GenConfig;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Messages to generate and load.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Downloads of each kind; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Accepted for `cargo bench`'s own arguments.
    #[arg(long)]
    bench: bool,
}

const BOT: &str = "exp";
const RANGE: &str = "from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z";
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let started = Instant::now();
    load(&data, args.messages, args.seed)?;
    eprintln!(
        "[export] loaded {} messages in {:.0} s",
        args.messages,
        started.elapsed().as_secs_f64()
    );
    let log = dir.path().join("server.log");
    let patience = Duration::from_secs(1800);
    let convlog_testkit::Started { mut child, base } =
        convlog_testkit::Launch::new(Path::new(env!("CARGO_BIN_EXE_convlog")), &data, &log)
            .args(["--set", "retention.schedule=0s"])
            .spawn(patience)
            .map_err(anyhow::Error::msg)?;
    let agent = convlog_testkit::agent(Duration::from_secs(3600));
    convlog_testkit::wait_ready(&mut child, &base, &agent, patience).map_err(anyhow::Error::msg)?;
    let pid = child.id();
    let result = measure(&args, &agent, &base, pid);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn measure(args: &Args, agent: &ureq::Agent, base: &str, pid: u32) -> anyhow::Result<()> {
    // The index has every message before anything is measured.
    let count = |path: &str| -> anyhow::Result<u64> {
        let body: serde_json::Value = agent
            .get(format!("{base}{path}"))
            .call()?
            .into_body()
            .read_json()?;
        Ok(body["total"].as_u64().unwrap_or(0))
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (conversations, messages) = loop {
        let conversations = count(&format!("/v1/bots/{BOT}/conversations?{RANGE}&limit=1"))?;
        let messages = count(&format!("/v1/bots/{BOT}/messages?{RANGE}&limit=1"))?;
        if messages == args.messages as u64 {
            break (conversations, messages);
        }
        ensure!(
            Instant::now() < deadline,
            "the index has {messages} messages"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Nor is the server still busy with its start-up work (the tagger's full
    // pass, the index catching up with the tags): that memory isn't the export's.
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    };
    loop {
        let text = agent
            .get(format!("{base}/metrics"))
            .call()?
            .into_body()
            .read_to_string()?;
        let idle = metric(&text, "convlog_tagger_lag") == Some(0.0)
            && metric(&text, "convlog_tagger_last_full_run_timestamp_seconds")
                .is_some_and(|t| t > 0.0)
            && metric(&text, "convlog_index_lag") == Some(0.0);
        if idle {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the server is still busy:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let the last merges and frees settle.
    std::thread::sleep(Duration::from_secs(5));
    println!(
        "{messages} messages in {conversations} conversations; {} runs; {} cores; load average {}",
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (format, lines) in [("ndjson", messages), ("csv", conversations + 1)] {
        for stall in [false, true] {
            let mut growth = Vec::new();
            let mut heap = Vec::new();
            let mut rates = Vec::new();
            let mut sizes = Vec::new();
            for _ in 0..args.runs {
                let run = download(agent, base, pid, format, stall)?;
                ensure!(
                    run.lines == lines,
                    "{format}: {} lines, expected {lines}",
                    run.lines
                );
                growth.push(run.peak_growth / MIB);
                heap.push(run.heap_growth / MIB);
                rates.push(run.lines as f64 / run.seconds);
                sizes.push(run.bytes as f64 / MIB);
            }
            println!(
                "{format:6} {:18} {:>9.0} lines/s  {:>7.0} MiB sent  peak RSS growth: median {:>5.1} MiB, runs {:?}  heap growth {:>5.1} MiB  (bar: every run < 50 MiB)",
                if stall {
                    "reader stalls 5 s"
                } else {
                    "reader flat out"
                },
                median(&rates),
                median(&sizes),
                median(&growth),
                growth
                    .iter()
                    .map(|g| (g * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
                median(&heap),
            );
        }
    }
    Ok(())
}

/// One download's figures.
struct Download {
    lines: u64,
    bytes: u64,
    seconds: f64,
    /// Peak resident memory during it minus the resident memory before (bytes).
    peak_growth: f64,
    /// The same of the sampled anonymous memory.
    heap_growth: f64,
}

fn download(
    agent: &ureq::Agent,
    base: &str,
    pid: u32,
    format: &str,
    stall: bool,
) -> anyhow::Result<Download> {
    // A warm index and a settled heap: the figures are the export's alone.
    agent
        .get(format!(
            "{base}/v1/bots/{BOT}/conversations?{RANGE}&limit=1"
        ))
        .call()?;
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("resetting the peak (clear_refs)")?;
    let before = status(pid, "VmRSS:")?;
    let heap_before = status(pid, "RssAnon:")?;
    let heap_peak = Arc::new(AtomicU64::new(heap_before as u64));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (heap_peak, done) = (heap_peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(anon) = status(pid, "RssAnon:") {
                    heap_peak.fetch_max(anon as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let begun = Instant::now();
    let response = agent
        .get(format!(
            "{base}/v1/bots/{BOT}/conversations/export?format={format}&{RANGE}"
        ))
        .call()?;
    ensure!(response.status() == 200, "export: {}", response.status());
    let mut reader = response.into_body().into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut bytes, mut stalled) = (0u64, 0u64, !stall);
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if !stalled && bytes > 20 * 1024 * 1024 {
            stalled = true;
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let seconds = begun.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = status(pid, "VmHWM:")?;
    Ok(Download {
        lines,
        bytes,
        seconds,
        peak_growth: peak - before,
        heap_growth: heap_peak.load(Ordering::Relaxed) as f64 - heap_before,
    })
}

/// A field of `/proc/PID/status`, in bytes.
fn status(pid: u32, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib: f64 = line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .with_context(|| line.to_string())?;
    Ok(kib * 1024.0)
}

/// Generates `count` messages into `convlog ingest --direct`.
fn load(data_dir: &Path, count: usize, seed: u64) -> anyhow::Result<()> {
    let end = chrono::Utc::now() - chrono::Duration::hours(1);
    let config = GenConfig {
        bots: vec![BOT.to_string()],
        ..GenConfig::new(seed, count / 10 + 10, end)
    };
    common::ingest_direct(
        Path::new(env!("CARGO_BIN_EXE_convlog")),
        data_dir,
        &config,
        count,
        |_| {},
    )
}
