//! The indexer: one thread owns the `IndexWriter`, follows the store's change
//! stream and commits every refresh interval with its position in the payload.

use super::{CommitPayload, IndexError, PartitionKey, Recent, SearchIndex, document};
use crate::settings::{IndexConfig, Languages};
use crate::store::read::{MessageRecord, any_placed_in, placed_page};
use crate::store::{ChangedConversation, Store, read_changes_page};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tantivy::{IndexWriter, TantivyDocument, Term};

/// Conversations read and committed per step while catching up.
const PAGE: usize = 2_500;

/// Conversations the indexer remembers (~40 bytes each) before starting over.
const KNOWN_MAX: usize = 1 << 20;

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
    /// Starts following the store from `position`; ready once it reaches
    /// `ready_at`. New messages are handed over to `recent` (for live tails).
    pub fn spawn(
        index: SearchIndex,
        store: Store,
        config: IndexConfig,
        position: u64,
        ready_at: u64,
        recent: Arc<Recent>,
    ) -> Result<Indexer, IndexError> {
        let state = Arc::new(IndexState {
            position: AtomicU64::new(position),
            startup_head: ready_at,
            failure: Mutex::new(None),
            commits: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel();
        let writer = Writers::new(&config);
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || run(index, store, config, writer, thread_state, &recent, stopped))?;
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
        let mut writer = Writers::new(config);
        let position = sync(
            index,
            store,
            &mut writer,
            &mut Known::default(),
            position,
            None,
            page,
        )?;
        writer.wait_merging_threads()?;
        Ok(position)
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Partitions whose writers stay open between pages: live ingest touches the
/// newest one or two; a page of older changes opens others and the least
/// recently used are closed again (committed, they lose nothing).
const OPEN_PARTITIONS: usize = 3;

/// The writers of one partition's two indexes.
struct PartitionWriter {
    conversations: IndexWriter<TantivyDocument>,
    messages: IndexWriter<TantivyDocument>,
    /// The page that last used it.
    used: u64,
}

/// The open partition writers and what they may use.
struct Writers {
    open: BTreeMap<PartitionKey, PartitionWriter>,
    threads: usize,
    memory: usize,
    pages: u64,
    /// The language each message is analysed in.
    languages: Arc<Languages>,
}

impl Writers {
    fn new(config: &IndexConfig) -> Writers {
        let threads = if config.writer_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.writer_threads
        };
        Writers {
            open: BTreeMap::new(),
            threads,
            memory: config.writer_memory,
            pages: 0,
            languages: config.languages.clone(),
        }
    }

    /// The writer of `key`'s partition, opened (and the partition created) if needed.
    fn get(
        &mut self,
        index: &SearchIndex,
        key: PartitionKey,
    ) -> Result<&mut PartitionWriter, IndexError> {
        if !self.open.contains_key(&key) {
            let partition = index.partition(key)?;
            // Message documents outnumber conversation documents about twelve to one.
            let message_threads = self.threads.div_ceil(2).max(1);
            let conversation_threads = (self.threads - message_threads).max(1);
            let share = self.memory / OPEN_PARTITIONS / 4;
            let budget =
                |quarters: usize, threads: usize| (share * quarters).max(15_000_000 * threads);
            let writer = PartitionWriter {
                conversations: partition.conversations.index.writer_with_num_threads(
                    conversation_threads,
                    budget(1, conversation_threads),
                )?,
                messages: partition
                    .messages
                    .index
                    .writer_with_num_threads(message_threads, budget(3, message_threads))?,
                used: self.pages,
            };
            // A process killed mid-commit leaves files its meta never referenced (a
            // `.del` file, say); the next commit would want the same name and fail
            // with FileAlreadyExists forever. Remove them before writing anything.
            writer.conversations.garbage_collect_files().wait()?;
            writer.messages.garbage_collect_files().wait()?;
            self.open.insert(key, writer);
        }
        let writer = self.open.get_mut(&key).expect("just opened");
        writer.used = self.pages;
        Ok(writer)
    }

    /// Closes the writer of a partition being dropped, discarding what it holds.
    fn discard(&mut self, key: PartitionKey) {
        if let Some(mut writer) = self.open.remove(&key) {
            let _ = writer.conversations.rollback();
            let _ = writer.messages.rollback();
        }
    }

    /// Closes the least recently used writers beyond [`OPEN_PARTITIONS`] (all committed).
    fn close_idle(&mut self) {
        while self.open.len() > OPEN_PARTITIONS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, writer)| writer.used)
                .map(|(key, _)| *key)
                .expect("non-empty");
            if let Some(writer) = self.open.remove(&oldest) {
                let _ = writer.conversations.wait_merging_threads();
                let _ = writer.messages.wait_merging_threads();
            }
        }
    }

    /// Back to the last commit, without the files the failed attempt left
    /// (the retry would want the same names).
    fn rollback(&mut self) {
        for writer in self.open.values_mut() {
            let _ = writer.conversations.rollback();
            let _ = writer.messages.rollback();
            let _ = writer.conversations.garbage_collect_files().wait();
            let _ = writer.messages.garbage_collect_files().wait();
        }
    }

    fn wait_merging_threads(self) -> Result<(), IndexError> {
        for (_, writer) in self.open {
            writer.conversations.wait_merging_threads()?;
            writer.messages.wait_merging_threads()?;
        }
        Ok(())
    }
}

fn run(
    index: SearchIndex,
    store: Store,
    config: IndexConfig,
    mut writer: Writers,
    state: Arc<IndexState>,
    recent: &Recent,
    stopped: mpsc::Receiver<()>,
) {
    let mut stopping = false;
    let mut known = Known::default();
    loop {
        let started = Instant::now();
        let committed = |position: u64, _conversations: usize| {
            state.commits.fetch_add(1, Ordering::Relaxed);
            state.position.store(position, Ordering::Release);
            // Keeps the store's memory of commits to those not yet searchable.
            store.behind_for(position);
            true
        };
        match sync(
            &index,
            &store,
            &mut writer,
            &mut known,
            state.position(),
            Some(recent),
            committed,
        ) {
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

/// What the index holds of one conversation's message documents, as this indexer committed them.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    /// Message documents of the conversation.
    messages: usize,
    /// The highest message `seq` among them.
    max_seq: u64,
}

/// The indexer's memory of committed message documents, so a change to a
/// conversation adds only its new messages instead of rewriting all of them.
///
/// Only ever describes what is committed in both parts: entries change after
/// both commits of a page succeed, and the map is cleared on any failure (a
/// commit of the message part may have gone through). It starts empty, so
/// after a restart (including a crash between the two commits), a reindex or
/// a new generation, every conversation is first rewritten whole, as before.
#[derive(Debug, Default)]
pub(super) struct Known(HashMap<u64, Indexed>);

impl Known {
    fn clear(&mut self) {
        self.0 = HashMap::new();
    }
}

/// How one changed conversation's message documents are brought up to date.
enum Plan {
    /// Delete them all and add every message.
    Rewrite,
    /// Keep them and add the messages with a higher `seq`.
    Append { after: u64 },
}

/// Messages are never edited and only leave a conversation with it (a merge or
/// an archive deletes it and leaves a tombstone), and message documents carry
/// nothing that changes (tags, labels, the flag and the drop-off live on the
/// conversation document alone), so when the stored messages up to the highest
/// indexed `seq` are as many as the documents written, those documents are
/// exactly these messages and only the later ones are new. Otherwise (a merge
/// brought older messages, or the indexer doesn't know) they are all rewritten.
fn plan(known: Option<&Indexed>, messages: &[MessageRecord]) -> Plan {
    match known {
        Some(known)
            if messages.iter().filter(|m| m.seq <= known.max_seq).count() == known.messages =>
        {
            Plan::Append {
                after: known.max_seq,
            }
        }
        _ => Plan::Rewrite,
    }
}

/// Writes the documents of one changed conversation into its partition:
/// the conversation document always, and the message documents `previous`
/// doesn't already account for (all of them when `replace` is false: a build
/// of an empty index, where there is nothing to delete either).
fn write(
    index: &SearchIndex,
    writer: &mut Writers,
    changed: &ChangedConversation,
    previous: Option<&Indexed>,
    replace: bool,
) -> Result<(PartitionKey, Plan, Indexed), IndexError> {
    let fields = index.fields();
    let (record, messages) = (&changed.record, &changed.messages);
    let key = PartitionKey::of(changed.placed_at, index.span());
    let languages = writer.languages.clone();
    let partition = writer.get(index, key)?;
    let shared = document::Shared::of(record);
    let term = Term::from_field_u64(fields.conv_id, record.id);
    if replace {
        partition.conversations.delete_term(term.clone());
    }
    partition
        .conversations
        .add_document(document::conversation(fields, &shared, messages))?;
    let plan = plan(previous, messages);
    let after = match plan {
        Plan::Append { after } => after,
        Plan::Rewrite => {
            if replace {
                partition.messages.delete_term(term);
            }
            0
        }
    };
    for message in messages.iter().filter(|m| m.seq > after) {
        let lang = languages.resolve(&record.bot_id, message.lang.as_deref(), &message.text);
        partition.messages.add_document(document::message(
            fields,
            &shared,
            message,
            &index.schema().analysis,
            &lang,
        ))?;
    }
    let state = Indexed {
        messages: messages.len(),
        max_seq: messages.iter().map(|m| m.seq).max().unwrap_or(0),
    };
    Ok((key, plan, state))
}

/// Commits the `touched` partitions, messages first, recording `position` in each.
fn commit(
    index: &SearchIndex,
    writer: &mut Writers,
    touched: &BTreeSet<PartitionKey>,
    position: u64,
) -> Result<(), IndexError> {
    let payload = serde_json::to_string(&CommitPayload {
        schema_version: index.schema().version,
        position,
    })
    .expect("payload serialises");
    for key in touched {
        let partition = writer
            .open
            .get_mut(key)
            .expect("touched partitions are open");
        for part in [&mut partition.messages, &mut partition.conversations] {
            let mut commit = part.prepare_commit()?;
            commit.set_payload(&payload);
            commit.commit()?;
        }
    }
    Ok(())
}

/// Builds an empty index from the store in the order of time (`placed_at`),
/// partition after partition, so each partition's writer is opened once;
/// returns the position the build covers. Following the change stream
/// instead would visit partitions in the order conversations last changed,
/// opening and closing writers all along.
///
/// The store is read page by page, not in one snapshot: the head is taken
/// first, so every change up to it is in what the pages read, and a change
/// after it is read again when the change stream is followed from there.
fn build(
    index: &SearchIndex,
    store: &Store,
    writer: &mut Writers,
    known: &mut Known,
    committed: &mut impl FnMut(u64, usize) -> bool,
) -> Result<Option<u64>, IndexError> {
    let head = store.head();
    let mut after = None;
    loop {
        let page = store.read(|conn| placed_page(conn, after, PAGE))?;
        let Some(last) = page.last() else { break };
        after = Some((last.placed_at, last.record.id));
        writer.pages += 1;
        let mut touched = BTreeSet::new();
        for changed in &page {
            let (key, _, state) = write(index, writer, changed, None, false)?;
            touched.insert(key);
            if known.0.len() < KNOWN_MAX {
                known.0.insert(changed.record.id, state);
            }
        }
        // Position 0 until the build ends: a crash in between builds again from scratch.
        commit(index, writer, &touched, 0)?;
        let touched: Vec<PartitionKey> = touched.into_iter().collect();
        index.publish(&touched)?;
        writer.close_idle();
        if !committed(0, page.len()) {
            return Ok(None);
        }
    }
    index.record_position(head)?;
    committed(head, 0);
    Ok(Some(head))
}

fn sync(
    index: &SearchIndex,
    store: &Store,
    writer: &mut Writers,
    known: &mut Known,
    mut position: u64,
    recent: Option<&Recent>,
    mut committed: impl FnMut(u64, usize) -> bool,
) -> Result<u64, IndexError> {
    let result = (|| {
        if position == 0 {
            match build(index, store, writer, known, &mut committed)? {
                Some(built) => position = built,
                None => return Ok(()),
            }
        }
        sync_pages(
            index,
            store,
            writer,
            known,
            &mut position,
            recent,
            &mut committed,
        )
    })();
    if result.is_err() {
        known.clear();
    }
    result.map(|()| position)
}

fn sync_pages(
    index: &SearchIndex,
    store: &Store,
    writer: &mut Writers,
    known: &mut Known,
    position: &mut u64,
    recent: Option<&Recent>,
    committed: &mut impl FnMut(u64, usize) -> bool,
) -> Result<(), IndexError> {
    let fields = index.fields().clone();
    let span = index.span();
    loop {
        let head = store.head();
        if head <= *position {
            return Ok(());
        }
        let batch = store.read(|conn| read_changes_page(conn, *position, PAGE, head))?;
        writer.pages += 1;
        let mut touched: BTreeSet<PartitionKey> = BTreeSet::new();
        let mut updates: Vec<(u64, Option<Indexed>)> =
            Vec::with_capacity(batch.conversations.len() + batch.tombstones.len());

        // Tombstones by partition. A partition left with no conversation in the
        // store is dropped whole instead (retention empties a day at a time).
        let receiving: BTreeSet<PartitionKey> = batch
            .conversations
            .iter()
            .map(|changed| PartitionKey::of(changed.placed_at, span))
            .collect();
        let mut leaving: BTreeMap<PartitionKey, Vec<u64>> = BTreeMap::new();
        for tombstone in &batch.tombstones {
            let keys = match tombstone.placed_at {
                Some(placed_at) => vec![PartitionKey::of(placed_at, span)],
                None => index.holding(tombstone.id),
            };
            for key in keys {
                leaving.entry(key).or_default().push(tombstone.id);
            }
            updates.push((tombstone.id, None));
        }
        let mut dropped = Vec::new();
        for (key, ids) in &leaving {
            if !index.has_partition(*key) {
                continue;
            }
            let emptied = !receiving.contains(key)
                && !store.read(|conn| any_placed_in(conn, key.0, key.end(span)))?;
            if emptied {
                dropped.push(*key);
                continue;
            }
            let partition = writer.get(index, *key)?;
            for id in ids {
                let term = Term::from_field_u64(fields.conv_id, *id);
                partition.conversations.delete_term(term.clone());
                partition.messages.delete_term(term);
            }
            touched.insert(*key);
        }

        let tombstoned: HashSet<u64> = batch.tombstones.iter().map(|t| t.id).collect();
        let (mut appended, mut rewritten) = (0usize, 0usize);
        for changed in &batch.conversations {
            // A tombstone in this page deleted whatever was indexed.
            let previous = known
                .0
                .get(&changed.record.id)
                .filter(|_| !tombstoned.contains(&changed.record.id));
            let (key, plan, state) = write(index, writer, changed, previous, true)?;
            touched.insert(key);
            match plan {
                Plan::Append { .. } => appended += 1,
                Plan::Rewrite => rewritten += 1,
            }
            updates.push((changed.record.id, Some(state)));
        }
        commit(index, writer, &touched, batch.position)?;
        for key in &dropped {
            writer.discard(*key);
            index.drop_partition(*key)?;
        }
        // Every partition now covers the page: a crash before this line redoes it
        // (deletes by `conv_id` make that idempotent).
        index.record_position(batch.position)?;
        for (id, state) in updates {
            match state {
                Some(state) => known.0.insert(id, state),
                None => known.0.remove(&id),
            };
        }
        if known.0.len() > KNOWN_MAX {
            // Forgetting only costs whole rewrites; it bounds the memory at scale.
            known.clear();
        }
        // Before the commit is searchable: a tail it wakes finds the messages.
        if let Some(recent) = recent {
            recent.hand_over(&batch.conversations);
        }
        let touched: Vec<PartitionKey> = touched.into_iter().collect();
        index.publish(&touched)?;
        writer.close_idle();
        tracing::debug!(
            conversations = batch.conversations.len(),
            appended,
            rewritten,
            tombstones = batch.tombstones.len(),
            partitions = touched.len(),
            dropped = dropped.len(),
            position = batch.position,
            "index committed"
        );
        *position = batch.position;
        if !committed(*position, batch.conversations.len()) || batch.conversations.len() < PAGE {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> MessageRecord {
        MessageRecord {
            seq,
            role: "user".into(),
            text: "hello".into(),
            timestamp: seq as i64,
            ..MessageRecord::default()
        }
    }

    fn plan_of(known: Option<Indexed>, seqs: &[u64]) -> Option<u64> {
        let messages: Vec<MessageRecord> = seqs.iter().copied().map(message).collect();
        match plan(known.as_ref(), &messages) {
            Plan::Append { after } => Some(after),
            Plan::Rewrite => None,
        }
    }

    #[test]
    fn appends_only_new_messages_of_a_known_conversation() {
        let known = Indexed {
            messages: 2,
            max_seq: 7,
        };
        assert_eq!(plan_of(Some(known), &[3, 7, 9, 12]), Some(7));
        // Nothing new: a label, tag or flag change rewrites only the conversation document.
        assert_eq!(plan_of(Some(known), &[3, 7]), Some(7));
    }

    #[test]
    fn rewrites_when_unknown_or_older_messages_arrived() {
        let known = Indexed {
            messages: 2,
            max_seq: 7,
        };
        assert_eq!(plan_of(None, &[3, 7]), None);
        // A merge brought seq 5 from another conversation.
        assert_eq!(plan_of(Some(known), &[3, 5, 7, 9]), None);
    }
}
