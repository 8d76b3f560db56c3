//! The archive's bookkeeping in the store: runs, holds and the manifest
//! (tables in `schema.rs`), and the transactions that move a run forward.
//!
//! Every transition is one transaction, so a crash leaves a run in exactly one
//! recorded state, from which `src/archive` resumes it.

use super::read::{CONVERSATION_COLUMNS, MESSAGE_COLUMNS, conversation_from_row, message_from_row};
use super::schema::label_key;
use super::{ConversationRecord, MessageRecord, StoreError, TagRecord, WriteCtx};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// Where a run is. Only moves forward (or to `RolledBack` before `Manifested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunState {
    /// Conversations chosen and held; nothing written yet (or partly, unrecorded).
    Planned,
    /// Every object uploaded and recorded with its checksum.
    Written,
    /// Every object read back: footer row count and checksum match.
    Verified,
    /// The objects are in the manifest: the archive owns the rows now.
    Manifested,
    /// Gone from the store; tombstones tell the index.
    Deleted,
    /// The index has committed the deletion.
    Done,
    /// Abandoned before the manifest: objects removed, holds released.
    RolledBack,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::Written => "written",
            RunState::Verified => "verified",
            RunState::Manifested => "manifested",
            RunState::Deleted => "deleted",
            RunState::Done => "done",
            RunState::RolledBack => "rolled_back",
        }
    }

    fn parse(text: &str) -> RunState {
        match text {
            "planned" => RunState::Planned,
            "written" => RunState::Written,
            "verified" => RunState::Verified,
            "manifested" => RunState::Manifested,
            "deleted" => RunState::Deleted,
            "done" => RunState::Done,
            _ => RunState::RolledBack,
        }
    }
}

/// One archive run as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: u64,
    pub state: RunState,
    pub planned_at: Micros,
    pub cutoff: Micros,
    pub conversations: u64,
    pub messages: u64,
    pub delete_change: Option<u64>,
}

/// An object of a run, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub key: String,
    pub run_id: u64,
    /// `messages` or `conversations`.
    pub kind: String,
    pub bot_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub rows: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the whole object.
    pub sha256: String,
    /// Time span of the rows (messages: timestamps; conversations: first to last message).
    pub min_ts: Micros,
    pub max_ts: Micros,
}

/// A conversation due for the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueConversation {
    pub id: u64,
    pub bot_id: String,
    pub messages: u64,
    /// Where the index placed it (`conversations.placed_at`).
    pub placed_at: Micros,
}

/// Archived partitions: one row per (bot, date) of the messages table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRecord {
    pub bot_id: String,
    pub date: String,
    pub objects: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// Conversations due: last message before their bot's cutoff, not held, and
/// (with `keep_flagged`) not flagged. In the index's order: by where it is
/// placed (`placed_at`), then id, so runs can take whole index partitions.
pub fn due_conversations(
    conn: &Connection,
    cutoff_of: &dyn Fn(&str) -> Micros,
    latest_cutoff: Micros,
    keep_flagged: bool,
) -> Result<Vec<DueConversation>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT c.id, c.bot_id, c.last_message_at, c.message_count, c.flagged_at IS NOT NULL,
                COALESCE(c.placed_at, c.started_at) AS placed
           FROM conversations c
          WHERE c.last_message_at < ?1
            AND NOT EXISTS (SELECT 1 FROM archive_holds h WHERE h.conversation_id = c.id)
          ORDER BY placed, c.id",
    )?;
    let mut rows = statement.query(params![latest_cutoff])?;
    let mut due = Vec::new();
    while let Some(row) = rows.next()? {
        let bot_id: String = row.get(1)?;
        let last: Micros = row.get(2)?;
        let flagged: bool = row.get(4)?;
        if last < cutoff_of(&bot_id) && !(keep_flagged && flagged) {
            due.push(DueConversation {
                id: row.get::<_, i64>(0)? as u64,
                bot_id,
                messages: row.get::<_, i64>(3)? as u64,
                placed_at: row.get(5)?,
            });
        }
    }
    Ok(due)
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get::<_, i64>(0)? as u64,
        state: RunState::parse(&row.get::<_, String>(1)?),
        planned_at: row.get(2)?,
        cutoff: row.get(3)?,
        conversations: row.get::<_, i64>(4)? as u64,
        messages: row.get::<_, i64>(5)? as u64,
        delete_change: row.get::<_, Option<i64>>(6)?.map(|c| c as u64),
    })
}

const RUN_COLUMNS: &str = "id, state, planned_at, cutoff, conversations, messages, delete_change";

/// Runs that are neither done nor rolled back, oldest first.
pub fn unfinished_runs(conn: &Connection) -> Result<Vec<RunRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM archive_runs WHERE state NOT IN ('done', 'rolled_back') ORDER BY id"
    ))?;
    let rows = statement.query_map([], run_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One run.
pub fn run(conn: &Connection, id: u64) -> Result<RunRecord, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM archive_runs WHERE id = ?1"
    ))?
    .query_row(params![id as i64], run_from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// The conversations a run holds whose id is `part` modulo `parts` (so several
/// readers can share a run), each with its labels, tags and messages in time
/// order; sorted by conversation id.
pub fn run_contents(
    conn: &Connection,
    run_id: u64,
    part: u64,
    parts: u64,
) -> Result<Vec<(ConversationRecord, Vec<MessageRecord>)>, StoreError> {
    let held = format!(
        "SELECT conversation_id FROM archive_holds WHERE run_id = ?1 AND conversation_id % {} = {}",
        parts.max(1),
        part
    );
    let mut conversations: Vec<(ConversationRecord, Vec<MessageRecord>)> = conn
        .prepare(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({held}) ORDER BY id"
        ))?
        .query_map(params![run_id as i64], conversation_from_row)?
        .map(|row| row.map(|record| (record, Vec::new())))
        .collect::<Result<_, _>>()?;
    let position: HashMap<u64, usize> = conversations
        .iter()
        .enumerate()
        .map(|(i, (record, _))| (record.id, i))
        .collect();
    let mut messages = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id IN ({held})
          ORDER BY conversation_id, ts, seq"
    ))?;
    for message in messages.query_map(params![run_id as i64], message_from_row)? {
        let message = message?;
        if let Some(&i) = position.get(&message.conversation_id) {
            conversations[i].1.push(message);
        }
    }
    let mut labels = conn.prepare(&format!(
        "SELECT conversation_id, name FROM labels WHERE conversation_id IN ({held})
          ORDER BY conversation_id, added_at, name"
    ))?;
    let mut rows = labels.query(params![run_id as i64])?;
    while let Some(row) = rows.next()? {
        if let Some(&i) = position.get(&(row.get::<_, i64>(0)? as u64)) {
            conversations[i].0.labels.push(row.get(1)?);
        }
    }
    let mut tags = conn.prepare(&format!(
        "SELECT conversation_id, tag, rule, rule_version, message_ids, reason FROM tags
          WHERE conversation_id IN ({held}) ORDER BY conversation_id, tag"
    ))?;
    let mut rows = tags.query(params![run_id as i64])?;
    while let Some(row) = rows.next()? {
        if let Some(&i) = position.get(&(row.get::<_, i64>(0)? as u64)) {
            let ids: String = row.get(4)?;
            conversations[i].0.tags.push(TagRecord {
                tag: row.get(1)?,
                rule: row.get(2)?,
                rule_version: row.get(3)?,
                message_ids: serde_json::from_str(&ids).unwrap_or_default(),
                reason: row.get(5)?,
            });
        }
    }
    Ok(conversations)
}

pub(super) fn object_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRecord> {
    Ok(ObjectRecord {
        key: row.get(0)?,
        run_id: row.get::<_, i64>(1)? as u64,
        kind: row.get(2)?,
        bot_id: row.get(3)?,
        date: row.get(4)?,
        rows: row.get::<_, i64>(5)? as u64,
        bytes: row.get::<_, i64>(6)? as u64,
        sha256: row.get(7)?,
        min_ts: row.get(8)?,
        max_ts: row.get(9)?,
    })
}

pub(super) const OBJECT_COLUMNS: &str =
    "key, run_id, kind, bot_id, date, rows, bytes, sha256, min_ts, max_ts";

/// The objects recorded for a run.
pub fn run_objects(conn: &Connection, run_id: u64) -> Result<Vec<ObjectRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM archive_objects WHERE run_id = ?1 ORDER BY key"
    ))?;
    let rows = statement.query_map(params![run_id as i64], object_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Manifested objects of `bot_id` and `kind` whose rows span time overlapping `[from, to)`.
pub fn manifest_objects(
    conn: &Connection,
    bot_id: &str,
    kind: &str,
    from: Micros,
    to: Micros,
) -> Result<Vec<ObjectRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM archive_objects o
          WHERE bot_id = ?1 AND kind = ?2 AND max_ts >= ?3 AND min_ts < ?4
            AND (SELECT state FROM archive_runs r WHERE r.id = o.run_id) IN ('manifested', 'deleted', 'done')
          ORDER BY key"
    ))?;
    let rows = statement.query_map(params![bot_id, kind, from, to], object_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every key the manifest, an unfinished run or an unfinished erasure may still need.
pub fn known_keys(conn: &Connection) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT key FROM archive_objects o
          WHERE (SELECT state FROM archive_runs r WHERE r.id = o.run_id) != 'rolled_back'
         UNION
         SELECT new_key FROM erasure_objects e
          WHERE new_key IS NOT NULL
            AND (SELECT state FROM erasures x WHERE x.id = e.erasure_id) != 'done'",
    )?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Runs whose objects are in the manifest (manifested, deleted or done).
pub fn manifested_runs(conn: &Connection) -> Result<Vec<u64>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id FROM archive_runs WHERE state IN ('manifested', 'deleted', 'done')",
    )?;
    let rows = statement.query_map([], |row| row.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|id| id as u64))
        .collect::<Result<_, _>>()?)
}

/// Archived message partitions, optionally of the bots in `bots` only.
pub fn partitions(
    conn: &Connection,
    bots: Option<&[String]>,
) -> Result<Vec<PartitionRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT bot_id, date, COUNT(*), SUM(rows), SUM(bytes) FROM archive_objects o
          WHERE kind = 'messages'
            AND (SELECT state FROM archive_runs r WHERE r.id = o.run_id) IN ('manifested', 'deleted', 'done')
          GROUP BY bot_id, date ORDER BY bot_id, date",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(PartitionRecord {
            bot_id: row.get(0)?,
            date: row.get(1)?,
            objects: row.get::<_, i64>(2)? as u64,
            rows: row.get::<_, i64>(3)? as u64,
            bytes: row.get::<_, i64>(4)? as u64,
        })
    })?;
    let all: Vec<PartitionRecord> = rows.collect::<Result<_, _>>()?;
    Ok(match bots {
        Some(bots) => all
            .into_iter()
            .filter(|p| bots.contains(&p.bot_id))
            .collect(),
        None => all,
    })
}

/// Restored conversations whose hold has ended, as (id, run).
pub fn expired_restores(conn: &Connection, now: Micros) -> Result<Vec<u64>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT conversation_id FROM archive_holds
          WHERE kind = 'restored' AND hold_until <= ?1 ORDER BY conversation_id",
    )?;
    let rows = statement.query_map(params![now], |row| row.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|id| id as u64))
        .collect::<Result<_, _>>()?)
}

/// Whether a conversation is held (being archived, or restored and read-only).
pub fn held(conn: &Connection, id: u64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM archive_holds WHERE conversation_id = ?1")?
        .exists(params![id as i64])?)
}

impl WriteCtx<'_> {
    /// Records a new run holding those `candidates` that are still due by
    /// `is_due(bot, last message, flagged)` now, in the writer; returns its id,
    /// or `None` when none is due any more.
    pub fn plan_archive_run(
        &mut self,
        candidates: &[u64],
        is_due: &dyn Fn(&str, Micros, bool) -> bool,
        planned_at: Micros,
        cutoff: Micros,
    ) -> Result<Option<u64>, StoreError> {
        let mut due = Vec::with_capacity(candidates.len());
        let mut messages = 0u64;
        for &id in candidates {
            let row: Option<(String, Micros, bool, i64)> = self
                .conn
                .prepare_cached(
                    "SELECT bot_id, last_message_at, flagged_at IS NOT NULL, message_count
                       FROM conversations c WHERE id = ?1
                        AND NOT EXISTS (SELECT 1 FROM archive_holds h WHERE h.conversation_id = c.id)",
                )?
                .query_row(params![id as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            if let Some((bot, last, flagged, count)) = row
                && is_due(&bot, last, flagged)
            {
                due.push(id);
                messages += count as u64;
            }
        }
        if due.is_empty() {
            return Ok(None);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO archive_runs (state, planned_at, cutoff, conversations, messages, updated_at)
                 VALUES ('planned', ?1, ?2, ?3, ?4, ?1)",
            )?
            .execute(params![planned_at, cutoff, due.len() as i64, messages as i64])?;
        let run_id = self.conn.last_insert_rowid();
        let mut hold = self.conn.prepare_cached(
            "INSERT INTO archive_holds (conversation_id, run_id, kind) VALUES (?1, ?2, 'archiving')",
        )?;
        for id in due {
            hold.execute(params![id as i64, run_id])?;
        }
        Ok(Some(run_id as u64))
    }

    /// Moves a run to `state`, checking it is where the caller thinks it is.
    pub fn advance_archive_run(
        &mut self,
        run_id: u64,
        from: RunState,
        to: RunState,
        now: Micros,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE archive_runs SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
            )?
            .execute(params![run_id as i64, from.as_str(), to.as_str(), now])?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "archive run {run_id} is no longer {}",
                from.as_str()
            )))
        }
    }

    /// Records a run's uploaded objects and marks it written.
    pub fn record_archive_objects(
        &mut self,
        run_id: u64,
        objects: &[ObjectRecord],
        now: Micros,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM archive_objects WHERE run_id = ?1",
            params![run_id as i64],
        )?;
        let mut insert = self.conn.prepare_cached(&format!(
            "INSERT INTO archive_objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for o in objects {
            insert.execute(params![
                o.key,
                o.run_id as i64,
                o.kind,
                o.bot_id,
                o.date,
                o.rows as i64,
                o.bytes as i64,
                o.sha256,
                o.min_ts,
                o.max_ts
            ])?;
        }
        self.advance_archive_run(run_id, RunState::Planned, RunState::Written, now)
    }

    /// Removes these conversations and everything hanging off them, leaving
    /// tombstones for the index; returns the last change position taken.
    pub fn delete_conversations(&mut self, ids: &[u64]) -> Result<u64, StoreError> {
        // One set-based statement per table over a temporary list of the ids.
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS leaving (id INTEGER PRIMARY KEY, placed_at INTEGER);
             DELETE FROM temp.leaving;",
        )?;
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO temp.leaving (id) VALUES (?1)")?;
        for &id in ids {
            insert.execute(params![id as i64])?;
        }
        self.conn.execute_batch(
            "UPDATE temp.leaving SET placed_at = (SELECT placed_at FROM conversations c WHERE c.id = leaving.id);
             DELETE FROM messages WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM labels WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM tags WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM tag_state WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM bulk_changes WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM traces WHERE conversation_id IN (SELECT id FROM temp.leaving);
             UPDATE shares SET revoked_at = COALESCE(revoked_at, expires_at)
              WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM archive_holds WHERE conversation_id IN (SELECT id FROM temp.leaving);
             DELETE FROM conversations WHERE id IN (SELECT id FROM temp.leaving);",
        )?;
        let mut tombstone = self.conn.prepare_cached(
            "INSERT INTO tombstones (change_seq, conversation_id, placed_at)
             VALUES (?1, ?2, (SELECT placed_at FROM temp.leaving WHERE id = ?2))",
        )?;
        for &id in ids {
            let change = self.next_change();
            tombstone.execute(params![change as i64, id as i64])?;
        }
        self.conn.execute_batch("DELETE FROM temp.leaving")?;
        // Conversation ids are never reused, even when the newest ones leave.
        let highest = ids.iter().copied().max().unwrap_or(0);
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('conversation_id_floor', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
            params![highest as i64],
        )?;
        Ok(self.current_change())
    }

    /// Deletes a manifested run's conversations from the store and marks it deleted.
    pub fn delete_archived_run(&mut self, run_id: u64, now: Micros) -> Result<u64, StoreError> {
        let ids: Vec<u64> = self
            .conn
            .prepare_cached(
                "SELECT conversation_id FROM archive_holds WHERE run_id = ?1 AND kind = 'archiving'",
            )?
            .query_map(params![run_id as i64], |row| row.get::<_, i64>(0))?
            .map(|r| r.map(|id| id as u64))
            .collect::<Result<_, _>>()?;
        let change = self.delete_conversations(&ids)?;
        self.advance_archive_run(run_id, RunState::Manifested, RunState::Deleted, now)?;
        self.conn.execute(
            "UPDATE archive_runs SET delete_change = ?2 WHERE id = ?1",
            params![run_id as i64, change as i64],
        )?;
        Ok(change)
    }

    /// Abandons a run that has not reached the manifest: releases its holds and forgets its objects.
    pub fn roll_back_archive_run(
        &mut self,
        run_id: u64,
        now: Micros,
        error: &str,
    ) -> Result<(), StoreError> {
        let state: String = self
            .conn
            .query_row(
                "SELECT state FROM archive_runs WHERE id = ?1",
                params![run_id as i64],
                |row| row.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound)?;
        if RunState::parse(&state) >= RunState::Manifested {
            return Err(StoreError::Unavailable(format!(
                "archive run {run_id} is already in the manifest; it can only go forward"
            )));
        }
        self.conn.execute(
            "DELETE FROM archive_holds WHERE run_id = ?1 AND kind = 'archiving'",
            params![run_id as i64],
        )?;
        self.conn.execute(
            "DELETE FROM archive_objects WHERE run_id = ?1",
            params![run_id as i64],
        )?;
        self.conn.execute(
            "UPDATE archive_runs SET state = 'rolled_back', updated_at = ?2, error = ?3 WHERE id = ?1",
            params![run_id as i64, now, error],
        )?;
        Ok(())
    }

    /// Brings an archived conversation back, read-only until `hold_until`.
    /// Returns false (and changes nothing) when it is already hot.
    pub fn restore_conversation(
        &mut self,
        run_id: u64,
        record: &ConversationRecord,
        messages: &[MessageRecord],
        hold_until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
            .exists(params![record.id as i64])?;
        if exists {
            return Ok(false);
        }
        let change = self.next_change();
        let (dropoff_flow, dropoff_step) = match &record.dropoff {
            Some((flow, step)) => (Some(flow.as_str()), step.as_deref()),
            None => (None, None),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO conversations
                   (id, bot_id, user_key, channel, session_id, started_at, last_message_at, message_count,
                    flows, dropoff_flow, dropoff_step, flagged_at, flag_note, debug, change_seq, placed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14, ?6)",
            )?
            .execute(params![
                record.id as i64,
                record.bot_id,
                record.user_key.0,
                record.channel,
                record.session_id,
                record.started_at,
                record.last_message_at,
                record.message_count as i64,
                serde_json::to_string(&record.flows).expect("strings serialise"),
                dropoff_flow,
                dropoff_step,
                record.flagged_at,
                record.flag_note,
                change as i64
            ])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO messages
               (bot_id, msg_id, conversation_id, role, text, ts, flow, step, node_id, node_type,
                node_name, intent, confidence, unidentified, flow_completed, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for m in messages {
            insert.execute(params![
                record.bot_id,
                m.id,
                record.id as i64,
                m.role,
                m.text,
                m.timestamp,
                m.flow,
                m.step,
                m.node_id,
                m.node_type,
                m.node_name,
                m.intent,
                m.confidence,
                m.unidentified,
                m.flow_completed,
                m.metadata
            ])?;
        }
        for (position, label) in record.labels.iter().enumerate() {
            let key = label_key(label);
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO label_names (bot_id, name_key, name) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![record.bot_id, key, label])?;
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO labels (conversation_id, name_key, name, added_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![record.id as i64, key, label, now + position as i64])?;
        }
        for tag in &record.tags {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO tags (conversation_id, tag, rule, rule_version, message_ids, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    record.id as i64,
                    tag.tag,
                    tag.rule,
                    tag.rule_version,
                    serde_json::to_string(&tag.message_ids).expect("strings serialise"),
                    tag.reason
                ])?;
        }
        // The tagging job leaves restored tags as they were archived.
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tag_state (conversation_id, own_change, recheck_at) VALUES (?1, ?2, NULL)",
            )?
            .execute(params![record.id as i64, change as i64])?;
        self.conn
            .prepare_cached(
                "INSERT INTO archive_holds (conversation_id, run_id, kind, hold_until) VALUES (?1, ?2, 'restored', ?3)",
            )?
            .execute(params![record.id as i64, run_id as i64, hold_until])?;
        Ok(true)
    }
}
