//! Configuration: the embedded `config.toml` defaults, layered with a user
//! file, environment variables and command-line overrides, then validated into
//! the typed settings of [`crate::settings`] (re-exported here) and the tagging
//! rules. It is the engine's top layer: it knows every section's owner.
//!
//! Layering happens on TOML values; validation only looks at the merged value
//! and does no IO, so it is testable and its errors name the offending key.

mod raw;

pub use crate::settings::{
    AuthConfig, ClusterConfig, ClusterNode, IndexConfig, IngestConfig, KafkaSourceConfig,
    KeepTraces, LanguageChoice, Languages, LogFormat, NatsSourceConfig, Partitioner, RecordFormat,
    RetentionConfig, ReviewConfig, S3Config, SchemaChange, SearchConfig, ServerConfig,
    SessionConfig, SourcesConfig, TailConfig,
};
pub use convlog_core::{parse_duration, parse_size};

use crate::ingest::redact::{Builtin, Pattern, RedactChoice, Redaction};
use raw::RawConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The defaults, embedded so that the binary runs with no file at all.
pub const DEFAULT_CONFIG: &str = include_str!("../../../../config.toml");

/// A configuration that can't be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Toml(String),
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Validated settings of the whole service.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub ingest: IngestConfig,
    pub sessions: SessionConfig,
    pub index: IndexConfig,
    pub search: SearchConfig,
    pub review: ReviewConfig,
    pub tail: TailConfig,
    pub tagging: crate::tag::TaggingConfig,
    pub retention: RetentionConfig,
    /// What is redacted from text at ingest (`[privacy]`), compiled.
    pub privacy: Redaction,
    pub log: LogFormat,
    pub sources: SourcesConfig,
    /// `[cluster]`, if this node is one of several.
    pub cluster: Option<ClusterConfig>,
}

/// Where each layer of configuration comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A user file layered over the embedded defaults.
    pub file: Option<PathBuf>,
    /// Environment variables (name, value), usually `std::env::vars()`.
    pub env: Vec<(String, String)>,
    /// `section.key=value` overrides from the command line.
    pub overrides: Vec<String>,
    /// `--listen` flag.
    pub listen: Option<String>,
    /// `--data-dir` flag.
    pub data_dir: Option<String>,
}

impl Config {
    /// The embedded defaults, validated.
    pub fn defaults() -> Config {
        Config::load(&Sources::default()).expect("embedded config.toml is valid")
    }

    /// Reads the user file (if any) and merges every layer, then validates.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut merged = parse_table(DEFAULT_CONFIG, "embedded config.toml")?;
        let env_file = sources
            .env
            .iter()
            .find(|(name, _)| name == "CONVLOG_CONFIG")
            .map(|(_, value)| PathBuf::from(value));
        if let Some(path) = sources.file.clone().or(env_file) {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let user = parse_table(&text, &path.display().to_string())?;
            merge(&mut merged, user);
        }
        for (name, value) in &sources.env {
            match name.as_str() {
                "CONVLOG_LISTEN" => set(&mut merged, "server.listen", value)?,
                "CONVLOG_DATA_DIR" => set(&mut merged, "server.data_dir", value)?,
                _ => {
                    if let Some(path) = name.strip_prefix("CONVLOG__") {
                        let key = path.to_ascii_lowercase().replace("__", ".");
                        set(&mut merged, &key, value)?;
                    }
                }
            }
        }
        for assignment in &sources.overrides {
            let (key, value) = assignment
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid {
                    key: assignment.clone(),
                    reason: "expected section.key=value".into(),
                })?;
            set(&mut merged, key.trim(), value.trim())?;
        }
        if let Some(listen) = &sources.listen {
            set(&mut merged, "server.listen", listen)?;
        }
        if let Some(dir) = &sources.data_dir {
            set(&mut merged, "server.data_dir", dir)?;
        }
        validate(merged)
    }

    /// The archive location: the configured URL or `<data_dir>/archive`.
    pub fn archive_url(&self) -> String {
        if self.retention.archive_url.is_empty() {
            format!("file://{}", self.server.data_dir.join("archive").display())
        } else {
            self.retention.archive_url.clone()
        }
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Toml(format!("{origin}: {err}")))
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets a dotted key from a string, reading it as a TOML literal when it is one
/// (numbers, booleans) and as a string otherwise.
fn set(table: &mut toml::Table, dotted: &str, raw_value: &str) -> Result<(), ConfigError> {
    let value = format!("v = {raw_value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw_value.to_string()));
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ConfigError::Invalid {
            key: dotted.to_string(),
            reason: "empty key".into(),
        })?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| ConfigError::Invalid {
            key: dotted.to_string(),
            reason: format!("`{part}` is not a table"),
        })?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// `[cluster]`, checked: this node among the nodes, every partition owned by exactly one node.
fn cluster(raw: &raw::RawCluster, partitioner: Partitioner) -> Result<ClusterConfig, ConfigError> {
    if raw.partitions == 0 || raw.partitions > 1024 {
        return Err(invalid("cluster.partitions", "must be between 1 and 1024"));
    }
    let mut owners = vec![None; raw.partitions as usize];
    for node in &raw.nodes {
        if !(node.url.starts_with("http://") || node.url.starts_with("https://")) {
            return Err(invalid(
                "cluster.nodes.url",
                format!(
                    "{:?} of node {:?} must be an http:// or https:// URL",
                    node.url, node.name
                ),
            ));
        }
        for &p in &node.partitions {
            let slot = owners.get_mut(p as usize).ok_or_else(|| {
                invalid(
                    "cluster.nodes.partitions",
                    format!(
                        "node {:?} names partition {p}; there are {}",
                        node.name, raw.partitions
                    ),
                )
            })?;
            if let Some(other) = slot.replace(node.name.clone()) {
                return Err(invalid(
                    "cluster.nodes.partitions",
                    format!(
                        "partition {p} is owned by both {other:?} and {:?}",
                        node.name
                    ),
                ));
            }
        }
    }
    if let Some(p) = owners.iter().position(Option::is_none) {
        return Err(invalid(
            "cluster.nodes.partitions",
            format!("partition {p} has no node"),
        ));
    }
    if !raw.nodes.iter().any(|node| node.name == raw.node) {
        return Err(invalid(
            "cluster.node",
            format!("{:?} is not one of cluster.nodes", raw.node),
        ));
    }
    Ok(ClusterConfig {
        node: raw.node.clone(),
        partitions: raw.partitions,
        partitioner,
        nodes: raw
            .nodes
            .iter()
            .map(|node| ClusterNode {
                name: node.name.clone(),
                url: node.url.trim_end_matches('/').to_string(),
                partitions: node.partitions.clone(),
            })
            .collect(),
    })
}

/// `[sources.nats]`, checked.
fn nats_source(raw: &raw::RawNatsSource) -> Result<NatsSourceConfig, ConfigError> {
    let name = |key: &str, value: &str| -> Result<String, ConfigError> {
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        match ok {
            true => Ok(value.to_string()),
            false => Err(invalid(key, "must be letters, digits, '-' or '_'")),
        }
    };
    if !raw.url.split(',').all(|url| {
        let url = url.trim();
        !url.is_empty()
            && (url.starts_with("nats://") || url.starts_with("tls://") || !url.contains("://"))
    }) {
        return Err(invalid(
            "sources.nats.url",
            "must be nats://host:port (several: comma-separated)",
        ));
    }
    let user = match (&raw.user, &raw.password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "sources.nats.user",
                "user and password go together",
            ));
        }
    };
    if raw.credentials.is_some() && user.is_some() {
        return Err(invalid(
            "sources.nats.credentials",
            "give a credentials file or a user and password, not both",
        ));
    }
    if raw.batch == 0 || raw.batch > 10_000 {
        return Err(invalid("sources.nats.batch", "must be between 1 and 10000"));
    }
    if let Some(subject) = &raw.subject
        && (subject.is_empty() || subject.contains(char::is_whitespace))
    {
        return Err(invalid(
            "sources.nats.subject",
            "must be a NATS subject (tokens separated by '.', wildcards '*' and '>')",
        ));
    }
    Ok(NatsSourceConfig {
        url: raw.url.clone(),
        credentials: raw.credentials.as_ref().map(std::path::PathBuf::from),
        user,
        stream: name("sources.nats.stream", &raw.stream)?,
        subject: raw.subject.clone(),
        durable: name("sources.nats.durable", &raw.durable)?,
        batch: raw.batch,
        format: record_format("sources.nats", &raw.format, raw.bot.as_deref())?,
    })
}

/// `[sources.kafka]`, checked.
fn kafka_source(raw: &raw::RawKafkaSource) -> Result<KafkaSourceConfig, ConfigError> {
    let brokers: Vec<String> = raw
        .brokers
        .split(',')
        .map(|b| b.trim().to_string())
        .collect();
    if !brokers.iter().all(|b| {
        b.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    }) {
        return Err(invalid(
            "sources.kafka.brokers",
            "must be host:port (several: comma-separated)",
        ));
    }
    let topic_ok = !raw.topic.is_empty()
        && raw.topic.len() <= 249
        && raw
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !topic_ok {
        return Err(invalid(
            "sources.kafka.topic",
            "must be a Kafka topic name: 1–249 letters, digits, '.', '_' or '-'",
        ));
    }
    if let Some(partitions) = &raw.partitions
        && (partitions.is_empty()
            || partitions.iter().any(|&p| p > i32::MAX as u32)
            || (1..partitions.len()).any(|i| partitions[..i].contains(&partitions[i])))
    {
        return Err(invalid(
            "sources.kafka.partitions",
            "must list partition numbers, each once (leave it out for all)",
        ));
    }
    let fetch_bytes = size("sources.kafka.fetch_bytes", &raw.fetch_bytes)?;
    if !(1024..=64 << 20).contains(&fetch_bytes) {
        return Err(invalid(
            "sources.kafka.fetch_bytes",
            "must be between 1KiB and 64MiB",
        ));
    }
    Ok(KafkaSourceConfig {
        brokers,
        topic: raw.topic.clone(),
        partitions: raw.partitions.clone(),
        fetch_bytes: fetch_bytes as usize,
        format: record_format("sources.kafka", &raw.format, raw.bot.as_deref())?,
    })
}

/// `format` and `bot` of a source.
fn record_format(
    section: &str,
    format: &str,
    bot: Option<&str>,
) -> Result<RecordFormat, ConfigError> {
    match (format, bot) {
        ("convlog", None) => Ok(RecordFormat::Convlog),
        ("convlog", Some(_)) => Err(invalid(
            &format!("{section}.bot"),
            "only with format = \"rasa\" (convlog's messages name their bot)",
        )),
        ("rasa", Some(bot)) if !convlog_core::is_identifier(bot) => Err(invalid(
            &format!("{section}.bot"),
            "must be 1–64 letters, digits, '.', '_' or '-'",
        )),
        ("rasa", bot) => Ok(RecordFormat::Rasa {
            bot: bot.map(str::to_string),
        }),
        _ => Err(invalid(
            &format!("{section}.format"),
            "must be \"convlog\" or \"rasa\"",
        )),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|reason| invalid(key, reason))
}

fn size(key: &str, text: &str) -> Result<u64, ConfigError> {
    parse_size(text).map_err(|reason| invalid(key, reason))
}

fn positive(key: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(value)
}

/// A table of per-bot settings (`<section>.<bot>`), each parsed by `parse`
/// with its key; a key that is no bot id is refused.
fn per_bot<V, T, C: FromIterator<(String, T)>>(
    section: &str,
    bots: &BTreeMap<String, V>,
    parse: impl Fn(&str, &V) -> Result<T, ConfigError>,
) -> Result<C, ConfigError> {
    bots.iter()
        .map(|(bot, value)| {
            let key = format!("{section}.{bot}");
            if !convlog_core::is_identifier(bot) {
                return Err(invalid(&key, "not a valid bot id"));
            }
            Ok((bot.clone(), parse(&key, value)?))
        })
        .collect()
}

/// `[search]`'s language settings, and those of `[search.bots.<bot>]`
/// (each key falling back to `[search]`'s).
fn languages(search: &raw::RawSearch) -> Result<Languages, ConfigError> {
    let language = |key: &str, tag: &str| {
        convlog_querylang::analysis::primary_tag(tag).map_err(|reason| invalid(key, reason))
    };
    let detection = |key: &str, name: &str| {
        let names = convlog_querylang::analysis::Detection::NAMES;
        names
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, detection)| *detection)
            .ok_or_else(|| {
                let known: Vec<&str> = names.iter().map(|(known, _)| *known).collect();
                invalid(key, format!("{name:?} is not one of {}", known.join(", ")))
            })
    };
    let default = LanguageChoice {
        default_language: language("search.default_language", &search.default_language)?,
        detect: detection("search.detect_language", &search.detect_language)?,
    };
    let bots = per_bot("search.bots", &search.bots, |key, choice| {
        Ok(LanguageChoice {
            default_language: match &choice.default_language {
                Some(tag) => language(&format!("{key}.default_language"), tag)?,
                None => default.default_language.clone(),
            },
            detect: match &choice.detect_language {
                Some(name) => detection(&format!("{key}.detect_language"), name)?,
                None => default.detect,
            },
        })
    })?;
    Ok(Languages { default, bots })
}

/// `[privacy]` and `[privacy.bots.<bot>]`: the detectors each bot's text
/// goes through at ingest.
fn redaction(privacy: &raw::RawPrivacy) -> Result<Redaction, ConfigError> {
    let builtins = |key: &str, names: &[String]| -> Result<Vec<Builtin>, ConfigError> {
        names
            .iter()
            .map(|name| {
                Builtin::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                    invalid(
                        key,
                        format!(
                            "{name:?} is not a detector (one of {}; patterns go in privacy.patterns)",
                            known.join(", ")
                        ),
                    )
                })
            })
            .collect()
    };
    let patterns = |key: &str, raw: &[raw::RawPattern]| -> Result<Vec<Pattern>, ConfigError> {
        raw.iter()
            .map(|p| {
                if !convlog_core::is_identifier(&p.name) {
                    return Err(invalid(
                        key,
                        format!(
                            "pattern name {:?} must be 1–64 letters, digits, '.', '_' or '-'",
                            p.name
                        ),
                    ));
                }
                if Builtin::parse(&p.name).is_some() {
                    return Err(invalid(
                        key,
                        format!("pattern name {:?} is a built-in detector's", p.name),
                    ));
                }
                Ok(Pattern {
                    name: p.name.clone(),
                    regex: p.regex.clone(),
                })
            })
            .collect()
    };
    let default = RedactChoice {
        builtins: builtins("privacy.redact", &privacy.redact)?,
        patterns: patterns("privacy.patterns", &privacy.patterns)?,
    };
    let bots: BTreeMap<String, RedactChoice> =
        per_bot("privacy.bots", &privacy.bots, |key, bot| {
            let mut own = patterns(&format!("{key}.patterns"), &bot.patterns)?;
            own.splice(0..0, default.patterns.iter().cloned());
            Ok(RedactChoice {
                builtins: match &bot.redact {
                    Some(names) => builtins(&format!("{key}.redact"), names)?,
                    None => default.builtins.clone(),
                },
                patterns: own,
            })
        })?;
    Redaction::new(&default, &bots).map_err(|reason| invalid("privacy.patterns", reason))
}

fn validate(table: toml::Table) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_path_to_error::deserialize(table).map_err(
        |err: serde_path_to_error::Error<toml::de::Error>| match err.path().to_string() {
            // An unknown key is refused at its table; the message names the key.
            path if path == "." => ConfigError::Toml(err.inner().message().to_string()),
            path => ConfigError::Invalid {
                key: path,
                reason: err.inner().message().to_string(),
            },
        },
    )?;

    let listen = raw
        .server
        .listen
        .parse::<SocketAddr>()
        .map_err(|err| invalid("server.listen", format!("{:?}: {err}", raw.server.listen)))?;
    if raw.server.data_dir.trim().is_empty() {
        return Err(invalid("server.data_dir", "must not be empty"));
    }
    let max_body = size("server.max_body", &raw.server.max_body)?;
    if max_body < 1024 {
        return Err(invalid("server.max_body", "must be at least 1KiB"));
    }
    let body_budget_per_key = size(
        "server.body_budget_per_key",
        &raw.server.body_budget_per_key,
    )?;
    if body_budget_per_key < max_body {
        return Err(invalid(
            "server.body_budget_per_key",
            "must be at least server.max_body (one full body)",
        ));
    }
    if raw.server.max_connections == 0 {
        return Err(invalid("server.max_connections", "must be at least 1"));
    }
    let server = ServerConfig {
        listen,
        data_dir: PathBuf::from(&raw.server.data_dir),
        max_body: max_body as usize,
        request_timeout: positive(
            "server.request_timeout",
            duration("server.request_timeout", &raw.server.request_timeout)?,
        )?,
        header_timeout: positive(
            "server.header_timeout",
            duration("server.header_timeout", &raw.server.header_timeout)?,
        )?,
        idle_timeout: positive(
            "server.idle_timeout",
            duration("server.idle_timeout", &raw.server.idle_timeout)?,
        )?,
        max_connections: raw.server.max_connections,
        body_timeout: positive(
            "server.body_timeout",
            duration("server.body_timeout", &raw.server.body_timeout)?,
        )?,
        body_budget_per_key: body_budget_per_key as usize,
    };

    if !(raw.auth.rate_limit >= 0.0 && raw.auth.rate_limit.is_finite()) {
        return Err(invalid("auth.rate_limit", "must be 0 or more"));
    }
    if !(raw.auth.rate_burst >= 1.0 && raw.auth.rate_burst.is_finite()) {
        return Err(invalid("auth.rate_burst", "must be at least 1"));
    }
    let auth = AuthConfig {
        rate_limit: raw.auth.rate_limit,
        rate_burst: raw.auth.rate_burst,
    };

    if raw.ingest.max_batch_messages == 0 {
        return Err(invalid("ingest.max_batch_messages", "must be at least 1"));
    }
    let ingest = IngestConfig {
        max_text: size("ingest.max_text", &raw.ingest.max_text)? as usize,
        max_metadata: size("ingest.max_metadata", &raw.ingest.max_metadata)? as usize,
        max_batch_messages: raw.ingest.max_batch_messages,
        capture_all_traces: raw.ingest.capture_all_traces,
        otlp_keep_traces: match raw.ingest.otlp.keep_traces.as_str() {
            "debug" => KeepTraces::Debug,
            "always" => KeepTraces::Always,
            _ => {
                return Err(invalid(
                    "ingest.otlp.keep_traces",
                    "must be \"debug\" or \"always\"",
                ));
            }
        },
    };

    let mut channels = BTreeMap::new();
    for (channel, text) in &raw.sessions.channels {
        let key = format!("sessions.channels.{channel}");
        if channel.is_empty() || channel.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(&key, "channel names are lowercase"));
        }
        channels.insert(channel.clone(), positive(&key, duration(&key, text)?)?);
    }
    let sessions = SessionConfig {
        default_timeout: positive(
            "sessions.default_timeout",
            duration("sessions.default_timeout", &raw.sessions.default_timeout)?,
        )?,
        channels,
    };

    let writer_memory = size("index.writer_memory", &raw.index.writer_memory)?;
    if writer_memory < (16 << 20) {
        return Err(invalid("index.writer_memory", "must be at least 16MiB"));
    }
    let partition_span = duration("index.partition_span", &raw.index.partition_span)?;
    if partition_span < Duration::from_secs(60)
        || partition_span > Duration::from_secs(366 * 86_400)
    {
        return Err(invalid(
            "index.partition_span",
            "must be between 1m and 366d",
        ));
    }
    let languages = Arc::new(languages(&raw.search)?);
    let index = IndexConfig {
        partition_span,
        refresh_interval: positive(
            "index.refresh_interval",
            duration("index.refresh_interval", &raw.index.refresh_interval)?,
        )?,
        writer_memory: writer_memory as usize,
        writer_threads: raw.index.writer_threads,
        max_backlog: raw.index.max_backlog,
        languages: languages.clone(),
        on_schema_change: match raw.index.on_schema_change.as_str() {
            "rebuild" => SchemaChange::Rebuild,
            "refuse" => SchemaChange::Refuse,
            other => {
                return Err(invalid(
                    "index.on_schema_change",
                    format!("{other:?} is not \"rebuild\" or \"refuse\""),
                ));
            }
        },
    };

    let search = SearchConfig {
        history_days: raw.search.history_days,
        cursor_ttl: duration("search.cursor_ttl", &raw.search.cursor_ttl)?,
        max_open_cursors: raw.search.max_open_cursors,
        languages,
    };

    let review = ReviewConfig {
        share_ttl: positive(
            "review.share_ttl",
            duration("review.share_ttl", &raw.review.share_ttl)?,
        )?,
        share_max_ttl: positive(
            "review.share_max_ttl",
            duration("review.share_max_ttl", &raw.review.share_max_ttl)?,
        )?,
        max_labels: raw.review.max_labels,
        bulk_chunk: raw.review.bulk_chunk,
    };
    let tail = TailConfig {
        heartbeat: positive(
            "tail.heartbeat",
            duration("tail.heartbeat", &raw.tail.heartbeat)?,
        )?,
        buffer: raw.tail.buffer,
    };
    if tail.buffer == 0 {
        return Err(invalid("tail.buffer", "must be at least 1"));
    }
    if review.max_labels == 0 {
        return Err(invalid("review.max_labels", "must be at least 1"));
    }
    if review.bulk_chunk == 0 {
        return Err(invalid("review.bulk_chunk", "must be at least 1"));
    }
    if review.share_ttl > review.share_max_ttl {
        return Err(invalid(
            "review.share_ttl",
            "must not exceed review.share_max_ttl",
        ));
    }

    let tagging = raw.tagging.validate().map_err(|err| ConfigError::Invalid {
        key: format!("tagging ({})", err.rule),
        reason: err.reason,
    })?;

    let archive_url = raw.retention.archive_url.trim().to_string();
    if !(archive_url.is_empty()
        || archive_url.starts_with("file://")
        || archive_url.starts_with("s3://"))
    {
        return Err(invalid(
            "retention.archive_url",
            "must be empty, file://… or s3://…",
        ));
    }
    let retention = RetentionConfig {
        period: positive(
            "retention.period",
            duration("retention.period", &raw.retention.period)?,
        )?,
        bots: per_bot("retention.bots", &raw.retention.bots, |key, period| {
            positive(key, duration(key, period)?)
        })?,
        keep_flagged: raw.retention.keep_flagged,
        schedule: Some(duration("retention.schedule", &raw.retention.schedule)?)
            .filter(|every| !every.is_zero()),
        batch_messages: match raw.retention.batch_messages {
            0 => return Err(invalid("retention.batch_messages", "must be at least 1")),
            n => n,
        },
        multipart_threshold: match size(
            "retention.multipart_threshold",
            &raw.retention.multipart_threshold,
        )? {
            n if n < 5 << 20 => {
                return Err(invalid(
                    "retention.multipart_threshold",
                    "must be at least 5MiB (S3's smallest part)",
                ));
            }
            n => n as usize,
        },
        orphan_grace: positive(
            "retention.orphan_grace",
            duration("retention.orphan_grace", &raw.retention.orphan_grace)?,
        )?,
        restore_hold: positive(
            "retention.restore_hold",
            duration("retention.restore_hold", &raw.retention.restore_hold)?,
        )?,
        archive_url,
        s3: S3Config {
            endpoint: raw.retention.s3.endpoint.trim().to_string(),
            region: raw.retention.s3.region.trim().to_string(),
            access_key_id: raw.retention.s3.access_key_id.trim().to_string(),
            secret_access_key: raw.retention.s3.secret_access_key.trim().to_string(),
            allow_http: raw.retention.s3.allow_http,
        },
    };

    let sources = SourcesConfig {
        nats: raw.sources.nats.as_ref().map(nats_source).transpose()?,
        kafka: raw.sources.kafka.as_ref().map(kafka_source).transpose()?,
    };
    // The cluster partitions bots as its log does.
    let partitioner = match (&sources.nats, &sources.kafka) {
        (Some(_), Some(_)) if raw.cluster.is_some() => {
            return Err(invalid(
                "sources.kafka",
                "a cluster partitions bots by one log: give [sources.nats] or [sources.kafka], not both",
            ));
        }
        (_, Some(_)) => Partitioner::Kafka,
        _ => Partitioner::Nats,
    };
    let cluster = raw
        .cluster
        .as_ref()
        .map(|raw| cluster(raw, partitioner))
        .transpose()?;
    if let (Some(_), Some(kafka)) = (&cluster, &sources.kafka)
        && kafka.partitions.is_some()
    {
        return Err(invalid(
            "sources.kafka.partitions",
            "in a cluster, [cluster] says which partitions each node consumes",
        ));
    }
    if let (Some(_), Some(nats)) = (&cluster, &sources.nats)
        && !nats
            .subject
            .as_deref()
            .is_some_and(|s| s.contains("{partition}"))
    {
        return Err(invalid(
            "sources.nats.subject",
            "in a cluster, must hold {partition} (e.g. \"convlog.p.{partition}.>\"): each node consumes the partitions it owns",
        ));
    }
    Ok(Config {
        cluster,
        sources,
        server,
        auth,
        ingest,
        sessions,
        index,
        search,
        review,
        tail,
        tagging,
        retention,
        privacy: redaction(&raw.privacy)?,
        log: match raw.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("log.format", "must be \"text\" or \"json\"")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(overrides: &[&str]) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            ..Sources::default()
        })
    }

    #[test]
    fn embedded_defaults_match_the_documented_values() {
        let config = Config::defaults();
        assert_eq!(config.sessions.timeout("web"), Duration::from_secs(86_400));
        assert_eq!(
            config.sessions.timeout("whatsapp"),
            Duration::from_secs(86_400)
        );
        assert_eq!(config.sessions.timeout("sms"), Duration::from_secs(1_800));
        assert_eq!(config.index.refresh_interval, Duration::from_secs(1));
        assert_eq!(config.server.max_body, 8 << 20);
        assert_eq!(config.ingest.max_text, 16 << 10);
        assert_eq!(config.search.history_days, 5);
        assert_eq!(config.retention.period, Duration::from_secs(180 * 86_400));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        for (assignment, key) in [
            ("index.max_backlog=abc", "index.max_backlog"),
            ("index.writer_threads=-1", "index.writer_threads"),
            ("server.max_body=5", "server.max_body"),
        ] {
            let err = load_with(&[assignment]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{assignment}: {err}");
        }
    }

    #[test]
    fn partition_span_is_a_day_by_default_and_bounded() {
        let config = load_with(&[]).unwrap();
        assert_eq!(config.index.partition_span, Duration::from_secs(86_400));
        assert_eq!(
            load_with(&["index.partition_span=6h"])
                .unwrap()
                .index
                .partition_span,
            Duration::from_secs(6 * 3600)
        );
        for bad in ["30s", "367d", "often"] {
            let err = load_with(&[&format!("index.partition_span={bad}")]).unwrap_err();
            assert!(
                err.to_string().contains("index.partition_span"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_nats_source_is_checked_and_none_is_configured_by_default() {
        assert_eq!(Config::defaults().sources.nats, None);
        let base = [
            "sources.nats.url=nats://127.0.0.1:4222",
            "sources.nats.stream=convlog",
            "sources.nats.durable=node-a",
        ];
        let config = load_with(&base).unwrap();
        let nats = config.sources.nats.unwrap();
        assert_eq!(
            (nats.batch, nats.source_name(), nats.format),
            (
                500,
                "nats:convlog:node-a".to_string(),
                RecordFormat::Convlog
            )
        );
        let mut rasa = base.to_vec();
        rasa.extend(["sources.nats.format=rasa", "sources.nats.bot=shop"]);
        assert_eq!(
            load_with(&rasa).unwrap().sources.nats.unwrap().format,
            RecordFormat::Rasa {
                bot: Some("shop".into())
            }
        );
        for (bad, key) in [
            ("sources.nats.url=http://x:4222", "sources.nats.url"),
            ("sources.nats.stream=has space", "sources.nats.stream"),
            ("sources.nats.durable=a.b", "sources.nats.durable"),
            ("sources.nats.batch=0", "sources.nats.batch"),
            ("sources.nats.user=u", "sources.nats.user"),
            ("sources.nats.subject=a b", "sources.nats.subject"),
            ("sources.nats.streem=x", "streem"),
            ("sources.nats.format=avro", "sources.nats.format"),
            ("sources.nats.bot=shop", "sources.nats.bot"),
        ] {
            let mut overrides = base.to_vec();
            overrides.push(bad);
            let err = load_with(&overrides).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let mut both = base.to_vec();
        both.extend([
            "sources.nats.user=u",
            "sources.nats.password=p",
            "sources.nats.credentials=/x.creds",
        ]);
        let err = load_with(&both).unwrap_err().to_string();
        assert!(err.contains("sources.nats.credentials"), "{err}");
    }

    #[test]
    fn a_kafka_source_is_checked_and_gives_the_cluster_kafkas_partitioner() {
        let base = [
            "sources.kafka.brokers=127.0.0.1:9092, kafka-2:9092",
            "sources.kafka.topic=convlog.in",
        ];
        let config = load_with(&base).unwrap();
        let kafka = config.sources.kafka.unwrap();
        assert_eq!(kafka.brokers, ["127.0.0.1:9092", "kafka-2:9092"]);
        assert_eq!(
            (
                kafka.fetch_bytes,
                kafka.source_name(3),
                kafka.consumed(None)
            ),
            (1 << 20, "kafka:convlog.in:3".to_string(), None)
        );
        for (bad, key) in [
            ("sources.kafka.brokers=kafka", "sources.kafka.brokers"),
            ("sources.kafka.brokers=kafka:port", "sources.kafka.brokers"),
            ("sources.kafka.topic=a/b", "sources.kafka.topic"),
            ("sources.kafka.fetch_bytes=10", "sources.kafka.fetch_bytes"),
            ("sources.kafka.format=csv", "sources.kafka.format"),
            ("sources.kafka.bot=x", "sources.kafka.bot"),
            ("sources.kafka.group=x", "group"),
        ] {
            let mut overrides = base.to_vec();
            overrides.push(bad);
            let err = load_with(&overrides).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let cluster = "[cluster]\nnode = \"a\"\npartitions = 2\n\
             [[cluster.nodes]]\nname = \"a\"\nurl = \"http://10.0.0.1:7700\"\npartitions = [0]\n\
             [[cluster.nodes]]\nname = \"b\"\nurl = \"http://10.0.0.2:7700\"\npartitions = [1]\n\
             [sources.kafka]\nbrokers = \"k:9092\"\ntopic = \"t\"\n";
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(&Sources {
                file: Some(path.clone()),
                ..Sources::default()
            })
        };
        let config = load(cluster).unwrap();
        let cluster_config = config.cluster.unwrap();
        assert_eq!(cluster_config.partitioner, Partitioner::Kafka);
        assert_eq!(
            config
                .sources
                .kafka
                .unwrap()
                .consumed(Some(&cluster_config)),
            Some(vec![0])
        );
        let err = load(&format!("{cluster}partitions = [0]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources.kafka.partitions"), "{err}");
        let err = load(&format!(
            "{cluster}[sources.nats]\nurl = \"nats://x:4222\"\nstream = \"s\"\ndurable = \"d\"\nsubject = \"c.{{partition}}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_cluster_gives_every_partition_one_node_and_needs_partitioned_subjects() {
        let write = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            (dir, path)
        };
        let nodes = |b: &str| {
            format!(
                "[cluster]\nnode = \"a\"\npartitions = 4\n\
                 [[cluster.nodes]]\nname = \"a\"\nurl = \"http://10.0.0.1:7700/\"\npartitions = [0, 1]\n\
                 [[cluster.nodes]]\nname = \"b\"\nurl = \"http://10.0.0.2:7700\"\npartitions = {b}\n"
            )
        };
        let load = |text: &str| {
            let (_dir, path) = write(text);
            Config::load(&Sources {
                file: Some(path),
                ..Sources::default()
            })
        };
        let cluster = load(&nodes("[2, 3]")).unwrap().cluster.unwrap();
        assert_eq!(cluster.this().url, "http://10.0.0.1:7700");
        // (That this is the partition NATS's mapping picks: tests/it/sources.rs.)
        assert_eq!(
            cluster.owner("bot-00").name,
            if cluster.partition("bot-00") < 2 {
                "a"
            } else {
                "b"
            }
        );
        for (bad, key) in [
            (nodes("[2]"), "partition 3 has no node"),
            (nodes("[1, 2, 3]"), "partition 1 is owned by both"),
            (nodes("[2, 3, 4]"), "names partition 4"),
            (
                nodes("[2, 3]").replace("node = \"a\"", "node = \"c\""),
                "cluster.node",
            ),
            (
                nodes("[2, 3]").replace("http://10.0.0.2", "10.0.0.2"),
                "cluster.nodes.url",
            ),
            (
                nodes("[2, 3]")
                    + "[sources.nats]\nurl = \"nats://x:4222\"\nstream = \"s\"\ndurable = \"d\"\nsubject = \"convlog.>\"\n",
                "{partition}",
            ),
        ] {
            let err = load(&bad).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}\n{err}");
        }
        let with_source = nodes("[2, 3]")
            + "[sources.nats]\nurl = \"nats://x:4222\"\nstream = \"s\"\ndurable = \"d\"\nsubject = \"convlog.p.{partition}.>\"\n";
        let config = load(&with_source).unwrap();
        let consumers = config
            .sources
            .nats
            .unwrap()
            .consumers(config.cluster.as_ref());
        let names: Vec<(String, Option<String>)> = consumers
            .iter()
            .map(|c| (c.source_name(), c.subject.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("nats:s:d-p0".to_string(), Some("convlog.p.0.>".to_string())),
                ("nats:s:d-p1".to_string(), Some("convlog.p.1.>".to_string())),
            ]
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = load_with(&["index.refresh_intervall=2s"]).unwrap_err();
        assert!(err.to_string().contains("refresh_intervall"), "{err}");
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let config = Config::load(&Sources {
            env: vec![
                ("CONVLOG_LISTEN".into(), "127.0.0.1:9000".into()),
                ("CONVLOG__INDEX__REFRESH_INTERVAL".into(), "250ms".into()),
            ],
            listen: Some("127.0.0.1:9001".into()),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(config.server.listen.port(), 9001);
        assert_eq!(config.index.refresh_interval, Duration::from_millis(250));
    }

    #[test]
    fn invalid_tagging_rule_is_refused_with_its_name() {
        let err = load_with(&["tagging.rules.repeated_unidentified.n=0"]).unwrap_err();
        assert!(err.to_string().contains("repeated_unidentified"), "{err}");
    }

    #[test]
    fn language_settings_are_validated_naming_their_key() {
        for (set, key) in [
            ("search.detect_language=maybe", "search.detect_language"),
            ("search.default_language=english", "search.default_language"),
            (
                "search.bots.b.detect_language=yes",
                "search.bots.b.detect_language",
            ),
        ] {
            let err = load_with(&[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        let config = load_with(&["search.bots.b.default_language=pt-BR"]).unwrap();
        let languages = &config.search.languages;
        assert_eq!(languages.bots["b"].default_language, "pt");
        assert_eq!(
            languages.resolve("b", None, "Где мой заказ?"),
            "ru",
            "the default detection is by script"
        );
        assert_eq!(languages.resolve("b", None, "onde está"), "pt");
        assert_eq!(languages.resolve("b", Some("es"), "onde está"), "es");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load_with(&["sessions.channels.web=forever"]).unwrap_err();
        assert!(err.to_string().contains("sessions.channels.web"), "{err}");
        let err = load_with(&["server.listen=nowhere"]).unwrap_err();
        assert!(err.to_string().contains("server.listen"), "{err}");
    }

    #[test]
    fn privacy_settings_are_validated_naming_their_key_and_apply_per_bot() {
        let config = load_with(&[
            r#"privacy.redact=["email","phone","card"]"#,
            r#"privacy.patterns=[{name="order_ref", regex="ORD-[0-9]{6}"}]"#,
            r#"privacy.bots.shop.redact=["iban"]"#,
        ])
        .unwrap();
        assert_eq!(
            config.privacy.names("any"),
            ["order_ref", "email", "card", "phone"]
        );
        assert_eq!(config.privacy.names("shop"), ["order_ref", "iban"]);
        assert_eq!(Config::defaults().privacy.names("any"), ["card"]);
        for (setting, key, says) in [
            (
                r#"privacy.redact=["cards"]"#,
                "privacy.redact",
                "\"cards\" is not a detector",
            ),
            (r#"privacy.redact="card""#, "privacy.redact", ""),
            (
                r#"privacy.patterns=[{name="x", regex="("}]"#,
                "privacy.patterns",
                "does not compile",
            ),
            (
                r#"privacy.patterns=[{name="card", regex="x"}]"#,
                "privacy.patterns",
                "built-in",
            ),
            (
                r#"privacy.bots.shop.redact=["ipv4"]"#,
                "privacy.bots.shop.redact",
                "ipv4",
            ),
            (r#"privacy.bots.shop.mask=true"#, "mask", ""),
        ] {
            let err = load_with(&[setting]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(says), "{setting}: {err}");
        }
    }

    #[test]
    fn retention_settings_are_validated_and_per_bot_periods_apply() {
        let config = load_with(&["retention.bots.support=30d", "retention.schedule=0s"]).unwrap();
        assert_eq!(
            config.retention.period_of("support"),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            config.retention.period_of("other"),
            Duration::from_secs(180 * 86_400)
        );
        assert_eq!(config.retention.schedule, None);
        assert!(!config.retention.keep_flagged);
        for (setting, key) in [
            ("retention.bots.support=0s", "retention.bots.support"),
            ("retention.bots.'not a bot'=1d", "not a bot"),
            (
                "retention.multipart_threshold=1MiB",
                "retention.multipart_threshold",
            ),
            ("retention.batch_messages=0", "retention.batch_messages"),
            ("retention.archive_url=ftp://x", "retention.archive_url"),
            ("retention.s3.region_name=x", "region_name"),
        ] {
            let err = load_with(&[setting]).unwrap_err();
            assert!(err.to_string().contains(key), "{setting}: {err}");
        }
    }
}
