//! `convlog keys` and `convlog audit`: straight on the store, beside a running
//! server, through the engine's [`Admin`] (each change audited with it).

use super::{ConfigArgs, KeysCommand};
use anyhow::bail;
use convlog_engine::admin::Admin;
use convlog_engine::auth::{KeyRequest, OPEN_MODE_WARNING};
use convlog_engine::store::StoreError;

fn open(config: &ConfigArgs) -> anyhow::Result<Admin> {
    let config = config.load()?;
    Ok(Admin::open(&config.server.data_dir.join("convlog.db"))?)
}

/// Now, by the service's clock (`CONVLOG_CLOCK_AT` / `CONVLOG_CLOCK_OFFSET`
/// move it in tests and drills, for the CLI as for the server).
fn now() -> anyhow::Result<convlog_core::Micros> {
    Ok(convlog_core::Clock::from_env()
        .map_err(anyhow::Error::msg)?
        .now())
}

pub(super) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            role,
            bots,
            name,
            config,
        } => {
            let request = KeyRequest::new(&role, &bots, name)
                .map_err(|(field, reason)| anyhow::anyhow!("--{field}: {reason}"))?;
            let issued = open(&config)?.create_key(request, now()?)?;
            eprintln!(
                "created key {} ({}); it is shown only now:",
                issued.record.id,
                issued.record.role.as_str()
            );
            println!("{}", issued.key);
        }
        KeysCommand::List { config } => {
            let admin = open(&config)?;
            println!(
                "{:<18} {:<8} {:<24} {:<28} name",
                "id", "role", "bots", "revoked"
            );
            for key in admin.keys()? {
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
            let revoked = open(&config)?
                .revoke_key(&id, now()?)
                .map_err(|err| match err {
                    StoreError::NotFound => anyhow::anyhow!("no key {id:?}"),
                    other => other.into(),
                })?;
            eprintln!("revoked key {id}");
            if !revoked.keys_remain {
                eprintln!("warning: {OPEN_MODE_WARNING}");
            }
        }
    }
    Ok(())
}

pub(super) fn audit_verify(config: ConfigArgs) -> anyhow::Result<()> {
    match open(&config)?.verify_audit()? {
        Ok(count) => {
            println!("audit log intact: {count} entries");
            Ok(())
        }
        Err((id, reason)) => bail!("audit entry {id} does not verify: {reason}"),
    }
}
