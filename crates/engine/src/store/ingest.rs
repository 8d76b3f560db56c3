//! The ingest transaction: deduplicate, assign sessions, insert, refresh summaries.

use super::{StoreError, WriteCtx};
use crate::ingest::rasa::SessionStart;
use crate::ingest::sessions::{StoredSession, group_sessions};
use crate::settings::SessionConfig;
use convlog_core::{Micros, NewMessage, NewTrace, UserKey};
use rusqlite::{OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What an ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
}

impl WriteCtx<'_> {
    /// Stores a validated batch. Runs inside one savepoint: all or nothing.
    pub fn ingest(
        &mut self,
        messages: Vec<NewMessage>,
        sessions: &SessionConfig,
    ) -> Result<IngestOutcome, StoreError> {
        let total = messages.len();
        let fresh = self.drop_duplicates(messages)?;
        let accepted = fresh.len();
        let mut conversation_of = vec![0u64; fresh.len()];
        let mut touched = BTreeSet::new();

        let mut explicit: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut timed: BTreeMap<(&str, &UserKey, &str), Vec<usize>> = BTreeMap::new();
        for (position, message) in fresh.iter().enumerate() {
            match &message.session_id {
                Some(session) => explicit
                    .entry((&message.bot_id, session))
                    .or_default()
                    .push(position),
                None => timed
                    .entry((&message.bot_id, &message.user_key, &message.channel))
                    .or_default()
                    .push(position),
            }
        }

        for ((bot_id, session_id), positions) in explicit {
            let first = &fresh[positions[0]];
            let id = match self
                .conn
                .prepare_cached(
                    "SELECT id FROM conversations WHERE bot_id = ?1 AND session_id = ?2",
                )?
                .query_row(params![bot_id, session_id], |row| row.get::<_, i64>(0))
                .optional()?
            {
                Some(id) if super::archive::held(self.conn, id as u64)? => {
                    return Err(StoreError::Conflict(format!(
                        "session {session_id:?} of bot {bot_id:?} is held by the archive \
                         (being archived, or restored read-only); retry once it has been archived"
                    )));
                }
                Some(id) => id as u64,
                None => self.insert_conversation(first, Some(session_id))?,
            };
            for position in positions {
                conversation_of[position] = id;
            }
            touched.insert(id);
        }

        for ((bot_id, user_key, channel), positions) in timed {
            let timeout = sessions.timeout(channel).as_micros() as Micros;
            let timestamps: Vec<Micros> = positions.iter().map(|&p| fresh[p].timestamp).collect();
            let lo = timestamps
                .iter()
                .min()
                .expect("non-empty")
                .saturating_sub(timeout);
            let hi = timestamps
                .iter()
                .max()
                .expect("non-empty")
                .saturating_add(timeout);
            let stored = self.nearby_sessions(bot_id, user_key, channel, lo, hi)?;
            for group in group_sessions(&stored, &timestamps, timeout) {
                let id = match group.stored.split_first() {
                    Some((&keep, absorbed)) => {
                        for &other in absorbed {
                            self.merge_conversation(keep, other)?;
                        }
                        keep
                    }
                    None => self.insert_conversation(&fresh[positions[group.messages[0]]], None)?,
                };
                for index in group.messages {
                    conversation_of[positions[index]] = id;
                }
                touched.insert(id);
            }
        }

        self.insert_messages(&fresh, &conversation_of)?;
        self.upsert_nodes(&fresh)?;
        for id in touched {
            self.refresh_conversation(id)?;
        }
        Ok(IngestOutcome {
            accepted,
            duplicates: total - accepted,
        })
    }

    /// Removes messages whose (bot, id) is already stored or earlier in the batch.
    fn drop_duplicates(
        &mut self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<NewMessage>, StoreError> {
        let mut seen = HashSet::with_capacity(messages.len());
        let mut exists = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE bot_id = ?1 AND msg_id = ?2")?;
        let mut fresh = Vec::with_capacity(messages.len());
        for message in messages {
            if !seen.insert((message.bot_id.clone(), message.id.clone())) {
                continue;
            }
            if exists.exists(params![message.bot_id, message.id])? {
                continue;
            }
            fresh.push(message);
        }
        Ok(fresh)
    }

    fn nearby_sessions(
        &mut self,
        bot_id: &str,
        user_key: &UserKey,
        channel: &str,
        lo: Micros,
        hi: Micros,
    ) -> Result<Vec<StoredSession>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, started_at, last_message_at FROM conversations
             WHERE bot_id = ?1 AND user_key = ?2 AND channel = ?3 AND session_id IS NULL
               AND last_message_at >= ?4 AND started_at <= ?5
               AND NOT EXISTS (SELECT 1 FROM archive_holds h WHERE h.conversation_id = conversations.id)",
        )?;
        let rows = statement.query_map(params![bot_id, user_key.0, channel, lo, hi], |row| {
            Ok(StoredSession {
                id: row.get::<_, i64>(0)? as u64,
                started_at: row.get(1)?,
                last_message_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_conversation(
        &mut self,
        first: &NewMessage,
        session_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        let change = self.next_change();
        self.conn
            .prepare_cached(
                // Ids are never reused: not even the newest, once archived (the floor).
                "INSERT INTO conversations
                   (id, bot_id, user_key, channel, session_id, started_at, last_message_at, message_count, change_seq, placed_at)
                 VALUES (1 + MAX(COALESCE((SELECT MAX(id) FROM conversations), 0),
                                 COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'conversation_id_floor'), 0)),
                         ?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, ?5)",
            )?
            .execute(params![
                first.bot_id,
                first.user_key.0,
                first.channel,
                session_id,
                first.timestamp,
                change as i64
            ])?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// Moves everything of conversation `other` into `keep` and leaves a tombstone for the index.
    fn merge_conversation(&mut self, keep: u64, other: u64) -> Result<(), StoreError> {
        let (keep, other) = (keep as i64, other as i64);
        self.conn.execute(
            "UPDATE messages SET conversation_id = ?1 WHERE conversation_id = ?2",
            params![keep, other],
        )?;
        self.conn.execute(
            "INSERT OR IGNORE INTO labels (conversation_id, name_key, name, added_at)
             SELECT ?1, name_key, name, added_at FROM labels WHERE conversation_id = ?2",
            params![keep, other],
        )?;
        self.conn.execute(
            "DELETE FROM labels WHERE conversation_id = ?1",
            params![other],
        )?;
        // An undo of a bulk action puts back what it changed on either half.
        self.conn.execute(
            "UPDATE OR IGNORE bulk_changes SET conversation_id = ?1 WHERE conversation_id = ?2",
            params![keep, other],
        )?;
        self.conn.execute(
            "DELETE FROM bulk_changes WHERE conversation_id = ?1",
            params![other],
        )?;
        // Tags are recomputed from the merged messages by the tagging job.
        self.conn.execute(
            "DELETE FROM tags WHERE conversation_id = ?1",
            params![other],
        )?;
        self.conn.execute(
            "UPDATE conversations SET
                flagged_at = COALESCE(flagged_at, (SELECT flagged_at FROM conversations WHERE id = ?2)),
                flag_note = COALESCE(flag_note, (SELECT flag_note FROM conversations WHERE id = ?2)),
                debug = MAX(debug, (SELECT debug FROM conversations WHERE id = ?2))
             WHERE id = ?1",
            params![keep, other],
        )?;
        self.conn.execute(
            "UPDATE traces SET conversation_id = ?1 WHERE conversation_id = ?2",
            params![keep, other],
        )?;
        // A link shared one conversation; it must not start showing another's messages.
        self.conn.execute(
            "UPDATE shares SET revoked_at = COALESCE(revoked_at, expires_at) WHERE conversation_id IN (?1, ?2)",
            params![keep, other],
        )?;
        let change = self.next_change();
        self.conn.execute(
            "INSERT INTO tombstones (change_seq, conversation_id, placed_at)
             SELECT ?1, id, placed_at FROM conversations WHERE id = ?2",
            params![change as i64, other],
        )?;
        self.conn
            .execute("DELETE FROM conversations WHERE id = ?1", params![other])?;
        tracing::debug!(keep, other, "merged sessions bridged by a late message");
        Ok(())
    }

    fn insert_messages(
        &mut self,
        messages: &[NewMessage],
        conversation_of: &[u64],
    ) -> Result<(), StoreError> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO messages
               (bot_id, msg_id, conversation_id, role, text, ts, flow, step, node_id, node_type,
                node_name, intent, confidence, unidentified, flow_completed, metadata, lang)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        for (message, &conversation) in messages.iter().zip(conversation_of) {
            statement.execute(params![
                message.bot_id,
                message.id,
                conversation as i64,
                message.role.as_str(),
                message.text,
                message.timestamp,
                message.flow,
                message.step,
                message.node_id,
                message.node_type,
                message.node_name,
                message.intent,
                message.confidence,
                message.unidentified,
                message.flow_completed,
                message.metadata,
                message.lang,
            ])?;
        }
        Ok(())
    }

    fn upsert_nodes(&mut self, messages: &[NewMessage]) -> Result<(), StoreError> {
        let mut latest: HashMap<(&str, &str), &NewMessage> = HashMap::new();
        for message in messages {
            if let Some(node) = &message.node_id {
                let entry = latest.entry((&message.bot_id, node)).or_insert(message);
                if message.timestamp >= entry.timestamp {
                    *entry = message;
                }
            }
        }
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO nodes (bot_id, node_id, name, type) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (bot_id, node_id) DO UPDATE SET
               name = COALESCE(excluded.name, name), type = COALESCE(excluded.type, type)",
        )?;
        for ((bot_id, node_id), message) in latest {
            statement.execute(params![
                bot_id,
                node_id,
                message.node_name,
                message.node_type
            ])?;
        }
        Ok(())
    }

    /// Recomputes a conversation's summary from its messages and moves it up the change stream.
    pub fn refresh_conversation(&mut self, id: u64) -> Result<(), StoreError> {
        let mut started_at = Micros::MAX;
        let mut last_message_at = Micros::MIN;
        let mut count = 0i64;
        let mut flows: Vec<String> = Vec::new();
        let mut last_flow: Option<(String, Option<String>, bool)> = None;
        {
            let mut statement = self.conn.prepare_cached(
                "SELECT ts, flow, step, flow_completed FROM messages
                 WHERE conversation_id = ?1 ORDER BY ts, seq",
            )?;
            let mut rows = statement.query(params![id as i64])?;
            while let Some(row) = rows.next()? {
                let ts: Micros = row.get(0)?;
                started_at = started_at.min(ts);
                last_message_at = last_message_at.max(ts);
                count += 1;
                if let Some(flow) = row.get::<_, Option<String>>(1)? {
                    if !flows.contains(&flow) {
                        flows.push(flow.clone());
                    }
                    last_flow = Some((flow, row.get(2)?, row.get(3)?));
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        let dropoff = last_flow.filter(|(_, _, completed)| !completed);
        let change = self.next_change();
        self.conn
            .prepare_cached(
                "UPDATE conversations SET started_at = ?2, last_message_at = ?3, message_count = ?4,
                   flows = ?5, dropoff_flow = ?6, dropoff_step = ?7, change_seq = ?8
                 WHERE id = ?1",
            )?
            .execute(params![
                id as i64,
                started_at,
                last_message_at,
                count,
                serde_json::to_string(&flows).expect("strings serialise"),
                dropoff.as_ref().map(|(flow, _, _)| flow),
                dropoff.as_ref().and_then(|(_, step, _)| step.as_ref()),
                change as i64
            ])?;
        Ok(())
    }

    /// Moves a conversation up the change stream so the index rewrites it (after a label, flag, tag change).
    pub fn touch_conversation(&mut self, id: u64) -> Result<(), StoreError> {
        let change = self.next_change();
        self.conn
            .prepare_cached("UPDATE conversations SET change_seq = ?2 WHERE id = ?1")?
            .execute(params![id as i64, change as i64])?;
        Ok(())
    }

    /// Remembers the sessions a source opened (see `session_starts`); a
    /// session already remembered is kept as it is.
    pub fn record_session_starts(
        &mut self,
        bot_id: &str,
        starts: &[SessionStart],
    ) -> Result<(), StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO session_starts (bot_id, user_key, started_at, session_id)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for start in starts {
            insert.execute(params![
                bot_id,
                start.user_key,
                start.started_at,
                start.session_id
            ])?;
        }
        Ok(())
    }

    /// Stores trace events whose conversation is found (or any, when `capture_all`); returns (stored, dropped).
    pub fn store_traces(
        &mut self,
        traces: Vec<NewTrace>,
        sessions: &SessionConfig,
        capture_all: bool,
    ) -> Result<(usize, usize), StoreError> {
        let mut stored = 0;
        let mut find = self.conn.prepare_cached(
            "SELECT id, debug FROM conversations
             WHERE bot_id = ?1 AND user_key = ?2 AND channel = ?3
               AND started_at <= ?4 + ?5 AND last_message_at >= ?4 - ?5
             ORDER BY ABS(last_message_at - ?4) LIMIT 1",
        )?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO traces
                 (bot_id, conversation_id, ts, message_id, action, detail, duration_ms, level, source_id, user_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let total = traces.len();
        for trace in traces {
            let timeout = sessions.timeout(&trace.channel).as_micros() as i64;
            let found: Option<(i64, bool)> = find
                .query_row(
                    params![
                        trace.bot_id,
                        trace.user_key.0,
                        trace.channel,
                        trace.timestamp,
                        timeout
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let debug_on = found.is_some_and(|(_, debug)| debug);
            if !(capture_all || debug_on) {
                continue;
            }
            // An event whose id is already stored (a retry) counts as stored.
            insert.execute(params![
                trace.bot_id,
                found.map(|(id, _)| id),
                trace.timestamp,
                trace.message_id,
                trace.action,
                trace.detail,
                trace.duration_ms,
                trace.level,
                trace.id,
                trace.user_key.0
            ])?;
            stored += 1;
        }
        Ok((stored, total - stored))
    }
}
