//! The `jobs` table: the history of background jobs ([`crate::jobs`] runs them).

use super::StoreError;
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};

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
    pub fn as_str(self) -> &'static str {
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

/// Marks jobs left queued or running by a previous process as failed.
pub fn fail_interrupted(conn: &Connection, now: Micros) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET state = 'failed', finished_at = ?1,
               error = 'interrupted by a restart of the service; start it again'
             WHERE state IN ('queued', 'running')",
        params![now],
    )?;
    Ok(())
}

/// Records a job of `kind` as running since `now`.
pub fn insert_running(
    conn: &Connection,
    id: &str,
    kind: &str,
    now: Micros,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO jobs (id, kind, state, created_at, started_at) VALUES (?1, ?2, 'running', ?3, ?3)",
        params![id, kind, now],
    )?;
    Ok(())
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub state: JobState,
    pub processed: u64,
    pub total: u64,
    pub at: Micros,
    pub error: Option<String>,
    /// The summary as JSON text.
    pub result: Option<String>,
}

/// Records the end of job `id`.
pub fn finish(conn: &Connection, id: &str, end: &Finished) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET state = ?2, processed = ?3, total = ?4, finished_at = ?5, error = ?6,
                result = ?7 WHERE id = ?1",
        params![
            id,
            end.state.as_str(),
            end.processed as i64,
            end.total as i64,
            end.at,
            end.error,
            end.result
        ],
    )?;
    Ok(())
}

/// Job `id`; `NotFound` when there is none.
pub fn get(conn: &Connection, id: &str) -> Result<JobRecord, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row(params![id], record_from_row)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// The most recent `limit` jobs, newest first.
pub fn list(conn: &Connection, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT ?1"
    ))?;
    let rows = statement.query_map(params![limit as i64], record_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Finished jobs by kind and state: (kind, state, how many, seconds they ran).
pub fn finished_totals(conn: &Connection) -> Result<Vec<(String, JobState, u64, f64)>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT kind, state, count(*), coalesce(sum(finished_at - coalesce(started_at, created_at)), 0)
           FROM jobs WHERE state IN ('succeeded', 'failed') GROUP BY kind, state ORDER BY kind, state",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            JobState::parse(&row.get::<_, String>(1)?),
            row.get::<_, i64>(2)? as u64,
            row.get::<_, i64>(3)? as f64 / 1e6,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
        super::super::add_missing_columns(&conn).unwrap();
        // A second open must not fail on the column it added the first time.
        super::super::add_missing_columns(&conn).unwrap();
        let record = conn
            .query_row(&format!("SELECT {COLUMNS} FROM jobs"), [], record_from_row)
            .unwrap();
        assert_eq!((record.id.as_str(), record.result), ("j_1", None));
    }

    #[test]
    fn a_stored_result_comes_back_in_the_job_json() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(OLD_JOBS_TABLE).unwrap();
        super::super::add_missing_columns(&conn).unwrap();
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
