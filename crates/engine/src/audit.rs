//! The audit log as one service: the server's guard (every change through the
//! API, and refusals) and the command line (key changes beside a running
//! server) append through it, and both read and verify it through it.
//!
//! The chain itself (hashing, the table) is `store::keys`.

use crate::store::keys;
use crate::store::{Store, StoreError};
use convlog_core::Micros;
use rusqlite::Connection;

pub use crate::store::keys::{AuditEntry, AuditFilter, NewAuditEntry};

/// The request id of entries written by the command line.
pub const CLI_REQUEST: &str = "cli";

/// Appends and reads entries through the server's store.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl AuditLog {
    /// The log of `store`.
    pub fn new(store: Store) -> AuditLog {
        AuditLog { store }
    }

    /// Appends an entry through the store's single writer (so the chain has one writer).
    pub async fn append(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        self.store
            .write(move |ctx| keys::append_audit(ctx.conn, &entry))
            .await
    }

    /// Entries matching `filter`, newest first.
    pub async fn entries(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.store
            .read_async(move |conn| keys::audit(conn, &filter))
            .await
    }
}

/// Records a change made from the command line, at `at`, on a connection of
/// its own beside a running server: one immediate transaction, so it and the
/// server's writer never interleave in the chain.
pub fn append_cli(
    conn: &Connection,
    action: &str,
    target: &str,
    at: Micros,
) -> Result<(), StoreError> {
    let entry = NewAuditEntry {
        at,
        key_id: None,
        action: action.to_string(),
        target: target.to_string(),
        bot_id: None,
        request_id: CLI_REQUEST.to_string(),
        status: 200,
    };
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match keys::append_audit(conn, &entry) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// Checks the chain: `Ok(entries)` when intact, else the first bad entry's id and why.
pub fn verify(conn: &Connection) -> Result<Result<u64, (i64, String)>, StoreError> {
    keys::verify_audit(conn)
}
