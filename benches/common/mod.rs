//! Shared by the benches: loading generated data through the library or
//! through `convlog ingest --direct`, and medians.

use anyhow::{Context, bail, ensure};
use convlog::app::App;
use convlog_engine::ingest::validate::validate_messages;
use convlog_gen::{GenConfig, GenMessage, generate};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Generates the first `count` messages of `config` into `convlog ingest
/// --direct` on `data_dir` (`convlog` is the binary), showing each to `each`
/// on the way.
#[allow(dead_code)]
pub fn ingest_direct(
    convlog: &Path,
    data_dir: &Path,
    config: &GenConfig,
    count: usize,
    mut each: impl FnMut(&GenMessage),
) -> anyhow::Result<()> {
    let mut ingest = Command::new(convlog)
        .args(["ingest", "--direct", "--data-dir"])
        .arg(data_dir)
        .arg("-")
        .env("CONVLOG_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("spawning convlog ingest")?;
    let mut out = BufWriter::with_capacity(1 << 20, ingest.stdin.take().expect("stdin"));
    let (mut written, mut failed) = (0, None);
    generate(config, |message| {
        if written >= count || failed.is_some() {
            return;
        }
        each(&message);
        let line = serde_json::to_string(&message).expect("serialise");
        if let Err(err) = writeln!(out, "{line}") {
            failed = Some(err);
        }
        written += 1;
    });
    if let Some(err) = failed {
        bail!("writing to convlog ingest: {err}");
    }
    ensure!(
        written == count,
        "the generator made only {written} messages"
    );
    out.flush()?;
    drop(out);
    let status = ingest.wait()?;
    ensure!(status.success(), "convlog ingest exited with {status}");
    Ok(())
}

/// Generates with `generator` and ingests the first `messages` messages in
/// batches of 10,000 (validated as the HTTP path would); returns how many were stored.
pub fn load(app: &App, generator: &GenConfig, messages: usize) -> anyhow::Result<u64> {
    let mut batch: Vec<String> = Vec::with_capacity(10_000);
    let (mut loaded, mut count) = (0u64, 0usize);
    let mut failure: Option<anyhow::Error> = None;
    let mut flush = |batch: &mut Vec<String>| -> anyhow::Result<()> {
        let items = std::mem::take(batch);
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        let valid = validate_messages(&items, &app.rules)
            .map_err(|err| anyhow::anyhow!("generated data is invalid: {err:?}"))?;
        loaded += app.ingest_blocking(valid)?.accepted as u64;
        Ok(())
    };
    generate(generator, |message| {
        if count >= messages || failure.is_some() {
            return;
        }
        count += 1;
        batch.push(serde_json::to_string(&message).expect("messages serialise"));
        if batch.len() == 10_000
            && let Err(err) = flush(&mut batch)
        {
            failure = Some(err);
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(loaded)
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}
