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
//!
//! Tails are observers. While ingest outruns the index (a burst), a follower
//! reads at most a page every [`PACE`] and catches up once the index has:
//! the cores go to ingest and indexing. Their searches, reads and rendering
//! run on their own threads at a lower scheduling priority (nice +10 on
//! Linux). The messages they send come from [`Recent`](crate::index::Recent),
//! which the indexer fills, and the store only for what isn't there.

use super::{QueryError, SearchRequest, SearchService, TailPage};
pub use crate::index::Tailed;
use crate::settings::TailConfig;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, watch};

/// How often a follower looks for a new index commit.
pub const POLL: Duration = Duration::from_millis(200);
/// Most messages read per look; more are read at the next one, right away.
const PAGE: usize = 1000;
/// How long a full buffer may stay full before its client counts as slow.
pub const SLOW: Duration = Duration::from_secs(1);
/// How often a tail reads a page while ingest bursts.
const PACE: Duration = Duration::from_secs(1);

/// What a tail sends.
#[derive(Debug, Clone)]
pub enum TailEvent {
    /// A new matching message.
    Message(Arc<Tailed>),
    /// Matching messages the buffer had no room for since the last event.
    Dropped(u64),
}

/// How a reader writes a message (made once per message, on the tails' threads).
pub type Render = fn(&Tailed) -> String;

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
    render: Render,
    mut stop: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<TailEvent>, QueryError> {
    let after = match after {
        Some(after) => after,
        None => search.latest_message()?,
    };
    // Counted before the first read: the indexer hands over what comes after.
    let following = search.recent().follow(after);
    let page = Page {
        search: search.clone(),
        bot,
        request,
        render,
    };
    let first = page.read(after).await?;
    let (tx, rx) = mpsc::channel(settings.buffer);
    let page_of = page;
    tokio::spawn(async move {
        let mut page = first;
        let mut last_read = Instant::now();
        let mut seen_view = search.view_id();
        let mut dropped = 0u64;
        loop {
            let full = page.messages.len() >= PAGE;
            let after = page.last;
            following.read_to(after);
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
                match tx.send_timeout(TailEvent::Message(message), SLOW).await {
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
            // Tails yield to ingest: while a burst keeps the index behind,
            // a tail reads at most a page every PACE, and catches up after.
            while search.index_outrun() {
                let wait = PACE.saturating_sub(last_read.elapsed());
                if wait.is_zero() {
                    break;
                }
                let waited = Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(wait.min(POLL)) => {}
                    () = tx.closed() => return,
                    _ = stop.changed() => return,
                }
                search.recent().yielded(waited.elapsed());
                if *stop.borrow() {
                    return;
                }
            }
            last_read = Instant::now();
            page = page_of.read(after).await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "live tail: search failed; retrying");
                TailPage {
                    messages: Vec::new(),
                    last: after,
                }
            });
        }
    });
    Ok(rx)
}

/// What one tail reads.
struct Page {
    search: SearchService,
    bot: String,
    request: SearchRequest,
    render: Render,
}

impl Page {
    /// The next page after sequence `after`, read and rendered on the tails' threads.
    async fn read(&self, after: u64) -> Result<TailPage, QueryError> {
        let (search, bot, request, render) = (
            self.search.clone(),
            self.bot.clone(),
            self.request.clone(),
            self.render,
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        threads().spawn(move || {
            let page = search.tail_page(&bot, &request, after, PAGE);
            if let Ok(page) = &page {
                for message in &page.messages {
                    message.rendered(render);
                }
            }
            let _ = tx.send(page);
        });
        rx.await
            .map_err(|_| QueryError::Task("a live tail's thread stopped".into()))?
    }
}

/// The tails' threads (one per core), at a lower priority than the rest.
fn threads() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| crate::index::per_core_pool("tail", |_| lower_priority()))
}

/// Lowers the calling thread's scheduling priority (nice +10).
fn lower_priority() {
    // On Linux a thread id names one thread to setpriority.
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread, no memory involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}
