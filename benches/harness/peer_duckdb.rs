//! The DuckDB peer (W3 tagging, W4 archive to Parquet) through Python:
//! `benches/harness_duckdb.py` over the messages exported from convlog's store.

use super::peers;
use anyhow::{Context, bail, ensure};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What DuckDB measured.
#[derive(Debug, Clone)]
pub struct Duck {
    pub version: String,
    pub rows: u64,
    pub threads: u64,
    /// Median seconds of the tagging statement and of the Parquet COPY.
    pub tagging_s: f64,
    pub archive_s: f64,
    pub archive_bytes: u64,
    pub counts: BTreeMap<String, u64>,
    pub peak_rss_kib: u64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Checks that Python can import duckdb (before anything long runs).
pub fn check() -> anyhow::Result<()> {
    let output = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .context("running python3 (the DuckDB peer needs it)")?;
    if !output.status.success() {
        bail!(
            "the DuckDB peer needs the Python package duckdb: `pip install duckdb` (or leave it out with `--peers postgres,sqlite`)"
        );
    }
    Ok(())
}

/// Exports the messages, runs the script, parses its answer.
pub fn run(dir: &Path, db: &Path, now: i64, runs: usize, threads: usize) -> anyhow::Result<Duck> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/harness_duckdb.py");
    let csv = dir.join("duckdb-messages.csv");
    let parquet = dir.join("duckdb-archive");
    let rows = peers::write_messages_csv(db, &csv)?;
    let output = Command::new("python3")
        .arg(&script)
        .arg("--csv")
        .arg(&csv)
        .arg("--parquet")
        .arg(&parquet)
        .args(["--now", &now.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--runs", &runs.to_string()])
        .output()
        .context("running python3")?;
    let _ = std::fs::remove_file(&csv);
    let _ = std::fs::remove_dir_all(&parquet);
    ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{}: not JSON", script.display()))?;
    ensure!(
        result["rows"].as_u64() == Some(rows),
        "DuckDB loaded {} rows of {rows}",
        result["rows"]
    );
    let seconds = |key: &str| -> Vec<f64> {
        result[key]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    Ok(Duck {
        version: result["duckdb"].as_str().unwrap_or("?").to_string(),
        rows,
        threads: result["threads"].as_u64().unwrap_or(0),
        tagging_s: median(&seconds("tagging_seconds")),
        archive_s: median(&seconds("archive_seconds")),
        archive_bytes: result["archive_bytes"].as_u64().unwrap_or(0),
        counts: result["counts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
        peak_rss_kib: result["peak_rss_kib"].as_u64().unwrap_or(0),
    })
}
