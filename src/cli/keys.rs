//! `convlog keys` and `convlog audit`: straight on the store, beside a running server.

use super::{ConfigArgs, KeysCommand};
use anyhow::bail;

fn store_connection(config: &ConfigArgs) -> anyhow::Result<rusqlite::Connection> {
    let config = config.load()?;
    Ok(convlog_engine::store::admin_connection(
        &config.server.data_dir.join("convlog.db"),
    )?)
}

/// Now, by the service's clock (`CONVLOG_CLOCK_AT` / `CONVLOG_CLOCK_OFFSET`
/// move it in tests and drills, for the CLI as for the server).
fn now() -> anyhow::Result<convlog_core::Micros> {
    Ok(convlog_core::Clock::from_env()
        .map_err(anyhow::Error::msg)?
        .now())
}

/// Records a key change made from the command line in the audit chain.
fn audit_cli(conn: &rusqlite::Connection, action: &str, target: &str) -> anyhow::Result<()> {
    Ok(convlog_engine::audit::append_cli(
        conn,
        action,
        target,
        now()?,
    )?)
}

pub(super) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use convlog_engine::auth::{KeyRequest, OPEN_MODE_WARNING};
    use convlog_engine::store::keys;
    match command {
        KeysCommand::Create {
            role,
            bots,
            name,
            config,
        } => {
            let request = KeyRequest::new(&role, &bots, name)
                .map_err(|(field, reason)| anyhow::anyhow!("--{field}: {reason}"))?;
            let conn = store_connection(&config)?;
            let issued = keys::issue_key(&conn, request, now()?)?;
            audit_cli(&conn, "cli keys create", &issued.record.id)?;
            eprintln!(
                "created key {} ({}); it is shown only now:",
                issued.record.id,
                issued.record.role.as_str()
            );
            println!("{}", issued.key);
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
            let revoked = keys::revoke(&conn, &id, now()?).map_err(|err| match err {
                convlog_engine::store::StoreError::NotFound => anyhow::anyhow!("no key {id:?}"),
                other => other.into(),
            })?;
            audit_cli(&conn, "cli keys revoke", &id)?;
            eprintln!("revoked key {id}");
            if !revoked.keys_remain {
                eprintln!("warning: {OPEN_MODE_WARNING}");
            }
        }
    }
    Ok(())
}

pub(super) fn audit_verify(config: ConfigArgs) -> anyhow::Result<()> {
    let conn = store_connection(&config)?;
    match convlog_engine::audit::verify(&conn)? {
        Ok(count) => {
            println!("audit log intact: {count} entries");
            Ok(())
        }
        Err((id, reason)) => bail!("audit entry {id} does not verify: {reason}"),
    }
}
