//! The tagging job: one thread follows the store's change stream and evaluates
//! changed conversations in batches on a dedicated rayon pool; full runs go
//! through the same thread so tags have a single writer.

use super::config::TaggingConfig;
use super::evaluate::evaluate;
use super::rules::ConversationFacts;
use crate::jobs::Progress;
use crate::settings::SessionConfig;
use crate::store::tagging::{
    TagCandidate, TagOutcome, changed_candidates, conversation_count, due_candidates, meta,
    placed_heads, with_messages,
};
use crate::store::{Pending, Store, StoreError, TagRecord};
use convlog_core::{Clock, Micros};
use rayon::prelude::*;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POSITION_KEY: &str = "tag_position";
const RULES_KEY: &str = "tag_rules";

enum Command {
    Full(Arc<Progress>, mpsc::Sender<Result<(), String>>),
    Stop,
}

/// The running tagging job.
pub struct Tagger {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether the rules changed since the tags were computed (a full run is due).
    pub rules_changed: bool,
    pub status: Arc<TaggerStatus>,
}

/// Where the tagging job is, for `/metrics`.
#[derive(Debug, Default)]
pub struct TaggerStatus {
    /// The store position up to which changes have been evaluated.
    pub position: AtomicU64,
    /// When the last full run finished (0: none since start).
    pub last_full_run: AtomicI64,
}

/// What evaluation needs besides the conversations.
#[derive(Clone)]
struct Evaluator {
    rules: Arc<TaggingConfig>,
    sessions: SessionConfig,
    pool: Arc<rayon::ThreadPool>,
    time_dependent: bool,
}

impl Evaluator {
    fn evaluate(&self, candidates: &[TagCandidate], now: Micros) -> Vec<TagOutcome> {
        self.pool.install(|| {
            candidates
                .par_iter()
                .map(|candidate| {
                    let timeout = self.sessions.timeout(&candidate.channel).as_micros() as Micros;
                    let results = evaluate(
                        &self.rules.rules,
                        &candidate.messages,
                        ConversationFacts {
                            now,
                            session_timeout: timeout,
                        },
                    );
                    let ends_with_user =
                        candidate.messages.last().is_some_and(|m| m.role == "user");
                    let session_end = candidate
                        .last_message_at
                        .saturating_add(timeout)
                        .saturating_add(1);
                    let recheck_at = (self.time_dependent && ends_with_user && session_end > now)
                        .then_some(session_end);
                    TagOutcome {
                        id: candidate.id,
                        evaluated_change: candidate.change,
                        tags: results
                            .into_iter()
                            .map(|r| TagRecord {
                                tag: r.tag,
                                rule: r.rule,
                                rule_version: r.rule_version,
                                message_ids: r.message_ids,
                                reason: r.reason,
                            })
                            .collect(),
                        recheck_at,
                    }
                })
                .collect()
        })
    }
}

fn fingerprint(rules: &TaggingConfig) -> String {
    serde_json::to_string(&rules.rule_versions()).expect("rule versions serialise")
}

impl Tagger {
    /// Starts the job thread, polling every `interval`.
    pub fn spawn(
        store: Store,
        rules: TaggingConfig,
        sessions: SessionConfig,
        clock: Clock,
        interval: Duration,
    ) -> Result<Tagger, StoreError> {
        let threads = if rules.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            rules.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tagger-{i}"))
            .build()
            .map_err(|err| StoreError::Unavailable(format!("tagger pool: {err}")))?;
        let stored_rules = store.read(|conn| meta(conn, RULES_KEY))?;
        let rules_changed = stored_rules.as_deref() != Some(fingerprint(&rules).as_str());
        let evaluator = Evaluator {
            time_dependent: rules.rules.iter().any(|r| r.kind.is_time_dependent()),
            rules: Arc::new(rules),
            sessions,
            pool: Arc::new(pool),
        };
        let (commands, receiver) = mpsc::channel();
        let status = Arc::new(TaggerStatus::default());
        let running = status.clone();
        let thread = std::thread::Builder::new()
            .name("tagger".into())
            .spawn(move || run(store, evaluator, clock, interval, receiver, &running))?;
        Ok(Tagger {
            commands: Mutex::new(Some(commands)),
            thread: Mutex::new(Some(thread)),
            rules_changed,
            status,
        })
    }

    /// Re-evaluates every conversation (blocking; run it as a job).
    pub fn full_run(&self, progress: Arc<Progress>) -> Result<(), String> {
        let (done, wait) = mpsc::channel();
        self.commands
            .lock()
            .expect("tagger lock")
            .as_ref()
            .ok_or("the tagger is stopped")?
            .send(Command::Full(progress, done))
            .map_err(|_| "the tagger is stopped".to_string())?;
        wait.recv().map_err(|_| "the tagger stopped".to_string())?
    }

    /// Stops the thread after its current batch.
    pub fn shutdown(&self) {
        if let Some(commands) = self.commands.lock().expect("tagger lock").take() {
            let _ = commands.send(Command::Stop);
        }
        if let Some(thread) = self.thread.lock().expect("tagger lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Tagger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    store: Store,
    evaluator: Evaluator,
    clock: Clock,
    interval: Duration,
    commands: mpsc::Receiver<Command>,
    status: &TaggerStatus,
) {
    loop {
        if let Err(err) = incremental(&store, &evaluator, &clock, status) {
            tracing::error!(error = %err, "tagging pass failed; retrying");
        }
        match commands.recv_timeout(interval) {
            Ok(Command::Full(progress, done)) => {
                let result =
                    full(&store, &evaluator, &clock, &progress).map_err(|err| err.to_string());
                if result.is_ok() {
                    status.last_full_run.store(clock.now(), Ordering::Relaxed);
                }
                let _ = done.send(result);
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    tracing::debug!("tagger stopped");
}

/// Evaluates changed conversations, then those whose time-dependent rules fell due.
fn incremental(
    store: &Store,
    evaluator: &Evaluator,
    clock: &Clock,
    status: &TaggerStatus,
) -> Result<(), StoreError> {
    let batch = evaluator.rules.batch_size.max(1);
    loop {
        let head = store.head();
        let position: u64 = store
            .read(|conn| meta(conn, POSITION_KEY))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        status.position.store(position, Ordering::Relaxed);
        if position >= head {
            break;
        }
        let page = store.read(|conn| changed_candidates(conn, position, batch, head))?;
        let outcomes = evaluator.evaluate(&page.candidates, clock.now());
        let new_position = page.position;
        store.write_blocking(move |ctx| {
            ctx.apply_tags(&outcomes)?;
            ctx.set_meta(POSITION_KEY, &new_position.to_string())
        })?;
        status.position.store(new_position, Ordering::Relaxed);
        if !page.full {
            break;
        }
    }
    if evaluator.time_dependent {
        loop {
            let now = clock.now();
            let due = store.read(|conn| due_candidates(conn, now, batch))?;
            if due.is_empty() {
                break;
            }
            let count = due.len();
            let outcomes = evaluator.evaluate(&due, now);
            store.write_blocking(move |ctx| ctx.apply_tags(&outcomes))?;
            if count < batch {
                break;
            }
        }
    }
    Ok(())
}

/// Evaluates every conversation, partition after partition in the index's
/// order (`placed_at`, id), reporting progress. Both cores work: a page is
/// read on two store connections at once and evaluated on the pool, while the
/// store's writer applies the tags of the page before it.
fn full(
    store: &Store,
    evaluator: &Evaluator,
    clock: &Clock,
    progress: &Progress,
) -> Result<(), String> {
    let batch = evaluator.rules.batch_size.max(1);
    let total = store.read(conversation_count).map_err(|e| e.to_string())?;
    progress.total.store(total, Ordering::Relaxed);
    let mut after = None;
    // The previous page's tags being written, and its size.
    let mut writing: Option<(Pending<usize>, u64)> = None;
    let finish_write = |writing: Option<(Pending<usize>, u64)>| -> Result<(), String> {
        if let Some((pending, count)) = writing {
            pending.wait().map_err(|e| e.to_string())?;
            progress.processed.fetch_add(count, Ordering::Relaxed);
        }
        Ok(())
    };
    loop {
        if progress.is_cancelled() {
            finish_write(writing)?;
            return Err("cancelled".into());
        }
        let heads = store
            .read(|conn| placed_heads(conn, after, batch))
            .map_err(|e| e.to_string())?;
        let Some(last) = heads.last() else { break };
        after = Some(last.place);
        let (first, second) = heads.split_at(heads.len() / 2);
        let (first, second) = evaluator.pool.install(|| {
            rayon::join(
                || store.read(|conn| with_messages(conn, first)),
                || store.read(|conn| with_messages(conn, second)),
            )
        });
        let mut page = first.map_err(|e| e.to_string())?;
        page.extend(second.map_err(|e| e.to_string())?);
        let outcomes = evaluator.evaluate(&page, clock.now());
        finish_write(writing.take())?;
        let pending = store
            .write_queued(move |ctx| ctx.apply_tags(&outcomes))
            .map_err(|e| e.to_string())?;
        writing = Some((pending, page.len() as u64));
    }
    finish_write(writing)?;
    let rules = fingerprint(&evaluator.rules);
    store
        .write_blocking(move |ctx| ctx.set_meta(RULES_KEY, &rules))
        .map_err(|e| e.to_string())?;
    Ok(())
}
