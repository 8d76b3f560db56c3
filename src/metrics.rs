//! Prometheus metrics, kept as atomics and rendered in the text format on `/metrics`.

use std::fmt::Write;
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
pub struct Gauges {
    pub store_head: u64,
    pub index_position: u64,
    /// How long the oldest change not yet searchable has been committed.
    pub index_lag_seconds: f64,
    pub index_partitions: u64,
    /// Live and deleted (not yet merged away) documents: conversation, message.
    pub index_documents: [(u64, u64); 2],
    pub index_commits: u64,
    pub ready: bool,
    /// Matches replaced at ingest, per detector configured anywhere.
    pub redactions: Vec<(String, u64)>,
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

/// A gauge with one value per `kind`.
fn gauge_by_kind(out: &mut String, name: &str, help: &str, values: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (kind, value) in values {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {value}");
    }
}

impl Metrics {
    /// Counts one refused request.
    pub fn refused(&self, reason: Refusal) {
        self.refusals[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
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
        let [
            (conversations, deleted_conversations),
            (messages, deleted_messages),
        ] = gauges.index_documents;
        gauge_by_kind(
            &mut out,
            "convlog_index_documents",
            "Live documents in the search index.",
            &[("conversation", conversations), ("message", messages)],
        );
        gauge_by_kind(
            &mut out,
            "convlog_index_deleted_documents",
            "Deleted documents the search index still holds until a merge drops them.",
            &[
                ("conversation", deleted_conversations),
                ("message", deleted_messages),
            ],
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
        out
    }
}
