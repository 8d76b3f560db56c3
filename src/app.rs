//! Start-up wiring: the data directory, store, index, indexer and search, held
//! together as the state every handler gets.

use crate::metrics::{Files, Gauges, Metrics, Process};
use anyhow::Context;
use convlog_core::{Clock, NewMessage, NewTrace};
use convlog_engine::archive::{ArchiveError, Archiver};
use convlog_engine::config::Config;
use convlog_engine::index::{IndexSchema, LiveIndex};
use convlog_engine::ingest::pseudonym::UserKeyer;
use convlog_engine::ingest::validate::IngestRules;
use convlog_engine::insights::InsightsService;
use convlog_engine::jobs::{JobRecord, Jobs};
use convlog_engine::query::SearchService;
use convlog_engine::review::ReviewService;
use convlog_engine::store::{IngestOutcome, Store, StoreError};
use convlog_engine::tag::Tagger;
use std::fs::File;
use std::sync::Arc;

/// Everything a request may need; cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

/// The parts of [`App`].
pub struct Inner {
    pub config: Config,
    /// HTTP handlers and the CLI go through the engine's services and the
    /// methods below, never the store itself; benches read it to measure.
    pub store: Store,
    /// Limits, pseudonyms and redaction: what every ingest path applies.
    pub rules: Arc<IngestRules>,
    pub search: SearchService,
    pub review: ReviewService,
    pub insights: InsightsService,
    pub audit: convlog_engine::audit::AuditLog,
    pub keys: convlog_engine::admin::Keys,
    pub index: Arc<LiveIndex>,
    pub tagger: Arc<Tagger>,
    pub jobs: Jobs,
    pub archiver: Archiver,
    pub rate_limiter: convlog_engine::auth::RateLimiter,
    /// How often refused requests are written to the audit log.
    pub refusal_audit: convlog_engine::auth::RateLimiter,
    /// Request bodies in memory, per key.
    pub body_budgets: convlog_engine::auth::BodyBudgets,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Whether active API keys existed at the last request (0 unknown, 1 no, 2 yes).
    key_state: std::sync::atomic::AtomicU8,
    /// Turns true when the server starts shutting down: live tails end, so
    /// they don't hold the drain.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Held for the life of the process: one process per data directory.
    _lock: File,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// Takes the data directory's lock, failing when another process holds it.
/// The directory and everything in it are made private to this user first.
pub fn lock_data_dir(config: &Config) -> anyhow::Result<File> {
    let dir = &config.server.data_dir;
    let umask = private_umask();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    make_private(dir, umask)
        .with_context(|| format!("restricting the permissions of {}", dir.display()))?;
    if let Some(archive) = config.archive_url().strip_prefix("file://")
        && std::path::Path::new(archive).exists()
    {
        make_private(std::path::Path::new(archive), umask)
            .with_context(|| format!("restricting the permissions of {archive}"))?;
    }
    let lock = File::create(dir.join("LOCK")).context("creating the lock file")?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another convlog process",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => Err(err).context("locking the data directory"),
    }
}

/// Adds "no access for group and others" to the process umask, so every file
/// the store, the index and a local archive create is 0600 (directories 0700)
/// or stricter; returns the umask now in force.
fn private_umask() -> u32 {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
        (old | 0o077) as u32
    }
    #[cfg(not(unix))]
    0o077
}

/// Takes group and other permissions (and what `umask` masks) off `root` and
/// everything under it: files made before this version, or by another tool.
fn make_private(root: &std::path::Path, umask: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![root.to_path_buf()];
        while let Some(path) = stack.pop() {
            // The root may be a link (a data directory on a mounted volume);
            // links inside it are not followed.
            let meta = match path == root {
                true => std::fs::metadata(&path)?,
                false => std::fs::symlink_metadata(&path)?,
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            let private = mode & 0o700 & !umask;
            if mode != private {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(private))?;
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    stack.push(entry?.path());
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (root, umask);
    Ok(())
}

impl App {
    /// Opens the data directory and starts the indexer; the index catches up in the background.
    pub fn open(config: Config) -> anyhow::Result<App> {
        let lock = lock_data_dir(&config)?;
        let dir = config.server.data_dir.clone();
        let keyer = UserKeyer::load_or_create(&dir.join("user-key.secret"))
            .context("loading the user-key secret")?;
        let rules = Arc::new(IngestRules {
            limits: config.ingest.clone(),
            keyer,
            redaction: config.privacy.clone(),
        });
        let store = Store::open(&dir.join("convlog.db")).context("opening the store")?;
        let schema = IndexSchema::load().context("loading index-schema")?;
        let index = Arc::new(
            LiveIndex::open(
                &dir,
                store.clone(),
                config.index.clone(),
                schema,
                config.index.on_schema_change,
            )
            .context("opening the index")?,
        );
        tracing::info!(
            store_position = store.head(),
            index_position = index.state().position(),
            data_dir = %dir.display(),
            "store and index opened"
        );
        let search = SearchService::new(index.clone(), store.clone(), config.search.clone());
        let clock = Clock::from_env().map_err(anyhow::Error::msg)?;
        let review =
            ReviewService::new(store.clone(), search.clone(), clock, config.review.clone());
        let insights = InsightsService::new(
            store.clone(),
            search.clone(),
            clock,
            config.search.languages.clone(),
        );
        let jobs = Jobs::open(store.clone(), clock).context("opening the job history")?;
        let audit = convlog_engine::audit::AuditLog::new(store.clone());
        let keys = convlog_engine::admin::Keys::new(store.clone());
        let tagger = Tagger::spawn(
            store.clone(),
            config.tagging.clone(),
            config.sessions.clone(),
            clock,
            config.index.refresh_interval,
        )
        .context("starting the tagging job")?;
        let archiver = Archiver::new(
            store.clone(),
            index.clone(),
            config.retention.clone(),
            &config.archive_url(),
            clock,
            io_runtime(),
        )
        .context("opening the archive")?;
        let rate_limiter =
            convlog_engine::auth::RateLimiter::new(config.auth.rate_limit, config.auth.rate_burst);
        let body_budgets =
            convlog_engine::auth::BodyBudgets::new(config.server.body_budget_per_key);
        Ok(App {
            inner: Arc::new(Inner {
                config,
                store,
                rules,
                search,
                review,
                insights,
                audit,
                keys,
                index,
                tagger: Arc::new(tagger),
                jobs,
                archiver,
                rate_limiter,
                // One refused request a second in the audit log, in bursts of 20.
                refusal_audit: convlog_engine::auth::RateLimiter::new(1.0, 20.0),
                body_budgets,
                clock,
                metrics: Arc::new(Metrics::default()),
                key_state: std::sync::atomic::AtomicU8::new(0),
                stopping: tokio::sync::watch::Sender::new(false),
                _lock: lock,
            }),
        })
    }

    /// Records whether active API keys exist, and says so in the log when
    /// revoking the last one put the server back in open mode.
    pub fn note_key_state(&self, any_key: bool) {
        use std::sync::atomic::Ordering;
        let state = if any_key { 2 } else { 1 };
        if self.key_state.swap(state, Ordering::Relaxed) == 2 && !any_key {
            tracing::warn!(
                listen = %self.config.server.listen,
                "{}",
                convlog_engine::auth::OPEN_MODE_WARNING
            );
        }
    }

    /// Stores validated messages; returns once they are durable.
    pub async fn ingest(&self, messages: Vec<NewMessage>) -> Result<IngestOutcome, StoreError> {
        self.within_backlog().await;
        let sessions = self.config.sessions.clone();
        self.store
            .write(move |ctx| ctx.ingest(messages, &sessions))
            .await
    }

    /// Queues a batch on the store's writer without waiting (the CLI's direct
    /// ingest keeps several in flight, so group commit can batch them).
    pub fn ingest_queued(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<convlog_engine::store::Pending<IngestOutcome>, StoreError> {
        let sessions = self.config.sessions.clone();
        self.store
            .write_queued(move |ctx| ctx.ingest(messages, &sessions))
    }

    /// Stores what one batch of a log carried, with its last position, in one
    /// transaction (see `store::sources`); waits for the index like [`App::ingest`].
    pub async fn ingest_from_source(
        &self,
        source: &str,
        position: u64,
        batch: convlog_engine::store::sources::SourceBatch,
    ) -> Result<convlog_engine::store::sources::SourceOutcome, StoreError> {
        self.within_backlog().await;
        let sessions = self.config.sessions.clone();
        let capture_all = self.config.ingest.capture_all_traces;
        let (source, now) = (source.to_string(), self.clock.now());
        let outcome = self
            .store
            .write(move |ctx| {
                ctx.ingest_from_source(&source, position, batch, &sessions, capture_all, now)
            })
            .await?;
        let count = |counter: &std::sync::atomic::AtomicU64, n: usize| {
            counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        };
        count(&self.metrics.ingested_messages, outcome.messages.accepted);
        count(&self.metrics.traces_stored, outcome.traces);
        count(&self.metrics.traces_dropped, outcome.traces_dropped);
        Ok(outcome)
    }

    /// Like [`App::ingest`], outside an async runtime.
    pub fn ingest_blocking(&self, messages: Vec<NewMessage>) -> Result<IngestOutcome, StoreError> {
        let sessions = self.config.sessions.clone();
        self.store
            .write_blocking(move |ctx| ctx.ingest(messages, &sessions))
    }

    /// Stores trace events of conversations with debug logging on (of all with
    /// `keep_all` or `ingest.capture_all_traces`); returns (stored, dropped).
    pub async fn store_traces(
        &self,
        traces: Vec<NewTrace>,
        keep_all: bool,
    ) -> Result<(usize, usize), StoreError> {
        let sessions = self.config.sessions.clone();
        let capture_all = keep_all || self.config.ingest.capture_all_traces;
        self.store
            .write(move |ctx| ctx.store_traces(traces, &sessions, capture_all))
            .await
    }

    /// Waits while the index is more than `index.max_backlog` changes behind
    /// the store, so that a burst can't leave searches minutes behind what was
    /// acknowledged. The request's timeout bounds the wait.
    async fn within_backlog(&self) {
        let max = self.config.index.max_backlog;
        let backlog = || {
            let position = self.index.state().position();
            self.store.head().saturating_sub(position)
        };
        if max == 0 || backlog() <= max {
            return;
        }
        let started = std::time::Instant::now();
        while backlog() > max {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.metrics.ingest_backlog_wait.observe(started.elapsed());
    }

    /// How far the index is behind the store: changes, and seconds the oldest has waited.
    pub fn index_lag(&self) -> (u64, f64) {
        let position = self.index.state().position();
        (
            self.store.head().saturating_sub(position),
            self.store.behind_for(position).as_secs_f64(),
        )
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        let state = self.index.state();
        let (_, lag_seconds) = self.index_lag();
        let view = self.index.index().view();
        self.metrics.render(&Gauges {
            store_head: self.store.head(),
            index_position: state.position(),
            index_lag_seconds: lag_seconds,
            index_partitions: view.partitions.len() as u64,
            index_commits: state.commits(),
            ready: state.ready().is_ok(),
            redactions: self.rules.redaction.counts(),
            index_parts: self.index.index().partition_stats(),
            files: Files::of(&self.config.server.data_dir),
            jobs: self.jobs.metrics().unwrap_or_default(),
            archive: &self.archiver.stats,
            archive_schedule_seconds: self
                .config
                .retention
                .schedule
                .map_or(0.0, |every| every.as_secs_f64()),
            tagger_lag: self.store.head().saturating_sub(
                self.tagger
                    .status
                    .position
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            tagger_last_full_run: self
                .tagger
                .status
                .last_full_run
                .load(std::sync::atomic::Ordering::Relaxed)
                as f64
                / 1e6,
            tails_open: self.search.recent().open(),
            tails_yielded_seconds: self.search.recent().yielded_seconds(),
            process: Process::now(),
        })
    }

    /// Starts a full tagging run as a job (or returns the one running); its
    /// result counts the conversations re-tagged.
    pub async fn start_full_tagging(&self) -> Result<JobRecord, StoreError> {
        let tagger = self.tagger.clone();
        self.jobs
            .start("tagging", move |progress| {
                tagger.full_run(progress.clone())?;
                Ok(Some(serde_json::json!({
                    "conversations": progress.processed.load(std::sync::atomic::Ordering::Relaxed)
                })))
            })
            .await
    }

    /// Starts a reindex as a job (or returns the one running); its result
    /// counts the conversations written into the new index.
    pub async fn start_reindex(&self) -> Result<JobRecord, StoreError> {
        let index = self.index.clone();
        self.jobs
            .start("reindex", move |progress| {
                index.reindex(&progress)?;
                Ok(Some(serde_json::json!({
                    "conversations": progress.processed.load(std::sync::atomic::Ordering::Relaxed)
                })))
            })
            .await
    }

    /// Starts an archive pass as a job (or returns the one running); its result
    /// is the pass's [`ArchiveSummary`](convlog_engine::archive::ArchiveSummary).
    pub async fn start_archive(&self) -> Result<JobRecord, StoreError> {
        let archiver = self.archiver.clone();
        self.jobs
            .start("archive", move |progress| {
                let summary = archiver.run(&progress).map_err(|err| err.to_string())?;
                tracing::info!(?summary, "archive pass finished");
                Ok(serde_json::to_value(summary).ok())
            })
            .await
    }

    /// Starts a restore of `bot_id`'s conversations active in `[from, to)` as a
    /// job; its result is the [`RestoreSummary`](convlog_engine::archive::RestoreSummary).
    pub async fn start_restore(
        &self,
        bot_id: String,
        from: convlog_core::Micros,
        to: convlog_core::Micros,
    ) -> Result<JobRecord, StoreError> {
        let archiver = self.archiver.clone();
        self.jobs
            .start("restore", move |progress| {
                let summary = archiver
                    .restore(&bot_id, from, to, &progress)
                    .map_err(|err: ArchiveError| err.to_string())?;
                tracing::info!(?summary, "restore finished");
                Ok(serde_json::to_value(summary).ok())
            })
            .await
    }

    /// Records the erasure of end user `user_id` (the raw id as ingested; only
    /// its keyed hash goes further) of `bot_id` with its audit entry, and
    /// starts it as a job; its result is the [`ErasureSummary`](convlog_engine::archive::ErasureSummary).
    pub async fn start_erasure(
        &self,
        bot_id: String,
        user_id: &str,
        key_id: Option<String>,
        request_id: String,
    ) -> Result<JobRecord, StoreError> {
        let id = self
            .plan_erasure(bot_id, user_id, key_id, request_id)
            .await?;
        let archiver = self.archiver.clone();
        self.jobs
            .start_another("erase", move |progress| {
                let summary = archiver
                    .erase(id, &progress)
                    .map_err(|err: ArchiveError| err.to_string())?;
                tracing::info!(?summary, "erasure finished");
                Ok(serde_json::to_value(summary).ok())
            })
            .await
    }

    /// Carries on, as a job, the erasures a crash left unfinished.
    pub async fn resume_erasures(&self) -> Result<(), StoreError> {
        let unfinished = self
            .store
            .read_async(convlog_engine::store::erasure::unfinished_erasures)
            .await?;
        if unfinished.is_empty() {
            return Ok(());
        }
        tracing::info!(count = unfinished.len(), "resuming unfinished erasures");
        let archiver = self.archiver.clone();
        self.jobs
            .start_another("erase", move |_| {
                let resumed = archiver
                    .resume_erasures()
                    .map_err(|err: ArchiveError| err.to_string())?;
                Ok(Some(serde_json::json!({ "resumed": resumed })))
            })
            .await?;
        Ok(())
    }

    /// Records an erasure and its audit entry (action `erase`, target `user
    /// <user key>`: never the raw id); its id.
    pub async fn plan_erasure(
        &self,
        bot_id: String,
        user_id: &str,
        key_id: Option<String>,
        request_id: String,
    ) -> Result<u64, StoreError> {
        let user_key = self.rules.keyer.key(&bot_id, user_id).0;
        let audit = convlog_engine::store::keys::NewAuditEntry {
            at: self.clock.now(),
            key_id,
            action: "erase".into(),
            target: format!("user {user_key}"),
            bot_id: Some(bot_id.clone()),
            request_id,
            status: 202,
        };
        // Dead letters are kept as they came, raw id and all: those holding it go now.
        let needle = serde_json::to_vec(user_id).expect("a string serialises");
        self.store
            .write(move |ctx| ctx.forget_dead_letters_holding(&needle))
            .await?;
        let archiver = self.archiver.clone();
        tokio::task::spawn_blocking(move || archiver.plan_erasure(&bot_id, &user_key, audit))
            .await
            .map_err(|err| StoreError::Unavailable(err.to_string()))?
            .map_err(|err| StoreError::Unavailable(err.to_string()))
    }

    /// Stops jobs and the tagger, finishes pending writes, then indexes and commits what is left.
    pub fn shutdown(&self) {
        self.jobs.cancel_all();
        self.tagger.shutdown();
        self.store.shutdown();
        self.index.shutdown();
    }
}

/// Runs the HTTP service until SIGTERM or Ctrl-C, then shuts down cleanly.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let app = tokio::task::spawn_blocking(move || App::open(config)).await??;
    let has_keys = app
        .store
        .read_async(convlog_engine::store::keys::any_active_key)
        .await?;
    let address = listener.local_addr()?;
    if !has_keys && !address.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {address} without API keys: anyone could read the logs. \
             Create one with `convlog keys create --role admin --bots '*'`, or listen on 127.0.0.1"
        );
    }
    if !has_keys {
        tracing::warn!(%address, "no API keys: every request is accepted (loopback only)");
    }
    if app.index.outdated() {
        tracing::info!("the index schema changed: reindexing, the old index serves until then");
        app.start_reindex().await?;
    }
    if app.tagger.rules_changed {
        tracing::info!(
            "tagging rules changed since the last full run; re-tagging every conversation"
        );
        app.start_full_tagging().await?;
    }
    app.resume_erasures().await?;
    if let Some(every) = app.config.retention.schedule {
        tokio::spawn(archive_schedule(app.clone(), every));
    }
    crate::sources::spawn_all(&app);
    // Tests and scripts read this line to find a port chosen with :0.
    println!("convlog listening on http://{address}");
    tracing::info!(%address, "listening");
    let server = &app.config.server;
    let limits = crate::http::ConnectionLimits {
        max_connections: server.max_connections,
        header_timeout: server.header_timeout,
        idle_timeout: server.idle_timeout,
    };
    crate::http::serve(
        listener,
        crate::http::router(app.clone()),
        limits,
        app.metrics.clone(),
        async {
            shutdown_signal().await;
            let _ = app.stopping.send(true);
        },
        server.request_timeout,
    )
    .await;
    tracing::info!("shutting down: finishing writes and the last index commit");
    tokio::task::spawn_blocking(move || app.shutdown()).await?;
    Ok(())
}

/// Starts an archive pass every `every`; the first a minute after start (at most),
/// so runs a crash left unfinished are resumed soon.
async fn archive_schedule(app: App, every: std::time::Duration) {
    let first = tokio::time::Instant::now() + every.min(std::time::Duration::from_secs(60));
    let mut ticker = tokio::time::interval_at(first, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(err) = app.start_archive().await {
            tracing::warn!(error = %err, "could not start the scheduled archive pass");
        }
    }
}

/// The tokio runtime archive uploads run on: the caller's, or (from a plain
/// thread, as in the command line's direct mode) one kept for the process.
fn io_runtime() -> tokio::runtime::Handle {
    static OWN: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
        OWN.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("archive-io")
                .enable_all()
                .build()
                .expect("starting the archive's I/O runtime")
        })
        .handle()
        .clone()
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
