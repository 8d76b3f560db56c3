//! The cost of redaction at ingest (issue #18): ingest throughput with every
//! detector on (`card`, `email`, `phone`, `iban`, `ip` and one pattern) against
//! redaction off, on the same generated messages, one in ten carrying
//! personal data (a card, an e-mail, a phone, an IBAN or an address in turn).
//!
//! - **per message**: validation (which redacts) on one core, µs per message;
//! - **ingest**: messages stored per second through the library, as the HTTP
//!   path does it (validate on two worker threads, batches of 1,000, the
//!   store's group commit, the indexer following), in a fresh data directory
//!   per run; off and on alternate, figures are medians.
//!
//! ```sh
//! cargo bench --bench redaction                          # 200k messages, 5 runs
//! cargo bench --bench redaction -- --messages 50000 --runs 3
//! ```

// Only `median` of the shared module is used here.
#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use clap::Parser;
use common::median;
use convlog::app::App;
use convlog_engine::config::{Config, Sources};
use convlog_engine::ingest::validate::validate_messages;
use convlog_gen::{GenConfig, generate};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Messages per run (generated; about 11 per conversation).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Runs of each setting; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Accepted for `cargo bench`'s own arguments.
    #[arg(long)]
    bench: bool,
}

/// What one in ten messages carries, in turn.
const PERSONAL: &[&str] = &[
    " my card is 4111 1111 1111 1111",
    " mail me at jane.doe@example.org",
    " call +44 20 7946 0958",
    " IBAN DE89 3704 0044 0532 0130 00",
    " from 203.0.113.77",
];

/// The two settings compared.
const SETTINGS: [(&str, &[&str]); 2] = [
    ("off", &["privacy.redact=[]"]),
    (
        "all detectors",
        &[
            r#"privacy.redact=["card","email","phone","iban","ip"]"#,
            r#"privacy.patterns=[{name="order_ref", regex="ORD-[0-9]{6}"}]"#,
        ],
    ),
];

fn config(dir: &std::path::Path, overrides: &[&str]) -> anyhow::Result<Config> {
    Ok(Config::load(&Sources {
        data_dir: Some(dir.display().to_string()),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        ..Sources::default()
    })?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let end = chrono::Utc::now() - chrono::Duration::days(1);
    let mut items: Vec<String> = Vec::with_capacity(args.messages);
    generate(
        &GenConfig::new(42, args.messages / 11 + 10, end),
        |mut message| {
            if items.len() < args.messages {
                if items.len().is_multiple_of(10) {
                    message
                        .text
                        .push_str(PERSONAL[(items.len() / 10) % PERSONAL.len()]);
                }
                items.push(serde_json::to_string(&message).expect("messages serialise"));
            }
        },
    );
    let bytes: usize = items.iter().map(String::len).sum();
    println!(
        "{} messages ({:.1} MiB of JSON), one in ten with personal data; {} runs per setting; {} cores",
        items.len(),
        bytes as f64 / (1 << 20) as f64,
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Per message, one core: validation with and without redaction.
    let batches: Vec<Vec<&str>> = items
        .chunks(1000)
        .map(|chunk| chunk.iter().map(String::as_str).collect())
        .collect();
    let mut per_message = Vec::new();
    for (name, overrides) in SETTINGS {
        let dir = tempfile::tempdir()?;
        let app = App::open(config(dir.path(), overrides)?)?;
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            for batch in &batches {
                std::hint::black_box(validate_messages(batch, &app.rules).expect("valid"));
            }
            times.push(started.elapsed().as_secs_f64() * 1e6 / items.len() as f64);
        }
        let redacted: u64 = app.rules.redaction.counts().iter().map(|(_, n)| n).sum();
        per_message.push((name, median(&times), redacted / args.runs as u64));
    }
    println!(
        "\nvalidation per message (one core, median of {}):",
        args.runs
    );
    for (name, micros, redacted) in &per_message {
        println!("  {name:<14} {micros:.2} µs   ({redacted} matches per pass)");
    }

    // Ingest end to end, alternating the settings.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SETTINGS.len()];
    for run in 0..args.runs {
        for (at, (name, overrides)) in SETTINGS.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let app = App::open(config(dir.path(), overrides)?)?;
            let next = std::sync::atomic::AtomicUsize::new(0);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        loop {
                            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = batches.get(at) else { break };
                            let valid = validate_messages(batch, &app.rules).expect("valid");
                            app.ingest_blocking(valid).expect("stored");
                        }
                    });
                }
            });
            let rate = items.len() as f64 / started.elapsed().as_secs_f64();
            eprintln!("[redaction] run {}: {name}: {rate:.0} msg/s", run + 1);
            rates[at].push(rate);
        }
    }
    let off = median(&rates[0]);
    let on = median(&rates[1]);
    println!(
        "\ningest, messages stored per second (median of {}):",
        args.runs
    );
    println!(
        "  off             {off:.0}  (runs {:?})",
        rounded(&rates[0])
    );
    println!("  all detectors   {on:.0}  (runs {:?})", rounded(&rates[1]));
    println!(
        "  all detectors / off = {:.1}%  (bar: ≥ 90%)",
        100.0 * on / off
    );
    Ok(())
}

fn rounded(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.round() as u64).collect()
}
