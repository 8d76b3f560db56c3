//! Erasure's bookkeeping in the store (tables in `schema.rs`): requests, the
//! hot data of one end user removed in one transaction, and the archive
//! objects rewritten without their rows, swapped into the manifest in another.
//!
//! Every transition is one transaction, so a crash leaves an erasure in
//! exactly one recorded state, from which `src/archive` resumes it: an
//! erasure only ever goes forward.

use super::archive::{OBJECT_COLUMNS, ObjectRecord, object_from_row};
use super::keys::{NewAuditEntry, append_audit};
use super::{StoreError, WriteCtx};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};

/// Where an erasure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErasureState {
    /// Requested; nothing removed yet.
    Planned,
    /// Gone from the hot store; tombstones tell the index.
    HotDeleted,
    /// Every archive object holding the user's rows has a rewritten copy
    /// without them, uploaded and recorded.
    Rewritten,
    /// The manifest (in the store) names the rewritten copies.
    Swapped,
    /// The manifest objects are rewritten and the old objects removed.
    Done,
}

impl ErasureState {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureState::Planned => "planned",
            ErasureState::HotDeleted => "hot_deleted",
            ErasureState::Rewritten => "rewritten",
            ErasureState::Swapped => "swapped",
            ErasureState::Done => "done",
        }
    }

    fn parse(text: &str) -> ErasureState {
        match text {
            "planned" => ErasureState::Planned,
            "hot_deleted" => ErasureState::HotDeleted,
            "rewritten" => ErasureState::Rewritten,
            "swapped" => ErasureState::Swapped,
            _ => ErasureState::Done,
        }
    }
}

/// One erasure as recorded. The raw user id is never stored: `user_key` is
/// its keyed hash, as everywhere else.
#[derive(Debug, Clone, PartialEq)]
pub struct ErasureRecord {
    pub id: u64,
    pub bot_id: String,
    pub user_key: String,
    pub state: ErasureState,
    pub requested_at: Micros,
    /// The API key that asked (`None`: the command line).
    pub key_id: Option<String>,
    pub conversations: u64,
    pub messages: u64,
    /// Archive objects rewritten (or removed, when they held only this user's rows).
    pub objects: u64,
    /// Change position of the last tombstone (the index's deletion).
    pub delete_change: Option<u64>,
}

/// An archive object an erasure replaces: the new copy's key and figures,
/// or none when no row is left.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    /// The run whose manifest lists the object.
    pub run_id: u64,
    pub old_key: String,
    pub new: Option<NewObject>,
    /// Rows of the user removed.
    pub removed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewObject {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

const ERASURE_COLUMNS: &str = "id, bot_id, user_key, state, requested_at, key_id, conversations, messages, objects, delete_change";

fn erasure_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ErasureRecord> {
    Ok(ErasureRecord {
        id: row.get::<_, i64>(0)? as u64,
        bot_id: row.get(1)?,
        user_key: row.get(2)?,
        state: ErasureState::parse(&row.get::<_, String>(3)?),
        requested_at: row.get(4)?,
        key_id: row.get(5)?,
        conversations: row.get::<_, i64>(6)? as u64,
        messages: row.get::<_, i64>(7)? as u64,
        objects: row.get::<_, i64>(8)? as u64,
        delete_change: row.get::<_, Option<i64>>(9)?.map(|c| c as u64),
    })
}

/// One erasure.
pub fn erasure(conn: &Connection, id: u64) -> Result<ErasureRecord, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ERASURE_COLUMNS} FROM erasures WHERE id = ?1"
    ))?
    .query_row(params![id as i64], erasure_from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// Erasures not done yet, oldest first.
pub fn unfinished_erasures(conn: &Connection) -> Result<Vec<ErasureRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ERASURE_COLUMNS} FROM erasures WHERE state != 'done' ORDER BY id"
    ))?;
    let rows = statement.query_map([], erasure_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The manifested objects of `bot_id` (both tables): where an erased user's
/// archived rows can be.
pub fn bot_objects(conn: &Connection, bot_id: &str) -> Result<Vec<ObjectRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM archive_objects o
          WHERE bot_id = ?1
            AND (SELECT state FROM archive_runs r WHERE r.id = o.run_id) IN ('manifested', 'deleted', 'done')
          ORDER BY key"
    ))?;
    let rows = statement.query_map(params![bot_id], object_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The rewrites an erasure has recorded so far.
pub fn rewrites(conn: &Connection, erasure_id: u64) -> Result<Vec<Rewrite>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT old_key, new_key, rows, bytes, sha256, removed, run_id
           FROM erasure_objects WHERE erasure_id = ?1 ORDER BY old_key",
    )?;
    let rows = statement.query_map(params![erasure_id as i64], |row| {
        let new_key: Option<String> = row.get(1)?;
        Ok(Rewrite {
            run_id: row.get::<_, i64>(6)? as u64,
            old_key: row.get(0)?,
            new: match new_key {
                Some(key) => Some(NewObject {
                    key,
                    rows: row.get::<_, i64>(2)? as u64,
                    bytes: row.get::<_, i64>(3)? as u64,
                    sha256: row.get(4)?,
                }),
                None => None,
            },
            removed: row.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl WriteCtx<'_> {
    /// Records an erasure request and its audit entry (who asked, for which
    /// bot and user key, when), in this one transaction; returns its id.
    pub fn plan_erasure(
        &mut self,
        bot_id: &str,
        user_key: &str,
        audit: &NewAuditEntry,
    ) -> Result<u64, StoreError> {
        self.conn.execute(
            "INSERT INTO erasures (bot_id, user_key, state, requested_at, updated_at, key_id,
                                   conversations, messages, objects)
             VALUES (?1, ?2, 'planned', ?3, ?3, ?4, 0, 0, 0)",
            params![bot_id, user_key, audit.at, audit.key_id],
        )?;
        let id = self.conn.last_insert_rowid() as u64;
        append_audit(self.conn, audit)?;
        Ok(id)
    }

    /// Removes everything the hot store holds of the erasure's user in its
    /// bot — conversations, messages, labels, flags, tags, traces, share links,
    /// remembered session starts — with tombstones for the index, in this one
    /// transaction; returns the change position of the last tombstone.
    pub fn erase_hot(&mut self, id: u64, now: Micros) -> Result<u64, StoreError> {
        let record = erasure(self.conn, id)?;
        if record.state != ErasureState::Planned {
            return Ok(record.delete_change.unwrap_or(0));
        }
        let ids: Vec<u64> = self
            .conn
            .prepare_cached("SELECT id FROM conversations WHERE bot_id = ?1 AND user_key = ?2")?
            .query_map(params![record.bot_id, record.user_key], |row| {
                row.get::<_, i64>(0)
            })?
            .map(|r| r.map(|id| id as u64))
            .collect::<Result<_, _>>()?;
        let messages: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE conversation_id IN
               (SELECT id FROM conversations WHERE bot_id = ?1 AND user_key = ?2)",
            params![record.bot_id, record.user_key],
            |row| row.get(0),
        )?;
        // Share links go entirely (an ordinary deletion only revokes them).
        self.conn.execute(
            "DELETE FROM shares WHERE conversation_id IN
               (SELECT id FROM conversations WHERE bot_id = ?1 AND user_key = ?2)",
            params![record.bot_id, record.user_key],
        )?;
        let change = self.delete_conversations(&ids)?;
        self.conn.execute(
            "DELETE FROM traces WHERE bot_id = ?1 AND user_key = ?2",
            params![record.bot_id, record.user_key],
        )?;
        self.conn.execute(
            "DELETE FROM session_starts WHERE bot_id = ?1 AND user_key = ?2",
            params![record.bot_id, record.user_key],
        )?;
        self.conn.execute(
            "UPDATE erasures SET state = 'hot_deleted', updated_at = ?2, conversations = ?3,
                    messages = ?4, delete_change = ?5
              WHERE id = ?1",
            params![id as i64, now, ids.len() as i64, messages, change as i64],
        )?;
        Ok(change)
    }

    /// Records one rewritten object (idempotent: a resumed erasure records it again).
    pub fn record_rewrite(&mut self, id: u64, rewrite: &Rewrite) -> Result<(), StoreError> {
        let new = rewrite.new.as_ref();
        self.conn.execute(
            "INSERT OR REPLACE INTO erasure_objects
                 (erasure_id, old_key, new_key, rows, bytes, sha256, removed, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id as i64,
                rewrite.old_key,
                new.map(|n| n.key.as_str()),
                new.map(|n| n.rows as i64),
                new.map(|n| n.bytes as i64),
                new.map(|n| n.sha256.as_str()),
                rewrite.removed as i64,
                rewrite.run_id as i64
            ],
        )?;
        Ok(())
    }

    /// Moves an erasure from `from` to `to` (refused from any other state).
    pub fn advance_erasure(
        &mut self,
        id: u64,
        from: ErasureState,
        to: ErasureState,
        now: Micros,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE erasures SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
            params![id as i64, from.as_str(), to.as_str(), now],
        )?;
        if changed == 0 {
            return Err(StoreError::Unavailable(format!(
                "erasure {id} is not {}",
                from.as_str()
            )));
        }
        Ok(())
    }

    /// Puts the rewritten objects into the manifest in place of the old ones
    /// (rows and checksums new; objects left empty leave it), in this one
    /// transaction.
    pub fn swap_rewrites(&mut self, id: u64, now: Micros) -> Result<(), StoreError> {
        let rewrites = rewrites(self.conn, id)?;
        for rewrite in &rewrites {
            match &rewrite.new {
                Some(new) => {
                    self.conn.execute(
                        "UPDATE archive_objects SET key = ?2, rows = ?3, bytes = ?4, sha256 = ?5
                          WHERE key = ?1",
                        params![
                            rewrite.old_key,
                            new.key,
                            new.rows as i64,
                            new.bytes as i64,
                            new.sha256
                        ],
                    )?;
                }
                None => {
                    self.conn.execute(
                        "DELETE FROM archive_objects WHERE key = ?1",
                        params![rewrite.old_key],
                    )?;
                }
            }
        }
        self.conn.execute(
            "UPDATE erasures SET objects = ?2 WHERE id = ?1",
            params![id as i64, rewrites.len() as i64],
        )?;
        self.advance_erasure(id, ErasureState::Rewritten, ErasureState::Swapped, now)
    }
}
