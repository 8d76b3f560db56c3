//! The command line: raw arguments (clap) resolved into actions.

use crate::app::{self, App};
use crate::config::{Config, Sources};
use crate::ingest::validate::{BodyFormat, ValidationError, parse_items, validate_messages};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// convlog keeps the conversation logs of chatbots.
#[derive(Debug, Parser)]
#[command(name = "convlog", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP API and indexer).
    Serve(ConfigArgs),
    /// Load NDJSON messages: through a running server, or straight into the data directory.
    Ingest(IngestArgs),
    /// Write generated, realistic conversation logs as NDJSON to stdout.
    Generate(GenerateArgs),
    /// Rebuild the search index from the store (through a running server, or directly).
    Reindex(AdminArgs),
    /// Archive every conversation past its retention period to Parquet (through
    /// the running server, or directly on the data directory).
    Archive(ArchiveArgs),
    /// Bring archived conversations of a bot back into the hot store and index.
    Restore(RestoreArgs),
    /// List recent background jobs.
    Jobs(AdminArgs),
    /// Manage API keys (works beside a running server).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `convlog keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and stored only hashed.
    Create {
        /// viewer, editor, ingest or admin.
        #[arg(long)]
        role: String,
        /// Bots the key may touch: "*" or a comma-separated list.
        #[arg(long)]
        bots: String,
        /// A name to recognise it by.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a key: it stops working at the next request.
    Revoke {
        /// The key's id (the part after `clk_`, before the next `_`).
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `convlog audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; fails naming the first entry that was changed.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Where an admin command acts: a running server, or the data directory.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The server (e.g. http://127.0.0.1:7700) instead of looking for one at the configured address.
    #[arg(long)]
    pub server: Option<String>,
    /// Act on the data directory even if a server answers at the configured address.
    #[arg(long, conflicts_with = "server")]
    pub direct: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Where settings come from.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Print what would be archived, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bot whose conversations come back.
    #[arg(long = "bot")]
    pub bot_id: String,
    /// Start of the range (RFC 3339): conversations active in [from, to).
    #[arg(long)]
    pub from: String,
    /// End of the range (RFC 3339, exclusive).
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// A config file layered over the embedded defaults (env: CONVLOG_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (env: CONVLOG_LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (env: CONVLOG_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Override any setting: --set index.refresh_interval=2s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// Loads the configuration with the process environment.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&Sources {
            file: self.config.clone(),
            env: std::env::vars().collect(),
            overrides: self.overrides.clone(),
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
        })?)
    }
}

/// `convlog ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON file of messages ("-" for stdin).
    pub file: PathBuf,
    /// Send to this server (e.g. http://127.0.0.1:7700) instead of looking for one at the configured address.
    #[arg(long)]
    pub server: Option<String>,
    /// Write into the data directory even if a server answers at the configured address.
    #[arg(long, conflicts_with = "server")]
    pub direct: bool,
    /// Messages per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `convlog generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Seed: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of conversations.
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// Bots to spread conversations over (comma-separated).
    #[arg(long, default_value = "demo", value_delimiter = ',')]
    pub bots: Vec<String>,
    /// End of the generated time span (RFC 3339); default: now.
    #[arg(long)]
    pub end: Option<String>,
    /// Length of the time span in days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.load()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(app::serve(config))
        }
        Command::Ingest(args) => ingest(args),
        Command::Generate(args) => generate(args),
        Command::Reindex(args) => reindex(args),
        Command::Archive(args) => archive(args),
        Command::Restore(args) => restore(args),
        Command::Jobs(args) => jobs(args),
        Command::Keys(command) => keys(command),
        Command::Audit(AuditCommand::Verify { config }) => audit_verify(config),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let end = match &args.end {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--end {text:?} is not RFC 3339"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let mut config = crate::generate::GenConfig::new(args.seed, args.conversations, end);
    config.bots = args.bots;
    config.span_days = args.days;
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    crate::generate::write_ndjson(&config, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Reads NDJSON in batches of `size` lines.
fn batches(
    file: &PathBuf,
    size: usize,
) -> anyhow::Result<impl Iterator<Item = std::io::Result<Vec<String>>>> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let mut lines = reader
        .lines()
        .filter(|line| !matches!(line, Ok(l) if l.trim().is_empty()));
    Ok(std::iter::from_fn(move || {
        let mut batch = Vec::with_capacity(size);
        for line in lines.by_ref() {
            match line {
                Ok(line) => batch.push(line),
                Err(err) => return Some(Err(err)),
            }
            if batch.len() == size {
                break;
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    }))
}

fn server_answers(base: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    agent.get(&format!("{base}/healthz")).call().is_ok()
}

/// The server to talk to: the one named, or one answering at the configured address, unless `direct`.
fn server_for(config: &Config, server: &Option<String>, direct: bool) -> Option<String> {
    let local = {
        let mut address = config.server.listen;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    };
    match (server, direct) {
        (Some(url), _) => Some(url.trim_end_matches('/').to_string()),
        (None, true) => None,
        (None, false) => server_answers(&local).then_some(local),
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let config = args.config.load()?;
    let started = Instant::now();
    let (accepted, duplicates) = match server_for(&config, &args.server, args.direct) {
        Some(url) => {
            eprintln!("ingesting through {url}");
            ingest_http(&url, &args)?
        }
        None => {
            eprintln!("ingesting into {}", config.server.data_dir.display());
            ingest_direct(config, &args)?
        }
    };
    eprintln!(
        "{accepted} messages stored, {duplicates} duplicates skipped in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends a request and parses the JSON answer, failing on an error status.
fn call(
    request: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<serde_json::Value> {
    let mut response = request?;
    let text = response.body_mut().read_to_string()?;
    if !response.status().is_success() {
        bail!("{}: {text}", response.status());
    }
    Ok(serde_json::from_str(&text)?)
}

/// A progress bar on a terminal, nothing otherwise.
fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0).with_message(message);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Follows a job the server started until it ends, on a progress bar.
fn follow_job(
    agent: &ureq::Agent,
    url: &str,
    job: serde_json::Value,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<serde_json::Value> {
    let id = job["id"].as_str().unwrap_or_default().to_string();
    loop {
        let job = call(agent.get(&format!("{url}/v1/admin/jobs/{id}")).call())?;
        bar.set_length(job["total"].as_u64().unwrap_or(0));
        bar.set_position(job["processed"].as_u64().unwrap_or(0));
        match job["state"].as_str() {
            Some("succeeded") => return Ok(job),
            Some("failed") => bail!("{} failed: {}", job["kind"], job["error"]),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Runs `work` on its own thread beside a progress bar fed from its `Progress`.
fn with_progress<T: Send + 'static>(
    bar: &indicatif::ProgressBar,
    work: impl FnOnce(&crate::jobs::Progress) -> T + Send + 'static,
) -> anyhow::Result<T> {
    use std::sync::atomic::Ordering::Relaxed;
    let progress = std::sync::Arc::new(crate::jobs::Progress::default());
    let shared = progress.clone();
    let worker = std::thread::spawn(move || work(&shared));
    while !worker.is_finished() {
        bar.set_length(progress.total.load(Relaxed));
        bar.set_position(progress.processed.load(Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the work panicked"))
}

fn reindex(args: AdminArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let bar = progress_bar("reindexing");
    match server_for(&config, &args.server, args.direct) {
        Some(url) => {
            let agent = agent();
            let job = call(agent.post(&format!("{url}/v1/admin/reindex")).send_empty())?;
            follow_job(&agent, &url, job, &bar)?;
        }
        None => {
            // This is the remedy `on_schema_change = "refuse"` names: open whatever is there.
            let mut config = config;
            config.index.on_schema_change = crate::index::SchemaChange::Rebuild;
            let app = App::open(config)?;
            let index = app.index.clone();
            let result = with_progress(&bar, move |progress| index.reindex(progress))?;
            app.shutdown();
            result.map_err(anyhow::Error::msg)?;
        }
    }
    bar.finish_and_clear();
    eprintln!("reindexed");
    Ok(())
}

fn archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let config = args.admin.config.load()?;
    let server = server_for(&config, &args.admin.server, args.admin.direct);
    if args.dry_run {
        let plan = match server {
            Some(url) => call(
                agent()
                    .post(&format!("{url}/v1/admin/archive?dry_run=true"))
                    .send_empty(),
            )?["plan"]
                .clone(),
            None => {
                let app = App::open(config)?;
                let plan = app.archiver.dry_run();
                app.shutdown();
                serde_json::to_value(plan?)?
            }
        };
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    let bar = progress_bar("archiving");
    match server {
        Some(url) => {
            let agent = agent();
            let job = call(agent.post(&format!("{url}/v1/admin/archive")).send_empty())?;
            follow_job(&agent, &url, job, &bar)?;
            bar.finish_and_clear();
            eprintln!("archived; see GET {url}/v1/admin/archive/partitions");
        }
        None => {
            let app = App::open(config)?;
            let archiver = app.archiver.clone();
            let summary = with_progress(&bar, move |progress| archiver.run(progress))?;
            app.shutdown();
            bar.finish_and_clear();
            println!("{}", serde_json::to_string_pretty(&summary?)?);
        }
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let config = args.admin.config.load()?;
    let bar = progress_bar("restoring");
    match server_for(&config, &args.admin.server, args.admin.direct) {
        Some(url) => {
            let agent = agent();
            let body = serde_json::json!({"bot_id": args.bot_id, "from": args.from, "to": args.to});
            let job = call(
                agent
                    .post(&format!("{url}/v1/admin/restore"))
                    .send_json(&body),
            )?;
            let job = follow_job(&agent, &url, job, &bar)?;
            bar.finish_and_clear();
            eprintln!("restored {} conversations", job["processed"]);
        }
        None => {
            let from = crate::model::parse_timestamp(&args.from)
                .with_context(|| format!("--from {:?} is not an RFC 3339 timestamp", args.from))?;
            let to = crate::model::parse_timestamp(&args.to)
                .with_context(|| format!("--to {:?} is not an RFC 3339 timestamp", args.to))?;
            if from >= to {
                bail!("--to must be after --from");
            }
            let app = App::open(config)?;
            let archiver = app.archiver.clone();
            let bot_id = args.bot_id.clone();
            let summary = with_progress(&bar, move |progress| {
                archiver.restore(&bot_id, from, to, progress)
            })?;
            app.shutdown();
            bar.finish_and_clear();
            println!("{}", serde_json::to_string_pretty(&summary?)?);
        }
    }
    Ok(())
}

fn jobs(args: AdminArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let list = match server_for(&config, &args.server, args.direct) {
        Some(url) => call(agent().get(&format!("{url}/v1/admin/jobs")).call())?["jobs"].clone(),
        None => {
            let _lock = app::lock_data_dir(&config)?;
            let store = crate::store::Store::open(&config.server.data_dir.join("convlog.db"))?;
            let jobs = crate::jobs::Jobs::open(store.clone(), crate::model::Clock::default())?;
            let list = tokio::runtime::Builder::new_current_thread()
                .build()?
                .block_on(jobs.list(100))?;
            store.shutdown();
            serde_json::Value::Array(list.iter().map(crate::jobs::JobRecord::to_json).collect())
        }
    };
    println!(
        "{:<20} {:<9} {:<10} {:>21}  {:<24} error",
        "id", "kind", "state", "processed/total", "started"
    );
    for job in list.as_array().into_iter().flatten() {
        println!(
            "{:<20} {:<9} {:<10} {:>21}  {:<24} {}",
            job["id"].as_str().unwrap_or(""),
            job["kind"].as_str().unwrap_or(""),
            job["state"].as_str().unwrap_or(""),
            format!("{}/{}", job["processed"], job["total"]),
            job["started_at"].as_str().unwrap_or(""),
            job["error"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

fn ingest_http(url: &str, args: &IngestArgs) -> anyhow::Result<(u64, u64)> {
    let agent = agent();
    let (mut accepted, mut duplicates) = (0, 0);
    for (number, batch) in batches(&args.file, args.batch)?.enumerate() {
        let body = batch?.join("\n");
        let mut response = agent
            .post(&format!("{url}/v1/messages"))
            .content_type("application/x-ndjson")
            .send(body.as_bytes())
            .with_context(|| format!("sending batch {number}"))?;
        let text = response.body_mut().read_to_string()?;
        if !response.status().is_success() {
            bail!("batch {number} refused ({}): {text}", response.status());
        }
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"].as_u64().unwrap_or(0);
    }
    Ok((accepted, duplicates))
}

fn ingest_direct(config: Config, args: &IngestArgs) -> anyhow::Result<(u64, u64)> {
    /// Batches queued at once: the writer folds them into one transaction and one fsync.
    const IN_FLIGHT: usize = 8;
    let app = App::open(config)?;
    let (mut accepted, mut duplicates) = (0, 0);
    let mut pending = std::collections::VecDeque::new();
    let mut settle =
        |pending: crate::store::Pending<crate::store::IngestOutcome>| -> anyhow::Result<()> {
            let outcome = pending.wait()?;
            accepted += outcome.accepted as u64;
            duplicates += outcome.duplicates as u64;
            Ok(())
        };
    for (number, batch) in batches(&args.file, args.batch)?.enumerate() {
        let body = batch?.join("\n");
        let items = parse_items(body.as_bytes(), BodyFormat::Ndjson, &app.config.ingest);
        let messages =
            items.and_then(|items| validate_messages(&items, &app.config.ingest, &app.keyer));
        let messages = match messages {
            Ok(messages) => messages,
            Err(ValidationError::Invalid(details)) => {
                bail!(
                    "batch {number} refused: {}",
                    serde_json::to_string(&details)?
                )
            }
            Err(err) => bail!("batch {number} refused: {err}"),
        };
        let sessions = app.config.sessions.clone();
        pending.push_back(
            app.store
                .write_queued(move |ctx| ctx.ingest(messages, &sessions))?,
        );
        if pending.len() >= IN_FLIGHT {
            settle(pending.pop_front().expect("non-empty"))?;
        }
    }
    for queued in pending {
        settle(queued)?;
    }
    eprintln!("indexing…");
    app.shutdown();
    Ok((accepted, duplicates))
}

fn store_connection(config: &ConfigArgs) -> anyhow::Result<rusqlite::Connection> {
    let config = config.load()?;
    Ok(crate::store::admin_connection(
        &config.server.data_dir.join("convlog.db"),
    )?)
}

/// Records a key change made from the command line in the audit chain.
fn audit_cli(conn: &rusqlite::Connection, action: &str, target: &str) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let entry = crate::store::keys::NewAuditEntry {
        at: crate::model::now_micros(),
        key_id: None,
        action: action.to_string(),
        target: target.to_string(),
        bot_id: None,
        request_id: "cli".into(),
        status: 200,
    };
    match crate::store::keys::append_audit(conn, &entry) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err.into())
        }
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use crate::auth::{KeyRecord, Role, Scope, new_key};
    use crate::store::keys;
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
                    created_at: crate::model::now_micros(),
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
                        .map(crate::model::format_timestamp)
                        .unwrap_or_default(),
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id, config } => {
            let conn = store_connection(&config)?;
            keys::revoke_key(&conn, &id, crate::model::now_micros())
                .map_err(|_| anyhow::anyhow!("no key {id:?}"))?;
            audit_cli(&conn, "cli keys revoke", &id)?;
            eprintln!("revoked key {id}");
        }
    }
    Ok(())
}

fn audit_verify(config: ConfigArgs) -> anyhow::Result<()> {
    let conn = store_connection(&config)?;
    match crate::store::keys::verify_audit(&conn)? {
        Ok(count) => {
            println!("audit log intact: {count} entries");
            Ok(())
        }
        Err((id, reason)) => bail!("audit entry {id} does not verify: {reason}"),
    }
}
