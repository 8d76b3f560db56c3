//! W4 of BENCHMARKS.md: archive N expired messages to zstd Parquet through
//! object_store, then delete them from the hot store and the index.
//!
//! Generates N messages dated well past the retention period, loads them into a
//! template data directory through the library, then per run copies the
//! template and times one archive pass end to end (`Archiver::run`, the job
//! behind `POST /v1/admin/archive`: plan, read from SQLite, encode on rayon,
//! write to the `file://` object store, read back and verify, manifest, delete
//! from the store, wait for the index to commit). The peer is DuckDB (Python):
//! it loads the very rows convlog archived and times `COPY … TO … (FORMAT
//! parquet, COMPRESSION zstd, PARTITION_BY (bot_id, date))` with the same
//! layout, and the bytes of both archives are compared.
//!
//! ```sh
//! cargo bench --bench archive                        # 1M messages, 3 runs
//! cargo bench --bench archive -- --messages 200000 --runs 1
//! cargo bench --bench archive -- --smoke             # tiny, a few seconds
//! ```

#[path = "common/mod.rs"]
mod common;

use anyhow::{Context, ensure};
use clap::Parser;
use common::median;
use convlog::app::App;
use convlog_engine::config::{Config, Sources};
use convlog_engine::jobs::Progress;
use convlog_gen::GenConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Benchmarks an archive pass (W4).
#[derive(Debug, Parser)]
#[command(name = "archive")]
struct Args {
    /// Messages to generate, load and archive.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Measured passes (each on a fresh copy of the loaded data); medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Tiny mode: 20,000 messages, one run; checks that everything works.
    #[arg(long)]
    smoke: bool,
    /// Where to keep the data (default: target/bench-archive).
    #[arg(long)]
    dir: Option<PathBuf>,
    // `cargo bench` passes this to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The archiver logs each run's time per step.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONVLOG_LOG")
                .unwrap_or_else(|_| "convlog_engine::archive=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("archive bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[archive] {}", message.as_ref());
}

fn config(dir: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(&Sources {
        data_dir: Some(dir.display().to_string()),
        overrides: vec![
            "index.refresh_interval=200ms".into(),
            // The pass is started by the bench, not by the schedule.
            "retention.schedule=0s".into(),
        ],
        ..Sources::default()
    })?)
}

/// Loads about `messages` generated messages, all a year older than the retention period.
fn load(dir: &Path, messages: usize, seed: u64) -> anyhow::Result<u64> {
    let app = App::open(config(dir)?)?;
    let end = chrono::Utc::now() - chrono::Duration::days(365 + 180);
    let mut generator = GenConfig::new(seed, messages / 11 + 10, end);
    generator.bots = vec!["w4-a".into(), "w4-b".into()];
    let loaded = common::load(&app, &generator, messages)?;
    // Let the indexer and the tagger finish, so the pass measures only itself.
    let started = Instant::now();
    while app.index.state().position() < app.store.head() {
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "index not caught up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    app.shutdown();
    Ok(loaded)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    ensure!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

/// Bytes of the `*.parquet` files under `dir`.
fn parquet_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// One timed archive pass on a copy of the template: (seconds, messages archived).
fn pass(template: &Path, work: &Path) -> anyhow::Result<(f64, u64)> {
    copy_dir(template, work)?;
    let app = App::open(config(work)?)?;
    let progress = Progress::default();
    let started = Instant::now();
    let summary = app.archiver.run(&progress)?;
    let seconds = started.elapsed().as_secs_f64();
    let hot: i64 = app
        .store
        .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?))?;
    app.shutdown();
    ensure!(hot == 0, "{hot} messages still hot after the pass");
    Ok((seconds, summary.messages))
}

/// DuckDB writes the same rows with the same layout: (seconds, bytes).
fn duckdb(archive: &Path, out: &Path) -> anyhow::Result<Option<(f64, u64)>> {
    let script = r#"
import duckdb, sys, time
archive, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE m AS SELECT * FROM read_parquet('{archive}/messages/*/*/*.parquet', hive_partitioning = true)")
started = time.perf_counter()
con.execute(f"COPY m TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (bot_id, date))")
print(time.perf_counter() - started)
"#;
    let _ = std::fs::remove_dir_all(out);
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(archive)
        .arg(out)
        .output()
        .context("running python3")?;
    if !output.status.success() {
        log(format!(
            "DuckDB unavailable: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seconds: f64 = stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .with_context(|| format!("DuckDB printed {stdout:?}"))?;
    Ok(Some((seconds, parquet_bytes(out))))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let (messages, runs) = if args.smoke {
        (20_000, 1)
    } else {
        (args.messages, args.runs.max(1))
    };
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-archive"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let template = root.join("template");
    log(format!("loading {messages} messages"));
    let loaded = load(&template, messages, args.seed)?;

    let work = root.join("work");
    let mut seconds = Vec::new();
    for run in 0..runs {
        let (took, archived) = pass(&template, &work)?;
        ensure!(archived == loaded, "archived {archived} of {loaded}");
        log(format!(
            "run {}: {archived} rows in {took:.2}s = {:.0} rows/s",
            run + 1,
            archived as f64 / took
        ));
        seconds.push(took);
    }
    let archive_dir = work.join("archive");
    let convlog_bytes = parquet_bytes(&archive_dir.join("messages"));
    let convlog_seconds = median(&seconds);
    let rows_per_second = loaded as f64 / convlog_seconds;
    let duck = duckdb(&archive_dir, &root.join("duckdb"))?;

    println!(
        "\n| W4 archive ({loaded} messages, {runs} runs, medians) | convlog | DuckDB COPY | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    match duck {
        Some((duck_seconds, duck_bytes)) => {
            println!(
                "| rows/s (convlog end to end; DuckDB the COPY alone) | {:.0} | {:.0} | {:.2} |",
                rows_per_second,
                loaded as f64 / duck_seconds,
                rows_per_second / (loaded as f64 / duck_seconds)
            );
            println!(
                "| messages table bytes | {convlog_bytes} | {duck_bytes} | {:.3} |",
                convlog_bytes as f64 / duck_bytes as f64
            );
        }
        None => {
            println!("| rows/s end to end | {rows_per_second:.0} | – | – |");
            println!("| messages table bytes | {convlog_bytes} | – | – |");
        }
    }
    println!(
        "\nbars: ≥ 500k rows/s ({}); size within 10% of DuckDB's ({})",
        if rows_per_second >= 500_000.0 {
            "met"
        } else {
            "missed"
        },
        match duck {
            Some((_, duck_bytes)) if (convlog_bytes as f64) <= 1.1 * duck_bytes as f64 => "met",
            Some(_) => "missed",
            None => "not measured",
        }
    );
    let report = json!({
        "messages": loaded,
        "runs": runs,
        "seconds": seconds,
        "rows_per_second": rows_per_second,
        "convlog_bytes": convlog_bytes,
        "duckdb": duck.map(|(s, b)| json!({"seconds": s, "bytes": b})),
    });
    std::fs::write(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-archive.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}
