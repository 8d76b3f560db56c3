//! API keys and the audit log, as stored.
//!
//! The functions take a plain connection so the `convlog keys` command can
//! manage keys in the database of a running server (SQLite serialises the
//! writers), and a revoked key stops working at the next request.

use super::StoreError;
use crate::auth::{KeyRecord, Role, Scope};
use convlog_core::Micros;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let role: String = row.get(2)?;
    let scope: String = row.get(3)?;
    Ok(KeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        scope: Scope::parse(&scope).unwrap_or(Scope::Bots(Vec::new())),
        secret_hash: row.get(4)?,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

const KEY_COLUMNS: &str = "id, name, role, scope, secret_hash, created_at, revoked_at";

/// Stores a new key.
pub fn insert_key(conn: &Connection, key: &KeyRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_keys (id, name, role, scope, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key.id, key.name, key.role.as_str(), key.scope.to_text(), key.secret_hash, key.created_at],
    )?;
    Ok(())
}

/// Revokes a key; `NotFound` when there is no such key.
pub fn revoke_key(conn: &Connection, id: &str, now: Micros) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// A key issued: its stored record and the full key, to be shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: KeyRecord,
    pub key: String,
}

/// Makes a key for `request` and stores it (only the secret's hash).
pub fn issue_key(
    conn: &Connection,
    request: crate::auth::KeyRequest,
    now: Micros,
) -> Result<IssuedKey, StoreError> {
    let new = crate::auth::new_key();
    let record = KeyRecord {
        id: new.id,
        name: request.name,
        role: request.role,
        scope: request.scope,
        secret_hash: new.secret_hash,
        created_at: now,
        revoked_at: None,
    };
    insert_key(conn, &record)?;
    Ok(IssuedKey {
        record,
        key: new.key,
    })
}

/// A revoked key, and whether active keys remain (without, the server is open again).
#[derive(Debug, Clone)]
pub struct Revoked {
    pub record: KeyRecord,
    pub keys_remain: bool,
}

/// Revokes key `id` (idempotent); `NotFound` when there is no such key.
pub fn revoke(conn: &Connection, id: &str, now: Micros) -> Result<Revoked, StoreError> {
    revoke_key(conn, id, now)?;
    let record = key(conn, id)?.ok_or(StoreError::NotFound)?;
    Ok(Revoked {
        record,
        keys_remain: any_active_key(conn)?,
    })
}

/// One key by id.
pub fn key(conn: &Connection, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row(params![id], key_from_row)
        .optional()?)
}

/// Every key, newest first.
pub fn keys(conn: &Connection) -> Result<Vec<KeyRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
    ))?;
    let rows = statement.query_map([], key_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether any key is active: without one the service runs open (loopback only).
pub fn any_active_key(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")?
        .query_row([], |row| row.get(0))?)
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Micros,
    pub key_id: Option<String>,
    pub action: String,
    pub target: String,
    pub bot_id: Option<String>,
    pub request_id: String,
    pub status: u16,
    pub hash: String,
}

/// What an audit entry records (before it gets its id and hash).
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub at: Micros,
    pub key_id: Option<String>,
    pub action: String,
    pub target: String,
    pub bot_id: Option<String>,
    pub request_id: String,
    pub status: u16,
}

/// The chained hash of an entry.
fn entry_hash(prev: &str, id: i64, entry: &NewAuditEntry) -> String {
    let mut hasher = Sha256::new();
    for part in [
        prev,
        &id.to_string(),
        &entry.at.to_string(),
        entry.key_id.as_deref().unwrap_or(""),
        &entry.action,
        &entry.target,
        entry.bot_id.as_deref().unwrap_or(""),
        &entry.request_id,
        &entry.status.to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends an entry to the chain (inside the writer's transaction, so the chain has one writer).
pub fn append_audit(conn: &Connection, entry: &NewAuditEntry) -> Result<(), StoreError> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, String::new()),
    };
    let hash = entry_hash(&prev, id, entry);
    conn.prepare_cached(
        "INSERT INTO audit (id, at, key_id, action, target, bot_id, request_id, status, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        entry.at,
        entry.key_id,
        entry.action,
        entry.target,
        entry.bot_id,
        entry.request_id,
        entry.status,
        prev,
        hash
    ])?;
    Ok(())
}

/// Filters of the audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub bot_id: Option<String>,
    pub key_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    pub limit: usize,
}

/// Audit entries matching `filter`, newest first.
pub fn audit(conn: &Connection, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, at, key_id, action, target, bot_id, request_id, status, hash FROM audit
         WHERE (?1 IS NULL OR bot_id = ?1) AND (?2 IS NULL OR key_id = ?2) AND (?3 IS NULL OR action = ?3)
           AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
         ORDER BY id DESC LIMIT ?6",
    )?;
    let rows = statement.query_map(
        params![
            filter.bot_id,
            filter.key_id,
            filter.action,
            filter.from,
            filter.to,
            filter.limit as i64
        ],
        |row| {
            Ok(AuditEntry {
                id: row.get(0)?,
                at: row.get(1)?,
                key_id: row.get(2)?,
                action: row.get(3)?,
                target: row.get(4)?,
                bot_id: row.get(5)?,
                request_id: row.get(6)?,
                status: row.get(7)?,
                hash: row.get(8)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Recomputes the chain; `Err((id, reason))` names the first entry that doesn't hold.
pub fn verify_audit(conn: &Connection) -> Result<Result<u64, (i64, String)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, at, key_id, action, target, bot_id, request_id, status, prev_hash, hash FROM audit ORDER BY id",
    )?;
    let mut rows = statement.query([])?;
    let mut prev = String::new();
    let mut expected_id = 1;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let entry = NewAuditEntry {
            at: row.get(1)?,
            key_id: row.get(2)?,
            action: row.get(3)?,
            target: row.get(4)?,
            bot_id: row.get(5)?,
            request_id: row.get(6)?,
            status: row.get(7)?,
        };
        let stored_prev: String = row.get(8)?;
        let stored_hash: String = row.get(9)?;
        if id != expected_id {
            return Ok(Err((
                id,
                format!("expected entry {expected_id}: entries were removed"),
            )));
        }
        if stored_prev != prev {
            return Ok(Err((
                id,
                "its link to the previous entry was changed".into(),
            )));
        }
        if entry_hash(&prev, id, &entry) != stored_hash {
            return Ok(Err((id, "its contents were changed".into())));
        }
        prev = stored_hash;
        expected_id += 1;
        count += 1;
    }
    Ok(Ok(count))
}
