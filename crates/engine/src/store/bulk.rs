//! Bulk actions: one change (labels added or removed, flag set or cleared)
//! applied to many conversations, in chunks, with a record of what each
//! conversation was before so the action can be undone.
//!
//! An action is a row of `bulk_actions` written before its first chunk; each
//! chunk is one transaction that changes its conversations, records their
//! previous state in `bulk_changes` and moves the action's progress. A crash
//! leaves the chunks done so far, recorded and undoable.

use super::schema::label_key;
use super::{StoreError, WriteCtx};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// What a bulk action changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BulkChange {
    pub add_labels: Vec<String>,
    pub remove_labels: Vec<String>,
    /// `Some(true)` flags, `Some(false)` unflags.
    pub flag: Option<bool>,
}

/// Bulk actions kept per bot (and so undoable); older ones are forgotten.
pub const KEPT_ACTIONS: i64 = 20;

/// A bulk action as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkAction {
    pub id: u64,
    pub bot_id: String,
    pub created_at: Micros,
    pub change: BulkChange,
    /// Conversations it was asked to change.
    pub matched: u64,
    /// Conversations gone through so far.
    pub done: u64,
    /// Conversations whose labels or flag it changed.
    pub changed: u64,
    pub finished_at: Option<Micros>,
    pub undone_at: Option<Micros>,
    /// Conversations an undo put back.
    pub restored: u64,
}

/// What one conversation was before an action changed it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Before {
    /// Labels the action added (their keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    added: Vec<String>,
    /// Labels it removed: (spelling, added_at).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<(String, Micros)>,
    /// The flag before the action changed it; `None` when it didn't.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flag: Option<FlagBefore>,
}

/// A conversation's flag before a bulk action changed it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FlagBefore {
    Unflagged,
    Flagged { at: Micros, note: Option<String> },
}

const ACTION_COLUMNS: &str =
    "id, bot_id, created_at, change, matched, done, changed, finished_at, undone_at, restored";

fn action_from_row(row: &rusqlite::Row) -> rusqlite::Result<BulkAction> {
    let change: String = row.get(3)?;
    Ok(BulkAction {
        id: row.get::<_, i64>(0)? as u64,
        bot_id: row.get(1)?,
        created_at: row.get(2)?,
        // Written by this module from a `BulkChange`; an unreadable one undoes nothing.
        change: serde_json::from_str(&change).unwrap_or_default(),
        matched: row.get::<_, i64>(4)? as u64,
        done: row.get::<_, i64>(5)? as u64,
        changed: row.get::<_, i64>(6)? as u64,
        finished_at: row.get(7)?,
        undone_at: row.get(8)?,
        restored: row.get::<_, i64>(9)? as u64,
    })
}

/// One action of `bot_id`, or `NotFound`.
pub fn action(conn: &Connection, bot_id: &str, id: u64) -> Result<BulkAction, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ACTION_COLUMNS} FROM bulk_actions WHERE id = ?1 AND bot_id = ?2"
    ))?
    .query_row(params![id as i64, bot_id], action_from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// The bot's recorded actions, newest first.
pub fn actions(conn: &Connection, bot_id: &str) -> Result<Vec<BulkAction>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ACTION_COLUMNS} FROM bulk_actions WHERE bot_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = statement.query_map(params![bot_id], action_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The first of these conversations the change would take past `max_labels`,
/// with the labels it has, if any.
pub fn over_label_limit(
    conn: &Connection,
    ids: &[u64],
    change: &BulkChange,
    max_labels: usize,
) -> Result<Option<(u64, usize)>, StoreError> {
    if change.add_labels.is_empty() {
        return Ok(None);
    }
    let adding: Vec<String> = change.add_labels.iter().map(|l| label_key(l)).collect();
    let removing: Vec<String> = change.remove_labels.iter().map(|l| label_key(l)).collect();
    let mut statement =
        conn.prepare_cached("SELECT name_key FROM labels WHERE conversation_id = ?1")?;
    for &id in ids {
        let keys: Vec<String> = statement
            .query_map(params![id as i64], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let kept = keys.iter().filter(|k| !removing.contains(k)).count();
        let new = adding.iter().filter(|k| !keys.contains(k)).count();
        if new > 0 && kept + new > max_labels {
            return Ok(Some((id, keys.len())));
        }
    }
    Ok(None)
}

/// Which of these ids are conversations of `bot_id`, in the order given.
pub fn owned(conn: &Connection, bot_id: &str, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1 AND bot_id = ?2")?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        if statement.exists(params![id as i64, bot_id])? {
            out.push(id);
        }
    }
    Ok(out)
}

impl WriteCtx<'_> {
    /// Records a new action of `bot_id` and forgets the bot's oldest beyond
    /// [`KEPT_ACTIONS`]; returns its id.
    pub fn begin_bulk(
        &mut self,
        bot_id: &str,
        change: &BulkChange,
        matched: u64,
        now: Micros,
    ) -> Result<u64, StoreError> {
        let change = serde_json::to_string(change).expect("a change serialises");
        self.conn
            .prepare_cached(
                "INSERT INTO bulk_actions (bot_id, created_at, change, matched, done, changed, restored)
                 VALUES (?1, ?2, ?3, ?4, 0, 0, 0)",
            )?
            .execute(params![bot_id, now, change, matched as i64])?;
        let id = self.conn.last_insert_rowid();
        let forgotten =
            "SELECT id FROM bulk_actions WHERE bot_id = ?1 ORDER BY id DESC LIMIT -1 OFFSET ?2";
        self.conn.execute(
            &format!("DELETE FROM bulk_changes WHERE action_id IN ({forgotten})"),
            params![bot_id, KEPT_ACTIONS],
        )?;
        self.conn.execute(
            &format!("DELETE FROM bulk_actions WHERE id IN ({forgotten})"),
            params![bot_id, KEPT_ACTIONS],
        )?;
        Ok(id as u64)
    }

    /// Applies action `action`'s change to one chunk of conversations of
    /// `bot_id` (those the archive holds are skipped), records what each was
    /// before, and moves the action's progress; `last` finishes it. Returns
    /// how many changed.
    pub fn bulk_chunk(
        &mut self,
        action: u64,
        bot_id: &str,
        ids: &[u64],
        now: Micros,
        last: bool,
    ) -> Result<u64, StoreError> {
        // Labels and flags carry the action's time, which is how an undo
        // recognises a flag as still the one the action set.
        let BulkAction {
            change, created_at, ..
        } = self::action(self.conn, bot_id, action)?;
        let mut changed = 0;
        for &id in ids {
            if super::archive::held(self.conn, id)? {
                continue;
            }
            let mut before = Before::default();
            for label in &change.add_labels {
                // The limit was checked for the whole action; a label added
                // since then by someone else is not a reason to stop half-way.
                if self.add_label_unchecked(bot_id, id, label, created_at, usize::MAX)? {
                    before.added.push(label_key(label));
                }
            }
            for label in &change.remove_labels {
                if let Some(removed) = self.take_label(id, label)? {
                    before.removed.push(removed);
                }
            }
            if let Some(flag) = change.flag {
                let previous = self.flag_of(id)?;
                let set = match flag {
                    true => self.set_flag_unchecked(id, Some((created_at, None)))?,
                    false => self.set_flag_unchecked(id, None)?,
                };
                if set {
                    before.flag = Some(match previous {
                        None => FlagBefore::Unflagged,
                        Some((at, note)) => FlagBefore::Flagged { at, note },
                    });
                }
            }
            if before.added.is_empty() && before.removed.is_empty() && before.flag.is_none() {
                continue;
            }
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO bulk_changes (action_id, conversation_id, before) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    action as i64,
                    id as i64,
                    serde_json::to_string(&before).expect("a record serialises")
                ])?;
            self.touch_conversation(id)?;
            changed += 1;
        }
        self.conn
            .prepare_cached(
                "UPDATE bulk_actions SET done = done + ?2, changed = changed + ?3,
                        finished_at = CASE WHEN ?4 THEN ?5 END
                  WHERE id = ?1",
            )?
            .execute(params![
                action as i64,
                ids.len() as i64,
                changed as i64,
                last,
                now
            ])?;
        Ok(changed)
    }

    /// Puts back what action `action` changed in one chunk of its
    /// conversations (those after `after`, at most `limit`), where nobody has
    /// changed it again since: labels it added are removed, labels it
    /// removed come back, a flag it set is cleared if it is still its flag, a
    /// flag it cleared comes back if the conversation is still unflagged.
    /// Returns the last conversation gone through (`None`: no more; the
    /// action is then marked undone).
    pub fn undo_bulk_chunk(
        &mut self,
        action: &BulkAction,
        after: u64,
        limit: usize,
        now: Micros,
    ) -> Result<Option<u64>, StoreError> {
        let rows: Vec<(u64, String)> = self
            .conn
            .prepare_cached(
                "SELECT conversation_id, before FROM bulk_changes
                  WHERE action_id = ?1 AND conversation_id > ?2 ORDER BY conversation_id LIMIT ?3",
            )?
            .query_map(
                params![action.id as i64, after as i64, limit as i64],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let Some(&(last, _)) = rows.last() else {
            self.conn.execute(
                "UPDATE bulk_actions SET undone_at = ?2 WHERE id = ?1",
                params![action.id as i64, now],
            )?;
            return Ok(None);
        };
        let mut restored = 0;
        for (id, before) in rows {
            let found = self
                .conn
                .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1 AND bot_id = ?2")?
                .exists(params![id as i64, action.bot_id])?;
            if !found || super::archive::held(self.conn, id)? {
                continue;
            }
            let before: Before = serde_json::from_str(&before).unwrap_or_default();
            let mut touched = false;
            for key in &before.added {
                touched |= self.remove_label_unchecked(id, key)?;
            }
            for (name, added_at) in &before.removed {
                let (key, spelling) = self.canonical_label(&action.bot_id, name)?;
                touched |= self
                    .conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO labels (conversation_id, name_key, name, added_at) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![id as i64, key, spelling, added_at])?
                    > 0;
            }
            match &before.flag {
                // It flagged an unflagged conversation: clear the flag if it is still the one it set.
                Some(FlagBefore::Unflagged) => {
                    touched |= self
                        .conn
                        .prepare_cached(
                            "UPDATE conversations SET flagged_at = NULL, flag_note = NULL
                              WHERE id = ?1 AND flagged_at = ?2 AND flag_note IS NULL",
                        )?
                        .execute(params![id as i64, action.created_at])?
                        > 0;
                }
                // It cleared a flag: put it back unless someone flagged it since.
                Some(FlagBefore::Flagged { at, note }) => {
                    touched |= self
                        .conn
                        .prepare_cached(
                            "UPDATE conversations SET flagged_at = ?2, flag_note = ?3
                              WHERE id = ?1 AND flagged_at IS NULL",
                        )?
                        .execute(params![id as i64, at, note])?
                        > 0;
                }
                None => {}
            }
            if touched {
                self.touch_conversation(id)?;
                restored += 1;
            }
        }
        self.conn.execute(
            "UPDATE bulk_actions SET restored = restored + ?2 WHERE id = ?1",
            params![action.id as i64, restored],
        )?;
        Ok(Some(last))
    }

    /// Removes a label, returning its spelling and when it was added, if it was there.
    fn take_label(&mut self, id: u64, name: &str) -> Result<Option<(String, Micros)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM labels WHERE conversation_id = ?1 AND name_key = ?2 RETURNING name, added_at",
            )?
            .query_row(params![id as i64, label_key(name)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?)
    }

    /// The conversation's flag: when, and its note; `None` when unflagged.
    fn flag_of(&self, id: u64) -> Result<Option<(Micros, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT flagged_at, flag_note FROM conversations WHERE id = ?1")?
            .query_row(params![id as i64], |row| {
                let at: Option<Micros> = row.get(0)?;
                Ok(at.map(|at| (at, row.get(1).ok().flatten())))
            })
            .optional()?
            .flatten())
    }
}
