//! The logs convlog consumes beside its HTTP ingest (issue #21), one task per
//! source (a NATS consumer, a Kafka partition). Each round: fetch a batch of
//! records; decode them (`ingest::records`: a bad one becomes a dead letter
//! with its reason and never blocks the rest); store the messages, trace
//! events, session starts, dead letters and the batch's last position in one
//! transaction (`store::sources`); then acknowledge to the log. After a
//! restart or a crash the source is positioned right after the stored
//! position, so every record is stored exactly once.

pub mod kafka;
pub mod nats;

use crate::app::App;
use convlog_engine::ingest::records::{self, Record};
use convlog_engine::settings::RecordFormat;
use convlog_engine::store::read::StoredSenders;
use convlog_engine::store::sources::{self, DeadLetter, SourceBatch};
use std::time::Duration;

/// Why a source could not go on (it is reconnected after a pause).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A log convlog consumes.
pub trait Source: Send {
    /// The name its position and dead letters are kept under.
    fn name(&self) -> &str;
    /// What its records carry.
    fn format(&self) -> &RecordFormat;
    /// Connects, positioned right after `after` (the stored position; the
    /// start of the log when `None`).
    fn start(&mut self, after: Option<u64>)
    -> impl Future<Output = Result<(), SourceError>> + Send;
    /// The next records, in position order; none after a short wait when the
    /// log has nothing new.
    fn next(&mut self) -> impl Future<Output = Result<Vec<Record>, SourceError>> + Send;
    /// Tells the log that every record up to `position` is stored.
    fn ack(&mut self, position: u64) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Records in the log this consumer has not received yet.
    fn lag(&mut self) -> impl Future<Output = Result<u64, SourceError>> + Send;
}

/// Pause before reconnecting a source that failed: doubling up to a minute.
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(60));

/// Starts a task for each source the settings configure on this node.
pub fn spawn_all(app: &App) {
    if let Some(nats) = &app.config.sources.nats {
        for consumer in nats.consumers(app.config.cluster.as_ref()) {
            spawn(app, nats::NatsSource::new(consumer));
        }
    }
    if let Some(config) = app.config.sources.kafka.clone() {
        tokio::spawn(spawn_kafka(app.clone(), config));
    }
}

/// Starts a task per partition of the Kafka topic this node consumes, once
/// the brokers have said which partitions it has (when the settings don't).
async fn spawn_kafka(app: App, config: convlog_engine::settings::KafkaSourceConfig) {
    let mut stopping = app.stopping.subscribe();
    let mut pause = RETRY.0;
    let partitions = loop {
        match kafka::partitions(&config, app.config.cluster.as_ref()).await {
            Ok(partitions) => break partitions,
            Err(err) => {
                tracing::warn!(topic = %config.topic, error = %err, pause_ms = pause.as_millis() as u64, "kafka source: no partitions yet; retrying");
            }
        }
        if !pause_unless_stopping(&mut stopping, &mut pause).await {
            return;
        }
    };
    for partition in partitions {
        spawn(&app, kafka::KafkaSource::new(config.clone(), partition));
    }
}

/// Starts consuming `source`, listed (disconnected) from now on.
fn spawn<S: Source + 'static>(app: &App, source: S) {
    app.metrics.source_connected(source.name(), false);
    tokio::spawn(run(app.clone(), source));
}

/// Consumes `source` into the store until the server stops.
async fn run<S: Source>(app: App, mut source: S) {
    let name = source.name().to_string();
    let format = source.format().clone();
    let mut stopping = app.stopping.subscribe();
    let mut pause = RETRY.0;
    loop {
        if *stopping.borrow() {
            return;
        }
        let failure = tokio::select! {
            _ = stopping.changed() => return,
            failure = consume(&app, &mut source, &name, &format) => failure,
        };
        app.metrics.source_connected(&name, false);
        tracing::warn!(source = %name, error = %failure, pause_ms = pause.as_millis() as u64, "source failed; reconnecting");
        if !pause_unless_stopping(&mut stopping, &mut pause).await {
            return;
        }
    }
}

/// Waits `pause` (then doubles it, up to [`RETRY`]'s cap); false if the
/// server began stopping meanwhile.
async fn pause_unless_stopping(
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    pause: &mut Duration,
) -> bool {
    tokio::select! {
        _ = stopping.changed() => return false,
        _ = tokio::time::sleep(*pause) => {}
    }
    *pause = (*pause * 2).min(RETRY.1);
    true
}

/// Connects and consumes until something fails; returns what.
async fn consume<S: Source>(
    app: &App,
    source: &mut S,
    name: &str,
    format: &RecordFormat,
) -> SourceError {
    let stored = {
        let name = name.to_string();
        app.store
            .read_async(move |conn| sources::position(conn, &name))
            .await
    };
    let after = match stored {
        Ok(after) => after,
        Err(err) => return SourceError(format!("reading the stored position: {err}")),
    };
    if let Err(err) = source.start(after).await {
        return err;
    }
    tracing::info!(source = %name, after = ?after, "source connected");
    app.metrics.source_resumed(name, after);
    let mut stored = after;
    loop {
        let records = match source.next().await {
            Ok(records) => records,
            Err(err) => return err,
        };
        if let Some(last) = records.last().map(|r| r.position) {
            match store_batch(app, name, format, stored, records).await {
                Ok(()) => stored = stored.max(Some(last)),
                Err(err) => return err,
            }
            // Acknowledged once stored: a crash before this redelivers what the
            // store has, which the stored position then skips.
            if let Err(err) = source.ack(last).await {
                return err;
            }
        }
        match source.lag().await {
            Ok(lag) => app.metrics.source_lag(name, lag),
            Err(err) => return err,
        }
    }
}

/// Decodes and stores one batch (what is at or before `stored` was stored
/// already and is skipped), with the batch's last position, in one transaction.
async fn store_batch(
    app: &App,
    name: &str,
    format: &RecordFormat,
    stored: Option<u64>,
    records: Vec<Record>,
) -> Result<(), SourceError> {
    let Some(last) = records.last().map(|r| r.position) else {
        return Ok(());
    };
    let fresh: Vec<Record> = records
        .into_iter()
        .filter(|r| stored.is_none_or(|stored| r.position > stored))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let (rules, format) = (app.rules.clone(), format.clone());
    // Decoded beside the store: Rasa events continue what earlier batches
    // stored of their senders (sessions, channels, last inputs).
    let (decoded, fresh) = app
        .store
        .read_async(move |conn| {
            let senders = |bot: &str| StoredSenders::new(conn, bot, &rules.keyer);
            let (decoded, used) = records::decode(&format, &fresh, &rules, senders);
            for senders in used {
                senders.finish()?;
            }
            Ok((decoded, fresh))
        })
        .await
        .map_err(|err| {
            SourceError(format!(
                "reading what the store knows of the senders: {err}"
            ))
        })?;
    let payloads: std::collections::HashMap<u64, &[u8]> = fresh
        .iter()
        .map(|r| (r.position, r.payload.as_ref()))
        .collect();
    let dead: Vec<DeadLetter> = decoded
        .dead
        .into_iter()
        .map(|(position, reason)| DeadLetter {
            position,
            reason,
            payload: payloads[&position].to_vec(),
        })
        .collect();
    let dead_letters = dead.len() as u64;
    let batch = SourceBatch {
        messages: decoded.messages,
        traces: decoded.traces,
        sessions: decoded.sessions,
        dead,
    };
    let outcome = app
        .ingest_from_source(name, last, batch)
        .await
        .map_err(|err| SourceError(format!("storing a batch: {err}")))?;
    let duplicates = outcome.messages.duplicates as u64;
    app.metrics.source_batch(
        name,
        (fresh.len() as u64).saturating_sub(dead_letters + duplicates),
        duplicates,
        dead_letters,
        last,
    );
    Ok(())
}
