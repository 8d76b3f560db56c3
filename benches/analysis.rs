//! The cost of text analysis per message (issue #16), on one core: what
//! indexing pays to analyse a message whose language is given (`lang`), and
//! what each `search.detect_language` mode adds when it is not.
//!
//! The harness's generated messages carry `"lang": "en"`, so W1 does not pay
//! detection; this measures it on the same texts.
//!
//! ```sh
//! cargo bench --bench analysis                         # 200k messages, 5 runs
//! cargo bench --bench analysis -- --messages 50000 --runs 3
//! ```

use clap::Parser;
use convlog_gen::{GenConfig, generate};
use convlog_querylang::analysis;
use std::hint::black_box;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Messages to analyse (generated; about 11 per conversation).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Accepted for `cargo bench`'s own arguments.
    #[arg(long)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let mut texts = Vec::with_capacity(args.messages);
    let end = chrono::Utc::now();
    generate(
        &GenConfig::new(42, args.messages / 11 + 1, end),
        |message| {
            if texts.len() < args.messages {
                texts.push(message.text);
            }
        },
    );
    let bytes: usize = texts.iter().map(String::len).sum();
    println!(
        "{} messages, {:.1} MiB of text, {} runs, one core\n",
        texts.len(),
        bytes as f64 / (1 << 20) as f64,
        args.runs
    );
    let time = |work: &dyn Fn(&str)| -> f64 {
        let runs: Vec<f64> = (0..args.runs)
            .map(|_| {
                let started = Instant::now();
                for text in &texts {
                    work(text);
                }
                started.elapsed().as_secs_f64() * 1e6 / texts.len() as f64
            })
            .collect();
        let mut runs = runs;
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let analyse = time(&|text| {
        black_box(analysis::analyse("en", text));
    });
    use analysis::Detection::{Full, Script};
    let script = time(&|text| {
        black_box(analysis::detect(text, "en", Script));
    });
    let full = time(&|text| {
        black_box(analysis::detect(text, "en", Full));
    });
    let english = {
        let count = texts
            .iter()
            .filter(|text| analysis::detect(text, "en", Full) == "en")
            .count();
        100.0 * count as f64 / texts.len() as f64
    };
    println!("| step | µs per message (median) = CPU-s per 1M messages |");
    println!("| --- | --- |");
    for (step, micros) in [
        ("analyse (language given)", analyse),
        ("detect_language = \"script\"", script),
        ("detect_language = \"full\"", full),
    ] {
        println!("| {step} | {micros:.2} |");
    }
    println!(
        "\n\"full\" detection keeps English (or the default) for {english:.1}% of the messages"
    );
}
