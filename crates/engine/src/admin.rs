//! Key administration, for the server and for the command line.
//!
//! - [`Keys`]: the server's key service, through the store's writer (its
//!   guard audits each change, as every change through the API).
//! - [`Admin`]: beside a running server (the command line): key changes
//!   straight on the store, each recorded in the audit log in the same
//!   immediate transaction, so a change is never without its entry.

use crate::audit::{self, CLI_REQUEST, NewAuditEntry};
use crate::auth::{KeyRecord, KeyRequest};
use crate::store::keys::{self, IssuedKey, Revoked};
use crate::store::{Store, StoreError, admin_connection};
use convlog_core::Micros;
use rusqlite::Connection;
use std::path::Path;

/// The server's keys.
#[derive(Clone)]
pub struct Keys {
    store: Store,
}

impl Keys {
    /// The keys of `store`.
    pub fn new(store: Store) -> Keys {
        Keys { store }
    }

    /// Issues a key.
    pub async fn create(&self, request: KeyRequest, now: Micros) -> Result<IssuedKey, StoreError> {
        self.store
            .write(move |ctx| keys::issue_key(ctx.conn, request, now))
            .await
    }

    /// Every key, newest first (never a secret).
    pub async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.read_async(keys::keys).await
    }

    /// Revokes a key; `NotFound` when there is none.
    pub async fn revoke(&self, id: String, now: Micros) -> Result<Revoked, StoreError> {
        self.store
            .write(move |ctx| keys::revoke(ctx.conn, &id, now))
            .await
    }

    /// Whether any active key exists, and the record of key `id` (if given and known).
    pub async fn lookup(
        &self,
        id: Option<String>,
    ) -> Result<(bool, Option<KeyRecord>), StoreError> {
        self.store
            .read_async(move |conn| {
                let record = match &id {
                    Some(id) => keys::key(conn, id)?,
                    None => None,
                };
                Ok((keys::any_active_key(conn)?, record))
            })
            .await
    }
}

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
