//! The logs convlog consumes (a NATS JetStream stream, …): how far each has
//! been stored, and what it carried that could not be (dead letters).
//!
//! A source's position is written in the same transaction as the messages and
//! dead letters it carried — the pattern of Quickwit's Kafka source, which
//! publishes a split and its offsets in one metastore transaction. A crash
//! loses both or neither, so after a restart consumption resumes right after
//! what is stored: nothing lost, nothing stored twice.

use super::ingest::IngestOutcome;
use super::{StoreError, WriteCtx};
use crate::ingest::rasa::SessionStart;
use crate::settings::SessionConfig;
use convlog_core::{Micros, NewMessage, NewTrace};
use rusqlite::{Connection, OptionalExtension, params};

/// Bytes of a dead letter's payload kept (the rest is cut).
pub const DEAD_LETTER_BYTES: usize = 4096;

/// Dead letters kept per source; older ones are forgotten.
pub const KEPT_DEAD_LETTERS: i64 = 10_000;

/// A record of a source that could not be stored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its position in the source (a stream sequence).
    pub position: u64,
    pub reason: String,
    /// What it carried, cut to [`DEAD_LETTER_BYTES`].
    pub payload: Vec<u8>,
}

/// What one batch of a source stores.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub messages: Vec<NewMessage>,
    /// Trace events (Rasa's actions): kept like those of `POST /v1/traces`.
    pub traces: Vec<NewTrace>,
    /// Sessions Rasa's `session_started` opened, by bot.
    pub sessions: Vec<(String, Vec<SessionStart>)>,
    pub dead: Vec<DeadLetter>,
}

/// What a batch stored.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SourceOutcome {
    pub messages: IngestOutcome,
    /// Trace events stored, and dropped (no conversation with debug logging).
    pub traces: usize,
    pub traces_dropped: usize,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    pub letter: DeadLetter,
    pub received_at: Micros,
}

/// What the store knows of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceState {
    pub source: String,
    /// The last position stored.
    pub position: u64,
    pub updated_at: Micros,
    /// Dead letters kept.
    pub dead_letters: u64,
}

/// The last position of `source` stored, if any.
pub fn position(conn: &Connection, source: &str) -> Result<Option<u64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT position FROM source_positions WHERE source = ?1")?
        .query_row(params![source], |row| row.get::<_, i64>(0))
        .optional()?
        .map(|p| p as u64))
}

/// Every source the store has a position of.
pub fn states(conn: &Connection) -> Result<Vec<SourceState>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT p.source, p.position, p.updated_at,
                (SELECT COUNT(*) FROM source_dead_letters d WHERE d.source = p.source)
           FROM source_positions p ORDER BY p.source",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(SourceState {
            source: row.get(0)?,
            position: row.get::<_, i64>(1)? as u64,
            updated_at: row.get(2)?,
            dead_letters: row.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The dead letters of `source`, newest first, at most `limit`.
pub fn dead_letters(
    conn: &Connection,
    source: &str,
    limit: usize,
) -> Result<Vec<StoredDeadLetter>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT position, received_at, reason, payload FROM source_dead_letters
          WHERE source = ?1 ORDER BY position DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![source, limit as i64], |row| {
        Ok(StoredDeadLetter {
            letter: DeadLetter {
                position: row.get::<_, i64>(0)? as u64,
                reason: row.get(2)?,
                payload: row.get(3)?,
            },
            received_at: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl WriteCtx<'_> {
    /// Forgets every dead letter whose payload holds `needle` (an end user's
    /// raw id as JSON, at their erasure: a dead letter is kept as it came,
    /// unredacted); returns how many.
    pub fn forget_dead_letters_holding(&mut self, needle: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM source_dead_letters WHERE instr(payload, ?1) > 0")?
            .execute(params![needle])? as u64)
    }

    /// Stores what one batch of `source` carried, up to and including
    /// `position`: its session starts, messages, trace events and dead
    /// letters, and the position, all in this transaction. A batch at or
    /// before the stored position was stored already: it changes nothing.
    pub fn ingest_from_source(
        &mut self,
        source: &str,
        position: u64,
        batch: SourceBatch,
        sessions: &SessionConfig,
        capture_all_traces: bool,
        now: Micros,
    ) -> Result<SourceOutcome, StoreError> {
        if self::position(self.conn, source)?.is_some_and(|stored| stored >= position) {
            return Ok(SourceOutcome::default());
        }
        for (bot_id, starts) in &batch.sessions {
            self.record_session_starts(bot_id, starts)?;
        }
        let messages = match batch.messages.is_empty() {
            true => IngestOutcome::default(),
            false => self.ingest(batch.messages, sessions)?,
        };
        let (traces, traces_dropped) = match batch.traces.is_empty() {
            true => (0, 0),
            false => self.store_traces(batch.traces, sessions, capture_all_traces)?,
        };
        let dead = batch.dead;
        for letter in &dead {
            let payload = &letter.payload[..letter.payload.len().min(DEAD_LETTER_BYTES)];
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO source_dead_letters (source, position, received_at, reason, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![source, letter.position as i64, now, letter.reason, payload])?;
        }
        if !dead.is_empty() {
            self.conn
                .prepare_cached(
                    "DELETE FROM source_dead_letters WHERE source = ?1 AND position <
                       (SELECT position FROM source_dead_letters WHERE source = ?1
                         ORDER BY position DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(params![source, KEPT_DEAD_LETTERS - 1])?;
        }
        self.conn
            .prepare_cached(
                "INSERT INTO source_positions (source, position, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            )?
            .execute(params![source, position as i64, now])?;
        Ok(SourceOutcome {
            messages,
            traces,
            traces_dropped,
        })
    }
}
