//! Prometheus metrics, kept as atomics and rendered in the text format on
//! `/metrics`, with values read at scrape time ([`Gauges`]; the host's in
//! [`host`]).

mod host;

pub use host::{Files, Process};

use convlog_engine::archive::stats::ArchiveStats;
use convlog_engine::index::{DocKind, PartitionStats};
use convlog_engine::jobs::{JobState, KindMetrics};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Every metric the service exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ingested_messages: AtomicU64,
    pub duplicate_messages: AtomicU64,
    pub rejected_batches: AtomicU64,
    pub ingest_batch: Histogram,
    /// Time ingest requests waited for the index to be within `index.max_backlog`.
    pub ingest_backlog_wait: Histogram,
    pub traces_stored: AtomicU64,
    pub traces_dropped: AtomicU64,
    pub query_conversations: Histogram,
    pub query_messages: Histogram,
    pub query_other: Histogram,
    /// Connections open now (set by the accept loop).
    pub open_connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_evicted: AtomicU64,
    pub connections_idle_closed: AtomicU64,
    /// Requests whose body did not arrive within server.body_timeout.
    pub body_timeouts: AtomicU64,
    /// Requests refused by the guard, by [`Refusal`] (its discriminant).
    pub refusals: [AtomicU64; Refusal::ALL.len()],
    /// Requests answered, by (route template, method).
    http: Mutex<BTreeMap<(String, String), Served>>,
    /// Refused ingest requests by error code.
    ingest_rejects: Mutex<BTreeMap<&'static str, u64>>,
    /// The logs consumed (`[sources]`), by source name.
    sources: Mutex<BTreeMap<String, SourceCounts>>,
}

/// What one source has done.
#[derive(Debug, Default, Clone, Copy)]
struct SourceCounts {
    stored: u64,
    duplicates: u64,
    dead_letters: u64,
    position: u64,
    lag: u64,
    connected: bool,
}

/// The requests of one route and method: how many per status class, and how long.
#[derive(Debug, Default)]
struct Served {
    /// 1xx … 5xx.
    classes: [u64; 5],
    duration: Histogram,
}

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No API key where one is needed (401).
    MissingKey,
    /// An unknown, malformed or revoked key (401).
    BadKey,
    /// A key whose role or bots don't cover the route (403/404).
    NotAllowed,
    /// Open mode: a `Host` that isn't loopback (403).
    ForeignHost,
    /// Open mode: a cross-site `Origin` (403).
    ForeignOrigin,
}

impl Refusal {
    /// Every reason, in discriminant order.
    pub const ALL: [Refusal; 5] = [
        Refusal::MissingKey,
        Refusal::BadKey,
        Refusal::NotAllowed,
        Refusal::ForeignHost,
        Refusal::ForeignOrigin,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_key",
            Refusal::BadKey => "bad_key",
            Refusal::NotAllowed => "not_allowed",
            Refusal::ForeignHost => "foreign_host",
            Refusal::ForeignOrigin => "foreign_origin",
        }
    }
}

/// Values read from elsewhere at scrape time.
pub struct Gauges<'a> {
    pub store_head: u64,
    pub index_position: u64,
    /// How long the oldest change not yet searchable has been committed.
    pub index_lag_seconds: f64,
    pub index_partitions: u64,
    pub index_commits: u64,
    pub ready: bool,
    /// Matches replaced at ingest, per detector configured anywhere.
    pub redactions: Vec<(String, u64)>,
    pub index_parts: Vec<PartitionStats>,
    pub files: Files,
    pub jobs: Vec<KindMetrics>,
    pub archive: &'a ArchiveStats,
    /// retention.schedule in seconds (0: off).
    pub archive_schedule_seconds: f64,
    /// Store changes the tagging job has not evaluated yet.
    pub tagger_lag: u64,
    /// When the last full tagging run finished (seconds since the epoch; 0: none since start).
    pub tagger_last_full_run: f64,
    /// Live tails open.
    pub tails_open: usize,
    /// Seconds live tails waited for ingest bursts to pass.
    pub tails_yielded_seconds: f64,
    pub process: Process,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Starts a family: its help and type lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample of a family, with labels (values need no escaping: they are
/// route templates, ids and names convlog chose).
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    match labels.is_empty() {
        true => {
            let _ = writeln!(out, "{name} {value}");
        }
        false => {
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

fn kind_label(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Conversation => "conversation",
        DocKind::Message => "message",
    }
}

impl Metrics {
    /// Counts one answered request of `route` (its template; `unmatched` for none).
    pub fn served(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut http = self.http.lock().expect("http metrics");
        let served = http
            .entry((route.to_string(), method.to_string()))
            .or_default();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        served.classes[class] += 1;
        served.duration.observe(elapsed);
    }

    /// Counts one refused ingest request by its error code.
    pub fn ingest_rejected(&self, code: &'static str) {
        *self
            .ingest_rejects
            .lock()
            .expect("ingest metrics")
            .entry(code)
            .or_default() += 1;
    }

    /// A source stored a batch up to `position`.
    pub fn source_batch(
        &self,
        source: &str,
        stored: u64,
        duplicates: u64,
        dead_letters: u64,
        position: u64,
    ) {
        let mut sources = self.sources.lock().expect("source metrics");
        let counts = sources.entry(source.to_string()).or_default();
        counts.stored += stored;
        counts.duplicates += duplicates;
        counts.dead_letters += dead_letters;
        counts.position = counts.position.max(position);
    }

    /// Records in a source's log not yet received.
    pub fn source_lag(&self, source: &str, lag: u64) {
        let mut sources = self.sources.lock().expect("source metrics");
        sources.entry(source.to_string()).or_default().lag = lag;
    }

    /// A source's lag and whether it is connected now.
    pub fn source_live(&self, source: &str) -> (u64, bool) {
        let sources = self.sources.lock().expect("source metrics");
        sources
            .get(source)
            .map_or((0, false), |c| (c.lag, c.connected))
    }

    /// Every source this node runs.
    pub fn source_names(&self) -> Vec<String> {
        self.sources
            .lock()
            .expect("source metrics")
            .keys()
            .cloned()
            .collect()
    }

    /// A source connected, positioned after `stored` (what the store holds).
    pub fn source_resumed(&self, source: &str, stored: Option<u64>) {
        let mut sources = self.sources.lock().expect("source metrics");
        let counts = sources.entry(source.to_string()).or_default();
        counts.connected = true;
        counts.position = counts.position.max(stored.unwrap_or(0));
    }

    /// A source connected or lost its connection.
    pub fn source_connected(&self, source: &str, connected: bool) {
        let mut sources = self.sources.lock().expect("source metrics");
        sources.entry(source.to_string()).or_default().connected = connected;
    }

    /// Counts one refused request.
    pub fn refused(&self, reason: Refusal) {
        self.refusals[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges<'_>) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "convlog_ingested_messages_total",
            "Messages stored (duplicates excluded).",
            load(&self.ingested_messages),
        );
        counter(
            &mut out,
            "convlog_duplicate_messages_total",
            "Messages skipped because their id was already stored.",
            load(&self.duplicate_messages),
        );
        counter(
            &mut out,
            "convlog_rejected_batches_total",
            "Ingest batches refused for bad input.",
            load(&self.rejected_batches),
        );
        counter(
            &mut out,
            "convlog_traces_stored_total",
            "Trace events stored.",
            load(&self.traces_stored),
        );
        counter(
            &mut out,
            "convlog_traces_dropped_total",
            "Trace events dropped because debug logging was off.",
            load(&self.traces_dropped),
        );
        let _ = writeln!(
            out,
            "# HELP convlog_ingest_batch_seconds Time from request to durable acknowledgement.\n# TYPE convlog_ingest_batch_seconds histogram"
        );
        self.ingest_batch
            .render(&mut out, "convlog_ingest_batch_seconds", "");
        let _ = writeln!(
            out,
            "# HELP convlog_ingest_backlog_wait_seconds Time ingest requests waited for the index to come within index.max_backlog changes of the store.\n# TYPE convlog_ingest_backlog_wait_seconds histogram"
        );
        self.ingest_backlog_wait
            .render(&mut out, "convlog_ingest_backlog_wait_seconds", "");
        let _ = writeln!(
            out,
            "# HELP convlog_query_seconds Search latency by endpoint.\n# TYPE convlog_query_seconds histogram"
        );
        self.query_conversations.render(
            &mut out,
            "convlog_query_seconds",
            "endpoint=\"conversations\"",
        );
        self.query_messages
            .render(&mut out, "convlog_query_seconds", "endpoint=\"messages\"");
        self.query_other
            .render(&mut out, "convlog_query_seconds", "endpoint=\"other\"");
        gauge(
            &mut out,
            "convlog_store_position",
            "Newest committed position of the store's change stream.",
            gauges.store_head,
        );
        gauge(
            &mut out,
            "convlog_index_position",
            "Store position the search index covers.",
            gauges.index_position,
        );
        gauge(
            &mut out,
            "convlog_index_lag",
            "Changes committed to the store but not yet searchable.",
            gauges.store_head.saturating_sub(gauges.index_position),
        );
        gauge(
            &mut out,
            "convlog_index_lag_seconds",
            "How long the oldest change not yet searchable has been committed (0 when none is).",
            gauges.index_lag_seconds,
        );
        gauge(
            &mut out,
            "convlog_index_partitions",
            "Time partitions of the search index (see index.partition_span).",
            gauges.index_partitions,
        );
        counter(
            &mut out,
            "convlog_index_commits_total",
            "Index commits since start.",
            gauges.index_commits,
        );
        gauge(
            &mut out,
            "convlog_ready",
            "1 when the index has caught up and is healthy.",
            gauges.ready as u64,
        );
        gauge(
            &mut out,
            "convlog_open_connections",
            "HTTP connections open now.",
            load(&self.open_connections),
        );
        counter(
            &mut out,
            "convlog_connections_refused_total",
            "Connections answered 503 at server.max_connections with none idle.",
            load(&self.connections_refused),
        );
        counter(
            &mut out,
            "convlog_connections_evicted_total",
            "Idle connections closed to make room at server.max_connections.",
            load(&self.connections_evicted),
        );
        counter(
            &mut out,
            "convlog_connections_idle_closed_total",
            "Connections closed after server.idle_timeout without a request.",
            load(&self.connections_idle_closed),
        );
        counter(
            &mut out,
            "convlog_body_timeouts_total",
            "Requests answered 408 because their body did not arrive within server.body_timeout.",
            load(&self.body_timeouts),
        );
        let _ = writeln!(
            out,
            "# HELP convlog_auth_refusals_total Requests refused by access control, by reason.\n# TYPE convlog_auth_refusals_total counter"
        );
        for reason in Refusal::ALL {
            let _ = writeln!(
                out,
                "convlog_auth_refusals_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                load(&self.refusals[reason as usize])
            );
        }
        let _ = writeln!(
            out,
            "# HELP convlog_redactions_total Matches replaced in ingested text, by detector (privacy.redact, privacy.patterns).\n# TYPE convlog_redactions_total counter"
        );
        for (detector, count) in &gauges.redactions {
            let _ = writeln!(
                out,
                "convlog_redactions_total{{detector=\"{detector}\"}} {count}"
            );
        }
        self.render_http(&mut out);
        render_index(&mut out, &gauges.index_parts);
        render_jobs(&mut out, &gauges.jobs);
        render_archive(&mut out, gauges.archive, gauges.archive_schedule_seconds);
        render_rest(&mut out, gauges);
        out
    }

    fn render_http(&self, out: &mut String) {
        let http = self.http.lock().expect("http metrics");
        let name = "convlog_http_requests_total";
        family(
            out,
            name,
            "counter",
            "HTTP requests answered, by route template, method and status class.",
        );
        for ((route, method), served) in http.iter() {
            for (class, count) in served.classes.iter().enumerate() {
                if *count > 0 {
                    let status = format!("{}xx", class + 1);
                    sample(
                        out,
                        name,
                        &[("route", route), ("method", method), ("status", &status)],
                        count,
                    );
                }
            }
        }
        let name = "convlog_http_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time from request to response head, by route template and method.",
        );
        for ((route, method), served) in http.iter() {
            served
                .duration
                .render(out, name, &format!("route=\"{route}\",method=\"{method}\""));
        }
        drop(http);
        let name = "convlog_ingest_rejects_total";
        family(
            out,
            name,
            "counter",
            "Ingest requests refused, by error code.",
        );
        for (code, count) in self.ingest_rejects.lock().expect("ingest metrics").iter() {
            sample(out, name, &[("reason", code)], count);
        }
        let sources = self.sources.lock().expect("source metrics").clone();
        let name = "convlog_source_records_total";
        family(
            out,
            name,
            "counter",
            "Records of the consumed logs, by outcome: stored, duplicate (a message id stored before), dead_letter.",
        );
        for (source, counts) in &sources {
            for (outcome, count) in [
                ("stored", counts.stored),
                ("duplicate", counts.duplicates),
                ("dead_letter", counts.dead_letters),
            ] {
                sample(
                    out,
                    name,
                    &[("source", source), ("outcome", outcome)],
                    count,
                );
            }
        }
        type Of = fn(&SourceCounts) -> u64;
        let gauges: [(&str, &str, Of); 3] = [
            (
                "convlog_source_position",
                "The last position of the log stored (a stream sequence, an offset).",
                |c| c.position,
            ),
            (
                "convlog_source_lag",
                "Records in the log its consumer has not received yet.",
                |c| c.lag,
            ),
            (
                "convlog_source_connected",
                "1 while the source is connected, 0 while it reconnects.",
                |c| c.connected as u64,
            ),
        ];
        for (name, help, of) in gauges {
            family(out, name, "gauge", help);
            for (source, counts) in &sources {
                sample(out, name, &[("source", source)], of(counts));
            }
        }
    }
}

/// Per kind of document, in all and per partition.
fn render_index(out: &mut String, parts: &[PartitionStats]) {
    type Of = fn(&PartitionStats) -> u64;
    let table: [(&str, &str, Of); 4] = [
        ("segments", "Index segments", |p| p.segments),
        ("documents", "Live index documents", |p| p.documents),
        (
            "deleted_documents",
            "Deleted documents segments still hold until a merge drops them",
            |p| p.deleted,
        ),
        ("size_bytes", "Bytes of the index's files on disk", |p| {
            p.bytes
        }),
    ];
    for (what, help, of) in table {
        let name = format!("convlog_index_{what}");
        family(out, &name, "gauge", &format!("{help}, by kind."));
        for kind in [DocKind::Conversation, DocKind::Message] {
            let total: u64 = parts.iter().filter(|p| p.kind == kind).map(of).sum();
            sample(out, &name, &[("kind", kind_label(kind))], total);
        }
        let name = format!("convlog_index_partition_{what}");
        family(
            out,
            &name,
            "gauge",
            &format!("{help}, by kind and time partition."),
        );
        for part in parts {
            sample(
                out,
                &name,
                &[
                    ("kind", kind_label(part.kind)),
                    ("partition", &part.partition),
                ],
                of(part),
            );
        }
    }
}

fn render_jobs(out: &mut String, jobs: &[KindMetrics]) {
    let outcomes = [JobState::Succeeded, JobState::Failed];
    let finished = |kind: &KindMetrics, outcome: JobState| {
        kind.finished
            .iter()
            .find(|(state, ..)| *state == outcome)
            .map_or((0, 0.0), |(_, n, s)| (*n, *s))
    };
    let name = "convlog_jobs_finished_total";
    family(
        out,
        name,
        "counter",
        "Background jobs finished, by kind and outcome (from the job history).",
    );
    for kind in jobs {
        for outcome in outcomes {
            sample(
                out,
                name,
                &[("kind", &kind.kind), ("outcome", outcome.as_str())],
                finished(kind, outcome).0,
            );
        }
    }
    let name = "convlog_job_duration_seconds";
    family(
        out,
        name,
        "summary",
        "Time finished background jobs ran, by kind and outcome.",
    );
    for kind in jobs {
        for outcome in outcomes {
            let (count, seconds) = finished(kind, outcome);
            let labels = [("kind", kind.kind.as_str()), ("outcome", outcome.as_str())];
            sample(out, &format!("{name}_sum"), &labels, seconds);
            sample(out, &format!("{name}_count"), &labels, count);
        }
    }
    let name = "convlog_job_running";
    family(out, name, "gauge", "1 while a job of the kind runs.");
    for kind in jobs {
        sample(
            out,
            name,
            &[("kind", &kind.kind)],
            kind.running.is_some() as u8,
        );
    }
    let name = "convlog_job_progress_ratio";
    family(
        out,
        name,
        "gauge",
        "Progress of the running job of the kind, 0 to 1 (0 when none runs).",
    );
    for kind in jobs {
        sample(
            out,
            name,
            &[("kind", &kind.kind)],
            kind.running.unwrap_or(0.0),
        );
    }
}

fn render_archive(out: &mut String, archive: &ArchiveStats, schedule_seconds: f64) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    gauge(
        out,
        "convlog_archive_schedule_seconds",
        "How often the archive pass runs by itself (retention.schedule; 0: off).",
        schedule_seconds,
    );
    gauge(
        out,
        "convlog_archive_last_success_timestamp_seconds",
        "When the last archive pass succeeded (the process's start until one has).",
        archive.last_success.load(Ordering::Relaxed) as f64 / 1e6,
    );
    let name = "convlog_archive_passes_total";
    family(
        out,
        name,
        "counter",
        "Archive passes since start, by outcome.",
    );
    sample(
        out,
        name,
        &[("outcome", "succeeded")],
        load(&archive.passes_succeeded),
    );
    sample(
        out,
        name,
        &[("outcome", "failed")],
        load(&archive.passes_failed),
    );
    counter(
        out,
        "convlog_archive_rows_total",
        "Rows (messages and conversations) written to the archive since start.",
        load(&archive.rows),
    );
    counter(
        out,
        "convlog_archive_bytes_total",
        "Bytes of Parquet objects written to the archive since start.",
        load(&archive.bytes),
    );
    counter(
        out,
        "convlog_archive_objects_total",
        "Parquet objects written to the archive since start.",
        load(&archive.objects),
    );
    counter(
        out,
        "convlog_archive_orphans_removed_total",
        "Objects the manifest doesn't know removed since start.",
        load(&archive.orphans_removed),
    );
    let name = "convlog_archive_failures_total";
    family(
        out,
        name,
        "counter",
        "Archive failures since start, by the step that failed.",
    );
    for (step, count) in archive.failures() {
        sample(out, name, &[("step", step)], count);
    }
}

fn render_rest(out: &mut String, gauges: &Gauges) {
    let files = &gauges.files;
    gauge(
        out,
        "convlog_store_size_bytes",
        "Bytes of the store's database file.",
        files.store,
    );
    gauge(
        out,
        "convlog_store_wal_size_bytes",
        "Bytes of the store's write-ahead log.",
        files.wal,
    );
    gauge(
        out,
        "convlog_disk_free_bytes",
        "Bytes available on the data directory's filesystem.",
        files.disk_free,
    );
    gauge(
        out,
        "convlog_disk_size_bytes",
        "Size of the data directory's filesystem in bytes.",
        files.disk_size,
    );
    gauge(
        out,
        "convlog_tagger_lag",
        "Store changes the tagging job has not evaluated yet.",
        gauges.tagger_lag,
    );
    gauge(
        out,
        "convlog_tagger_last_full_run_timestamp_seconds",
        "When the last full tagging run finished (0: none since start).",
        gauges.tagger_last_full_run,
    );
    gauge(
        out,
        "convlog_tail_streams",
        "Live tails (GET /v1/bots/{bot}/tail) open.",
        gauges.tails_open,
    );
    let name = "convlog_tail_yielded_seconds_total";
    family(
        out,
        name,
        "counter",
        "Time live tails waited for ingest bursts to pass (they read a page a second while the index is behind).",
    );
    sample(out, name, &[], gauges.tails_yielded_seconds);
    let process = &gauges.process;
    let name = "convlog_process_cpu_seconds_total";
    family(
        out,
        name,
        "counter",
        "CPU time the process used, user and system.",
    );
    sample(out, name, &[], process.cpu_seconds);
    gauge(
        out,
        "convlog_process_resident_memory_bytes",
        "Resident memory of the process.",
        process.resident_bytes,
    );
    gauge(
        out,
        "convlog_process_open_fds",
        "File descriptors the process holds open.",
        process.open_fds,
    );
    gauge(
        out,
        "convlog_process_max_fds",
        "The process's limit on open file descriptors.",
        process.max_fds,
    );
    gauge(
        out,
        "convlog_process_threads",
        "Threads of the process.",
        process.threads,
    );
    gauge(
        out,
        "convlog_process_start_time_seconds",
        "When the process started, in seconds since the epoch.",
        process.start_time_seconds,
    );
}
