//! `[sources.nats]`: a NATS JetStream stream, read by a pull consumer.
//!
//! The store's position is the truth, not the consumer's: at each start the
//! durable consumer is created afresh to deliver from the stream sequence
//! after the stored one (`DeliverPolicy::ByStartSequence`), so a restart
//! after `kill -9` neither waits for redelivery timeouts nor relies on acks
//! that a crash may have lost. Acks (`AckPolicy::All`: the last of a batch
//! acknowledges it all) follow the commit, for the stream's retention and
//! the consumer's lag.

use super::{Source, SourceError};
use async_nats::jetstream::{self, consumer};
use convlog_engine::ingest::records::Record;
use convlog_engine::settings::{NatsSourceConfig, RecordFormat};
use futures::StreamExt;
use std::time::Duration;

/// How long a fetch waits for records when the stream has none.
const WAIT: Duration = Duration::from_millis(500);

/// A NATS JetStream stream as a [`Source`].
pub struct NatsSource {
    config: NatsSourceConfig,
    name: String,
    consumer: Option<consumer::PullConsumer>,
    /// The last record fetched, whose ack acknowledges everything before it.
    last: Option<(u64, jetstream::Message)>,
}

impl NatsSource {
    /// The source `config` describes (not connected yet).
    pub fn new(config: NatsSourceConfig) -> NatsSource {
        NatsSource {
            name: config.source_name(),
            config,
            consumer: None,
            last: None,
        }
    }

    fn consumer(&mut self) -> Result<&mut consumer::PullConsumer, SourceError> {
        self.consumer
            .as_mut()
            .ok_or_else(|| SourceError("not connected".into()))
    }
}

fn failed(what: &str) -> impl FnOnce(String) -> SourceError + '_ {
    move |err| SourceError(format!("{what}: {err}"))
}

impl Source for NatsSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn format(&self) -> &RecordFormat {
        &self.config.format
    }

    async fn start(&mut self, after: Option<u64>) -> Result<(), SourceError> {
        let config = &self.config;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("convlog {}", self.name))
            .connection_timeout(Duration::from_secs(10));
        if let Some(path) = &config.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|err| failed("reading sources.nats.credentials")(err.to_string()))?;
        }
        if let Some((user, password)) = &config.user {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let urls: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(|url| url.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|err: std::io::Error| failed("sources.nats.url")(err.to_string()))?;
        let client = options
            .connect(urls)
            .await
            .map_err(|err| failed("connecting to NATS")(err.to_string()))?;
        let context = jetstream::new(client);
        let stream = context
            .get_stream(&config.stream)
            .await
            .map_err(|err| failed(&format!("stream {:?}", config.stream))(err.to_string()))?;
        // The stored position decides where to start: the consumer is made anew.
        let _ = stream.delete_consumer(&config.durable).await;
        let deliver_policy = match after {
            None => consumer::DeliverPolicy::All,
            Some(position) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            },
        };
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(config.durable.clone()),
                description: Some("convlog".into()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                filter_subject: config.subject.clone().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(|err| failed("creating the consumer")(err.to_string()))?;
        self.consumer = Some(consumer);
        self.last = None;
        Ok(())
    }

    async fn next(&mut self) -> Result<Vec<Record>, SourceError> {
        let batch = self.config.batch;
        let mut messages = self
            .consumer()?
            .fetch()
            .max_messages(batch)
            .expires(WAIT)
            .messages()
            .await
            .map_err(|err| failed("fetching")(err.to_string()))?;
        let mut records = Vec::with_capacity(batch);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|err| failed("fetching")(err.to_string()))?;
            let position = message
                .info()
                .map_err(|err| failed("a message's stream sequence")(err.to_string()))?
                .stream_sequence;
            records.push(Record {
                position,
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
            });
            self.last = Some((position, message));
        }
        Ok(records)
    }

    async fn ack(&mut self, position: u64) -> Result<(), SourceError> {
        match self.last.take() {
            Some((last, message)) if last == position => message
                .ack()
                .await
                .map_err(|err| failed("acknowledging")(err.to_string())),
            _ => Ok(()),
        }
    }

    async fn lag(&mut self) -> Result<u64, SourceError> {
        let info = self
            .consumer()?
            .info()
            .await
            .map_err(|err| failed("the consumer's state")(err.to_string()))?;
        Ok(info.num_pending)
    }
}
