//! The indexer: one thread owns the `IndexWriter`, follows the store's change
//! stream and commits every refresh interval with its position in the payload.

use super::{CommitPayload, IndexError, SearchIndex, document};
use crate::config::IndexConfig;
use crate::store::{Store, read_changes_page};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tantivy::{IndexWriter, TantivyDocument, Term};

/// Conversations read and committed per step while catching up.
const PAGE: usize = 10_000;

/// How far the index is, and whether it is healthy; shared with `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct IndexState {
    position: AtomicU64,
    /// The store head when the service started: ready once the index reaches it.
    startup_head: u64,
    failure: Mutex<Option<String>>,
    commits: AtomicU64,
}

impl IndexState {
    /// The store position the index covers.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// `Ok` when caught up since start and healthy; otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(failure) = self.failure.lock().expect("failure lock").clone() {
            return Err(format!("index writer failing: {failure}"));
        }
        let position = self.position();
        if position < self.startup_head {
            return Err(format!(
                "index catching up: at {position} of {}",
                self.startup_head
            ));
        }
        Ok(())
    }

    /// Number of commits made since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The running indexer thread.
pub struct Indexer {
    pub state: Arc<IndexState>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Indexer {
    /// Starts following the store from `position`; ready once it reaches `ready_at`.
    pub fn spawn(
        index: SearchIndex,
        store: Store,
        config: IndexConfig,
        position: u64,
        ready_at: u64,
    ) -> Result<Indexer, IndexError> {
        let state = Arc::new(IndexState {
            position: AtomicU64::new(position),
            startup_head: ready_at,
            failure: Mutex::new(None),
            commits: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel();
        let writer = open_writer(&index, &config)?;
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || run(index, store, config, writer, thread_state, stopped))?;
        Ok(Indexer {
            state,
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Indexes what is left, commits and stops.
    pub fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().expect("stop lock").take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }

    /// Follows the store until the index covers everything committed now (blocking).
    ///
    /// `page` hears of every commit (position, conversations written) and can stop the build by returning false.
    pub fn catch_up_once(
        index: &SearchIndex,
        store: &Store,
        config: &IndexConfig,
        position: u64,
        page: impl FnMut(u64, usize) -> bool,
    ) -> Result<u64, IndexError> {
        let mut writer = open_writer(index, config)?;
        let position = sync(index, store, &mut writer, position, page)?;
        writer.wait_merging_threads()?;
        Ok(position)
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writers of both parts.
struct Writers {
    conversations: IndexWriter<TantivyDocument>,
    messages: IndexWriter<TantivyDocument>,
}

impl Writers {
    fn rollback(&mut self) {
        let _ = self.conversations.rollback();
        let _ = self.messages.rollback();
    }

    fn wait_merging_threads(self) -> Result<(), IndexError> {
        self.conversations.wait_merging_threads()?;
        self.messages.wait_merging_threads()?;
        Ok(())
    }
}

fn open_writer(index: &SearchIndex, config: &IndexConfig) -> Result<Writers, IndexError> {
    let threads = if config.writer_threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        config.writer_threads
    };
    // Message documents outnumber conversation documents about twelve to one.
    let message_threads = threads.div_ceil(2).max(1);
    let conversation_threads = (threads - message_threads).max(1);
    let budget =
        |share: usize, threads: usize| (config.writer_memory / 4 * share).max(15_000_000 * threads);
    Ok(Writers {
        conversations: index
            .conversations
            .index
            .writer_with_num_threads(conversation_threads, budget(1, conversation_threads))?,
        messages: index
            .messages
            .index
            .writer_with_num_threads(message_threads, budget(3, message_threads))?,
    })
}

fn run(
    index: SearchIndex,
    store: Store,
    config: IndexConfig,
    mut writer: Writers,
    state: Arc<IndexState>,
    stopped: mpsc::Receiver<()>,
) {
    let mut stopping = false;
    loop {
        let started = Instant::now();
        let committed = |position: u64, _conversations: usize| {
            state.commits.fetch_add(1, Ordering::Relaxed);
            state.position.store(position, Ordering::Release);
            true
        };
        match sync(&index, &store, &mut writer, state.position(), committed) {
            Ok(_) => {
                state.failure.lock().expect("failure lock").take();
            }
            Err(err) => {
                tracing::error!(error = %err, "index commit failed; retrying from the last commit");
                *state.failure.lock().expect("failure lock") = Some(err.to_string());
                writer.rollback();
                if stopping {
                    break;
                }
            }
        }
        if stopping {
            break;
        }
        let wait = config.refresh_interval.saturating_sub(started.elapsed());
        match stopped.recv_timeout(wait.max(Duration::from_millis(1))) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => stopping = true,
        }
    }
    if let Err(err) = writer.wait_merging_threads() {
        tracing::warn!(error = %err, "index merge did not finish at shutdown");
    }
    tracing::debug!(position = state.position(), "indexer stopped");
}

/// Indexes every change after `position` that is committed in the store, committing page by page
/// and reporting each committed position.
fn sync(
    index: &SearchIndex,
    store: &Store,
    writer: &mut Writers,
    mut position: u64,
    mut committed: impl FnMut(u64, usize) -> bool,
) -> Result<u64, IndexError> {
    let fields = *index.fields();
    loop {
        let head = store.head();
        if head <= position {
            return Ok(position);
        }
        let batch = store.read(|conn| read_changes_page(conn, position, PAGE, head))?;
        let deleted = batch
            .tombstones
            .iter()
            .chain(batch.conversations.iter().map(|(record, _)| &record.id));
        for id in deleted {
            let term = Term::from_field_u64(fields.conv_id, *id);
            writer.conversations.delete_term(term.clone());
            writer.messages.delete_term(term);
        }
        for (record, messages) in &batch.conversations {
            let (conversation, message_docs) = document::documents(&fields, record, messages);
            writer.conversations.add_document(conversation)?;
            for doc in message_docs {
                writer.messages.add_document(doc)?;
            }
        }
        let payload = serde_json::to_string(&CommitPayload {
            schema_version: index.schema.version,
            position: batch.position,
        })
        .expect("payload serialises");
        // Messages first: after a crash between the two, the conversation part's older
        // position makes the restart redo this batch in both.
        for part in [&mut writer.messages, &mut writer.conversations] {
            let mut commit = part.prepare_commit()?;
            commit.set_payload(&payload);
            commit.commit()?;
        }
        index.messages.reader.reload()?;
        index.conversations.reader.reload()?;
        tracing::debug!(
            conversations = batch.conversations.len(),
            tombstones = batch.tombstones.len(),
            position = batch.position,
            "index committed"
        );
        position = batch.position;
        if !committed(position, batch.conversations.len()) || batch.conversations.len() < PAGE {
            return Ok(position);
        }
    }
}
