//! Administration beside a running server (the command line): key changes
//! straight on the store, each recorded in the audit log in the same
//! immediate transaction, so a change is never without its entry.
//!
//! The server makes the same changes through its writer (`store::keys`) and
//! audits them in its guard.

use crate::audit::{self, CLI_REQUEST, NewAuditEntry};
use crate::auth::{KeyRecord, KeyRequest};
use crate::store::keys::{self, IssuedKey, Revoked};
use crate::store::{StoreError, admin_connection};
use convlog_core::Micros;
use rusqlite::Connection;
use std::path::Path;

/// A connection to the store of a data directory, for administration.
pub struct Admin {
    conn: Connection,
}

impl Admin {
    /// Opens the store at `path` (it must exist: the server created it).
    pub fn open(path: &Path) -> Result<Admin, StoreError> {
        Ok(Admin {
            conn: admin_connection(path)?,
        })
    }

    /// Runs `change` and appends its audit entry (`action` on what `target`
    /// names in the result) in one immediate transaction.
    fn audited<T>(
        &self,
        action: &str,
        now: Micros,
        change: impl FnOnce(&Connection) -> Result<T, StoreError>,
        target: impl FnOnce(&T) -> String,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = change(&self.conn).and_then(|value| {
            let entry = NewAuditEntry {
                at: now,
                key_id: None,
                action: action.to_string(),
                target: target(&value),
                bot_id: None,
                request_id: CLI_REQUEST.to_string(),
                status: 200,
            };
            keys::append_audit(&self.conn, &entry)?;
            Ok(value)
        });
        match result {
            Ok(value) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }

    /// Issues a key (audited as `cli keys create`).
    pub fn create_key(&self, request: KeyRequest, now: Micros) -> Result<IssuedKey, StoreError> {
        self.audited(
            "cli keys create",
            now,
            |conn| keys::issue_key(conn, request, now),
            |issued| issued.record.id.clone(),
        )
    }

    /// Revokes a key (audited as `cli keys revoke`); `NotFound` when there is none.
    pub fn revoke_key(&self, id: &str, now: Micros) -> Result<Revoked, StoreError> {
        self.audited(
            "cli keys revoke",
            now,
            |conn| keys::revoke(conn, id, now),
            |_| id.to_string(),
        )
    }

    /// Every key, newest first (never a secret).
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        keys::keys(&self.conn)
    }

    /// Checks the audit chain: `Ok(entries)` when intact, else the first bad entry.
    pub fn verify_audit(&self) -> Result<Result<u64, (i64, String)>, StoreError> {
        audit::verify(&self.conn)
    }
}
