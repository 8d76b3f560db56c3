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

/// Microseconds rounded down to the second (convlog gets `from`/`to` in whole seconds).
pub fn whole_second(micros: i64) -> i64 {
    micros - micros.rem_euclid(1_000_000)
}

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

/// The text part of a query: one word, or a phrase of words (plain lowercase ASCII,
/// so PostgreSQL's `simple` configuration, FTS5's `unicode61` and tantivy agree).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Text {
    Word(String),
    Phrase(Vec<String>),
}

impl Text {
    /// The `q` parameter convlog gets.
    pub fn q(&self) -> String {
        match self {
            Text::Word(word) => word.clone(),
            Text::Phrase(words) => format!("\"{}\"", words.join(" ")),
        }
    }

    /// The words, in order.
    pub fn words(&self) -> Vec<&str> {
        match self {
            Text::Word(word) => vec![word.as_str()],
            Text::Phrase(words) => words.iter().map(String::as_str).collect(),
        }
    }
}

/// What a conversation search asks, in a form every peer can turn into its own query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    pub bot: String,
    /// `[from, to)` in UTC microseconds: conversations with a message in it.
    pub from: i64,
    pub to: i64,
    pub text: Option<Text>,
    pub channel: Option<String>,
    pub tag: Option<String>,
    pub flagged: Option<bool>,
    /// Top hits by last message, newest first (ties: higher id first).
    pub limit: usize,
}

impl Params {
    /// convlog's request path.
    pub fn path(&self) -> String {
        let mut path = format!(
            "/v1/bots/{}/conversations?limit={}&from={}&to={}",
            self.bot,
            self.limit,
            encode(&rfc3339(self.from)),
            encode(&rfc3339(self.to))
        );
        if let Some(channel) = &self.channel {
            path.push_str(&format!("&channel={}", encode(channel)));
        }
        if let Some(flagged) = self.flagged {
            path.push_str(&format!("&flagged={flagged}"));
        }
        if let Some(tag) = &self.tag {
            path.push_str(&format!("&tag={}", encode(tag)));
        }
        if let Some(text) = &self.text {
            path.push_str(&format!("&q={}", encode(&text.q())));
        }
        path
    }
}

/// One query of a workload.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QuerySpec {
    pub class: String,
    pub params: Params,
    pub path: String,
}

impl QuerySpec {
    fn new(class: &str, params: Params) -> QuerySpec {
        QuerySpec {
            class: class.to_string(),
            path: params.path(),
            params,
        }
    }
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
    pub by_class: BTreeMap<String, ClassResult>,
    /// Latency of each query, in the order of its specs (one client).
    pub per_query: Vec<Duration>,
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
                        mine.push((index, elapsed, total));
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
    let mut measured = Vec::new();
    for result in results.into_inner().expect("results lock") {
        measured.extend(result?);
    }
    measured.sort_by_key(|(index, _, _)| *index);
    Ok(QueryRun::from_measured(
        specs,
        measured.into_iter().map(|(_, e, t)| (e, t)),
        wall,
    ))
}

impl QueryRun {
    /// A run from (latency, total) per spec, in the order of `specs`.
    pub fn from_measured(
        specs: &[QuerySpec],
        measured: impl IntoIterator<Item = (Duration, u64)>,
        wall: Duration,
    ) -> QueryRun {
        let mut run = QueryRun {
            wall,
            ..QueryRun::default()
        };
        for (spec, (elapsed, total)) in specs.iter().zip(measured) {
            let entry = run.by_class.entry(spec.class.clone()).or_default();
            entry.latencies.push(elapsed);
            entry.totals.push(total);
            run.per_query.push(elapsed);
        }
        run
    }
}

/// The words, phrases and filters the query workloads draw from.
pub struct QueryPlan {
    pub total_conversations: u64,
    pub frequent: Vec<String>,
    pub medium: Vec<String>,
    pub rare: Vec<String>,
    pub phrases: Vec<Vec<String>>,
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
    let split = |phrase: &str| phrase.split(' ').map(str::to_string).collect::<Vec<_>>();
    let mut phrases = Vec::new();
    let mut rank = 5;
    while rank < data.phrases.len() && phrases.len() < 12 {
        phrases.push(split(&data.phrases[rank].0));
        rank *= 2;
    }
    if phrases.is_empty()
        && let Some((phrase, _)) = data.phrases.first()
    {
        phrases.push(split(phrase));
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
        return (
            whole_second(data.min_ts),
            whole_second(data.max_ts + 1_000_000),
        );
    }
    let from = whole_second(data.min_ts + rng.below((span - 7 * DAY_US) as u64) as i64);
    (from, from + 7 * DAY_US)
}

/// One query workload of W2: its queries and its bar.
pub struct Mix {
    /// `W2a`, `W2b`, …
    pub name: &'static str,
    /// What its queries are, for the report.
    pub figure: String,
    /// The p99 bar in ms at 1M and at 10M messages.
    pub bars: (f64, f64),
    pub specs: Vec<QuerySpec>,
}

/// Builds the query workloads of W2, `n` queries each, in report order.
pub fn workloads(data: &Dataset, plan: &QueryPlan, n: usize, seed: u64) -> Vec<Mix> {
    let mut rng = Rng::new(seed, 0x0057_2A2A);
    let whole = |text: Text| Params {
        bot: data.bot.clone(),
        from: whole_second(data.min_ts),
        to: whole_second(data.max_ts + 1_000_000),
        text: Some(text),
        channel: None,
        tag: None,
        flagged: None,
        limit: 20,
    };
    let words = |list: &[String]| -> Vec<Text> { list.iter().cloned().map(Text::Word).collect() };
    let classes: Vec<(&str, Vec<Text>)> = vec![
        ("frequent word", words(&plan.frequent)),
        ("medium word", words(&plan.medium)),
        ("rare word", words(&plan.rare)),
        (
            "phrase",
            plan.phrases.iter().cloned().map(Text::Phrase).collect(),
        ),
    ];
    let classes: Vec<_> = classes
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .collect();
    let w2a = (0..n)
        .filter_map(|i| {
            let (class, list) = classes.get(i % classes.len().max(1))?;
            let text = list[rng.below(list.len() as u64) as usize].clone();
            Some(QuerySpec::new(class, whole(text)))
        })
        .collect();
    let channels: Vec<&str> = data.channels.iter().map(|(c, _)| c.as_str()).collect();
    let filters = |rng: &mut Rng, text: Option<Text>| -> Params {
        let (from, to) = week(rng, data);
        let channel = channels[rng.below(channels.len() as u64) as usize];
        Params {
            bot: data.bot.clone(),
            from,
            to,
            text,
            channel: Some(channel.to_string()),
            tag: plan.tag.clone(),
            flagged: Some(false),
            limit: 20,
        }
    };
    let w2b = (0..n)
        .map(|_| QuerySpec::new("filters + facets", filters(&mut rng, None)))
        .collect();
    let half: Vec<String> = plan.half.iter().map(|(w, _)| w.clone()).collect();
    let w2c = (0..n)
        .filter_map(|_| {
            if half.is_empty() {
                return None;
            }
            let word = half[rng.below(half.len() as u64) as usize].clone();
            Some(QuerySpec::new(
                "half word + filters + facets",
                filters(&mut rng, Some(Text::Word(word))),
            ))
        })
        .collect();
    // The UI's default view: the last 24 hours, no text, no filter, every facet.
    let to = whole_second(data.max_ts + 1_000_000);
    let w2d = (0..n)
        .map(|_| {
            QuerySpec::new(
                "default view",
                Params {
                    bot: data.bot.clone(),
                    from: to - DAY_US,
                    to,
                    text: None,
                    channel: None,
                    tag: None,
                    flagged: None,
                    limit: 20,
                },
            )
        })
        .collect();
    let tag = if plan.tag.is_some() { "tag + " } else { "" };
    vec![
        Mix {
            name: "W2a",
            figure: "text query, top 20 by recency, 30 days".into(),
            bars: (10.0, 40.0),
            specs: w2a,
        },
        Mix {
            name: "W2b",
            figure: format!("channel + {tag}flagged + 7 days + all facets"),
            bars: (5.0, 25.0),
            specs: w2b,
        },
        Mix {
            name: "W2c",
            figure: format!("half-word + channel + {tag}flagged + 7 days + facets"),
            bars: (15.0, 100.0),
            specs: w2c,
        },
        Mix {
            name: "W2d",
            figure: "default view: last 24 hours, no text, all facets".into(),
            bars: (5.0, 5.0),
            specs: w2d,
        },
    ]
}

/// What a search answered: the exact total, the facet counts (zero counts left
/// out) and the ids of the top hits, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub total: u64,
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
    pub hits: Vec<u64>,
}

impl Answer {
    /// Parses convlog's JSON answer.
    pub fn from_json(answer: &serde_json::Value) -> anyhow::Result<Answer> {
        let mut facets = BTreeMap::new();
        if let Some(map) = answer["facets"].as_object() {
            for (dimension, counts) in map {
                let counts: BTreeMap<String, u64> = counts
                    .as_object()
                    .map(|c| {
                        c.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                            .filter(|(_, v)| *v > 0)
                            .collect()
                    })
                    .unwrap_or_default();
                facets.insert(dimension.clone(), counts);
            }
        }
        let hits = answer["conversations"]
            .as_array()
            .context("answer without conversations")?
            .iter()
            .map(|c| {
                let id = c["id"].as_str().context("conversation without id")?;
                let hex = id.strip_prefix("c_").context("id without c_")?;
                Ok(u64::from_str_radix(hex, 16)?)
            })
            .collect::<anyhow::Result<Vec<u64>>>()?;
        Ok(Answer {
            total: answer["total"].as_u64().context("answer without total")?,
            facets,
            hits,
        })
    }

    /// The differences from `other` (empty when equal), for a report.
    pub fn differences(&self, other: &Answer) -> Vec<String> {
        let mut out = Vec::new();
        if self.total != other.total {
            out.push(format!("total {} vs {}", self.total, other.total));
        }
        let empty = BTreeMap::new();
        let dimensions: std::collections::BTreeSet<&String> =
            self.facets.keys().chain(other.facets.keys()).collect();
        for dimension in dimensions {
            let ours = self.facets.get(dimension).unwrap_or(&empty);
            let theirs = other.facets.get(dimension).unwrap_or(&empty);
            if ours != theirs {
                let keys: std::collections::BTreeSet<&String> =
                    ours.keys().chain(theirs.keys()).collect();
                let diffs: Vec<String> = keys
                    .into_iter()
                    .filter(|k| ours.get(*k) != theirs.get(*k))
                    .take(3)
                    .map(|k| {
                        format!(
                            "{k}: {} vs {}",
                            ours.get(k).copied().unwrap_or(0),
                            theirs.get(k).copied().unwrap_or(0)
                        )
                    })
                    .collect();
                out.push(format!("facet {dimension} ({})", diffs.join(", ")));
            }
        }
        if self.hits != other.hits {
            let first = self
                .hits
                .iter()
                .zip(&other.hits)
                .position(|(a, b)| a != b)
                .unwrap_or(self.hits.len().min(other.hits.len()));
            out.push(format!(
                "top hits differ from rank {} ({} vs {} hits)",
                first + 1,
                self.hits.len(),
                other.hits.len()
            ));
        }
        out
    }
}

/// convlog's answer to every spec, one client (also the warm-up).
pub fn answers(server: &Server, specs: &[QuerySpec]) -> anyhow::Result<Vec<Answer>> {
    let agent = agent();
    specs
        .iter()
        .map(|spec| Answer::from_json(&server.get_json(&agent, &spec.path)?))
        .collect()
}
