//! Reads: what the index, the query layer and the HTTP handlers ask of the store.

use super::StoreError;
use crate::ingest::pseudonym::UserKeyer;
use crate::ingest::rasa::{SenderState, Senders};
use convlog_core::{Micros, UserKey};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Makes `conn` compile each statement's plan once.
///
/// The bundled SQLite marks the parameter of per-conversation queries with an
/// `ORDER BY` (`messages`, `tags`, the writer's summary refresh) as "re-prepare
/// on bind", so `prepare_cached` recompiled them on every execution: 42–48% of
/// the tagger's and the store writer's time. With the query planner stability
/// guarantee the plan is chosen once per statement; none of the store's plans
/// depend on parameter values (no `ANALYZE` statistics are kept).
pub(super) fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// A conversation with its summary, labels and tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationRecord {
    pub id: u64,
    pub bot_id: String,
    pub user_key: UserKey,
    pub channel: String,
    pub session_id: Option<String>,
    pub started_at: Micros,
    pub last_message_at: Micros,
    pub message_count: u64,
    pub flows: Vec<String>,
    /// Where the user left a flow: (flow, step).
    pub dropoff: Option<(String, Option<String>)>,
    pub flagged_at: Option<Micros>,
    pub flag_note: Option<String>,
    pub debug: bool,
    pub labels: Vec<String>,
    pub tags: Vec<TagRecord>,
}

/// A tag with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRecord {
    pub tag: String,
    pub rule: String,
    pub rule_version: u32,
    pub message_ids: Vec<String>,
    pub reason: String,
}

/// One stored message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageRecord {
    pub seq: u64,
    pub id: String,
    pub conversation_id: u64,
    pub role: String,
    pub text: String,
    pub timestamp: Micros,
    pub flow: Option<String>,
    pub step: Option<String>,
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub node_name: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub unidentified: bool,
    pub flow_completed: bool,
    pub metadata: Option<String>,
    /// The language the message said it is in (`lang` at ingest), if it did.
    pub lang: Option<String>,
}

/// A node seen in a bot's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub name: Option<String>,
    pub node_type: Option<String>,
}

/// A bot with data in the hot store.
#[derive(Debug, Clone, PartialEq)]
pub struct BotSummary {
    pub id: String,
    pub conversations: u64,
    pub last_message_at: Micros,
}

/// A stored trace event.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    pub timestamp: Micros,
    pub message_id: Option<String>,
    pub action: String,
    pub detail: Option<String>,
    pub duration_ms: Option<f64>,
    pub level: String,
}

/// A changed conversation, as the index needs it.
#[derive(Debug)]
pub struct ChangedConversation {
    pub record: ConversationRecord,
    /// Its `placed_at`: the time that places it in the index's partitions, which never changes.
    pub placed_at: Micros,
    /// All its messages in time order (ties in ingest order).
    pub messages: Vec<MessageRecord>,
}

/// A conversation that no longer exists (merged away, archived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub id: u64,
    /// Its `placed_at`; `None` for tombstones written before the column existed.
    pub placed_at: Option<Micros>,
}

/// Conversations changed after a position of the change stream, as the index needs them.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    pub conversations: Vec<ChangedConversation>,
    pub tombstones: Vec<Tombstone>,
    /// The position this batch brings the reader up to.
    pub position: u64,
}

pub(super) const CONVERSATION_COLUMNS: &str = "id, bot_id, user_key, channel, session_id, started_at, \
     last_message_at, message_count, flows, dropoff_flow, dropoff_step, flagged_at, flag_note, debug";

pub(super) const MESSAGE_COLUMNS: &str = "seq, msg_id, conversation_id, role, text, ts, flow, step, node_id, \
     node_type, node_name, intent, confidence, unidentified, flow_completed, metadata, lang";

pub(super) fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<ConversationRecord> {
    let flows: String = row.get(8)?;
    let dropoff_flow: Option<String> = row.get(9)?;
    Ok(ConversationRecord {
        id: row.get::<_, i64>(0)? as u64,
        bot_id: row.get(1)?,
        user_key: UserKey(row.get(2)?),
        channel: row.get(3)?,
        session_id: row.get(4)?,
        started_at: row.get(5)?,
        last_message_at: row.get(6)?,
        message_count: row.get::<_, i64>(7)? as u64,
        flows: serde_json::from_str(&flows).unwrap_or_default(),
        dropoff: dropoff_flow.map(|flow| (flow, row.get(10).ok().flatten())),
        flagged_at: row.get(11)?,
        flag_note: row.get(12)?,
        debug: row.get(13)?,
        labels: Vec::new(),
        tags: Vec::new(),
    })
}

pub(super) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        seq: row.get::<_, i64>(0)? as u64,
        id: row.get(1)?,
        conversation_id: row.get::<_, i64>(2)? as u64,
        role: row.get(3)?,
        text: row.get(4)?,
        timestamp: row.get(5)?,
        flow: row.get(6)?,
        step: row.get(7)?,
        node_id: row.get(8)?,
        node_type: row.get(9)?,
        node_name: row.get(10)?,
        intent: row.get(11)?,
        confidence: row.get(12)?,
        unidentified: row.get(13)?,
        flow_completed: row.get(14)?,
        metadata: row.get(15)?,
        lang: row.get(16)?,
    })
}

/// The tags of a conversation, by name.
pub fn tags(conn: &Connection, conversation_id: u64) -> Result<Vec<TagRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT tag, rule, rule_version, message_ids, reason FROM tags
         WHERE conversation_id = ?1 ORDER BY tag",
    )?;
    let rows = statement.query_map(params![conversation_id as i64], |row| {
        let ids: String = row.get(3)?;
        Ok(TagRecord {
            tag: row.get(0)?,
            rule: row.get(1)?,
            rule_version: row.get(2)?,
            message_ids: serde_json::from_str(&ids).unwrap_or_default(),
            reason: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Fills in labels and tags of a conversation.
fn with_labels_and_tags(
    conn: &Connection,
    mut record: ConversationRecord,
) -> Result<ConversationRecord, StoreError> {
    let mut labels = conn.prepare_cached(
        "SELECT name FROM labels WHERE conversation_id = ?1 ORDER BY added_at, name",
    )?;
    record.labels = labels
        .query_map(params![record.id as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    record.tags = tags(conn, record.id)?;
    Ok(record)
}

/// One conversation of `bot_id`, or `NotFound` (also when it belongs to another bot).
pub fn conversation(
    conn: &Connection,
    bot_id: &str,
    id: u64,
) -> Result<ConversationRecord, StoreError> {
    let record = conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1 AND bot_id = ?2"
        ))?
        .query_row(params![id as i64, bot_id], conversation_from_row)
        .optional()?
        .ok_or(StoreError::NotFound)?;
    with_labels_and_tags(conn, record)
}

/// The conversations of `bot_id` with these ids, in the order given; missing ones are skipped.
pub fn conversations(
    conn: &Connection,
    bot_id: &str,
    ids: &[u64],
) -> Result<Vec<ConversationRecord>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        match conversation(conn, bot_id, id) {
            Ok(record) => out.push(record),
            Err(StoreError::NotFound) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(out)
}

/// The messages of a conversation in time order (ties in ingest order).
pub fn messages(conn: &Connection, conversation_id: u64) -> Result<Vec<MessageRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY ts, seq"
    ))?;
    let rows = statement.query_map(params![conversation_id as i64], message_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The first thing the user said in a conversation, cut to `max_chars`
/// characters (with "…" when cut): the preview of a row in a list.
pub fn first_user_text(
    conn: &Connection,
    conversation_id: u64,
    max_chars: usize,
) -> Result<Option<String>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT text FROM messages WHERE conversation_id = ?1 AND role = 'user' AND text != ''
              ORDER BY ts, seq LIMIT 1",
        )?
        .query_row(params![conversation_id as i64], |row| row.get(0))
        .optional()?;
    Ok(text.map(|text| {
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match line.char_indices().nth(max_chars) {
            Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
            None => line,
        }
    }))
}

/// Messages by store sequence number, in the order given; missing ones are skipped.
pub fn messages_by_seq(
    conn: &Connection,
    bot_id: &str,
    seqs: &[u64],
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq = ?1 AND bot_id = ?2"
    ))?;
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        if let Some(message) = statement
            .query_row(params![seq as i64, bot_id], message_from_row)
            .optional()?
        {
            out.push(message);
        }
    }
    Ok(out)
}

/// The messages of `bot_id` with these sequences (ascending), each with its
/// conversation's channel. Dense sequences are read by one range scan,
/// sparse ones one by one.
pub fn messages_with_channel(
    conn: &Connection,
    bot_id: &str,
    seqs: &[u64],
) -> Result<Vec<(MessageRecord, String)>, StoreError> {
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(Vec::new());
    };
    let columns = format!(
        "{MESSAGE_COLUMNS}, (SELECT channel FROM conversations c WHERE c.id = messages.conversation_id)"
    );
    let row = |row: &Row<'_>| Ok((message_from_row(row)?, row.get::<_, String>(17)?));
    let mut out = Vec::with_capacity(seqs.len());
    if (last - first) as usize <= seqs.len() * 4 {
        let mut statement = conn.prepare_cached(&format!(
            // `+bot_id`: the range of the primary key, not the bot's index.
            "SELECT {columns} FROM messages WHERE seq BETWEEN ?1 AND ?2 AND +bot_id = ?3 ORDER BY seq"
        ))?;
        for message in statement.query_map(params![first as i64, last as i64, bot_id], row)? {
            let message = message?;
            if seqs.binary_search(&message.0.seq).is_ok() {
                out.push(message);
            }
        }
    } else {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {columns} FROM messages WHERE seq = ?1 AND bot_id = ?2"
        ))?;
        for &seq in seqs {
            if let Some(message) = statement
                .query_row(params![seq as i64, bot_id], row)
                .optional()?
            {
                out.push(message);
            }
        }
    }
    Ok(out)
}

/// The sequence of the last message stored (0 when none is).
pub fn latest_message_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM messages", [], |row| {
        row.get(0)
    })?;
    Ok(seq as u64)
}

/// A user message a bot answered with a fallback (`unidentified`).
#[derive(Debug, Clone, PartialEq)]
pub struct UnidentifiedInput {
    pub conversation_id: u64,
    pub msg_id: String,
    pub text: String,
    /// The message's `lang`, if it gave one.
    pub lang: Option<String>,
}

/// The user messages of the conversations `within` (ascending ids) that an
/// `unidentified` bot message answered: the last user message before it,
/// unless another bot message answered that one first (an input answered
/// by an identified reply is understood; by several fallbacks, counted once).
pub fn unidentified_inputs(
    conn: &Connection,
    bot_id: &str,
    within: &[u64],
) -> Result<Vec<UnidentifiedInput>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT conversation_id, role, unidentified, msg_id, text, lang FROM messages \
         WHERE conversation_id IN (SELECT DISTINCT conversation_id FROM messages \
                                   WHERE bot_id = ?1 AND unidentified = 1) \
           AND role IN ('user', 'bot') \
         ORDER BY conversation_id, ts, seq",
    )?;
    let mut rows = statement.query(params![bot_id])?;
    let mut out = Vec::new();
    let mut last_input: Option<UnidentifiedInput> = None;
    let mut current = None;
    while let Some(row) = rows.next()? {
        let conversation_id = row.get::<_, i64>(0)? as u64;
        if current != Some(conversation_id) {
            current = Some(conversation_id);
            last_input = None;
        }
        if within.binary_search(&conversation_id).is_err() {
            continue;
        }
        let role: String = row.get(1)?;
        if role == "user" {
            last_input = Some(UnidentifiedInput {
                conversation_id,
                msg_id: row.get(3)?,
                text: row.get(4)?,
                lang: row.get(5)?,
            });
        } else if let Some(input) = last_input.take()
            && row.get::<_, bool>(2)?
        {
            out.push(input);
        }
    }
    Ok(out)
}

/// The same user's conversations that started before `before` and were active after `since`, newest first.
pub fn history(
    conn: &Connection,
    bot_id: &str,
    user_key: &UserKey,
    exclude: u64,
    before: Micros,
    since: Micros,
) -> Result<Vec<ConversationRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations
         WHERE bot_id = ?1 AND user_key = ?2 AND id != ?3 AND started_at < ?4 AND last_message_at >= ?5
         ORDER BY started_at DESC LIMIT 100"
    ))?;
    let records: Vec<ConversationRecord> = statement
        .query_map(
            params![bot_id, user_key.0, exclude as i64, before, since],
            conversation_from_row,
        )?
        .collect::<Result<_, _>>()?;
    records
        .into_iter()
        .map(|record| with_labels_and_tags(conn, record))
        .collect()
}

/// Every bot with conversations in the hot store, by id (an index-only scan).
pub fn bots(conn: &Connection) -> Result<Vec<BotSummary>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT bot_id, COUNT(*), MAX(last_message_at) FROM conversations
         GROUP BY bot_id ORDER BY bot_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(BotSummary {
            id: row.get(0)?,
            conversations: row.get::<_, i64>(1)? as u64,
            last_message_at: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every node seen in `bot_id`'s messages.
pub fn nodes(conn: &Connection, bot_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT node_id, name, type FROM nodes WHERE bot_id = ?1 ORDER BY node_id",
    )?;
    let rows = statement.query_map(params![bot_id], |row| {
        Ok(NodeRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            node_type: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Trace events of a conversation in time order.
pub fn traces(conn: &Connection, conversation_id: u64) -> Result<Vec<TraceRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT ts, message_id, action, detail, duration_ms, level FROM traces
         WHERE conversation_id = ?1 ORDER BY ts, id",
    )?;
    let rows = statement.query_map(params![conversation_id as i64], |row| {
        Ok(TraceRecord {
            timestamp: row.get(0)?,
            message_id: row.get(1)?,
            action: row.get(2)?,
            detail: row.get(3)?,
            duration_ms: row.get(4)?,
            level: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `limit` conversations changed after `after`, with their messages, read in one snapshot.
///
/// `committed_head` must be a head position read before this call: everything up
/// to it is visible, so a page that is not full brings the reader up to it even
/// across gaps in the change stream.
pub fn changes_since(
    conn: &Connection,
    after: u64,
    limit: usize,
    committed_head: u64,
) -> Result<ChangeBatch, StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = read_changes(conn, after, limit).map(|mut batch| {
        if batch.conversations.len() < limit {
            batch.position = batch.position.max(committed_head);
        }
        batch
    });
    let _ = conn.execute_batch("COMMIT");
    result
}

fn read_changes(conn: &Connection, after: u64, limit: usize) -> Result<ChangeBatch, StoreError> {
    let mut batch = ChangeBatch {
        position: after,
        ..ChangeBatch::default()
    };
    let records: Vec<(ConversationRecord, u64, Micros)> = conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS}, change_seq, COALESCE(placed_at, started_at) FROM conversations
             WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2"
        ))?
        .query_map(params![after as i64, limit as i64], |row| {
            Ok((
                conversation_from_row(row)?,
                row.get::<_, i64>(14)? as u64,
                row.get(15)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    // With a full page, stop at its last position: later tombstones come with the next page.
    let upper = if records.len() == limit {
        records
            .last()
            .map(|(_, seq, _)| *seq as i64)
            .unwrap_or(i64::MAX)
    } else {
        i64::MAX
    };
    for (record, seq, placed_at) in records {
        batch.position = batch.position.max(seq);
        let messages = messages(conn, record.id)?;
        batch.conversations.push(ChangedConversation {
            record: with_labels_and_tags(conn, record)?,
            placed_at,
            messages,
        });
    }
    let mut tombstones = conn.prepare_cached(
        "SELECT change_seq, conversation_id, placed_at FROM tombstones
         WHERE change_seq > ?1 AND change_seq <= ?2 ORDER BY change_seq",
    )?;
    let rows = tombstones.query_map(params![after as i64, upper], |row| {
        Ok((
            row.get::<_, i64>(0)? as u64,
            Tombstone {
                id: row.get::<_, i64>(1)? as u64,
                placed_at: row.get(2)?,
            },
        ))
    })?;
    for row in rows {
        let (seq, tombstone) = row?;
        batch.position = batch.position.max(seq);
        batch.tombstones.push(tombstone);
    }
    Ok(batch)
}

/// Up to `limit` conversations in the order of (`placed_at`, id), after `after`.
pub fn placed_page(
    conn: &Connection,
    after: Option<(Micros, u64)>,
    limit: usize,
) -> Result<Vec<ChangedConversation>, StoreError> {
    let (placed, id) = after.unwrap_or((Micros::MIN, 0));
    let records: Vec<(ConversationRecord, Micros)> = conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS}, placed_at FROM conversations
             WHERE (placed_at, id) > (?1, ?2) ORDER BY placed_at, id LIMIT ?3"
        ))?
        .query_map(params![placed, id as i64, limit as i64], |row| {
            Ok((conversation_from_row(row)?, row.get(14)?))
        })?
        .collect::<Result<_, _>>()?;
    records
        .into_iter()
        .map(|(record, placed_at)| {
            Ok(ChangedConversation {
                messages: messages(conn, record.id)?,
                record: with_labels_and_tags(conn, record)?,
                placed_at,
            })
        })
        .collect()
}

/// Whether any stored conversation is placed in `[from, to)` (see `placed_at`).
pub fn any_placed_in(conn: &Connection, from: Micros, to: Micros) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM conversations WHERE placed_at >= ?1 AND placed_at < ?2)",
        )?
        .query_row(params![from, to], |row| row.get(0))?)
}

/// What the store holds of a bot's Rasa senders, for the events of a later
/// request ([`Senders`]): the session a `session_started` opened (or, without
/// one, the user's latest conversation), its channel and its last input.
pub struct StoredSenders<'c> {
    conn: &'c Connection,
    bot_id: String,
    keyer: &'c UserKeyer,
    /// The first read that failed: [`StoredSenders::finish`] returns it.
    failed: std::cell::RefCell<Option<StoreError>>,
}

impl<'c> StoredSenders<'c> {
    pub fn new(conn: &'c Connection, bot_id: &str, keyer: &'c UserKeyer) -> StoredSenders<'c> {
        StoredSenders {
            conn,
            bot_id: bot_id.to_string(),
            keyer,
            failed: Default::default(),
        }
    }

    /// Whether every read succeeded: a decode that read a failure must not be stored.
    pub fn finish(self) -> Result<(), StoreError> {
        self.failed.into_inner().map_or(Ok(()), Err)
    }

    fn state(&self, user_key: &str, at: Micros) -> Result<SenderState, StoreError> {
        let session: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT session_id FROM session_starts
                 WHERE bot_id = ?1 AND user_key = ?2 AND started_at <= ?3
                 ORDER BY started_at DESC LIMIT 1",
            )?
            .query_row(params![self.bot_id, user_key, at], |row| row.get(0))
            .optional()?;
        let conversation: Option<(i64, String)> = match &session {
            Some(session) => self
                .conn
                .prepare_cached(
                    "SELECT id, channel FROM conversations WHERE bot_id = ?1 AND session_id = ?2",
                )?
                .query_row(params![self.bot_id, session], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?,
            None => self
                .conn
                .prepare_cached(
                    "SELECT id, channel FROM conversations
                     WHERE bot_id = ?1 AND user_key = ?2 AND started_at <= ?3
                     ORDER BY last_message_at DESC LIMIT 1",
                )?
                .query_row(params![self.bot_id, user_key, at], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?,
        };
        let Some((conversation, channel)) = conversation else {
            return Ok(SenderState {
                session,
                ..SenderState::default()
            });
        };
        let input = self
            .conn
            .prepare_cached(
                "SELECT msg_id, intent FROM messages
                 WHERE conversation_id = ?1 AND role = 'user' AND ts <= ?2
                 ORDER BY ts DESC, seq DESC LIMIT 1",
            )?
            .query_row(params![conversation, at], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        Ok(SenderState {
            session,
            channel: Some(channel),
            input,
        })
    }
}

impl Senders for StoredSenders<'_> {
    fn key(&self, sender: &str) -> String {
        self.keyer.key(&self.bot_id, sender).0
    }

    fn before(&self, sender: &str, at: Micros) -> SenderState {
        self.state(&self.key(sender), at).unwrap_or_else(|err| {
            self.failed.borrow_mut().get_or_insert(err);
            SenderState::default()
        })
    }
}
