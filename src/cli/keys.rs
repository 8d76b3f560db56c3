//! `convlog keys` and `convlog audit`: straight on the store, beside a running server.

use super::{ConfigArgs, KeysCommand};
use anyhow::bail;

fn store_connection(config: &ConfigArgs) -> anyhow::Result<rusqlite::Connection> {
    let config = config.load()?;
    Ok(convlog_engine::store::admin_connection(
        &config.server.data_dir.join("convlog.db"),
    )?)
}

/// Records a key change made from the command line in the audit chain.
fn audit_cli(conn: &rusqlite::Connection, action: &str, target: &str) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let entry = convlog_engine::store::keys::NewAuditEntry {
        at: convlog_core::now_micros(),
        key_id: None,
        action: action.to_string(),
        target: target.to_string(),
        bot_id: None,
        request_id: "cli".into(),
        status: 200,
    };
    match convlog_engine::store::keys::append_audit(conn, &entry) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err.into())
        }
    }
}

pub(super) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use convlog_engine::auth::{KeyRecord, Role, Scope, new_key};
    use convlog_engine::store::keys;
    match command {
        KeysCommand::Create {
            role,
            bots,
            name,
            config,
        } => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role must be viewer, editor, ingest or admin"))?;
            let scope =
                Scope::parse(&bots).map_err(|reason| anyhow::anyhow!("--bots: {reason}"))?;
            let conn = store_connection(&config)?;
            let new = new_key();
            keys::insert_key(
                &conn,
                &KeyRecord {
                    id: new.id.clone(),
                    name,
                    role,
                    scope,
                    secret_hash: new.secret_hash,
                    created_at: convlog_core::now_micros(),
                    revoked_at: None,
                },
            )?;
            audit_cli(&conn, "cli keys create", &new.id)?;
            eprintln!(
                "created key {} ({}); it is shown only now:",
                new.id,
                role.as_str()
            );
            println!("{}", new.key);
        }
        KeysCommand::List { config } => {
            let conn = store_connection(&config)?;
            println!(
                "{:<18} {:<8} {:<24} {:<28} name",
                "id", "role", "bots", "revoked"
            );
            for key in keys::keys(&conn)? {
                println!(
                    "{:<18} {:<8} {:<24} {:<28} {}",
                    key.id,
                    key.role.as_str(),
                    key.scope.to_text(),
                    key.revoked_at
                        .map(convlog_core::format_timestamp)
                        .unwrap_or_default(),
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id, config } => {
            let conn = store_connection(&config)?;
            keys::revoke_key(&conn, &id, convlog_core::now_micros())
                .map_err(|_| anyhow::anyhow!("no key {id:?}"))?;
            audit_cli(&conn, "cli keys revoke", &id)?;
            eprintln!("revoked key {id}");
            if !keys::any_active_key(&conn)? {
                eprintln!(
                    "warning: no active API keys remain. The server is in open mode again: on a \
                     loopback address it answers every local request without a key; elsewhere it \
                     refuses every request. Create a key with `convlog keys create` to close it."
                );
            }
        }
    }
    Ok(())
}

pub(super) fn audit_verify(config: ConfigArgs) -> anyhow::Result<()> {
    let conn = store_connection(&config)?;
    match convlog_engine::store::keys::verify_audit(&conn)? {
        Ok(count) => {
            println!("audit log intact: {count} entries");
            Ok(())
        }
        Err((id, reason)) => bail!("audit entry {id} does not verify: {reason}"),
    }
}
