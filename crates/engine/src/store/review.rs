//! Review actions: labels, flags, debug switches and share links (bulk
//! actions over many conversations are `bulk`).
//!
//! Each change is a store transaction that also moves the conversation up the
//! change stream, so the index picks it up at its next commit; a crash between
//! the two is repaired by the indexer catching up at restart.

use super::schema::label_key;
use super::{StoreError, WriteCtx};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};

/// A share link as stored (by the hash of its token).
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRecord {
    pub bot_id: String,
    pub conversation_id: u64,
    pub expires_at: Micros,
    pub revoked_at: Option<Micros>,
    pub reveal: Reveal,
}

/// What of the reviewers' work a share link shows beside the transcript; by
/// default nothing (the creator opts in per link).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reveal {
    /// The conversation's labels.
    pub labels: bool,
    /// Whether it is flagged, when, and the flag note.
    pub flag: bool,
    /// Each tag's rule, rule version and triggering messages.
    pub tag_details: bool,
    /// Each message's `metadata`.
    pub metadata: bool,
}

impl Reveal {
    /// The names a share request may list, in stored order.
    pub const NAMES: [&str; 4] = ["labels", "flag", "tag_details", "metadata"];

    fn field(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "labels" => Some(&mut self.labels),
            "flag" => Some(&mut self.flag),
            "tag_details" => Some(&mut self.tag_details),
            "metadata" => Some(&mut self.metadata),
            _ => None,
        }
    }

    /// Parses a list of names; `Err` names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Reveal, String> {
        let mut reveal = Reveal::default();
        for name in names {
            *reveal.field(name).ok_or_else(|| name.to_string())? = true;
        }
        Ok(reveal)
    }

    /// The names set, in [`Reveal::NAMES`] order.
    pub fn names(self) -> Vec<&'static str> {
        let mut copy = self;
        Reveal::NAMES
            .into_iter()
            .filter(|name| *copy.field(name).expect("a known name"))
            .collect()
    }
}

/// Why a change to a conversation held by the archive is refused.
const HELD: &str = "the conversation is held by the archive (being archived, or restored read-only); \
     it can't be changed";

impl WriteCtx<'_> {
    /// Fails with `NotFound` unless conversation `id` belongs to `bot_id`.
    fn check_owner(&self, bot_id: &str, id: u64) -> Result<(), StoreError> {
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1 AND bot_id = ?2")?
            .exists(params![id as i64, bot_id])?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// Like `check_owner`, and fails with `Conflict` while the archive holds the conversation.
    fn check_changeable(&self, bot_id: &str, id: u64) -> Result<(), StoreError> {
        self.check_owner(bot_id, id)?;
        if super::archive::held(self.conn, id)? {
            return Err(StoreError::Conflict(HELD.into()));
        }
        Ok(())
    }

    /// The bot's spelling of a label, recording `name` as it when the bot has none yet.
    pub(super) fn canonical_label(
        &mut self,
        bot_id: &str,
        name: &str,
    ) -> Result<(String, String), StoreError> {
        let key = label_key(name);
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO label_names (bot_id, name_key, name) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![bot_id, key, name])?;
        let spelling: String = self
            .conn
            .prepare_cached("SELECT name FROM label_names WHERE bot_id = ?1 AND name_key = ?2")?
            .query_row(params![bot_id, key], |row| row.get(0))?;
        Ok((key, spelling))
    }

    pub(super) fn add_label_unchecked(
        &mut self,
        bot_id: &str,
        id: u64,
        name: &str,
        now: Micros,
        max_labels: usize,
    ) -> Result<bool, StoreError> {
        let (count, present): (i64, bool) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(MAX(name_key = ?2), 0) FROM labels WHERE conversation_id = ?1",
            )?
            .query_row(params![id as i64, label_key(name)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        if !present && count as usize >= max_labels {
            return Err(StoreError::Limit {
                name: "label",
                reason: format!(
                    "conversation {} has {count} labels already; at most {max_labels} are kept (review.max_labels)",
                    convlog_core::ConversationId(id)
                ),
            });
        }
        let (key, spelling) = self.canonical_label(bot_id, name)?;
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO labels (conversation_id, name_key, name, added_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id as i64, key, spelling, now])?;
        Ok(added > 0)
    }

    pub(super) fn remove_label_unchecked(
        &mut self,
        id: u64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let removed = self
            .conn
            .prepare_cached("DELETE FROM labels WHERE conversation_id = ?1 AND name_key = ?2")?
            .execute(params![id as i64, label_key(name)])?;
        Ok(removed > 0)
    }

    pub(super) fn set_flag_unchecked(
        &mut self,
        id: u64,
        flag: Option<(Micros, Option<&str>)>,
    ) -> Result<bool, StoreError> {
        let changed = match flag {
            Some((at, note)) => self
                .conn
                .prepare_cached(
                    "UPDATE conversations SET flagged_at = COALESCE(flagged_at, ?2), flag_note = COALESCE(?3, flag_note)
                     WHERE id = ?1 AND (flagged_at IS NULL OR (?3 IS NOT NULL AND flag_note IS NOT ?3))",
                )?
                .execute(params![id as i64, at, note])?,
            None => self
                .conn
                .prepare_cached(
                    "UPDATE conversations SET flagged_at = NULL, flag_note = NULL WHERE id = ?1 AND flagged_at IS NOT NULL",
                )?
                .execute(params![id as i64])?,
        };
        Ok(changed > 0)
    }

    /// Adds a label (idempotent); the index follows.
    pub fn add_label(
        &mut self,
        bot_id: &str,
        id: u64,
        name: &str,
        now: Micros,
        max_labels: usize,
    ) -> Result<(), StoreError> {
        self.check_changeable(bot_id, id)?;
        if self.add_label_unchecked(bot_id, id, name, now, max_labels)? {
            self.touch_conversation(id)?;
        }
        Ok(())
    }

    /// Removes a label (idempotent).
    pub fn remove_label(&mut self, bot_id: &str, id: u64, name: &str) -> Result<(), StoreError> {
        self.check_changeable(bot_id, id)?;
        if self.remove_label_unchecked(id, name)? {
            self.touch_conversation(id)?;
        }
        Ok(())
    }

    /// Flags (with when and an optional note) or unflags a conversation.
    pub fn set_flag(
        &mut self,
        bot_id: &str,
        id: u64,
        flag: Option<(Micros, Option<&str>)>,
    ) -> Result<(), StoreError> {
        self.check_changeable(bot_id, id)?;
        if self.set_flag_unchecked(id, flag)? {
            self.touch_conversation(id)?;
        }
        Ok(())
    }

    /// Turns debug logging on or off for a conversation.
    pub fn set_debug(&mut self, bot_id: &str, id: u64, on: bool) -> Result<(), StoreError> {
        self.check_owner(bot_id, id)?;
        let changed = self
            .conn
            .prepare_cached("UPDATE conversations SET debug = ?2 WHERE id = ?1 AND debug != ?2")?
            .execute(params![id as i64, on])?;
        if changed > 0 {
            self.touch_conversation(id)?;
        }
        Ok(())
    }

    /// Records a share link by the hash of its token.
    pub fn create_share(
        &mut self,
        bot_id: &str,
        id: u64,
        token_hash: &str,
        now: Micros,
        expires_at: Micros,
        reveal: Reveal,
    ) -> Result<(), StoreError> {
        self.check_owner(bot_id, id)?;
        self.conn
            .prepare_cached(
                "INSERT INTO shares (token_hash, bot_id, conversation_id, created_at, expires_at, reveal) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![token_hash, bot_id, id as i64, now, expires_at, reveal.names().join(",")])?;
        Ok(())
    }

    /// Revokes a share link of `bot_id`; `NotFound` when there is none.
    pub fn revoke_share(
        &mut self,
        bot_id: &str,
        token_hash: &str,
        now: Micros,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE shares SET revoked_at = COALESCE(revoked_at, ?3) WHERE token_hash = ?1 AND bot_id = ?2",
            )?
            .execute(params![token_hash, bot_id, now])?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// The share link with this token hash, if any.
pub fn share(conn: &Connection, token_hash: &str) -> Result<Option<ShareRecord>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT bot_id, conversation_id, expires_at, revoked_at, reveal FROM shares WHERE token_hash = ?1",
        )?
        .query_row(params![token_hash], |row| {
            let reveal: String = row.get(4)?;
            Ok(ShareRecord {
                bot_id: row.get(0)?,
                conversation_id: row.get::<_, i64>(1)? as u64,
                expires_at: row.get(2)?,
                revoked_at: row.get(3)?,
                // Names this binary doesn't know (written by a newer one) reveal nothing.
                reveal: Reveal::parse(reveal.split(',').filter(|name| {
                    Reveal::NAMES.contains(name)
                }))
                .unwrap_or_default(),
            })
        })
        .optional()?)
}

/// The bot's spellings of these labels (unknown labels are kept as given).
pub fn canonical_labels(
    conn: &Connection,
    bot_id: &str,
    names: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT name FROM label_names WHERE bot_id = ?1 AND name_key = ?2")?;
    names
        .iter()
        .map(|name| {
            Ok(statement
                .query_row(params![bot_id, label_key(name)], |row| row.get(0))
                .optional()?
                .unwrap_or_else(|| name.clone()))
        })
        .collect()
}

/// Ids of the bot's conversations with debug logging on, newest activity first.
pub fn debug_conversations(conn: &Connection, bot_id: &str) -> Result<Vec<u64>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id FROM conversations WHERE bot_id = ?1 AND debug = 1 ORDER BY last_message_at DESC",
    )?;
    let rows = statement.query_map(params![bot_id], |row| Ok(row.get::<_, i64>(0)? as u64))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
