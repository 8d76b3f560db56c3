//! The command line: raw arguments (clap) resolved into actions.
//!
//! Client commands (`ingest`, `jobs`, `archive`, `restore`, `erase`,
//! `reindex`, `retag`) reach convlog one of two ways, chosen in [`client::resolve`]: over
//! HTTP through a running server (with an API key when the server has keys),
//! or directly on a data directory no server holds. `keys` and `audit` always
//! work on the store itself, beside a running server. docs/cli.md is the
//! user's guide.

mod admin;
mod client;
mod ingest;
mod keys;
mod output;

use crate::app;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use convlog_engine::config::{Config, Sources};
use std::io::Write;
use std::path::PathBuf;

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
    /// Load messages from an NDJSON file or a JSON-array file: through a running
    /// server, or straight into the data directory.
    ///
    /// The format is told by the first non-blank character: `[` starts a JSON
    /// array of messages, anything else is NDJSON (one message per line; blank
    /// lines are skipped). Messages go in batches; a refused batch stops the
    /// load, naming the lines (or array items) at fault and what was stored
    /// before it. Re-running the same file is safe: stored messages are skipped
    /// as duplicates.
    Ingest(IngestArgs),
    /// Write generated, realistic conversation logs as NDJSON to stdout.
    Generate(GenerateArgs),
    /// Rebuild the search index from the store (through a running server, or directly).
    ///
    /// Through a server the new index is built beside the live one and swapped
    /// in; searches never stop.
    Reindex(ClientArgs),
    /// Archive every conversation past its retention period to Parquet (through
    /// the running server, or directly on the data directory).
    ///
    /// With --dry-run: a table of what is due per bot, changing nothing.
    Archive(ArchiveArgs),
    /// Bring archived conversations of a bot back into the hot store and index.
    ///
    /// Conversations active in [--from, --to) come back read-only for
    /// `retention.restore_hold`. Fails when nothing of the bot is archived in
    /// that range.
    Restore(RestoreArgs),
    /// Erase one end user of one bot: every message, conversation, label,
    /// flag, share link, trace and tag, from the store, the index and the
    /// archive (whose objects holding their rows are rewritten). Erasing again
    /// changes nothing. Through a server this is `POST /v1/admin/erase`.
    Erase(EraseArgs),
    /// Re-run the tagging rules over every hot conversation.
    ///
    /// The tagging job tags new and changed conversations by itself; run this
    /// after changing the rules in the configuration (a server re-tags once at
    /// start when it sees changed rules) or to recompute every tag. Through a
    /// server this is `POST /v1/admin/tagging`, followed until it ends.
    Retag(ClientArgs),
    /// List recent background jobs (reindex, tagging, archive, restore).
    Jobs(ClientArgs),
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

/// How a client command reaches convlog, and how it answers.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server to talk to: a URL or host:port (http:// is assumed). Without
    /// it: the server at the configured address (server.listen), if one answers.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API key for a server that has keys, sent as `Authorization: Bearer KEY`.
    #[arg(
        long,
        env = "CONVLOG_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Work on the data directory itself, not through a server (no server may hold it).
    #[arg(long, conflicts_with = "server")]
    pub direct: bool,
    /// Print JSON on stdout for scripts, instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `convlog archive`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Print what would be archived, per bot; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `convlog restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bot whose conversations come back.
    #[arg(long = "bot")]
    pub bot_id: String,
    /// Start of the range (RFC 3339, `now` or `now-7d`…): conversations active in [from, to).
    #[arg(long)]
    pub from: String,
    /// End of the range (RFC 3339, `now` or `now-<n><unit>`; exclusive).
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `convlog erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The bot the user talked to.
    #[arg(long = "bot")]
    pub bot_id: String,
    /// The end user's id as ingested (hashed here; never stored or logged).
    #[arg(long = "user")]
    pub user_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Where settings come from.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// A config file layered over the embedded defaults (env: CONVLOG_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on; client commands look for a server there (env: CONVLOG_LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (env: CONVLOG_DATA_DIR). Client commands work on it directly
    /// unless a running convlog holds it.
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
    /// NDJSON or JSON-array file of messages ("-" for stdin).
    pub file: PathBuf,
    /// Messages per batch (one request, or one transaction directly).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[command(flatten)]
    pub client: ClientArgs,
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
    /// What the texts are like: `realistic` (what a support bot sees, in five
    /// languages, with typos and requests it can't serve) or `zipf` (the
    /// benchmarks' English with a long tail of rare words).
    #[arg(long, value_enum, default_value_t = TextArg::Realistic)]
    pub text: TextArg,
}

/// `convlog generate --text`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TextArg {
    Realistic,
    Zipf,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // The server's log takes `log.format` from its configuration; the other
    // commands write text.
    if !matches!(cli.command, Command::Serve(_)) {
        crate::logging::init(convlog_engine::settings::LogFormat::Text);
    }
    match cli.command {
        Command::Serve(args) => {
            let config = args.load()?;
            crate::logging::init(config.log);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(app::serve(config))
        }
        Command::Ingest(args) => ingest::ingest(args),
        Command::Generate(args) => generate(args),
        Command::Reindex(args) => admin::reindex(args),
        Command::Archive(args) => admin::archive(args),
        Command::Restore(args) => admin::restore(args),
        Command::Erase(args) => admin::erase(args),
        Command::Retag(args) => admin::retag(args),
        Command::Jobs(args) => admin::jobs(args),
        Command::Keys(command) => keys::keys(command),
        Command::Audit(AuditCommand::Verify { config }) => keys::audit_verify(config),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let end = match &args.end {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--end {text:?} is not RFC 3339"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let mut config = convlog_gen::GenConfig::new(args.seed, args.conversations, end);
    config.bots = args.bots;
    config.span_days = args.days;
    config.text = match args.text {
        TextArg::Realistic => convlog_gen::TextStyle::Realistic,
        TextArg::Zipf => convlog_gen::TextStyle::Zipf,
    };
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    convlog_gen::write_ndjson(&config, &mut out)?;
    out.flush()?;
    Ok(())
}
