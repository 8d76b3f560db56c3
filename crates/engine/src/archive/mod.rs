//! Retention and the Parquet archive.
//!
//! Conversations whose last message is older than their bot's retention period
//! move to Parquet files in object storage (the format is `archive/README.md`).
//! Each batch of conversations is a *run*, a state machine recorded in the store
//! (`store::archive`) whose every step is durable before the next starts:
//!
//! ```text
//! plan ─► write ─► verify ─► manifest ─► delete from store ─► index committed
//! ```
//!
//! Runs follow the index's time partitions: a run takes whole partitions (a
//! day by default) up to `retention.batch_messages`, so once its rows leave the
//! store the index drops those partitions' directories instead of deleting
//! their documents one by one.
//!
//! * **plan** fixes the conversations and *holds* them: ingest no longer joins
//!   them, review changes are refused and the tagger leaves them, so their rows
//!   can't change under the run;
//! * **write** encodes one object per partition (rayon) with a key derived from
//!   the run, and uploads it (tokio) unless an identical object is there;
//! * **verify** reads every object back: checksum and footer row count;
//! * **manifest**: from here the archive owns the rows, and the run only goes forward;
//! * **delete** removes the rows from the store with tombstones, in one transaction;
//! * **done** once the index has committed the tombstones.
//!
//! A crash anywhere leaves a recorded state; the next run (or start-up) resumes
//! every unfinished run from it. Before the manifest a run can also be rolled
//! back. Objects the manifest doesn't know are removed after a grace period.

mod erase;
mod error;
pub mod format;
pub mod stats;
pub mod target;

pub use erase::ErasureSummary;
pub use error::ArchiveError;

use crate::failpoints::Failpoints;
use crate::index::{LiveIndex, PartitionKey};
use crate::jobs::Progress;
use crate::settings::RetentionConfig;
use crate::store::archive::{
    self as records, DueConversation, ObjectRecord, PartitionRecord, RunRecord, RunState,
};
use crate::store::{ConversationRecord, MessageRecord, Store};
use bytes::Bytes;
use convlog_core::{Clock, Micros};
use rayon::prelude::*;
use stats::{ArchiveStats, Step};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use target::{Target, sha256_hex};

/// Uploads in flight at once.
const UPLOADS: usize = 4;
/// Longest wait for the index to commit a run's deletions before the run is left for later.
const INDEX_WAIT: Duration = Duration::from_secs(120);
/// Conversations restored per store transaction.
const RESTORE_BATCH: usize = 500;

/// What an archive pass did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ArchiveSummary {
    pub runs: u64,
    pub conversations: u64,
    pub messages: u64,
    /// Unfinished runs found and finished.
    pub resumed: u64,
    /// Restored conversations that aged out again (dropped, already archived).
    pub restores_expired: u64,
    /// Objects unknown to the manifest removed after the grace period.
    pub orphans_removed: u64,
    /// Per bot: (conversations, messages) due.
    pub bots: BTreeMap<String, (u64, u64)>,
}

/// What a restore did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub conversations: u64,
    pub messages: u64,
    /// Conversations in range that were hot already.
    pub already_hot: u64,
    pub hold_until: String,
}

/// One encoded object, ready to upload.
struct Encoded {
    record: ObjectRecord,
    bytes: Bytes,
}

/// The archiver: plans and carries out runs, restores, lists partitions.
#[derive(Clone)]
pub struct Archiver {
    store: Store,
    index: Arc<LiveIndex>,
    target: Target,
    config: RetentionConfig,
    clock: Clock,
    runtime: tokio::runtime::Handle,
    failpoints: Failpoints,
    /// Held by archive passes, restores and erasures: they take turns, so a
    /// run can't write the rows an erasure removes, nor a restore bring them back.
    exclusive: Arc<std::sync::Mutex<()>>,
    /// What passes did since start.
    pub stats: Arc<ArchiveStats>,
}

fn date_of(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// `messages/bot_id=…/date=…/part-<run>.parquet`: one key per run and partition.
fn object_key(table: &str, bot_id: &str, date: &str, run_id: u64) -> String {
    format!("{table}/bot_id={bot_id}/date={date}/part-{run_id:010}.parquet")
}

/// `_manifest/run-<run>.json`: what a run vouches for.
fn manifest_key(run_id: u64) -> String {
    format!("_manifest/run-{run_id:010}.json")
}

/// The run a data or manifest key belongs to, from its name.
fn run_of_key(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    name.strip_prefix("part-")
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .or_else(|| name.strip_prefix("run-")?.strip_suffix(".json"))?
        .parse()
        .ok()
}

impl Archiver {
    /// An archiver writing to `archive_url`; uploads run on `runtime`.
    pub fn new(
        store: Store,
        index: Arc<LiveIndex>,
        config: RetentionConfig,
        archive_url: &str,
        clock: Clock,
        runtime: tokio::runtime::Handle,
    ) -> Result<Archiver, ArchiveError> {
        let target = Target::open(archive_url, &config.s3, config.multipart_threshold)?;
        Ok(Archiver {
            store,
            index,
            target,
            config,
            stats: Arc::new(ArchiveStats::new(clock.now())),
            clock,
            runtime,
            failpoints: Failpoints::from_env(),
            exclusive: Arc::default(),
        })
    }

    /// The archive's location.
    pub fn url(&self) -> &str {
        self.target.url()
    }

    /// The newest last-message time that is still hot for `bot_id` at `now`.
    fn cutoff(&self, bot_id: &str, now: Micros) -> Micros {
        now - self.config.period_of(bot_id).as_micros() as Micros
    }

    /// The latest cutoff of any bot (the scan bound).
    fn latest_cutoff(&self, now: Micros) -> Micros {
        let shortest = self
            .config
            .bots
            .values()
            .copied()
            .chain([self.config.period])
            .min()
            .unwrap_or(self.config.period);
        now - shortest.as_micros() as Micros
    }

    fn due(&self, now: Micros) -> Result<Vec<DueConversation>, ArchiveError> {
        let (latest, keep_flagged) = (self.latest_cutoff(now), self.config.keep_flagged);
        let this = self.clone();
        Ok(self.store.read(move |conn| {
            records::due_conversations(conn, &|bot| this.cutoff(bot, now), latest, keep_flagged)
        })?)
    }

    /// What a pass would archive now, changing nothing.
    pub fn dry_run(&self) -> Result<ArchiveSummary, ArchiveError> {
        let now = self.clock.now();
        let mut summary = ArchiveSummary::default();
        let due = self.due(now)?;
        for conversation in &due {
            let entry = summary.bots.entry(conversation.bot_id.clone()).or_default();
            entry.0 += 1;
            entry.1 += conversation.messages;
            summary.conversations += 1;
            summary.messages += conversation.messages;
        }
        summary.runs =
            in_batches(due, self.config.batch_messages, self.index.index().span()).len() as u64;
        summary.resumed = self.store.read(records::unfinished_runs)?.len() as u64;
        Ok(summary)
    }

    /// One archive pass: finishes unfinished runs, drops aged-out restores,
    /// archives everything due in runs of `batch_messages`, and cleans up
    /// orphans. Counted in [`Archiver::stats`].
    pub fn run(&self, progress: &Progress) -> Result<ArchiveSummary, ArchiveError> {
        let result = self.pass(progress);
        let stats = &self.stats;
        match &result {
            Ok(summary) => {
                stats.passes_succeeded.fetch_add(1, Ordering::Relaxed);
                stats
                    .last_success
                    .store(self.clock.now(), Ordering::Relaxed);
                stats
                    .orphans_removed
                    .fetch_add(summary.orphans_removed, Ordering::Relaxed);
            }
            Err(ArchiveError::Cancelled) => {}
            Err(_) => {
                stats.passes_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// `result`, its failure counted against `step`.
    fn counted<T>(&self, step: Step, result: Result<T, ArchiveError>) -> Result<T, ArchiveError> {
        if result.is_err() {
            self.stats.failed(step);
        }
        result
    }

    fn pass(&self, progress: &Progress) -> Result<ArchiveSummary, ArchiveError> {
        let _turn = self.exclusive.lock().expect("archive turn");
        let mut summary = ArchiveSummary::default();
        for run in self.counted(
            Step::Plan,
            self.store
                .read(records::unfinished_runs)
                .map_err(Into::into),
        )? {
            tracing::info!(
                run = run.id,
                state = run.state.as_str(),
                "resuming archive run"
            );
            self.finish_or_roll_back(run, RunState::Deleted)?;
            summary.resumed += 1;
        }
        summary.restores_expired = self.counted(Step::Plan, self.expire_restores())?;

        let now = self.clock.now();
        let due = self.counted(Step::Plan, self.due(now))?;
        progress
            .total
            .store(due.iter().map(|c| c.messages).sum(), Ordering::Relaxed);
        // The last run written and manifested, whose rows are still to be deleted.
        let mut manifested: Option<u64> = None;
        for planned in in_batches(due, self.config.batch_messages, self.index.index().span()) {
            if progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let Some(run) = self.counted(Step::Plan, self.plan(&planned, now))? else {
                continue;
            };
            summary.runs += 1;
            summary.conversations += run.conversations;
            summary.messages += run.messages;
            // Pipelined: the store's writer deletes the previous run while this
            // one is read, encoded and uploaded. Each run's steps stay in order.
            let deleting = manifested
                .take()
                .map(|id| self.queue_delete(id))
                .transpose();
            let deleting = self.counted(Step::Delete, deleting)?;
            let id = run.id;
            let written = self.finish_or_roll_back(run, RunState::Manifested);
            if let Some(deleting) = deleting {
                self.counted(Step::Delete, deleting.wait().map_err(Into::into))?;
                self.failpoints.hit("archive.after_delete");
            }
            written?;
            manifested = Some(id);
            progress
                .processed
                .store(summary.messages, Ordering::Relaxed);
        }
        if let Some(id) = manifested {
            let deleted = self.queue_delete(id).and_then(|d| Ok(d.wait()?));
            self.counted(Step::Delete, deleted)?;
            self.failpoints.hit("archive.after_delete");
        }
        self.counted(Step::Index, self.close_deleted())?;
        summary.orphans_removed = self.counted(Step::Orphans, self.clean_orphans())?;
        Ok(summary)
    }

    /// Waits once for the index to commit the deletions of every deleted run, then marks them done.
    fn close_deleted(&self) -> Result<(), ArchiveError> {
        let deleted: Vec<RunRecord> = self
            .store
            .read(records::unfinished_runs)?
            .into_iter()
            .filter(|run| run.state == RunState::Deleted)
            .collect();
        let Some(change) = deleted.iter().filter_map(|run| run.delete_change).max() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        self.wait_for_index(change)?;
        for run in deleted {
            self.advance(run.id, RunState::Deleted, RunState::Done)?;
            self.failpoints.hit("archive.after_index");
        }
        tracing::info!(
            ms = started.elapsed().as_millis(),
            "the index committed the archived runs' deletions"
        );
        Ok(())
    }

    /// Records a run holding those of `due` that are still due when the writer gets to them.
    fn plan(
        &self,
        due: &[DueConversation],
        now: Micros,
    ) -> Result<Option<RunRecord>, ArchiveError> {
        let this = self.clone();
        let candidates: Vec<u64> = due.iter().map(|c| c.id).collect();
        let run_id = self.store.write_blocking(move |ctx| {
            let is_due = |bot: &str, last: Micros, flagged: bool| {
                last < this.cutoff(bot, now) && !(this.config.keep_flagged && flagged)
            };
            ctx.plan_archive_run(&candidates, &is_due, now, this.latest_cutoff(now))
        })?;
        let Some(run_id) = run_id else {
            return Ok(None);
        };
        self.failpoints.hit("archive.after_plan");
        Ok(Some(
            self.store.read(move |conn| records::run(conn, run_id))?,
        ))
    }

    /// Finishes a run; when that fails before the manifest, rolls it back so
    /// its conversations are released (a crash, instead, leaves it to resume).
    fn finish_or_roll_back(&self, run: RunRecord, until: RunState) -> Result<(), ArchiveError> {
        let id = run.id;
        let Err(err) = self.finish(run, until) else {
            return Ok(());
        };
        let state = self.store.read(move |conn| records::run(conn, id))?.state;
        if state < RunState::Manifested {
            tracing::warn!(run = id, error = %err, "archive run failed; rolling it back");
            let objects = self
                .store
                .read(move |conn| records::run_objects(conn, id))?;
            let target = self.target.clone();
            // Best effort: what isn't removed now, the orphan clean-up removes later.
            let _ = self.runtime.block_on(async move {
                for object in objects {
                    target.delete(&object.key).await?;
                }
                target.delete(&manifest_key(id)).await?;
                Ok::<_, ArchiveError>(())
            });
            let (now, reason) = (self.clock.now(), err.to_string());
            self.store
                .write_blocking(move |ctx| ctx.roll_back_archive_run(id, now, &reason))?;
        }
        Err(err)
    }

    /// Queues the deletion of a manifested run's rows on the store's writer.
    fn queue_delete(&self, id: u64) -> Result<crate::store::Pending<u64>, ArchiveError> {
        let now = self.clock.now();
        Ok(self
            .store
            .write_queued(move |ctx| ctx.delete_archived_run(id, now))?)
    }

    /// Carries a run from its recorded state to `until` (at most `Deleted`;
    /// `close_deleted` takes it to `Done`).
    fn finish(&self, mut run: RunRecord, until: RunState) -> Result<(), ArchiveError> {
        // Milliseconds per step, logged when the run is done.
        let mut took: Vec<(&str, u128)> = Vec::new();
        loop {
            if run.state >= until {
                tracing::info!(
                    run = run.id,
                    state = run.state.as_str(),
                    conversations = run.conversations,
                    messages = run.messages,
                    ms_per_step = ?took,
                    "archive run advanced"
                );
                return Ok(());
            }
            let step_started = std::time::Instant::now();
            let step = run.state.as_str();
            let next = match self.step(&mut run) {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(err) => {
                    self.stats.failed(Step::after(run.state));
                    return Err(err);
                }
            };
            took.push((step, step_started.elapsed().as_millis()));
            run.state = next;
        }
    }

    /// Takes `run` one step on; the state it reached (`None`: nothing left
    /// for this pass).
    fn step(&self, run: &mut RunRecord) -> Result<Option<RunState>, ArchiveError> {
        let now = self.clock.now();
        let id = run.id;
        Ok(Some(match run.state {
            RunState::Planned => {
                let objects = self.write(run)?;
                let stats = &self.stats;
                for object in &objects {
                    stats.rows.fetch_add(object.rows, Ordering::Relaxed);
                    stats.bytes.fetch_add(object.bytes, Ordering::Relaxed);
                }
                stats
                    .objects
                    .fetch_add(objects.len() as u64, Ordering::Relaxed);
                self.store
                    .write_blocking(move |ctx| ctx.record_archive_objects(id, &objects, now))?;
                self.failpoints.hit("archive.after_write");
                RunState::Written
            }
            RunState::Written => {
                self.verify(id)?;
                self.advance(id, RunState::Written, RunState::Verified)?;
                self.failpoints.hit("archive.after_verify");
                RunState::Verified
            }
            RunState::Verified => {
                self.write_manifest(run)?;
                self.advance(id, RunState::Verified, RunState::Manifested)?;
                self.failpoints.hit("archive.after_manifest");
                RunState::Manifested
            }
            RunState::Manifested => {
                let change = self
                    .store
                    .write_blocking(move |ctx| ctx.delete_archived_run(id, now))?;
                run.delete_change = Some(change);
                self.failpoints.hit("archive.after_delete");
                RunState::Deleted
            }
            // The index commit is awaited once per pass (`close_deleted`).
            RunState::Deleted | RunState::Done | RunState::RolledBack => return Ok(None),
        }))
    }

    fn advance(&self, id: u64, from: RunState, to: RunState) -> Result<(), ArchiveError> {
        let now = self.clock.now();
        Ok(self
            .store
            .write_blocking(move |ctx| ctx.advance_archive_run(id, from, to, now))?)
    }

    /// Encodes the run's partitions on rayon and uploads them on tokio.
    fn write(&self, run: &RunRecord) -> Result<Vec<ObjectRecord>, ArchiveError> {
        let run_id = run.id;
        let started = std::time::Instant::now();
        let contents = self.read_run(run_id)?;
        let read_ms = started.elapsed().as_millis();
        let encoded = encode_run(&contents, run_id, run.planned_at)?;
        let encode_ms = started.elapsed().as_millis() - read_ms;
        let records: Vec<ObjectRecord> = encoded.iter().map(|e| e.record.clone()).collect();
        let target = self.target.clone();
        self.runtime.block_on(async move {
            use futures::StreamExt;
            let mut uploads = futures::stream::iter(encoded.into_iter().map(|object| {
                let target = target.clone();
                async move {
                    target
                        .write(&object.record.key, object.bytes, &object.record.sha256)
                        .await
                }
            }))
            .buffer_unordered(UPLOADS);
            while let Some(result) = uploads.next().await {
                result?;
            }
            Ok::<_, ArchiveError>(())
        })?;
        tracing::debug!(
            run = run_id,
            read_ms,
            encode_ms,
            upload_ms = started.elapsed().as_millis() - read_ms - encode_ms,
            "archive run written"
        );
        Ok(records)
    }

    /// A run's conversations, read on two store connections at once.
    fn read_run(
        &self,
        run_id: u64,
    ) -> Result<Vec<(ConversationRecord, Vec<MessageRecord>)>, ArchiveError> {
        let read = |part: u64| {
            self.store
                .read(move |conn| records::run_contents(conn, run_id, part, 2))
        };
        let (even, odd) = rayon::join(|| read(0), || read(1));
        let mut all = even?;
        all.extend(odd?);
        all.sort_unstable_by_key(|(record, _)| record.id);
        Ok(all)
    }

    /// Reads every object of a run back: checksum of the bytes, row count of the footer.
    fn verify(&self, run_id: u64) -> Result<(), ArchiveError> {
        let objects = self
            .store
            .read(move |conn| records::run_objects(conn, run_id))?;
        let target = self.target.clone();
        self.runtime.block_on(async move {
            for object in objects {
                let bytes = target.get(&object.key).await?;
                let sha256 = sha256_hex(&bytes);
                if sha256 != object.sha256 {
                    return Err(ArchiveError::corrupt(
                        &object.key,
                        format!("checksum {sha256} read back, {} written", object.sha256),
                    ));
                }
                let rows = format::footer_rows(&bytes)
                    .map_err(|err| ArchiveError::corrupt(&object.key, err))?;
                if rows != object.rows {
                    return Err(ArchiveError::corrupt(
                        &object.key,
                        format!("footer says {rows} rows, {} written", object.rows),
                    ));
                }
            }
            Ok(())
        })
    }

    /// Publishes the run's manifest object, `_manifest/run-<id>.json`: the
    /// objects it vouches for, with rows and checksums. Readers that must never
    /// see a leftover of an interrupted run list objects through these.
    fn write_manifest(&self, run: &RunRecord) -> Result<(), ArchiveError> {
        let run_id = run.id;
        let objects = self
            .store
            .read(move |conn| records::run_objects(conn, run_id))?;
        // Counted from the objects: an erasure may have left rows out since.
        let rows = |kind: &str| -> u64 {
            objects
                .iter()
                .filter(|o| o.kind == kind)
                .map(|o| o.rows)
                .sum()
        };
        let manifest = serde_json::json!({
            "schema_version": format::SCHEMA_VERSION,
            "run": run.id,
            "archived_at": convlog_core::format_timestamp(run.planned_at),
            "conversations": rows("conversations"),
            "messages": rows("messages"),
            "objects": objects.iter().map(|o| serde_json::json!({
                "key": o.key, "table": o.kind, "bot_id": o.bot_id, "date": o.date,
                "rows": o.rows, "bytes": o.bytes, "sha256": o.sha256,
            })).collect::<Vec<_>>(),
        });
        let bytes = Bytes::from(serde_json::to_vec_pretty(&manifest).expect("json serialises"));
        let sha256 = sha256_hex(&bytes);
        let target = self.target.clone();
        self.runtime
            .block_on(async move { target.write(&manifest_key(run_id), bytes, &sha256).await })?;
        Ok(())
    }

    fn wait_for_index(&self, change: u64) -> Result<(), ArchiveError> {
        let started = std::time::Instant::now();
        while self.index.state().position() < change {
            if started.elapsed() > INDEX_WAIT {
                return Err(ArchiveError::Unavailable(format!(
                    "the index has not committed change {change} within {INDEX_WAIT:?}; \
                     the run finishes on the next pass"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Drops restored conversations whose hold ended: the archive has them already.
    fn expire_restores(&self) -> Result<u64, ArchiveError> {
        let now = self.clock.now();
        let ids = self
            .store
            .read(move |conn| records::expired_restores(conn, now))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let count = ids.len() as u64;
        let change = self
            .store
            .write_blocking(move |ctx| ctx.delete_conversations(&ids))?;
        self.wait_for_index(change)?;
        Ok(count)
    }

    /// Removes objects under the archive that the manifest doesn't know and no
    /// unfinished run may still claim, once older than the grace period.
    fn clean_orphans(&self) -> Result<u64, ArchiveError> {
        let mut known = self.store.read(records::known_keys)?;
        known.extend(
            self.store
                .read(records::manifested_runs)?
                .into_iter()
                .map(manifest_key),
        );
        let unfinished: HashSet<u64> = self
            .store
            .read(records::unfinished_runs)?
            .iter()
            .map(|r| r.id)
            .collect();
        let grace = chrono::Duration::from_std(self.config.orphan_grace).unwrap_or_default();
        let now = chrono::DateTime::from_timestamp_micros(self.clock.now()).unwrap_or_default();
        let target = self.target.clone();
        self.runtime.block_on(async move {
            let mut removed = 0;
            for table in ["messages", "conversations", "_manifest"] {
                for meta in target.list(table).await? {
                    let key = meta.location.to_string();
                    let claimed = run_of_key(&key).is_some_and(|run| unfinished.contains(&run));
                    if known.contains(&key) || claimed || meta.last_modified + grace > now {
                        continue;
                    }
                    tracing::warn!(%key, "removing an archive object the manifest doesn't know");
                    target.delete(&key).await?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    /// Archived partitions (of these bots only, when given).
    pub fn partitions(
        &self,
        bots: Option<Vec<String>>,
    ) -> Result<Vec<PartitionRecord>, ArchiveError> {
        Ok(self
            .store
            .read(move |conn| records::partitions(conn, bots.as_deref()))?)
    }

    /// Brings back the archived conversations of `bot_id` active in `[from, to)`;
    /// they stay hot (read-only) for `restore_hold`, then leave without being archived again.
    pub fn restore(
        &self,
        bot_id: &str,
        from: Micros,
        to: Micros,
        progress: &Progress,
    ) -> Result<RestoreSummary, ArchiveError> {
        let _turn = self.exclusive.lock().expect("archive turn");
        let bot = bot_id.to_string();
        let conversation_objects = self
            .store
            .read(move |conn| records::manifest_objects(conn, &bot, "conversations", from, to))?;
        // Conversations in range, by the run that archived them.
        let mut by_run: BTreeMap<u64, Vec<ConversationRecord>> = BTreeMap::new();
        for object in &conversation_objects {
            for record in format::decode_conversations(self.fetch(object)?, bot_id)
                .map_err(|err| ArchiveError::corrupt(&object.key, err))?
            {
                if record.last_message_at >= from && record.started_at < to {
                    by_run.entry(object.run_id).or_default().push(record);
                }
            }
        }
        progress.total.store(
            by_run.values().map(|c| c.len() as u64).sum(),
            Ordering::Relaxed,
        );
        let hold_until = self.clock.now() + self.config.restore_hold.as_micros() as Micros;
        let mut summary = RestoreSummary {
            hold_until: convlog_core::format_timestamp(hold_until),
            ..RestoreSummary::default()
        };
        for (run_id, conversations) in by_run {
            let lo = conversations
                .iter()
                .map(|c| c.started_at)
                .min()
                .unwrap_or(0);
            let hi = conversations
                .iter()
                .map(|c| c.last_message_at)
                .max()
                .unwrap_or(0);
            let bot = bot_id.to_string();
            let objects = self.store.read(move |conn| {
                Ok(
                    records::manifest_objects(conn, &bot, "messages", lo, hi + 1)?
                        .into_iter()
                        .filter(|o| o.run_id == run_id)
                        .collect::<Vec<_>>(),
                )
            })?;
            let wanted: HashSet<u64> = conversations.iter().map(|c| c.id).collect();
            let mut messages: HashMap<u64, Vec<MessageRecord>> = HashMap::new();
            for object in &objects {
                for message in
                    format::decode_messages(self.fetch(object)?, &|id| wanted.contains(&id))
                        .map_err(|err| ArchiveError::corrupt(&object.key, err))?
                {
                    messages
                        .entry(message.conversation_id)
                        .or_default()
                        .push(message);
                }
            }
            for chunk in conversations.chunks(RESTORE_BATCH) {
                let rows: Vec<(ConversationRecord, Vec<MessageRecord>)> = chunk
                    .iter()
                    .map(|c| {
                        let mut list = messages.remove(&c.id).unwrap_or_default();
                        list.sort_by_key(|m| (m.timestamp, m.seq));
                        (c.clone(), list)
                    })
                    .collect();
                let now = self.clock.now();
                let (restored, already, restored_messages) =
                    self.store.write_blocking(move |ctx| {
                        let (mut restored, mut already, mut count) = (0u64, 0u64, 0u64);
                        for (record, list) in &rows {
                            if ctx.restore_conversation(run_id, record, list, hold_until, now)? {
                                restored += 1;
                                count += list.len() as u64;
                            } else {
                                already += 1;
                            }
                        }
                        Ok((restored, already, count))
                    })?;
                summary.conversations += restored;
                summary.already_hot += already;
                summary.messages += restored_messages;
                progress
                    .processed
                    .fetch_add(restored + already, Ordering::Relaxed);
            }
        }
        // Done means searchable: wait for the index to commit what came back.
        self.wait_for_index(self.store.head())?;
        Ok(summary)
    }

    /// An object's bytes, checked against the manifest's checksum.
    fn fetch(&self, object: &ObjectRecord) -> Result<Bytes, ArchiveError> {
        let target = self.target.clone();
        let key = object.key.clone();
        let bytes = self
            .runtime
            .block_on(async move { target.get(&key).await })?;
        if sha256_hex(&bytes) != object.sha256 {
            return Err(ArchiveError::corrupt(
                &object.key,
                "the object differs from the manifest's checksum",
            ));
        }
        Ok(bytes)
    }
}

/// Consecutive batches of conversations (given in `placed_at` order) that take
/// the index's partitions whole: a batch closes before a partition that would
/// take it past `batch_messages`, and only a partition larger than that alone
/// is split (once a batch holds at least `batch_messages`; a conversation never
/// is). A run that deletes every conversation of a partition lets the index
/// drop the partition's directory instead of deleting documents one by one.
fn in_batches(
    due: Vec<DueConversation>,
    batch_messages: usize,
    span: Micros,
) -> Vec<Vec<DueConversation>> {
    let budget = batch_messages as u64;
    let mut batches = Vec::new();
    let mut batch: Vec<DueConversation> = Vec::new();
    let mut messages = 0u64;
    let mut due = due.into_iter().peekable();
    while let Some(first) = due.next() {
        let key = PartitionKey::of(first.placed_at, span);
        let mut partition = vec![first];
        while let Some(next) = due.next_if(|c| PartitionKey::of(c.placed_at, span) == key) {
            partition.push(next);
        }
        let size: u64 = partition.iter().map(|c| c.messages).sum();
        if messages > 0 && messages + size > budget {
            batches.push(std::mem::take(&mut batch));
            messages = 0;
        }
        for conversation in partition {
            if messages >= budget {
                batches.push(std::mem::take(&mut batch));
                messages = 0;
            }
            messages += conversation.messages;
            batch.push(conversation);
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Splits a run's rows into partitions and encodes each on rayon.
fn encode_run(
    contents: &[(ConversationRecord, Vec<MessageRecord>)],
    run_id: u64,
    archived_at: Micros,
) -> Result<Vec<Encoded>, ArchiveError> {
    // Messages by (bot, date of the message), conversations by (bot, date started);
    // both keep the conversation order of `contents` (by id) and time order inside.
    type Part<'a> = Vec<(&'a ConversationRecord, Vec<&'a MessageRecord>)>;
    let mut message_parts: BTreeMap<(&str, String), Part<'_>> = BTreeMap::new();
    let mut conversation_parts: BTreeMap<(&str, String), Vec<&ConversationRecord>> =
        BTreeMap::new();
    for (conversation, messages) in contents {
        let bot = conversation.bot_id.as_str();
        for message in messages {
            let part = message_parts
                .entry((bot, date_of(message.timestamp)))
                .or_default();
            match part.last_mut() {
                Some((last, list)) if last.id == conversation.id => list.push(message),
                _ => part.push((conversation, vec![message])),
            }
        }
        conversation_parts
            .entry((bot, date_of(conversation.started_at)))
            .or_default()
            .push(conversation);
    }
    enum Rows<'a> {
        Messages(Part<'a>),
        Conversations(Vec<&'a ConversationRecord>),
    }
    let jobs: Vec<((&str, String), Rows<'_>)> = message_parts
        .into_iter()
        .map(|(key, rows)| (key, Rows::Messages(rows)))
        .chain(
            conversation_parts
                .into_iter()
                .map(|(key, rows)| (key, Rows::Conversations(rows))),
        )
        .collect();
    jobs.into_par_iter()
        .map(|((bot, date), rows)| {
            let (table, batch, min_ts, max_ts) = match rows {
                Rows::Messages(rows) => {
                    let stamps = rows.iter().flat_map(|(_, m)| m.iter().map(|m| m.timestamp));
                    let (lo, hi) = stamps.fold((Micros::MAX, Micros::MIN), |(lo, hi), t| {
                        (lo.min(t), hi.max(t))
                    });
                    (
                        "messages",
                        format::messages_batch(&rows, archived_at),
                        lo,
                        hi,
                    )
                }
                Rows::Conversations(rows) => {
                    let lo = rows.iter().map(|c| c.started_at).min().unwrap_or(0);
                    let hi = rows.iter().map(|c| c.last_message_at).max().unwrap_or(0);
                    (
                        "conversations",
                        format::conversations_batch(&rows, archived_at),
                        lo,
                        hi,
                    )
                }
            };
            let bytes = format::encode(&batch, table, run_id)
                .map_err(|err| ArchiveError::Encode(format!("{table} of run {run_id}: {err}")))?;
            let key = object_key(table, bot, &date, run_id);
            Ok(Encoded {
                record: ObjectRecord {
                    key,
                    run_id,
                    kind: table.to_string(),
                    bot_id: bot.to_string(),
                    date,
                    rows: batch.num_rows() as u64,
                    bytes: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                    min_ts,
                    max_ts,
                },
                bytes: Bytes::from(bytes),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned_and_name_their_run() {
        let key = object_key("messages", "support-bot", "2026-05-01", 42);
        assert_eq!(
            key,
            "messages/bot_id=support-bot/date=2026-05-01/part-0000000042.parquet"
        );
        assert_eq!(run_of_key(&key), Some(42));
        assert_eq!(run_of_key("messages/bot_id=a/date=b/other.parquet"), None);
        assert_eq!(run_of_key(&manifest_key(7)), Some(7));
    }

    #[test]
    fn batches_take_whole_partitions_up_to_the_message_budget() {
        // (partition, messages) per conversation, in placed order; partitions span 10.
        let due = |conversations: &[(i64, u64)]| -> Vec<DueConversation> {
            conversations
                .iter()
                .enumerate()
                .map(|(i, &(partition, messages))| DueConversation {
                    id: i as u64,
                    bot_id: "b".into(),
                    messages,
                    placed_at: partition * 10 + i as i64 % 10,
                })
                .collect()
        };
        let sizes = |batches: Vec<Vec<DueConversation>>| -> Vec<Vec<u64>> {
            batches
                .into_iter()
                .map(|b| b.into_iter().map(|c| c.messages).collect())
                .collect()
        };
        // Whole partitions, packed while they fit.
        assert_eq!(
            sizes(in_batches(
                due(&[(0, 3), (0, 2), (1, 4), (2, 1), (2, 1)]),
                6,
                10
            )),
            vec![vec![3, 2], vec![4, 1, 1]]
        );
        // A partition larger than the budget alone is split, conversations whole.
        assert_eq!(
            sizes(in_batches(
                due(&[(0, 1), (1, 3), (1, 4), (1, 5), (1, 1), (1, 9), (2, 2)]),
                7,
                10
            )),
            vec![vec![1], vec![3, 4], vec![5, 1, 9], vec![2]]
        );
        assert_eq!(sizes(in_batches(due(&[(0, 20)]), 7, 10)), vec![vec![20]]);
        assert!(in_batches(Vec::new(), 7, 10).is_empty());
    }

    #[test]
    fn dates_are_utc() {
        // 2026-05-01T23:59:59.999999Z and one microsecond later.
        let last = 1_777_679_999_999_999;
        assert_eq!(date_of(last), "2026-05-01");
        assert_eq!(date_of(last + 1), "2026-05-02");
    }
}
