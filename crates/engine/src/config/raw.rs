//! The configuration exactly as written in TOML, before validation.
//!
//! Every table denies unknown fields so a typo is an error that names the key.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub auth: RawAuth,
    pub ingest: RawIngest,
    pub sessions: RawSessions,
    pub index: RawIndex,
    pub search: RawSearch,
    pub review: RawReview,
    pub tail: RawTail,
    #[serde(default)]
    pub tagging: crate::tag::RawTagging,
    pub retention: RawRetention,
    pub privacy: RawPrivacy,
    pub log: RawLog,
    #[serde(default)]
    pub sources: RawSources,
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub node: String,
    pub partitions: u32,
    pub nodes: Vec<RawClusterNode>,
}

/// One `[[cluster.nodes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClusterNode {
    pub name: String,
    pub url: String,
    pub partitions: Vec<u32>,
}

/// `[sources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    pub nats: Option<RawNatsSource>,
    pub kafka: Option<RawKafkaSource>,
}

/// `[sources.kafka]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSource {
    pub brokers: String,
    pub topic: String,
    pub partitions: Option<Vec<u32>>,
    #[serde(default = "default_fetch_bytes")]
    pub fetch_bytes: String,
    #[serde(default = "default_record_format")]
    pub format: String,
    pub bot: Option<String>,
}

fn default_fetch_bytes() -> String {
    "1MiB".into()
}

/// `[sources.nats]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNatsSource {
    pub url: String,
    pub credentials: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub stream: String,
    pub subject: Option<String>,
    pub durable: String,
    #[serde(default = "default_nats_batch")]
    pub batch: usize,
    #[serde(default = "default_record_format")]
    pub format: String,
    pub bot: Option<String>,
}

fn default_record_format() -> String {
    "convlog".into()
}

fn default_nats_batch() -> usize {
    500
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
}

/// `[privacy]`: what is redacted at ingest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    pub redact: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
    #[serde(default)]
    pub bots: BTreeMap<String, RawPrivacyBot>,
}

/// `[privacy.bots.<bot>]`: a bot's own detectors (instead of `privacy.redact`)
/// and patterns (beside `privacy.patterns`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacyBot {
    pub redact: Option<Vec<String>>,
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
}

/// One of `privacy.patterns`: `{name = "order_ref", regex = "ORD-[0-9]{6}"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPattern {
    pub name: String,
    pub regex: String,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub data_dir: String,
    pub max_body: String,
    pub request_timeout: String,
    pub header_timeout: String,
    pub idle_timeout: String,
    pub max_connections: usize,
    pub body_timeout: String,
    pub body_budget_per_key: String,
}

/// `[ingest]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    pub max_text: String,
    pub max_metadata: String,
    pub max_batch_messages: usize,
    pub capture_all_traces: bool,
    pub otlp: RawOtlp,
}

/// `[ingest.otlp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub keep_traces: String,
}

/// `[sessions]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub default_timeout: String,
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
}

/// `[index]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    pub refresh_interval: String,
    pub writer_memory: String,
    pub writer_threads: usize,
    pub on_schema_change: String,
    pub partition_span: String,
    pub max_backlog: u64,
}

/// `[search]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub history_days: u32,
    pub cursor_ttl: String,
    pub max_open_cursors: usize,
    pub default_language: String,
    pub detect_language: String,
    #[serde(default)]
    pub bots: std::collections::BTreeMap<String, RawSearchBot>,
}

/// `[search.bots.<bot>]`: a bot's own language settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearchBot {
    pub default_language: Option<String>,
    pub detect_language: Option<String>,
}

/// `[retention]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub period: String,
    #[serde(default)]
    pub bots: std::collections::BTreeMap<String, String>,
    pub keep_flagged: bool,
    pub schedule: String,
    pub batch_messages: usize,
    pub multipart_threshold: String,
    pub orphan_grace: String,
    pub restore_hold: String,
    pub archive_url: String,
    pub s3: RawS3,
}

/// `[retention.s3]`: empty values fall back to the standard AWS environment variables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub allow_http: bool,
}

/// `[tail]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTail {
    pub heartbeat: String,
    pub buffer: usize,
}

/// `[review]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    pub share_ttl: String,
    pub share_max_ttl: String,
    pub max_labels: usize,
    pub bulk_chunk: usize,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub rate_limit: f64,
    pub rate_burst: f64,
}
