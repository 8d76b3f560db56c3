//! What the bot misses (issue #19): clustering 100k unidentified inputs.
//!
//! The data: `--inputs` unidentified user inputs, 70% paraphrases of 3,000
//! needs (two or three words of a Zipf vocabulary each, family sizes Zipf
//! too, with fillers, case, punctuation and one typo in ten) and 30% noise
//! (random words), each in a conversation that first has an understood
//! exchange, so the index's statistics see common words as common. All of it
//! is ingested through the library (as the HTTP path does) into a fresh data
//! directory; then, medians of `--runs`:
//!
//! - **endpoint**: `InsightsService::unidentified` as `GET
//!   /v1/bots/{bot}/insights/unidentified` runs it: matching conversations
//!   from the index, their inputs from the store, clustering;
//! - **clustering**: `insights::cluster::cluster` alone over the same texts,
//!   with the index's weights (the bar: ≤ 2 s on 2 cores).
//!
//! ```sh
//! cargo bench --bench insights                       # 100k inputs, 5 runs
//! cargo bench --bench insights -- --inputs 20000 --runs 3
//! ```

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use clap::Parser;
use common::median;
use convlog::app::App;
use convlog_engine::config::{Config, Sources};
use convlog_engine::ingest::validate::validate_messages;
use convlog_engine::insights::cluster::{Text, cluster};
use convlog_engine::query::{SearchRequest, Target};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Unidentified inputs (each in its own conversation of four messages).
    #[arg(long, default_value_t = 100_000)]
    inputs: usize,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Accepted for `cargo bench`'s own arguments.
    #[arg(long)]
    bench: bool,
}

/// SplitMix64: the same data every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    /// A rank in `0..n` with probability ∝ 1 / (rank + 1).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (((n as f64 + 1.0).powf(u)) - 1.0)
            .floor()
            .min(n as f64 - 1.0) as usize
    }
}

const FILLERS: &[&str] = &[
    "hi", "hello", "hey", "please", "pls", "i", "my", "the", "a", "to", "want", "need", "can",
    "you", "how", "do", "is", "it", "for", "with", "what", "where", "ok", "thanks", "now",
];
const NEEDS: usize = 3_000;
const VOCABULARY: usize = 20_000;

fn word(rng: &mut Rng) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "zu", "mip", "tor", "vel", "qua", "rin", "bex", "lo", "sna", "dru", "fep", "gim",
        "hox", "jal", "wup", "yen", "cro", "plu", "sti", "ar", "on", "el", "us",
    ];
    (0..2 + rng.below(2))
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
        .collect()
}

/// `text` with two neighbouring letters of one word swapped.
fn typo(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() > 3 {
        let at = 1 + rng.below(chars.len() - 2);
        if chars[at].is_alphabetic() && chars[at - 1].is_alphabetic() {
            chars.swap(at, at - 1);
        }
    }
    chars.into_iter().collect()
}

fn data(inputs: usize) -> (Vec<String>, Vec<String>) {
    let mut rng = Rng(19);
    let vocabulary: Vec<String> = (0..VOCABULARY).map(|_| word(&mut rng)).collect();
    let needs: Vec<Vec<String>> = (0..NEEDS)
        .map(|_| {
            (0..2 + rng.below(2))
                .map(|_| vocabulary[rng.zipf(VOCABULARY)].clone())
                .collect()
        })
        .collect();
    let mut texts = Vec::with_capacity(inputs);
    for _ in 0..inputs {
        let text = if rng.chance(0.7) {
            let need = &needs[rng.zipf(NEEDS)];
            let mut words: Vec<String> = Vec::new();
            for _ in 0..rng.below(3) {
                words.push(FILLERS[rng.below(FILLERS.len())].to_string());
            }
            words.extend(need.iter().cloned());
            let mut text = words.join(" ");
            if rng.chance(0.1) {
                text = typo(&mut rng, &text);
            }
            if rng.chance(0.2) {
                text = text.to_uppercase();
            }
            text + ["", "?", "!", "."][rng.below(4)]
        } else {
            (0..2 + rng.below(5))
                .map(|_| vocabulary[rng.below(VOCABULARY)].clone())
                .collect::<Vec<_>>()
                .join(" ")
        };
        texts.push(text);
    }
    let now = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut messages = Vec::with_capacity(inputs * 4);
    for (c, text) in texts.iter().enumerate() {
        let at = |s: i64| (now - chrono::Duration::seconds(c as i64 % 80_000 - s)).to_rfc3339();
        let understood: Vec<&str> = (0..3 + rng.below(5))
            .map(|_| {
                if rng.chance(0.5) {
                    FILLERS[rng.below(FILLERS.len())]
                } else {
                    vocabulary[rng.zipf(VOCABULARY)].as_str()
                }
            })
            .collect();
        let turn = |id: usize, role: &str, text: &str, second: i64, fallback: bool| {
            json!({
                "id": format!("m{c}-{id}"), "bot_id": "shop", "user_id": format!("u{c}"),
                "channel": "web", "role": role, "text": text, "timestamp": at(second),
                "unidentified": fallback, "lang": "en",
            })
            .to_string()
        };
        messages.push(turn(0, "user", &understood.join(" "), 0, false));
        messages.push(turn(1, "bot", "Sure, here it is.", 1, false));
        messages.push(turn(2, "user", text, 2, false));
        messages.push(turn(3, "bot", "Sorry, I didn't get that.", 3, true));
    }
    (texts, messages)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (texts, messages) = data(args.inputs);
    let dir = tempfile::tempdir()?;
    let app = App::open(Config::load(&Sources {
        data_dir: Some(dir.path().display().to_string()),
        overrides: vec!["retention.schedule=0s".into()],
        ..Sources::default()
    })?)?;
    let started = Instant::now();
    for batch in messages.chunks(1000) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        app.ingest_blocking(validate_messages(&batch, &app.rules).expect("valid"))?;
    }
    while app.index.state().position() < app.store.head() {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{} unidentified inputs in {} messages, stored and indexed in {:.1} s; {} cores",
        texts.len(),
        messages.len(),
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let now = app.clock.now();
    let pairs = vec![("from".to_string(), "now-2d".to_string())];
    let mut endpoint = Vec::new();
    let mut clustering = Vec::new();
    let mut summary = String::new();
    for run in 0..args.runs {
        let request = SearchRequest::from_pairs(&pairs, Target::Aggregates, now)?;
        let started = Instant::now();
        let found = runtime.block_on(app.insights.unidentified("shop", request, 50))?;
        endpoint.push(started.elapsed().as_secs_f64());
        let input: Vec<Text> = texts.iter().map(|text| Text { text, lang: "en" }).collect();
        let started = Instant::now();
        let groups = cluster(&input, |words| app.search.word_weights(words))?;
        clustering.push(started.elapsed().as_secs_f64());
        eprintln!(
            "[insights] run {}: endpoint {:.2} s, clustering {:.2} s",
            run + 1,
            endpoint[run],
            clustering[run]
        );
        summary = format!(
            "{} inputs, {} clusters ({} from the clustering alone); largest: {}",
            found.total_inputs,
            found.total_clusters,
            groups.len(),
            found
                .clusters
                .iter()
                .take(5)
                .map(|c| format!("{:?} {}", c.label, c.inputs))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("{summary}");
    println!("median of {} runs:", args.runs);
    println!(
        "  endpoint (index, store, clustering)  {:.2} s  (runs {:?})",
        median(&endpoint),
        rounded(&endpoint)
    );
    println!(
        "  clustering alone                     {:.2} s  (runs {:?})  bar: ≤ 2 s",
        median(&clustering),
        rounded(&clustering)
    );
    Ok(())
}

fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| (v * 100.0).round() / 100.0).collect()
}
