//! The live tail: messages ingested after a stream opened that match a
//! search, as they become searchable.
//!
//! A follower wakes every [`POLL`] and, when the index has committed since it
//! last looked, asks it for the messages after the last one it sent (store
//! sequence order, which is ingest order) that match the filters — the same
//! query a message search runs, so `q`, tags and labels mean what they mean
//! there. It never touches ingest: it reads the index. A client that reads
//! too slowly fills its bounded buffer; once the buffer has stayed full for
//! [`SLOW`], the rest of what was read is dropped and counted in a
//! [`TailEvent::Dropped`] sent as soon as there is room, and the follower
//! moves on to what is new.

use super::{QueryError, SearchRequest, SearchService};
use crate::settings::TailConfig;
use crate::store::MessageRecord;
use std::time::Duration;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, watch};

/// How often a follower looks for a new index commit.
pub const POLL: Duration = Duration::from_millis(200);
/// Most messages read per look; more are read at the next one, right away.
const PAGE: usize = 1000;
/// How long a full buffer may stay full before its client counts as slow.
pub const SLOW: Duration = Duration::from_secs(1);

/// What a tail sends.
#[derive(Debug, Clone)]
pub enum TailEvent {
    /// A new matching message, with its conversation's channel.
    Message(Box<(MessageRecord, String)>),
    /// Matching messages the buffer had no room for since the last event.
    Dropped(u64),
}

/// Starts following `request` over `bot`'s messages stored after `after`
/// (default: now). The query is checked first, so a bad one is an error here,
/// not a silent stream. The follower stops when the receiver is dropped or
/// `stop` turns true.
pub async fn follow(
    search: SearchService,
    bot: String,
    request: SearchRequest,
    after: Option<u64>,
    settings: &TailConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<TailEvent>, QueryError> {
    let after = match after {
        Some(after) => after,
        None => search.latest_message()?,
    };
    let first = search
        .tail_page(bot.clone(), request.clone(), after, PAGE)
        .await?;
    let (tx, rx) = mpsc::channel(settings.buffer);
    tokio::spawn(async move {
        let mut page = first;
        let mut seen_view = search.view_id();
        let mut dropped = 0u64;
        loop {
            let full = page.messages.len() >= PAGE;
            let after = page.last;
            // A client that takes nothing for SLOW while its buffer is full
            // is slow: the rest of this page is dropped and counted.
            let mut slow = false;
            for message in page.messages {
                if !slow && dropped > 0 {
                    match tx.send_timeout(TailEvent::Dropped(dropped), SLOW).await {
                        Ok(()) => dropped = 0,
                        Err(SendTimeoutError::Timeout(_)) => slow = true,
                        Err(SendTimeoutError::Closed(_)) => return,
                    }
                }
                if slow {
                    dropped += 1;
                    continue;
                }
                match tx
                    .send_timeout(TailEvent::Message(Box::new(message)), SLOW)
                    .await
                {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => {
                        dropped += 1;
                        slow = true;
                    }
                    Err(SendTimeoutError::Closed(_)) => return,
                }
            }
            if dropped > 0 && tx.try_send(TailEvent::Dropped(dropped)).is_ok() {
                dropped = 0;
            }
            if !full {
                // Wait for the next index commit.
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        () = tx.closed() => return,
                        _ = stop.changed() => return,
                    }
                    if *stop.borrow() {
                        return;
                    }
                    let view = search.view_id();
                    if view != seen_view || dropped > 0 {
                        seen_view = view;
                        break;
                    }
                }
            }
            page = match search
                .tail_page(bot.clone(), request.clone(), after, PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, "live tail: search failed; retrying");
                    super::TailPage {
                        messages: Vec::new(),
                        last: after,
                    }
                }
            };
        }
    });
    Ok(rx)
}
