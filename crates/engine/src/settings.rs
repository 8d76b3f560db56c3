//! The typed settings each layer of the engine is given: plain values, already
//! validated, with no knowledge of where they came from.
//!
//! They are the bottom layer so that any module can take its settings without
//! importing the configuration loader ([`crate::config`]), which sits on top:
//! it reads `config.toml` and validates each section into these types (and the
//! tagging rules into `tag`'s).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body: usize,
    pub request_timeout: Duration,
    /// Time to receive a complete request head.
    pub header_timeout: Duration,
    /// A kept-alive connection with nothing in flight is closed after this.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time to receive a request's whole body once its head is in.
    pub body_timeout: Duration,
    /// Bytes of bodies one key may hold in memory at once.
    pub body_budget_per_key: usize,
}

/// `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Requests a second per key; 0 disables the limit.
    pub rate_limit: f64,
    pub rate_burst: f64,
}

/// `[ingest]`.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub max_text: usize,
    pub max_metadata: usize,
    pub max_batch_messages: usize,
    pub capture_all_traces: bool,
    /// Whether the spans of OTLP traces that aren't messages are kept always,
    /// or (like other trace events) only for conversations with debug logging on.
    pub otlp_keep_traces: KeepTraces,
}

/// `ingest.otlp.keep_traces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepTraces {
    /// When the conversation's debug logging is on (or `capture_all_traces`).
    Debug,
    Always,
}

impl IngestConfig {
    /// The largest raw JSON text one item may have: its text and metadata at
    /// their limits, every byte escaped (`\u00XX`), plus the other fields.
    pub fn max_item_bytes(&self) -> usize {
        6 * (self.max_text + self.max_metadata) + 64 * 1024
    }
}

/// `[sessions]`: the timeout after which a user's next message starts a new session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub default_timeout: Duration,
    pub channels: BTreeMap<String, Duration>,
}

impl SessionConfig {
    /// The session timeout of `channel`.
    pub fn timeout(&self, channel: &str) -> Duration {
        self.channels
            .get(channel)
            .copied()
            .unwrap_or(self.default_timeout)
    }
}

/// `[index]`.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// The time each partition of the index covers (by conversations' `placed_at`).
    pub partition_span: Duration,
    pub refresh_interval: Duration,
    pub writer_memory: usize,
    pub writer_threads: usize,
    pub on_schema_change: SchemaChange,
    /// Changes the index may be behind the store before ingest waits (0: no bound).
    pub max_backlog: u64,
    /// The languages messages are analysed in (`[search]`; shared with [`SearchConfig`]).
    pub languages: Arc<Languages>,
}

/// `[search]`.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub history_days: u32,
    pub cursor_ttl: Duration,
    pub max_open_cursors: usize,
    pub languages: Arc<Languages>,
}

/// How a message without `lang` gets its language: detected from its text
/// when detection is on and confident, else the default; per bot or for all.
#[derive(Debug, Clone, PartialEq)]
pub struct Languages {
    pub default: LanguageChoice,
    pub bots: HashMap<String, LanguageChoice>,
}

/// One bot's (or every bot's) language settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageChoice {
    /// A BCP 47 primary tag.
    pub default_language: String,
    pub detect: convlog_querylang::analysis::Detection,
}

impl Languages {
    /// The language a message of `bot` is analysed in: `given` (its `lang`),
    /// else detected from `text`, else the bot's default.
    pub fn resolve(&self, bot: &str, given: Option<&str>, text: &str) -> String {
        if let Some(lang) = given {
            return lang.to_string();
        }
        let choice = self.bots.get(bot).unwrap_or(&self.default);
        convlog_querylang::analysis::detect(text, &choice.default_language, choice.detect)
    }
}

/// `[log]`: how the server writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[tail]`: the live tail (`GET /v1/bots/{bot}/tail`).
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// How often an idle stream sends a comment, so proxies keep it open.
    pub heartbeat: Duration,
    /// Messages waiting for a slow client before new ones are dropped.
    pub buffer: usize,
}

/// `[cluster]`: bots spread over nodes by partition. Each bot belongs to the
/// partition the log's own partitioner gives it — NATS's
/// `{{partition(n, token)}}` subject mapping, or Kafka's default partitioner
/// keyed by the bot id — so the log and the nodes agree without a membership
/// protocol; and each partition to one node.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's name.
    pub node: String,
    /// Partitions of the log (the `n` of the subject mapping, the topic's partitions).
    pub partitions: u32,
    /// The log's partition function.
    pub partitioner: Partitioner,
    /// Every node, with the partitions it owns.
    pub nodes: Vec<ClusterNode>,
}

/// One node of `[cluster]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterNode {
    pub name: String,
    /// Where its HTTP API answers, e.g. `http://10.0.0.2:7700`.
    pub url: String,
    pub partitions: Vec<u32>,
}

impl ClusterConfig {
    /// The partition of `bot`.
    pub fn partition(&self, bot: &str) -> u32 {
        self.partitioner.partition(bot, self.partitions)
    }

    /// The node owning `bot`.
    pub fn owner(&self, bot: &str) -> &ClusterNode {
        let partition = self.partition(bot);
        self.nodes
            .iter()
            .find(|node| node.partitions.contains(&partition))
            .expect("every partition has an owner (checked at load)")
    }

    /// This node.
    pub fn this(&self) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|node| node.name == self.node)
            .expect("the node is one of the nodes (checked at load)")
    }
}

/// How a log gives a bot its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// NATS's deterministic subject-token partition: `fnv1a32(bot) % n`.
    Nats,
    /// Kafka's default partitioner for a keyed record (the Java client's,
    /// librdkafka's `murmur2_random`): `(murmur2(bot) & 0x7fffffff) % n`.
    Kafka,
}

impl Partitioner {
    /// The partition of `key` among `partitions`.
    pub fn partition(self, key: &str, partitions: u32) -> u32 {
        let partitions = partitions.max(1);
        match self {
            Partitioner::Nats => fnv1a32(key.as_bytes()) % partitions,
            Partitioner::Kafka => (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions,
        }
    }
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Kafka's `Utils.murmur2` (MurmurHash2, seed `0x9747b28c`).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = 0x9747_b28c_u32 ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// `[sources]`: the logs convlog consumes beside its HTTP ingest.
#[derive(Debug, Clone, Default)]
pub struct SourcesConfig {
    /// `[sources.nats]`: a NATS JetStream stream, if configured.
    pub nats: Option<NatsSourceConfig>,
    /// `[sources.kafka]`: a Kafka topic, if configured.
    pub kafka: Option<KafkaSourceConfig>,
}

/// `[sources.kafka]`: a Kafka topic whose records are stored exactly once,
/// partition by partition, the offsets kept in the store (no consumer group).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topic: String,
    /// The partitions to consume; `None`: every partition the topic has (in
    /// a cluster: the partitions this node owns).
    pub partitions: Option<Vec<u32>>,
    /// Bytes fetched (and stored in one transaction) at most at a time.
    pub fetch_bytes: usize,
    /// What its records carry (Rasa events: the bot is `bot`, else the
    /// topic's last `.`-separated token).
    pub format: RecordFormat,
}

impl KafkaSourceConfig {
    /// The name a partition's position and dead letters are kept under.
    pub fn source_name(&self, partition: u32) -> String {
        format!("kafka:{}:{partition}", self.topic)
    }

    /// The partitions this node consumes, when the settings say
    /// (`None`: every partition the topic has).
    pub fn consumed(&self, cluster: Option<&ClusterConfig>) -> Option<Vec<u32>> {
        match cluster {
            Some(cluster) => Some(cluster.this().partitions.clone()),
            None => self.partitions.clone(),
        }
    }
}

/// `[sources.nats]`: a NATS JetStream stream whose messages are stored
/// exactly once (see `store::sources`).
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSourceConfig {
    /// The server, `nats://host:port` (several: comma-separated).
    pub url: String,
    /// A NATS credentials file (`.creds`: JWT and seed), if the server wants one.
    pub credentials: Option<std::path::PathBuf>,
    /// A user and password, if the server wants them instead.
    pub user: Option<(String, String)>,
    /// The stream to consume.
    pub stream: String,
    /// Only its subjects matching this (e.g. `convlog.p.0` for one partition); all when `None`.
    pub subject: Option<String>,
    /// The durable consumer's name (one per node and partition).
    pub durable: String,
    /// Messages fetched (and stored in one transaction) at most at a time.
    pub batch: usize,
    /// What its messages carry.
    pub format: RecordFormat,
}

/// What each record of a log carries.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordFormat {
    /// One message as an item of `POST /v1/messages` (JSON).
    Convlog,
    /// Rasa tracker events, as `POST /v1/ingest/rasa` takes them (an event
    /// broker's: one event per record). Rasa events don't name their bot: it
    /// is `bot`, or else the last token of the record's subject
    /// (`rasa.<bot>`, which also lets a subject mapping partition them).
    Rasa { bot: Option<String> },
}

impl NatsSourceConfig {
    /// The name its position and dead letters are kept under.
    pub fn source_name(&self) -> String {
        format!("nats:{}:{}", self.stream, self.durable)
    }

    /// What this node consumes: in a cluster, one consumer per partition it
    /// owns (`{partition}` of the subject filled in, the durable name
    /// suffixed `-p<n>`); alone, this one.
    pub fn consumers(&self, cluster: Option<&ClusterConfig>) -> Vec<NatsSourceConfig> {
        let Some(cluster) = cluster else {
            return vec![self.clone()];
        };
        cluster
            .this()
            .partitions
            .iter()
            .map(|p| NatsSourceConfig {
                subject: self
                    .subject
                    .as_ref()
                    .map(|s| s.replace("{partition}", &p.to_string())),
                durable: format!("{}-p{p}", self.durable),
                ..self.clone()
            })
            .collect()
    }
}

/// `[review]`.
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub share_ttl: Duration,
    pub share_max_ttl: Duration,
    /// Labels one conversation may carry.
    pub max_labels: usize,
    /// Conversations a bulk action (or its undo) changes per store transaction.
    pub bulk_chunk: usize,
}

/// `[retention]`.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long conversations stay hot after their last message.
    pub period: Duration,
    /// Per-bot periods overriding `period`.
    pub bots: std::collections::BTreeMap<String, Duration>,
    /// Hold flagged conversations hot whatever their age.
    pub keep_flagged: bool,
    /// How often the archive runs by itself; `None` is off.
    pub schedule: Option<Duration>,
    /// Messages per archive run (one set of objects each).
    pub batch_messages: usize,
    /// Objects larger than this upload in parts.
    pub multipart_threshold: usize,
    /// Objects under the archive prefix missing from the manifest are removed once this old.
    pub orphan_grace: Duration,
    /// How long restored conversations stay hot.
    pub restore_hold: Duration,
    /// Empty means `<data_dir>/archive`.
    pub archive_url: String,
    pub s3: S3Config,
}

impl RetentionConfig {
    /// The retention period of a bot.
    pub fn period_of(&self, bot_id: &str) -> Duration {
        self.bots.get(bot_id).copied().unwrap_or(self.period)
    }
}

/// `[retention.s3]`: empty strings fall back to the `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub allow_http: bool,
}

/// What the service does when the index on disk was built with another schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChange {
    /// Serve an index of an older schema this binary knows while a reindex
    /// builds the current one; rebuild any other in place from the store
    /// (readiness stays red until it has caught up).
    Rebuild,
    /// Refuse to start, saying how to rebuild.
    Refuse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_partitioner_is_the_java_clients_murmur2() {
        // Kafka's own vectors (clients' UtilsTest.testMurmur2), as signed ints.
        for (key, hash) in [
            ("21", -973_932_308_i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, hash, "{key}");
            assert_eq!(
                Partitioner::Kafka.partition(key, 7),
                ((hash as u32) & 0x7fff_ffff) % 7
            );
        }
        assert_eq!(Partitioner::Nats.partition("bot-00", 1), 0);
    }
}
