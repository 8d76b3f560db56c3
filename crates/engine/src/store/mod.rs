//! The store: SQLite in WAL mode, the source of truth for everything else.
//!
//! One thread owns the write connection. Writers from any task send it a
//! closure; it runs many of them in one transaction (each in its own savepoint,
//! so one failing request rolls back alone), commits with a single fsync and
//! only then answers them all. That is group commit: durability costs one fsync
//! per round, not one per request.
//!
//! Readers use a small pool of read-only connections; WAL lets them read a
//! consistent snapshot while the writer commits.

pub mod archive;
pub mod bulk;
pub mod erasure;
mod ingest;
pub mod jobs;
pub mod keys;
pub mod read;
pub mod review;
mod schema;
pub mod sources;
pub mod tagging;
mod writer;

pub use ingest::IngestOutcome;
pub use read::changes_since as read_changes_page;
pub use read::{
    ChangeBatch, ChangedConversation, ConversationRecord, MessageRecord, NodeRecord, TagRecord,
    TraceRecord,
};
pub use writer::WriteCtx;

use rusqlite::{Connection, OpenFlags};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store can't accept writes now (disk full, shutting down); nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// The change is refused in the current state (e.g. a conversation held by the archive).
    #[error("{0}")]
    Conflict(String),
    /// The change would pass a limit (`name` is the request field at fault).
    #[error("invalid parameter `{name}`: {reason}")]
    Limit { name: &'static str, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether this error means "try later" rather than a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(err, _)) => matches!(
                err.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
            ),
            _ => false,
        }
    }
}

/// A plain connection for administration beside a running server (keys, audit
/// checks): SQLite serialises it with the server's writer.
pub fn admin_connection(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Unavailable(format!(
            "no store at {} (start the server once, or check --data-dir)",
            path.display()
        )));
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    read::stable_plans(&conn)?;
    conn.execute_batch(schema::SCHEMA)?;
    Ok(conn)
}

/// Adds the columns of [`schema::ADDED_COLUMNS`] that an older store's tables
/// lack (idempotent). Being nullable or defaulted, and unnamed by older
/// binaries, they need no `STORE_VERSION` bump.
pub(crate) fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    for added in schema::ADDED_COLUMNS {
        let columns: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{}')",
                added.table
            ))?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        if columns.is_empty() {
            continue;
        }
        if !columns.iter().any(|name| name == added.column) {
            conn.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                added.table, added.column, added.declaration
            ))?;
            if let Some(fill) = added.fill {
                conn.execute_batch(fill)?;
            }
        }
        if let Some(index) = added.index {
            conn.execute_batch(index)?;
        }
    }
    Ok(())
}

/// A queued write (see [`Store::write_queued`]).
pub struct Pending<T>(tokio::sync::oneshot::Receiver<Result<T, StoreError>>);

impl<T> Pending<T> {
    /// Blocks until the write is durable (or failed).
    pub fn wait(self) -> Result<T, StoreError> {
        self.0
            .blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store could not write".into())))
    }
}

/// Commits remembered for the lag (see [`Head::committed_after`]); past this
/// many the newest one is stretched, so the lag only errs long.
const REMEMBERED_COMMITS: usize = 65_536;

/// The store's head: the newest committed change position, and when the
/// commits the index may not have reached yet happened.
pub(crate) struct Head {
    position: AtomicU64,
    commits: Mutex<VecDeque<(u64, Instant)>>,
}

impl Head {
    fn new(position: u64) -> Head {
        Head {
            position: AtomicU64::new(position),
            commits: Mutex::new(VecDeque::new()),
        }
    }

    fn get(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// A commit brought the head to `position`.
    fn advance(&self, position: u64) {
        if position <= self.get() {
            return;
        }
        let mut commits = self.commits.lock().expect("commits lock");
        if commits.len() >= REMEMBERED_COMMITS {
            if let Some(newest) = commits.back_mut() {
                newest.0 = position;
            }
        } else {
            commits.push_back((position, Instant::now()));
        }
        self.position.store(position, Ordering::Release);
    }

    /// When the oldest commit past `position` happened (`None`: there is none),
    /// forgetting the commits up to `position`.
    fn committed_after(&self, position: u64) -> Option<Instant> {
        let mut commits = self.commits.lock().expect("commits lock");
        while commits.front().is_some_and(|(head, _)| *head <= position) {
            commits.pop_front();
        }
        commits.front().map(|(_, at)| *at)
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
    /// The newest change position committed; the index follows it.
    head: Arc<Head>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        read::stable_plans(&conn)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = OFF;
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;",
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > schema::STORE_VERSION {
            return Err(StoreError::Unavailable(format!(
                "store {} has version {version}, newer than this binary's {}",
                path.display(),
                schema::STORE_VERSION
            )));
        }
        conn.execute_batch(schema::SCHEMA)?;
        add_missing_columns(&conn)?;
        conn.execute_batch(&format!("PRAGMA user_version = {}", schema::STORE_VERSION))?;
        let head: u64 = conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(change_seq) FROM conversations), 0),
                        COALESCE((SELECT MAX(change_seq) FROM tombstones), 0))",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64;
        let head = Arc::new(Head::new(head));
        let writer = writer::spawn(conn, head.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer,
                readers: Mutex::new(Vec::new()),
                head,
            }),
        })
    }

    /// The newest committed change position.
    pub fn head(&self) -> u64 {
        self.inner.head.get()
    }

    /// How long the oldest change after `position` has been committed: how
    /// long a follower at `position` has been behind (zero when it is not).
    /// Commits up to `position` are forgotten: only the live index asks.
    pub fn behind_for(&self, position: u64) -> Duration {
        self.inner
            .head
            .committed_after(position)
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }

    /// Runs `f` in the next group-commit round; its result is returned only once the round is durable.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner
            .writer
            .submit(f)?
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store could not write".into())))
    }

    /// Like [`Store::write`], for callers outside an async runtime.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner
            .writer
            .submit(f)?
            .blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store could not write".into())))
    }

    /// Queues `f` for the next round without waiting; [`Pending::wait`] gives its durable result.
    pub fn write_queued<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Pending<T>, StoreError> {
        Ok(Pending(self.inner.writer.submit(f)?))
    }

    /// Runs `f` on a pooled read-only connection (blocking; call from a blocking context).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.inner.readers.lock().expect("reader pool lock").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // No mmap: every reader mapping the file counted its pages in the RSS
                // again (W6); the OS page cache keeps them once, outside it.
                conn.execute_batch("PRAGMA cache_size = -2048; PRAGMA mmap_size = 0;")?;
                read::stable_plans(&conn)?;
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool lock");
        if pool.len() < 16 {
            pool.push(conn);
        }
        result
    }

    /// Runs a read on tokio's blocking pool.
    pub async fn read_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|err| StoreError::Unavailable(format!("read task failed: {err}")))?
    }

    /// Stops accepting writes, finishes the pending round and closes the writer.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }
}
