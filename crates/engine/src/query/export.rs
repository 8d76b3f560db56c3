//! Export: every conversation a search matches, read from the store a chunk
//! at a time and handed over a small bounded channel, so the memory an export
//! takes doesn't grow with its size — a million messages go out through a
//! few chunks in flight.

use super::{QueryError, SearchRequest, SearchService};
use crate::store::{ConversationRecord, MessageRecord, read};
use convlog_core::Micros;
use tokio::sync::mpsc;

/// Conversations read from the store per chunk.
const CHUNK: usize = 32;

/// Chunks read ahead of the one being sent.
const AHEAD: usize = 2;

/// One exported conversation: its row and, when asked for, its messages.
#[derive(Debug)]
pub struct Exported {
    pub record: ConversationRecord,
    /// The first thing the user said (see `ConversationHit::preview`).
    pub preview: Option<String>,
    pub messages: Vec<MessageRecord>,
}

impl SearchService {
    /// Starts an export of every conversation of `bot` that `request`
    /// matches (the default time range applies), in ascending id order, with
    /// their messages if `messages`. The matches are found before this
    /// returns (a bad request fails here); the rows then arrive in chunks.
    /// Dropping the receiver stops the reading.
    pub async fn export(
        &self,
        bot: String,
        request: SearchRequest,
        now: Micros,
        messages: bool,
    ) -> Result<mpsc::Receiver<Result<Vec<Exported>, QueryError>>, QueryError> {
        let ids = self.matching_ids(bot.clone(), request, now).await?;
        let (sender, receiver) = mpsc::channel(AHEAD);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for chunk in ids.chunks(CHUNK) {
                let rows = store.read(|conn| {
                    read::conversations(conn, &bot, chunk)?
                        .into_iter()
                        .map(|record| {
                            let preview = read::first_user_text(
                                conn,
                                record.id,
                                super::search::PREVIEW_CHARS,
                            )?;
                            let messages = match messages {
                                true => read::messages(conn, record.id)?,
                                false => Vec::new(),
                            };
                            Ok(Exported {
                                record,
                                preview,
                                messages,
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                });
                let failed = rows.is_err();
                if sender
                    .blocking_send(rows.map_err(QueryError::from))
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}
