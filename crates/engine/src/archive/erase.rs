//! Erasure of one end user of one bot: every message, conversation, label,
//! flag, share link, trace and tag, from the hot store, the index and the
//! Parquet archive. A state machine recorded in the store
//! (`store::erasure`), like an archive run, that only moves forward:
//!
//! ```text
//! planned ─► hot deleted ─► rewritten ─► swapped ─► done
//! ```
//!
//! * **hot deleted**: one store transaction removes the user's rows and
//!   writes tombstones; the index drops their documents (awaited);
//! * **rewritten**: every archived object of the bot holding the user's rows
//!   is rewritten without them (every other row, column and metadata entry as
//!   it was) under a new key, uploaded, read back and recorded with its
//!   checksum; the old objects stay the manifest's meanwhile;
//! * **swapped**: one store transaction puts the new objects into the manifest
//!   (an object left without rows leaves it);
//! * **done**: the runs' manifest objects are rewritten, then the old objects
//!   removed.
//!
//! A crash at any step leaves a recorded state, and start-up (or the next
//! erasure) carries the erasure on from it: before the swap readers see the
//! old objects, after it the new ones, never half. Erasures, archive passes
//! and restores take turns (`Archiver::exclusive`), so a run can't write a
//! user's rows while they are erased.

use super::{ArchiveError, Archiver, format};
use crate::jobs::Progress;
use crate::store::archive::{self as records, RunState};
use crate::store::erasure::{self as erasures, ErasureRecord, ErasureState, NewObject, Rewrite};
use crate::store::keys::NewAuditEntry;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// What an erasure removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ErasureSummary {
    pub erasure: u64,
    pub conversations: u64,
    pub messages: u64,
    /// Archive objects rewritten without the user's rows (or removed).
    pub archive_objects: u64,
    /// The user's rows left out of them (messages and conversations).
    pub archive_rows: u64,
    /// Unfinished erasures found and finished before this one.
    pub resumed: u64,
}

/// The key of an object rewritten by erasure `id`: beside the old one, in
/// the same partition (`part-<run>.parquet` → `part-<run>-e<id>.parquet`).
fn erased_key(old: &str, id: u64) -> String {
    let (dir, name) = old.rsplit_once('/').unwrap_or(("", old));
    let stem = name.strip_suffix(".parquet").unwrap_or(name);
    // A key an earlier erasure rewrote keeps its run part only.
    let stem = stem.split_once("-e").map_or(stem, |(run, _)| run);
    format!("{dir}/{stem}-e{id:010}.parquet")
}

impl Archiver {
    /// Records an erasure of `user_key` in `bot_id` with its audit entry; its id.
    pub fn plan_erasure(
        &self,
        bot_id: &str,
        user_key: &str,
        audit: NewAuditEntry,
    ) -> Result<u64, ArchiveError> {
        let (bot, user) = (bot_id.to_string(), user_key.to_string());
        Ok(self
            .store
            .write_blocking(move |ctx| ctx.plan_erasure(&bot, &user, &audit))?)
    }

    /// Carries erasure `id` to done (and, first, any unfinished one before it,
    /// and any unfinished archive run, whose objects may hold the user's rows).
    pub fn erase(&self, id: u64, progress: &Progress) -> Result<ErasureSummary, ArchiveError> {
        let _turn = self.exclusive.lock().expect("archive turn");
        for run in self.store.read(records::unfinished_runs)? {
            self.finish_or_roll_back(run, RunState::Deleted)?;
        }
        self.close_deleted()?;
        let mut summary = ErasureSummary {
            erasure: id,
            ..ErasureSummary::default()
        };
        let unfinished = self.store.read(erasures::unfinished_erasures)?;
        progress
            .total
            .store(unfinished.len() as u64, Ordering::Relaxed);
        for record in unfinished {
            let other = record.id != id;
            self.finish_erasure(record)?;
            summary.resumed += other as u64;
            progress.processed.fetch_add(1, Ordering::Relaxed);
        }
        let record = self.store.read(move |conn| erasures::erasure(conn, id))?;
        let rewrites = self.store.read(move |conn| erasures::rewrites(conn, id))?;
        summary.conversations = record.conversations;
        summary.messages = record.messages;
        summary.archive_objects = rewrites.len() as u64;
        summary.archive_rows = rewrites.iter().map(|r| r.removed).sum();
        Ok(summary)
    }

    /// Erasures left unfinished by a crash, carried to done (at start-up).
    pub fn resume_erasures(&self) -> Result<u64, ArchiveError> {
        let _turn = self.exclusive.lock().expect("archive turn");
        let unfinished = self.store.read(erasures::unfinished_erasures)?;
        let count = unfinished.len() as u64;
        for record in unfinished {
            tracing::info!(
                erasure = record.id,
                state = record.state.as_str(),
                "resuming erasure"
            );
            self.finish_erasure(record)?;
        }
        Ok(count)
    }

    fn finish_erasure(&self, mut record: ErasureRecord) -> Result<(), ArchiveError> {
        let id = record.id;
        loop {
            let now = self.clock.now();
            let next = match record.state {
                ErasureState::Planned => {
                    let change = self
                        .store
                        .write_blocking(move |ctx| ctx.erase_hot(id, now))?;
                    record.delete_change = Some(change);
                    self.failpoints.hit("erase.after_hot");
                    ErasureState::HotDeleted
                }
                ErasureState::HotDeleted => {
                    // Searches know nothing of the user before the archive is touched.
                    if let Some(change) = record.delete_change {
                        self.wait_for_index(change)?;
                    }
                    self.rewrite_objects(&record)?;
                    self.store.write_blocking(move |ctx| {
                        ctx.advance_erasure(
                            id,
                            ErasureState::HotDeleted,
                            ErasureState::Rewritten,
                            now,
                        )
                    })?;
                    self.failpoints.hit("erase.after_rewrite");
                    ErasureState::Rewritten
                }
                ErasureState::Rewritten => {
                    self.store
                        .write_blocking(move |ctx| ctx.swap_rewrites(id, now))?;
                    self.failpoints.hit("erase.after_swap");
                    ErasureState::Swapped
                }
                ErasureState::Swapped => {
                    self.publish_rewrites(id)?;
                    self.store.write_blocking(move |ctx| {
                        ctx.advance_erasure(id, ErasureState::Swapped, ErasureState::Done, now)
                    })?;
                    self.failpoints.hit("erase.after_done");
                    ErasureState::Done
                }
                ErasureState::Done => {
                    tracing::info!(
                        erasure = id,
                        bot = %record.bot_id,
                        conversations = record.conversations,
                        messages = record.messages,
                        "erasure done"
                    );
                    return Ok(());
                }
            };
            record.state = next;
        }
    }

    /// Writes a copy without the user's rows of every archived object of the
    /// bot that holds some, and records each (a resumed erasure skips those
    /// recorded; an object uploaded but not recorded is written again, with
    /// the same key and bytes).
    fn rewrite_objects(&self, record: &ErasureRecord) -> Result<(), ArchiveError> {
        let (id, bot) = (record.id, record.bot_id.clone());
        let recorded: HashSet<String> = self
            .store
            .read(move |conn| erasures::rewrites(conn, id))?
            .into_iter()
            .map(|r| r.old_key)
            .collect();
        let objects = self
            .store
            .read(move |conn| erasures::bot_objects(conn, &bot))?;
        for object in objects.into_iter().filter(|o| !recorded.contains(&o.key)) {
            let bytes = self.fetch(&object)?;
            let Some((rewritten, rows)) = format::without_user(bytes, &record.user_key)
                .map_err(|err| ArchiveError::corrupt(&object.key, err))?
            else {
                continue;
            };
            let new = if rows == 0 {
                None
            } else {
                let key = erased_key(&object.key, id);
                let sha256 = super::target::sha256_hex(&rewritten);
                let size = rewritten.len() as u64;
                let target = self.target.clone();
                let (upload_key, upload_sha) = (key.clone(), sha256.clone());
                // Uploaded, then read back: the checksum is what the swap vouches for.
                self.runtime.block_on(async move {
                    target
                        .write(&upload_key, bytes::Bytes::from(rewritten), &upload_sha)
                        .await?;
                    let read = super::target::sha256_hex(&target.get(&upload_key).await?);
                    if read != upload_sha {
                        return Err(ArchiveError::corrupt(
                            &upload_key,
                            format!("checksum {read} read back, {upload_sha} written"),
                        ));
                    }
                    Ok(())
                })?;
                Some(NewObject {
                    key,
                    rows,
                    bytes: size,
                    sha256,
                })
            };
            let rewrite = Rewrite {
                run_id: object.run_id,
                old_key: object.key.clone(),
                new,
                removed: object.rows - rows,
            };
            self.store
                .write_blocking(move |ctx| ctx.record_rewrite(id, &rewrite))?;
        }
        Ok(())
    }

    /// After the swap: the manifest objects of the runs touched say what the
    /// store's manifest says, then the replaced objects go.
    fn publish_rewrites(&self, id: u64) -> Result<(), ArchiveError> {
        let rewrites = self.store.read(move |conn| erasures::rewrites(conn, id))?;
        let mut runs: Vec<u64> = rewrites.iter().map(|r| r.run_id).collect();
        runs.sort_unstable();
        runs.dedup();
        for run_id in runs {
            let run = self.store.read(move |conn| records::run(conn, run_id))?;
            self.write_manifest(&run)?;
        }
        let target = self.target.clone();
        let old: Vec<String> = rewrites.into_iter().map(|r| r.old_key).collect();
        self.runtime.block_on(async move {
            for key in old {
                target.delete(&key).await?;
            }
            Ok::<_, ArchiveError>(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewritten_keys_stay_in_their_partition_and_name_their_run() {
        assert_eq!(
            erased_key(
                "messages/bot_id=b/date=2026-01-02/part-0000000003.parquet",
                7
            ),
            "messages/bot_id=b/date=2026-01-02/part-0000000003-e0000000007.parquet"
        );
        assert_eq!(
            erased_key(
                "messages/bot_id=my-echo-bot/date=2026-01-02/part-0000000003-e0000000007.parquet",
                9
            ),
            "messages/bot_id=my-echo-bot/date=2026-01-02/part-0000000003-e0000000009.parquet"
        );
    }
}
