//! One launcher for the real `convlog serve`, shared by the end-to-end tests
//! (`tests/it/common.rs`, which adds a watchdog, restarts and HTTP helpers)
//! and the benchmarks (`benches/harness/server.rs`, which adds /proc meters;
//! `benches/reindex.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to start: `bin serve --listen 127.0.0.1:0 --data-dir DATA ARGS…`
/// (ARGS may name its own `--listen`).
#[derive(Debug, Clone)]
pub struct Launch {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// The server's stderr (its log) is appended here.
    pub log: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `CONVLOG_LOG`.
    pub log_level: String,
}

impl Launch {
    /// `bin serve` over `data_dir`, logging at `warn` to `log`.
    pub fn new(bin: &Path, data_dir: &Path, log: &Path) -> Launch {
        Launch {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            log_level: "warn".to_string(),
        }
    }

    /// Adds command-line arguments (e.g. `--set key=value`).
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_string()));
        self
    }

    /// Starts the process and waits (up to `patience`) for the address it
    /// listens on. Its stdout is drained from then on, so it never blocks.
    pub fn spawn(&self, patience: Duration) -> Result<Started, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|err| format!("opening {}: {err}", self.log.display()))?;
        let listen = match self.args.iter().any(|arg| arg == "--listen") {
            true => None,
            false => Some(["--listen", "127.0.0.1:0"]),
        };
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .args(listen.into_iter().flatten())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("CONVLOG_LOG", &self.log_level)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|err| format!("starting {}: {err}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // On a thread, so a server that hangs before printing can't hang the caller.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = sender.send(reader.read_line(&mut first).map(|_| first));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let first = match receiver.recv_timeout(patience) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => return Err(self.failed(child, &format!("reading its stdout: {err}"))),
            Err(_) => return Err(self.failed(child, "it printed no address")),
        };
        match first.trim().strip_prefix("convlog listening on ") {
            Some(base) => Ok(Started {
                child,
                base: base.to_string(),
            }),
            None => Err(self.failed(child, &format!("unexpected first line {first:?}"))),
        }
    }

    fn failed(&self, mut child: Child, what: &str) -> String {
        let _ = child.kill();
        let _ = child.wait();
        format!(
            "the server did not start: {what}\n--- server log ---\n{}",
            log_tail(&self.log)
        )
    }
}

/// A started server: its process and `http://127.0.0.1:PORT`.
pub struct Started {
    pub child: Child,
    pub base: String,
}

/// Polls `/readyz` of the server at `base` until it answers 200; fails when
/// `child` exits or `patience` runs out.
pub fn wait_ready(
    child: &mut Child,
    base: &str,
    agent: &ureq::Agent,
    patience: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Ok(response) = agent.get(format!("{base}/readyz")).call()
            && response.status() == 200
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the server exited with {status} before it was ready"
            ));
        }
        if started.elapsed() > patience {
            return Err(format!("/readyz did not turn 200 within {patience:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP client that reports 4xx/5xx as answers rather than errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        // A pooled connection is let go before the server's
        // `server.idle_timeout` (5 s) closes it: a POST sent on a connection
        // the server has closed gets no answer, and ureq retries only
        // idempotent requests (the access matrix failed so, under load).
        .max_idle_age(Duration::from_secs(2))
        .build()
        .into()
}

/// The last 60 lines of a log file.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
