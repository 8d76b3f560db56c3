//! The workloads: W1 (ingest, time to searchable) and W2a/b/c (queries).

use super::data::Dataset;
use super::server::{Server, agent};
use super::stats::{Rng, Summary, summarize};
use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DAY_US: i64 = 86_400_000_000;

/// One sample of the server's progress while ingesting.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub at_s: f64,
    pub ingested: f64,
    pub store_position: f64,
    pub index_position: f64,
}

/// What W1 measured.
pub struct Ingest {
    pub elapsed: Duration,
    pub messages: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub latencies: Vec<Duration>,
    /// The batch acknowledged last, and when.
    pub last_batch: usize,
    pub last_ack: Instant,
    pub progress: Vec<Progress>,
}

impl Ingest {
    /// Messages per second, first request to last acknowledgement.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// RFC 3339 (seconds, `Z`) of UTC microseconds.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// W1: posts every batch from `clients` threads; each answer is a durable acknowledgement.
pub fn ingest(server: &Server, data: &Dataset, clients: usize) -> anyhow::Result<Ingest> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let url = format!("{}/v1/messages", server.base);
    type Acks = (Vec<Duration>, u64, u64, Vec<(Instant, usize)>);
    let results: Mutex<Vec<anyhow::Result<Acks>>> = Mutex::new(Vec::new());
    let progress = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Samples the server's progress: evidence of whether the indexer keeps up.
        scope.spawn(|| {
            let agent = agent();
            while !done.load(Ordering::Relaxed) {
                if let Ok(metrics) = server.metrics(&agent) {
                    let get = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
                    progress.lock().expect("progress lock").push(Progress {
                        at_s: started.elapsed().as_secs_f64(),
                        ingested: get("convlog_ingested_messages_total"),
                        store_position: get("convlog_store_position"),
                        index_position: get("convlog_index_position"),
                    });
                }
                for _ in 0..10 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        let workers: Vec<_> = (0..clients.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let result = (|| -> anyhow::Result<Acks> {
                        let agent = agent();
                        let mut latencies = Vec::new();
                        let mut acks = Vec::new();
                        let (mut accepted, mut duplicates) = (0u64, 0u64);
                        loop {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(body) = data.batches.get(index) else {
                                break;
                            };
                            let sent = Instant::now();
                            let mut response = agent
                                .post(&url)
                                .content_type("application/json")
                                .send(&body[..])
                                .with_context(|| format!("posting batch {index}"))?;
                            let text = response.body_mut().read_to_string()?;
                            let acked = Instant::now();
                            if !response.status().is_success() {
                                failed.store(true, Ordering::Relaxed);
                                bail!("batch {index} answered {}: {text}", response.status());
                            }
                            latencies.push(acked - sent);
                            acks.push((acked, index));
                            let answer: serde_json::Value = serde_json::from_str(&text)?;
                            accepted += answer["accepted"].as_u64().unwrap_or(0);
                            duplicates += answer["duplicates"].as_u64().unwrap_or(0);
                        }
                        Ok((latencies, accepted, duplicates, acks))
                    })();
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("results lock").push(result);
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        done.store(true, Ordering::Relaxed);
    });
    let mut latencies = Vec::new();
    let (mut accepted, mut duplicates) = (0, 0);
    let mut last: Option<(Instant, usize)> = None;
    for result in results.into_inner().expect("results lock") {
        let (lat, acc, dup, acks) = result?;
        latencies.extend(lat);
        accepted += acc;
        duplicates += dup;
        for ack in acks {
            if last.is_none_or(|(at, _)| ack.0 > at) {
                last = Some(ack);
            }
        }
    }
    let (last_ack, last_batch) = last.context("no batch was acknowledged")?;
    Ok(Ingest {
        elapsed: last_ack - started,
        messages: data.messages,
        accepted,
        duplicates,
        latencies,
        last_batch,
        last_ack,
        progress: progress.into_inner().expect("progress lock"),
    })
}

/// Time to searchable: from the last acknowledgement until `/metrics` shows no index
/// lag and a search for the last batch's marker word finds it (each also on its own).
pub struct Searchable {
    /// Both conditions hold.
    pub elapsed: Option<Duration>,
    /// `convlog_index_lag` first read 0 (follow-up changes such as tags count too).
    pub lag_zero_after: Option<Duration>,
    /// The marker search first found the last batch.
    pub found_after: Option<Duration>,
    pub marker: Option<String>,
    pub marker_total: u64,
}

/// Polls every 10 ms until searchable or `timeout`.
pub fn time_to_searchable(
    server: &Server,
    data: &Dataset,
    ingest: &Ingest,
    timeout: Duration,
) -> anyhow::Result<Searchable> {
    let agent = agent();
    let marker = data.markers[ingest.last_batch].clone();
    let range = format!(
        "from={}&to={}",
        encode(&rfc3339(data.min_ts)),
        encode(&rfc3339(data.max_ts + 1_000_000))
    );
    let mut result = Searchable {
        elapsed: None,
        lag_zero_after: None,
        found_after: None,
        marker: marker.clone(),
        marker_total: 0,
    };
    loop {
        if result.lag_zero_after.is_none() {
            let metrics = server.metrics(&agent)?;
            if metrics.get("convlog_index_lag") == Some(&0.0) {
                result.lag_zero_after = Some(ingest.last_ack.elapsed());
            }
        }
        if result.found_after.is_none() {
            let found = match &marker {
                Some(word) => {
                    let path = format!(
                        "/v1/bots/{}/conversations?q={}&{range}&limit=1",
                        data.bot,
                        encode(word)
                    );
                    let answer = server.get_json(&agent, &path)?;
                    result.marker_total = answer["total"].as_u64().unwrap_or(0);
                    result.marker_total > 0
                }
                None => true,
            };
            if found {
                result.found_after = Some(ingest.last_ack.elapsed());
            }
        }
        if let (Some(lag), Some(found)) = (result.lag_zero_after, result.found_after) {
            result.elapsed = Some(lag.max(found));
            return Ok(result);
        }
        if ingest.last_ack.elapsed() > timeout {
            return Ok(result);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One query of a workload.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub class: &'static str,
    pub path: String,
}

/// Latencies and totals of one class of queries.
#[derive(Debug, Clone, Default)]
pub struct ClassResult {
    pub latencies: Vec<Duration>,
    pub totals: Vec<u64>,
}

/// What a query workload measured.
#[derive(Debug, Clone, Default)]
pub struct QueryRun {
    pub by_class: BTreeMap<&'static str, ClassResult>,
    pub wall: Duration,
}

impl QueryRun {
    /// Over every class.
    pub fn summary(&self) -> Summary {
        let all: Vec<Duration> = self
            .by_class
            .values()
            .flat_map(|c| c.latencies.iter().copied())
            .collect();
        summarize(&all)
    }

    /// Sum of `total` over all answers.
    pub fn total_matches(&self) -> u64 {
        self.by_class.values().flat_map(|c| &c.totals).sum()
    }

    /// Answers with a non-zero `total`.
    pub fn nonzero(&self) -> usize {
        self.by_class
            .values()
            .flat_map(|c| &c.totals)
            .filter(|&&t| t > 0)
            .count()
    }

    /// Number of queries.
    pub fn count(&self) -> usize {
        self.by_class.values().map(|c| c.latencies.len()).sum()
    }
}

/// Runs `specs` from `clients` threads (each takes the next query); every answer must be 200.
pub fn run_queries(
    server: &Server,
    specs: &[QuerySpec],
    clients: usize,
) -> anyhow::Result<QueryRun> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                let agent = agent();
                let mut mine = Vec::new();
                let outcome = (|| -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(spec) = specs.get(index) else {
                            return Ok(());
                        };
                        let (status, body, elapsed) = server.get(&agent, &spec.path)?;
                        if status != 200 {
                            bail!("GET {} answered {status}: {body}", spec.path);
                        }
                        let answer: serde_json::Value = serde_json::from_str(&body)
                            .with_context(|| format!("GET {} is not JSON", spec.path))?;
                        let total = answer["total"].as_u64().context("answer without total")?;
                        mine.push((spec.class, elapsed, total));
                    }
                })();
                results
                    .lock()
                    .expect("results lock")
                    .push(outcome.map(|()| mine));
            });
        }
    });
    let wall = started.elapsed();
    let mut run = QueryRun {
        wall,
        ..QueryRun::default()
    };
    for result in results.into_inner().expect("results lock") {
        for (class, elapsed, total) in result? {
            let entry = run.by_class.entry(class).or_default();
            entry.latencies.push(elapsed);
            entry.totals.push(total);
        }
    }
    Ok(run)
}

/// The words, phrases and filters the query workloads draw from.
pub struct QueryPlan {
    pub total_conversations: u64,
    pub frequent: Vec<String>,
    pub medium: Vec<String>,
    pub rare: Vec<String>,
    pub phrases: Vec<String>,
    /// Words in about half the conversations, with the share found.
    pub half: Vec<(String, f64)>,
    /// The most common tag, when the build tags conversations.
    pub tag: Option<String>,
    pub discovery_queries: usize,
}

/// Number of conversations of `data.bot` over the whole range matching `q` (all if `None`).
fn count(
    server: &Server,
    agent: &ureq::Agent,
    data: &Dataset,
    q: Option<&str>,
) -> anyhow::Result<u64> {
    let mut path = format!(
        "/v1/bots/{}/conversations?from={}&to={}&limit=1",
        data.bot,
        encode(&rfc3339(data.min_ts)),
        encode(&rfc3339(data.max_ts + 1_000_000))
    );
    if let Some(q) = q {
        path.push_str(&format!("&q={}", encode(q)));
    }
    let answer = server.get_json(agent, &path)?;
    answer["total"].as_u64().context("answer without total")
}

/// Up to `n` entries spread evenly over `list`.
fn spread<T: Clone>(list: &[T], n: usize) -> Vec<T> {
    if list.len() <= n {
        return list.to_vec();
    }
    (0..n).map(|i| list[i * list.len() / n].clone()).collect()
}

/// Picks the words of each class; finds words in about half the conversations by asking the server.
pub fn plan(server: &Server, data: &Dataset) -> anyhow::Result<QueryPlan> {
    let agent = agent();
    let mut discovery = 0;
    let total_conversations = count(server, &agent, data, None)?;
    discovery += 1;
    let words = &data.words;
    let messages = data.messages as f64;
    let frequent: Vec<String> = words.iter().take(10).map(|(w, _)| w.clone()).collect();
    // Medium: in ~0.1–1% of messages; rare: in 2–20 messages.
    let medium_pool: Vec<String> = words
        .iter()
        .filter(|(_, c)| (messages * 0.001..=messages * 0.01).contains(&f64::from(*c)))
        .map(|(w, _)| w.clone())
        .collect();
    let rare_pool: Vec<String> = words
        .iter()
        .filter(|(_, c)| (2..=20).contains(c))
        .map(|(w, _)| w.clone())
        .collect();
    let medium = spread(&medium_pool, 20);
    let rare = spread(&rare_pool, 20);
    // Phrases from common to rarer: ranks 5, 10, 20, 40, …
    let mut phrases = Vec::new();
    let mut rank = 5;
    while rank < data.phrases.len() && phrases.len() < 12 {
        phrases.push(format!("\"{}\"", data.phrases[rank].0));
        rank *= 2;
    }
    if phrases.is_empty()
        && let Some((phrase, _)) = data.phrases.first()
    {
        phrases.push(format!("\"{phrase}\""));
    }

    // Conversation share falls with message frequency: binary search the rank
    // where it crosses one half, then keep neighbours within 40–60%.
    let half = if total_conversations == 0 || words.is_empty() {
        Vec::new()
    } else {
        let share = |word: &str, discovery: &mut usize| -> anyhow::Result<f64> {
            *discovery += 1;
            Ok(count(server, &agent, data, Some(word))? as f64 / total_conversations as f64)
        };
        let (mut lo, mut hi) = (0usize, words.len().min(5000) - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if share(&words[mid].0, &mut discovery)? >= 0.5 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut found = Vec::new();
        let neighbours = lo.saturating_sub(4)..(lo + 4).min(words.len());
        for (word, _) in &words[neighbours] {
            let s = share(word, &mut discovery)?;
            if (0.4..=0.6).contains(&s) {
                found.push((word.clone(), s));
            }
        }
        if found.is_empty() {
            let s = share(&words[lo].0, &mut discovery)?;
            found.push((words[lo].0.clone(), s));
        }
        found
    };

    let tags = server.get_json(&agent, &format!("/v1/bots/{}/tags", data.bot))?;
    discovery += 1;
    let tag = tags["tags"].as_array().and_then(|list| {
        list.iter()
            .max_by_key(|t| t["conversations"].as_u64().unwrap_or(0))
            .and_then(|t| t["name"].as_str().map(str::to_string))
    });
    Ok(QueryPlan {
        total_conversations,
        frequent,
        medium,
        rare,
        phrases,
        half,
        tag,
        discovery_queries: discovery,
    })
}

/// A random 7-day window inside the data (the whole range when shorter).
fn week(rng: &mut Rng, data: &Dataset) -> (i64, i64) {
    let span = data.max_ts + 1_000_000 - data.min_ts;
    if span <= 7 * DAY_US {
        return (data.min_ts, data.max_ts + 1_000_000);
    }
    let from = data.min_ts + rng.below((span - 7 * DAY_US) as u64) as i64;
    (from, from + 7 * DAY_US)
}

/// The queries of W2a, W2b and W2c, `n` each.
pub struct Workloads {
    pub w2a: Vec<QuerySpec>,
    pub w2b: Vec<QuerySpec>,
    pub w2c: Vec<QuerySpec>,
}

/// Builds the query mixes.
pub fn workloads(data: &Dataset, plan: &QueryPlan, n: usize, seed: u64) -> Workloads {
    let mut rng = Rng::new(seed, 0x0057_2A2A);
    let base = format!("/v1/bots/{}/conversations?limit=20", data.bot);
    let whole = format!(
        "&from={}&to={}",
        encode(&rfc3339(data.min_ts)),
        encode(&rfc3339(data.max_ts + 1_000_000))
    );
    let pick = |list: &[String], rng: &mut Rng| -> Option<String> {
        (!list.is_empty()).then(|| list[rng.below(list.len() as u64) as usize].clone())
    };
    let classes: [(&'static str, &[String]); 4] = [
        ("frequent word", &plan.frequent),
        ("medium word", &plan.medium),
        ("rare word", &plan.rare),
        ("phrase", &plan.phrases),
    ];
    let classes: Vec<_> = classes
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .collect();
    let w2a = (0..n)
        .filter_map(|i| {
            let (class, list) = classes[i % classes.len()];
            let q = pick(list, &mut rng)?;
            Some(QuerySpec {
                class,
                path: format!("{base}{whole}&q={}", encode(&q)),
            })
        })
        .collect();
    let channels: Vec<&str> = data.channels.iter().map(|(c, _)| c.as_str()).collect();
    let tag = plan
        .tag
        .as_ref()
        .map(|t| format!("&tag={}", encode(t)))
        .unwrap_or_default();
    let filters = |rng: &mut Rng| -> String {
        let (from, to) = week(rng, data);
        let channel = channels[rng.below(channels.len() as u64) as usize];
        format!(
            "&channel={}&flagged=false{tag}&from={}&to={}",
            encode(channel),
            encode(&rfc3339(from)),
            encode(&rfc3339(to))
        )
    };
    let w2b = (0..n)
        .map(|_| QuerySpec {
            class: "filters + facets",
            path: format!("{base}{}", filters(&mut rng)),
        })
        .collect();
    let half: Vec<String> = plan.half.iter().map(|(w, _)| w.clone()).collect();
    let w2c = (0..n)
        .filter_map(|_| {
            let q = pick(&half, &mut rng)?;
            Some(QuerySpec {
                class: "half word + filters + facets",
                path: format!("{base}{}&q={}", filters(&mut rng), encode(&q)),
            })
        })
        .collect();
    Workloads { w2a, w2b, w2c }
}
