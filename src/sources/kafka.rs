//! `[sources.kafka]`: a Kafka topic, read partition by partition with
//! `rskafka` (no consumer group).
//!
//! Each partition is its own source (`kafka:<topic>:<partition>`): its
//! position is the offset of the last record stored, kept in the store with
//! the messages (see `store::sources`), and fetching resumes at the next
//! offset after a restart or `kill -9`. Nothing is committed to Kafka: its
//! retention decides how long records wait, and the lag is measured against
//! the partition's high watermark.

use super::{Source, SourceError};
use convlog_engine::ingest::records::Record;
use convlog_engine::settings::{ClusterConfig, KafkaSourceConfig, RecordFormat};
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use std::time::Duration;

/// How long a fetch waits for records when the partition has none.
const WAIT_MS: i32 = 500;

/// How long a request keeps retrying a broker before the source reconnects
/// (and says it is disconnected).
const DEADLINE: Duration = Duration::from_secs(10);

fn failed(what: &str) -> impl FnOnce(rskafka::client::error::Error) -> SourceError + '_ {
    move |err| SourceError(format!("{what}: {err}"))
}

async fn connect(config: &KafkaSourceConfig) -> Result<Client, SourceError> {
    ClientBuilder::new(config.brokers.clone())
        .client_id("convlog")
        .backoff_config(BackoffConfig {
            deadline: Some(DEADLINE),
            max_backoff: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .await
        .map_err(failed("connecting to Kafka"))
}

/// The partitions this node consumes: the settings', or every partition the
/// topic has (asked of the brokers).
pub async fn partitions(
    config: &KafkaSourceConfig,
    cluster: Option<&ClusterConfig>,
) -> Result<Vec<u32>, SourceError> {
    if let Some(partitions) = config.consumed(cluster) {
        return Ok(partitions);
    }
    let topics = connect(config)
        .await?
        .list_topics()
        .await
        .map_err(failed("listing the topics"))?;
    let topic = topics
        .into_iter()
        .find(|t| t.name == config.topic)
        .ok_or_else(|| SourceError(format!("topic {:?} does not exist", config.topic)))?;
    Ok(topic.partitions.into_iter().map(|p| p as u32).collect())
}

/// One partition of a Kafka topic as a [`Source`].
pub struct KafkaSource {
    config: KafkaSourceConfig,
    partition: u32,
    name: String,
    client: Option<PartitionClient>,
    /// The offset to fetch next.
    next: i64,
    /// The partition's high watermark at the last fetch (the offset its next record will have).
    high_watermark: i64,
}

impl KafkaSource {
    /// Partition `partition` of the topic `config` describes (not connected yet).
    pub fn new(config: KafkaSourceConfig, partition: u32) -> KafkaSource {
        KafkaSource {
            name: config.source_name(partition),
            config,
            partition,
            client: None,
            next: 0,
            high_watermark: 0,
        }
    }

    fn client(&self) -> Result<&PartitionClient, SourceError> {
        self.client
            .as_ref()
            .ok_or_else(|| SourceError("not connected".into()))
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn format(&self) -> &RecordFormat {
        &self.config.format
    }

    async fn start(&mut self, after: Option<u64>) -> Result<(), SourceError> {
        let client = connect(&self.config)
            .await?
            .partition_client(
                self.config.topic.clone(),
                self.partition as i32,
                UnknownTopicHandling::Error,
            )
            .await
            .map_err(failed("finding the partition's leader"))?;
        let earliest = client
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(failed("the partition's earliest offset"))?;
        self.high_watermark = client
            .get_offset(OffsetAt::Latest)
            .await
            .map_err(failed("the partition's latest offset"))?;
        self.next = after.map_or(earliest, |stored| stored as i64 + 1);
        if self.next < earliest {
            // The topic's retention removed records before they were stored:
            // they are gone from the log; say so and go on from what it holds.
            tracing::error!(
                source = %self.name,
                stored = ?after,
                earliest,
                "the topic no longer holds the records after the stored offset; resuming at the earliest it holds"
            );
            self.next = earliest;
        }
        self.client = Some(client);
        Ok(())
    }

    async fn next(&mut self) -> Result<Vec<Record>, SourceError> {
        let bytes = self.config.fetch_bytes as i32;
        let (fetched, high_watermark) = self
            .client()?
            .fetch_records(self.next, 1..bytes, WAIT_MS)
            .await
            .map_err(failed("fetching"))?;
        self.high_watermark = high_watermark;
        let records: Vec<Record> = fetched
            .into_iter()
            .filter(|r| r.offset >= self.next)
            .map(|r| Record {
                position: r.offset as u64,
                subject: self.config.topic.clone(),
                payload: r.record.value.unwrap_or_default().into(),
            })
            .collect();
        if let Some(last) = records.last() {
            self.next = last.position as i64 + 1;
        }
        Ok(records)
    }

    async fn ack(&mut self, _position: u64) -> Result<(), SourceError> {
        // The offset is the store's, committed with the batch: Kafka keeps none.
        Ok(())
    }

    async fn lag(&mut self) -> Result<u64, SourceError> {
        Ok((self.high_watermark - self.next).max(0) as u64)
    }
}
