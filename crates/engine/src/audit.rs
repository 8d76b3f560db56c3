//! The audit log as one service: the server's guard appends every change made
//! through the API (and refusals) through it; the command line's key changes
//! are appended by [`crate::admin`] in the change's own transaction.
//!
//! The chain itself (hashing, the table) is `store::keys`.

use crate::store::keys;
use crate::store::{Store, StoreError};
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

/// Checks the chain: `Ok(entries)` when intact, else the first bad entry's id and why.
pub fn verify(conn: &Connection) -> Result<Result<u64, (i64, String)>, StoreError> {
    keys::verify_audit(conn)
}
