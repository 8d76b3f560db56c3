//! The writer thread and its group commit.

use super::{Head, StoreError};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most requests folded into one transaction, so one round's latency stays bounded.
const MAX_ROUND: usize = 256;

/// What a write closure sees: the open transaction and the change counter.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    next_change: &'a mut u64,
}

impl WriteCtx<'_> {
    /// Takes the next position in the change stream (for a changed conversation or tombstone).
    pub fn next_change(&mut self) -> u64 {
        *self.next_change += 1;
        *self.next_change
    }

    /// The last position taken.
    pub fn current_change(&self) -> u64 {
        *self.next_change
    }
}

type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut WriteCtx<'_>) -> (bool, Completion) + Send>;

enum Command {
    Run(Job),
    Shutdown,
}

pub(super) struct WriterHandle {
    sender: std::sync::Mutex<Option<mpsc::Sender<Command>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WriterHandle {
    pub(super) fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (reply, receiver) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let result = f(ctx);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit_error| {
                let answer = match commit_error {
                    Some(err) if ok => {
                        Err(StoreError::Unavailable(format!("commit failed: {err}")))
                    }
                    _ => result,
                };
                let _ = reply.send(answer);
            });
            (ok, completion)
        });
        let sender = self.sender.lock().expect("writer sender lock");
        sender
            .as_ref()
            .and_then(|sender| sender.send(Command::Run(job)).ok())
            .ok_or_else(|| StoreError::Unavailable("the store is shutting down".into()))?;
        Ok(receiver)
    }

    pub(super) fn shutdown(&self) {
        if let Some(sender) = self.sender.lock().expect("writer sender lock").take() {
            let _ = sender.send(Command::Shutdown);
        }
        if let Some(thread) = self.thread.lock().expect("writer thread lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(super) fn spawn(conn: Connection, head: Arc<Head>) -> Result<WriterHandle, StoreError> {
    let (sender, receiver) = mpsc::channel::<Command>();
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, receiver, head))?;
    Ok(WriterHandle {
        sender: std::sync::Mutex::new(Some(sender)),
        thread: std::sync::Mutex::new(Some(thread)),
    })
}

fn run(conn: Connection, receiver: mpsc::Receiver<Command>, head: Arc<Head>) {
    let mut next_change = head.get();
    let mut stopping = false;
    while !stopping {
        let Ok(first) = receiver.recv() else { break };
        let mut jobs = Vec::new();
        match first {
            Command::Run(job) => jobs.push(job),
            Command::Shutdown => break,
        }
        while jobs.len() < MAX_ROUND {
            match receiver.try_recv() {
                Ok(Command::Run(job)) => jobs.push(job),
                Ok(Command::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let round_start = next_change;
        let (completions, commit_result) = run_round(&conn, jobs, &mut next_change);
        match &commit_result {
            Ok(()) => head.advance(next_change),
            Err(err) => {
                tracing::error!(error = %err, "store commit failed");
                next_change = round_start;
            }
        }
        let commit_error = commit_result.err();
        for completion in completions {
            completion(commit_error.as_ref());
        }
    }
    tracing::debug!("store writer stopped");
}

fn run_round(
    conn: &Connection,
    jobs: Vec<Job>,
    next_change: &mut u64,
) -> (Vec<Completion>, Result<(), StoreError>) {
    let mut completions = Vec::with_capacity(jobs.len());
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs drops their reply channels: each caller gets "unavailable".
        return (completions, Err(err.into()));
    }
    for job in jobs {
        let savepoint = conn.execute_batch("SAVEPOINT job");
        let mut ctx = WriteCtx {
            conn,
            next_change: &mut *next_change,
        };
        let (ok, completion) = job(&mut ctx);
        if savepoint.is_ok() {
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(err) = conn.execute_batch(end) {
                tracing::error!(error = %err, "store savepoint failed");
            }
        }
        completions.push(completion);
    }
    let result = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    (completions, result)
}
