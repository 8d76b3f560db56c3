//! Background jobs (full tagging runs; later reindex and archive): one of a
//! kind at a time, progress visible while running, history kept in the store.
//!
//! A second request for a kind that is already running gets the running job
//! back (202, same id) instead of starting another. Jobs interrupted by a
//! restart are marked failed with that reason when the service starts.

use crate::store::{Store, StoreError};
use convlog_core::{Clock, Micros};
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> JobState {
        match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            _ => JobState::Failed,
        }
    }
}

/// A job as reported by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub state: JobState,
    pub processed: u64,
    pub total: u64,
    pub created_at: Micros,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub error: Option<String>,
    /// What a finished job did (counts), when its kind reports it.
    pub result: Option<serde_json::Value>,
}

/// What a job's work returns: an optional summary of what it did, or why it failed.
pub type JobOutcome = Result<Option<serde_json::Value>, String>;

impl JobRecord {
    /// The JSON shape of the API.
    pub fn to_json(&self) -> serde_json::Value {
        use convlog_core::format_timestamp;
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "processed": self.processed,
            "total": self.total,
            "created_at": format_timestamp(self.created_at),
            "started_at": self.started_at.map(format_timestamp),
            "finished_at": self.finished_at.map(format_timestamp),
            "error": self.error,
            "result": self.result,
        })
    }
}

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

/// The job runner.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    clock: Clock,
    running: Arc<Mutex<Running>>,
    /// Held from "is one running?" to "it is recorded as running", so two requests can't both start one.
    starting: Arc<tokio::sync::Mutex<()>>,
}

const COLUMNS: &str =
    "id, kind, state, processed, total, created_at, started_at, finished_at, error, result";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: JobState::parse(&row.get::<_, String>(2)?),
        processed: row.get::<_, i64>(3)? as u64,
        total: row.get::<_, i64>(4)? as u64,
        created_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        error: row.get(8)?,
        // A summary that doesn't parse is dropped rather than failing the job listing.
        result: row
            .get::<_, Option<String>>(9)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

impl Jobs {
    /// The runner; marks jobs left running by a previous process as failed.
    pub fn open(store: Store, clock: Clock) -> Result<Jobs, StoreError> {
        let now = clock.now();
        store.write_blocking(move |ctx| {
            ctx.conn.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?1,
                       error = 'interrupted by a restart of the service; start it again'
                     WHERE state IN ('queued', 'running')",
                params![now],
            )?;
            Ok(())
        })?;
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
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let id = format!(
            "j_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let now = self.clock.now();
        let (job_id, job_kind) = (id.clone(), kind.to_string());
        self.store
            .write(move |ctx| {
                ctx.conn.execute(
                    "INSERT INTO jobs (id, kind, state, created_at, started_at) VALUES (?1, ?2, 'running', ?3, ?3)",
                    params![job_id, job_kind, now],
                )?;
                Ok(())
            })
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
        let (id_owned, now) = (id.to_string(), self.clock.now());
        let processed = progress.processed.load(Ordering::Relaxed) as i64;
        let total = progress.total.load(Ordering::Relaxed) as i64;
        let written = self.store.write_blocking(move |ctx| {
            ctx.conn.execute(
                "UPDATE jobs SET state = ?2, processed = ?3, total = ?4, finished_at = ?5, error = ?6,
                        result = ?7 WHERE id = ?1",
                params![id_owned, state.as_str(), processed, total, now, error, result],
            )?;
            Ok(())
        });
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
            .read_async(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
                    .query_row(params![id], record_from_row)
                    .optional()?
                    .ok_or(StoreError::NotFound)
            })
            .await?;
        Ok(self.with_live_progress(record))
    }

    /// The most recent jobs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        let records: Vec<JobRecord> = self
            .store
            .read_async(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT ?1"
                ))?;
                let rows = statement.query_map(params![limit as i64], record_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        Ok(records
            .into_iter()
            .map(|r| self.with_live_progress(r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs table as data directories made before `result` existed have it.
    const OLD_JOBS_TABLE: &str = "CREATE TABLE jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,
        processed INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, error TEXT)";

    #[test]
    fn an_older_jobs_table_gains_the_result_column_and_keeps_its_rows() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(OLD_JOBS_TABLE).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, kind, state, created_at) VALUES ('j_1', 'reindex', 'succeeded', 5)",
            [],
        )
        .unwrap();
        crate::store::add_missing_columns(&conn).unwrap();
        // A second open must not fail on the column it added the first time.
        crate::store::add_missing_columns(&conn).unwrap();
        let record = conn
            .query_row(&format!("SELECT {COLUMNS} FROM jobs"), [], record_from_row)
            .unwrap();
        assert_eq!((record.id.as_str(), record.result), ("j_1", None));
    }

    #[test]
    fn a_stored_result_comes_back_in_the_job_json() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(OLD_JOBS_TABLE).unwrap();
        crate::store::add_missing_columns(&conn).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, kind, state, created_at, result)
             VALUES ('j_2', 'archive', 'succeeded', 5, '{\"conversations\":3}')",
            [],
        )
        .unwrap();
        let record = conn
            .query_row(&format!("SELECT {COLUMNS} FROM jobs"), [], record_from_row)
            .unwrap();
        let json = record.to_json();
        assert_eq!(json["result"]["conversations"], 3, "{json}");
        let mut unfinished = record;
        unfinished.result = None;
        assert!(unfinished.to_json()["result"].is_null());
    }
}
