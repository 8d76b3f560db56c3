//! What the tagging job reads and writes.

use super::read::{MessageRecord, TagRecord, messages, tags};
use super::{StoreError, WriteCtx};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};

/// A conversation to evaluate.
#[derive(Debug, Clone)]
pub struct TagCandidate {
    pub id: u64,
    /// The conversation's change position when it was read.
    pub change: u64,
    pub channel: String,
    pub last_message_at: Micros,
    pub messages: Vec<MessageRecord>,
}

/// The outcome of evaluating one conversation.
#[derive(Debug, Clone)]
pub struct TagOutcome {
    pub id: u64,
    /// The change position the evaluation saw.
    pub evaluated_change: u64,
    pub tags: Vec<TagRecord>,
    /// When a time-dependent rule must look again (e.g. the session will have ended).
    pub recheck_at: Option<Micros>,
}

/// A page of candidates and the change position it brings the job up to.
#[derive(Debug, Default)]
pub struct CandidatePage {
    pub candidates: Vec<TagCandidate>,
    pub position: u64,
    /// Whether the page was full (more may follow).
    pub full: bool,
}

fn candidate(
    conn: &Connection,
    id: u64,
    change: u64,
    channel: String,
    last: Micros,
) -> Result<TagCandidate, StoreError> {
    Ok(TagCandidate {
        id,
        change,
        channel,
        last_message_at: last,
        messages: messages(conn, id)?,
    })
}

/// Conversations changed after `after` (skipping changes the job made itself), up to `limit` scanned.
pub fn changed_candidates(
    conn: &Connection,
    after: u64,
    limit: usize,
    head: u64,
) -> Result<CandidatePage, StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let rows: Vec<(u64, String, Micros, u64, Option<u64>)> = conn
            .prepare_cached(
                "SELECT c.id, c.channel, c.last_message_at, c.change_seq, t.own_change
                 FROM conversations c LEFT JOIN tag_state t ON t.conversation_id = c.id
                 WHERE c.change_seq > ?1 ORDER BY c.change_seq LIMIT ?2",
            )?
            .query_map(params![after as i64, limit as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get(1)?,
                    row.get(2)?,
                    row.get::<_, i64>(3)? as u64,
                    row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                ))
            })?
            .collect::<Result<_, _>>()?;
        let full = rows.len() == limit;
        let mut page = CandidatePage {
            position: if full { after } else { after.max(head) },
            full,
            candidates: Vec::new(),
        };
        for (id, channel, last, change, own) in rows {
            page.position = page.position.max(change);
            if own != Some(change) {
                page.candidates
                    .push(candidate(conn, id, change, channel, last)?);
            }
        }
        Ok(page)
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}

type CandidateRow = (u64, u64, String, Micros);

fn candidate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CandidateRow> {
    Ok((
        row.get::<_, i64>(0)? as u64,
        row.get::<_, i64>(1)? as u64,
        row.get(2)?,
        row.get(3)?,
    ))
}

/// Conversations whose time-dependent rules are due at `now`.
pub fn due_candidates(
    conn: &Connection,
    now: Micros,
    limit: usize,
) -> Result<Vec<TagCandidate>, StoreError> {
    let rows: Vec<(u64, u64, String, Micros)> = conn
        .prepare_cached(
            "SELECT c.id, c.change_seq, c.channel, c.last_message_at FROM tag_state t JOIN conversations c ON c.id = t.conversation_id
             WHERE t.recheck_at IS NOT NULL AND t.recheck_at <= ?1 LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], candidate_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, change, channel, last)| candidate(conn, id, change, channel, last))
        .collect()
}

/// A conversation a full run evaluates, before its messages are read.
#[derive(Debug, Clone)]
pub struct PlacedHead {
    /// Its place in the index's order: (`placed_at`, id).
    pub place: (Micros, u64),
    change: u64,
    channel: String,
    last_message_at: Micros,
}

/// The next `limit` conversations after `after` in the index's order (by
/// `placed_at`, then id: partition after partition), without their messages.
pub fn placed_heads(
    conn: &Connection,
    after: Option<(Micros, u64)>,
    limit: usize,
) -> Result<Vec<PlacedHead>, StoreError> {
    let (placed, id) = after.unwrap_or((Micros::MIN, 0));
    Ok(conn
        .prepare_cached(
            "SELECT id, change_seq, channel, last_message_at, placed_at FROM conversations
             WHERE (placed_at, id) > (?1, ?2) ORDER BY placed_at, id LIMIT ?3",
        )?
        .query_map(params![placed, id as i64, limit as i64], |row| {
            let (id, change, channel, last_message_at) = candidate_row(row)?;
            Ok(PlacedHead {
                place: (row.get(4)?, id),
                change,
                channel,
                last_message_at,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// `heads` with their messages, in one read transaction (a conversation
/// deleted since reads with none; writing its tags then finds it gone).
pub fn with_messages(
    conn: &Connection,
    heads: &[PlacedHead],
) -> Result<Vec<TagCandidate>, StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = heads
        .iter()
        .map(|head| {
            candidate(
                conn,
                head.place.1,
                head.change,
                head.channel.clone(),
                head.last_message_at,
            )
        })
        .collect();
    let _ = conn.execute_batch("COMMIT");
    result
}

/// Number of conversations (the total of a full run).
pub fn conversation_count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM conversations", [], |row| {
            row.get::<_, i64>(0)
        })? as u64,
    )
}

/// A value of the `meta` table.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row(params![key], |row| row.get(0))
        .optional()?)
}

impl WriteCtx<'_> {
    /// Sets a value of the `meta` table.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Replaces the tags of each evaluated conversation that still exists; returns how many changed.
    pub fn apply_tags(&mut self, outcomes: &[TagOutcome]) -> Result<usize, StoreError> {
        let mut changed = 0;
        for outcome in outcomes {
            let id = outcome.id as i64;
            let Some(current_change) = self
                .conn
                .prepare_cached("SELECT change_seq FROM conversations WHERE id = ?1")?
                .query_row(params![id], |row| row.get::<_, i64>(0))
                .optional()?
            else {
                continue;
            };
            // Held by the archive: its tags stay as they are archived.
            if super::archive::held(self.conn, outcome.id)? {
                continue;
            }
            // Changed since it was read: store these tags, but let the job look again.
            let fresh = current_change as u64 == outcome.evaluated_change;
            let current = tags(self.conn, outcome.id)?;
            let mut wanted = outcome.tags.clone();
            wanted.sort_by(|a, b| a.tag.cmp(&b.tag));
            let own_change = if current != wanted {
                self.conn
                    .prepare_cached("DELETE FROM tags WHERE conversation_id = ?1")?
                    .execute(params![id])?;
                let mut insert = self.conn.prepare_cached(
                    "INSERT INTO tags (conversation_id, tag, rule, rule_version, message_ids, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for tag in &wanted {
                    insert.execute(params![
                        id,
                        tag.tag,
                        tag.rule,
                        tag.rule_version,
                        serde_json::to_string(&tag.message_ids).expect("strings serialise"),
                        tag.reason
                    ])?;
                }
                changed += 1;
                self.touch_conversation(outcome.id)?;
                self.current_change()
            } else {
                current_change as u64
            };
            let own_change = if fresh { own_change } else { 0 };
            self.conn
                .prepare_cached(
                    "INSERT INTO tag_state (conversation_id, own_change, recheck_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation_id) DO UPDATE SET own_change = excluded.own_change, recheck_at = excluded.recheck_at",
                )?
                .execute(params![id, own_change as i64, outcome.recheck_at])?;
        }
        Ok(changed)
    }
}
