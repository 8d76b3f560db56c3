//! Background jobs (full tagging runs; later reindex and archive): one of a
//! kind at a time, progress visible while running, history kept in the store.
//!
//! A second request for a kind that is already running gets the running job
//! back (202, same id) instead of starting another. Jobs interrupted by a
//! restart are marked failed with that reason when the service starts.

use crate::store::jobs::{self as table, Finished};
use crate::store::{Store, StoreError};
use convlog_core::Clock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::store::jobs::{JobRecord, JobState};

/// What a job's work returns: an optional summary of what it did, or why it failed.
pub type JobOutcome = Result<Option<serde_json::Value>, String>;

/// Live progress of a running job, shared with the code doing the work.
#[derive(Debug, Default)]
pub struct Progress {
    pub processed: AtomicU64,
    pub total: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    /// Whether someone asked the job to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Running jobs by id: their kind and progress.
type Running = HashMap<String, (String, Arc<Progress>)>;

/// One kind of job, for `/metrics` (see [`Jobs::metrics`]).
#[derive(Debug, Clone)]
pub struct KindMetrics {
    pub kind: String,
    /// (outcome, how many, seconds they ran).
    pub finished: Vec<(JobState, u64, f64)>,
    /// The running job's progress, 0..1.
    pub running: Option<f64>,
}

impl KindMetrics {
    fn new(kind: String) -> KindMetrics {
        KindMetrics {
            kind,
            finished: Vec::new(),
            running: None,
        }
    }
}

/// The job runner.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    clock: Clock,
    running: Arc<Mutex<Running>>,
    /// Held from "is one running?" to "it is recorded as running", so two requests can't both start one.
    starting: Arc<tokio::sync::Mutex<()>>,
}

impl Jobs {
    /// The runner; marks jobs left running by a previous process as failed.
    pub fn open(store: Store, clock: Clock) -> Result<Jobs, StoreError> {
        let now = clock.now();
        store.write_blocking(move |ctx| table::fail_interrupted(ctx.conn, now))?;
        Ok(Jobs {
            store,
            clock,
            running: Arc::new(Mutex::new(HashMap::new())),
            starting: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Starts `work` as a job of `kind` on its own thread, or returns the running job of that kind.
    pub async fn start(
        &self,
        kind: &str,
        work: impl FnOnce(Arc<Progress>) -> JobOutcome + Send + 'static,
    ) -> Result<JobRecord, StoreError> {
        let _starting = self.starting.lock().await;
        let existing = {
            let running = self.running.lock().expect("jobs lock");
            running
                .iter()
                .find(|(_, (k, _))| k == kind)
                .map(|(id, _)| id.clone())
        };
        if let Some(id) = existing {
            return self.get(&id).await;
        }
        self.spawn(kind, work).await
    }

    /// Starts `work` as a job of `kind` on its own thread even when one of
    /// that kind runs (each erasure is its own job; they take turns inside).
    pub async fn start_another(
        &self,
        kind: &str,
        work: impl FnOnce(Arc<Progress>) -> JobOutcome + Send + 'static,
    ) -> Result<JobRecord, StoreError> {
        let _starting = self.starting.lock().await;
        self.spawn(kind, work).await
    }

    async fn spawn(
        &self,
        kind: &str,
        work: impl FnOnce(Arc<Progress>) -> JobOutcome + Send + 'static,
    ) -> Result<JobRecord, StoreError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let id = format!(
            "j_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let now = self.clock.now();
        let (job_id, job_kind) = (id.clone(), kind.to_string());
        self.store
            .write(move |ctx| table::insert_running(ctx.conn, &job_id, &job_kind, now))
            .await?;
        let progress = Arc::new(Progress::default());
        self.running
            .lock()
            .expect("jobs lock")
            .insert(id.clone(), (kind.to_string(), progress.clone()));
        let jobs = self.clone();
        let job_id = id.clone();
        let kind_name = kind.to_string();
        std::thread::Builder::new()
            .name(format!("job-{kind}"))
            .spawn(move || {
                tracing::info!(job = %job_id, kind = %kind_name, "job started");
                let result = work(progress.clone());
                if let Err(error) = &result {
                    tracing::warn!(job = %job_id, %error, "job failed");
                } else {
                    tracing::info!(job = %job_id, "job succeeded");
                }
                jobs.finish(&job_id, &progress, result);
            })
            .map_err(StoreError::Io)?;
        self.get(&id).await
    }

    fn finish(&self, id: &str, progress: &Progress, outcome: JobOutcome) {
        let (state, error, result) = match outcome {
            Ok(summary) => (
                JobState::Succeeded,
                None,
                summary.map(|value| value.to_string()),
            ),
            Err(error) => (JobState::Failed, Some(error), None),
        };
        let end = Finished {
            state,
            processed: progress.processed.load(Ordering::Relaxed),
            total: progress.total.load(Ordering::Relaxed),
            at: self.clock.now(),
            error,
            result,
        };
        let id_owned = id.to_string();
        let written = self
            .store
            .write_blocking(move |ctx| table::finish(ctx.conn, &id_owned, &end));
        if let Err(err) = written {
            tracing::error!(job = %id, error = %err, "could not record the end of a job");
        }
        self.running.lock().expect("jobs lock").remove(id);
    }

    /// Asks a running job to stop; it ends as failed ("cancelled").
    pub fn cancel(&self, id: &str) -> bool {
        match self.running.lock().expect("jobs lock").get(id) {
            Some((_, progress)) => {
                progress.cancelled.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Asks every running job to stop (at shutdown).
    pub fn cancel_all(&self) {
        for (_, progress) in self.running.lock().expect("jobs lock").values() {
            progress.cancelled.store(true, Ordering::Relaxed);
        }
    }

    /// For `/metrics`: per kind ever run, finished jobs by outcome (how many,
    /// seconds they ran) and the running job's progress (0..1), if one runs.
    pub fn metrics(&self) -> Result<Vec<KindMetrics>, StoreError> {
        let mut kinds: BTreeMap<String, KindMetrics> = BTreeMap::new();
        for (kind, state, count, seconds) in self.store.read(table::finished_totals)? {
            kinds
                .entry(kind.clone())
                .or_insert_with(|| KindMetrics::new(kind))
                .finished
                .push((state, count, seconds));
        }
        for (kind, progress) in self.running.lock().expect("jobs lock").values() {
            let total = progress.total.load(Ordering::Relaxed);
            let done = progress.processed.load(Ordering::Relaxed);
            kinds
                .entry(kind.clone())
                .or_insert_with(|| KindMetrics::new(kind.clone()))
                .running = Some(match total {
                0 => 0.0,
                _ => (done as f64 / total as f64).min(1.0),
            });
        }
        Ok(kinds.into_values().collect())
    }

    fn with_live_progress(&self, mut record: JobRecord) -> JobRecord {
        if let Some((_, progress)) = self.running.lock().expect("jobs lock").get(&record.id) {
            record.processed = progress.processed.load(Ordering::Relaxed);
            record.total = progress.total.load(Ordering::Relaxed);
        }
        record
    }

    /// One job, with live progress when running.
    pub async fn get(&self, id: &str) -> Result<JobRecord, StoreError> {
        let id = id.to_string();
        let record = self
            .store
            .read_async(move |conn| table::get(conn, &id))
            .await?;
        Ok(self.with_live_progress(record))
    }

    /// The most recent jobs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        let records: Vec<JobRecord> = self
            .store
            .read_async(move |conn| table::list(conn, limit))
            .await?;
        Ok(records
            .into_iter()
            .map(|r| self.with_live_progress(r))
            .collect())
    }
}
