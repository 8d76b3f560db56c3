//! Shared harness: the real `convlog` binary on a random port, a small HTTP
//! client, generated data and a seeded PRNG.

use chrono::{DateTime, TimeZone, Utc};
use convlog_gen::{GenConfig, GenMessage, generate};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where generated timestamps end: fixed so every run sees the same data.
pub fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

/// A `from` that lies before all generated data (the generator spans at most 30 days by default).
pub const ALL_FROM: &str = "2026-01-01T00:00:00Z";
/// A `to` that lies after all generated data.
pub const ALL_TO: &str = "2027-01-01T00:00:00Z";

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_convlog")
}

/// How long to wait for start-up, readiness and indexing before calling it a hang.
const PATIENCE: Duration = Duration::from_secs(90);

/// A `convlog serve` process on a temporary data directory.
///
/// Besides the server, a tiny `sh` watchdog holds the read end of a pipe whose
/// write end only this process owns: if the test binary dies without running
/// `Drop` (a fixture in a `static`, an abort), the pipe closes and the watchdog
/// kills the server, so no server outlives the test run.
pub struct Server {
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
    base: String,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_level: String,
    agent: ureq::Agent,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }
}

/// An HTTP client that reports 4xx/5xx as answers rather than errors.
pub fn agent() -> ureq::Agent {
    convlog_testkit::agent(Duration::from_secs(120))
}

impl Server {
    /// Starts a server with its data in `<root>/data` and its log in `<root>/server.log`.
    pub fn start(root: &Path, extra_args: &[&str]) -> Server {
        Server::start_with_log_level(root, extra_args, "warn")
    }

    /// Like [`Server::start`] with `CONVLOG_LOG` set to `level`.
    pub fn start_with_log_level(root: &Path, extra_args: &[&str], level: &str) -> Server {
        Server::start_with_env(root, extra_args, &[], level)
    }

    /// Like [`Server::start`], returning as soon as the server listens, before
    /// `/readyz` is green (for tests that watch it turn).
    pub fn start_unready(root: &Path, extra_args: &[&str]) -> Server {
        let mut server = Server::new(root, extra_args, &[], "warn");
        server.spawn();
        server
    }

    /// Like [`Server::start`] with extra environment variables (`CONVLOG_CLOCK_AT`, …).
    pub fn start_with_env(
        root: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
        level: &str,
    ) -> Server {
        let mut server = Server::new(root, extra_args, env, level);
        server.launch();
        server
    }

    fn new(root: &Path, extra_args: &[&str], env: &[(&str, &str)], level: &str) -> Server {
        Server {
            child: None,
            watchdog: None,
            base: String::new(),
            data_dir: root.join("data"),
            log: root.join("server.log"),
            args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_level: level.to_string(),
            agent: agent(),
        }
    }

    /// Starts the process and waits until it is ready.
    fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the process (with the test settings) and reads the address it listens on.
    fn spawn(&mut self) {
        let launch = convlog_testkit::Launch {
            env: self.env.clone(),
            log_level: self.log_level.clone(),
            ..convlog_testkit::Launch::new(Path::new(binary()), &self.data_dir, &self.log)
        }
        .args(["--set", "index.refresh_interval=100ms"])
        // No archive pass unless a test asks (the fixed test data ages past retention one day).
        .args(["--set", "retention.schedule=0s"])
        .args(&self.args);
        let started = launch.spawn(PATIENCE).unwrap_or_else(|err| panic!("{err}"));
        self.watchdog = Some(spawn_watchdog(started.child.id()));
        self.base = started.base;
        self.child = Some(started.child);
    }

    /// Polls `/readyz` until it is 200.
    pub fn wait_ready(&mut self) {
        let child = self.child.as_mut().expect("server running");
        if let Err(err) = convlog_testkit::wait_ready(child, &self.base, &self.agent, PATIENCE) {
            self.fail(&err);
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- server log ---\n{}", self.log_tail());
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The log file (stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn stop_watchdog(&mut self) {
        // The watchdog goes first: once the server is reaped its pid may be reused.
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.stop_watchdog();
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the server");
            child.wait().expect("reap the server");
        }
    }

    /// SIGTERM, then waits for the process to end; returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = child.try_wait().expect("wait for the server") {
                break exit;
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                self.fail("the server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stop_watchdog();
        exit
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next [`Server::restart`].
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Waits up to `patience` for the process to exit by itself (e.g. at a
    /// failpoint); `None` (still running) when it doesn't.
    pub fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < patience {
            let child = self.child.as_mut().expect("server running");
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                self.stop_watchdog();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts again on the same data directory with the same arguments (a new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        self.launch();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` (path includes the query string).
    pub fn get(&self, path: &str) -> Reply {
        let mut response = self
            .agent
            .get(self.url(path))
            .call()
            .unwrap_or_else(|err| self.fail(&format!("GET {path}: {err}")));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("read body");
        Reply { status, body }
    }

    /// Each `GET <path>?<query>` is 400 naming its parameter `name` (`` `name` `` in the body).
    pub fn assert_400_naming(&self, path: &str, cases: &[(&str, &str)]) {
        for (query, name) in cases {
            let reply = self.get(&format!("{path}?{query}"));
            assert_eq!(reply.status, 400, "{query}: {}", reply.body);
            let named = format!("`{name}`");
            assert!(reply.body.contains(&named), "{query}: {}", reply.body);
        }
    }

    /// `GET path`, asserting 200; the JSON body.
    pub fn get_ok(&self, path: &str) -> Value {
        let reply = self.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// `POST path` with a body; `Err` when the request could not be completed (e.g. the server died).
    pub fn try_post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply, ureq::Error> {
        self.client().try_post(path, content_type, body)
    }

    /// A client of this server that does not borrow it (for threads that outlive a kill).
    pub fn client(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            base: self.base.clone(),
        }
    }

    /// `POST path` with a body.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.try_post(path, content_type, body)
            .unwrap_or_else(|err| self.fail(&format!("POST {path}: {err}")))
    }

    /// `PUT path` with a body.
    pub fn put(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let mut response = self
            .agent
            .put(self.url(path))
            .content_type(content_type)
            .send(body)
            .unwrap_or_else(|err| self.fail(&format!("PUT {path}: {err}")));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("read body");
        Reply { status, body }
    }

    /// The status of `GET path`, or `None` when no answer came (refused, reset).
    pub fn try_get_status(&self, path: &str) -> Option<u16> {
        self.agent
            .get(self.url(path))
            .call()
            .ok()
            .map(|response| response.status().as_u16())
    }

    /// Ingests messages as one JSON array, asserting 200; returns (accepted, duplicates).
    pub fn ingest(&self, messages: &[GenMessage]) -> (u64, u64) {
        let body = serde_json::to_vec(messages).expect("serialise messages");
        let reply = self.post("/v1/messages", "application/json", &body);
        assert_eq!(reply.status, 200, "ingest: {}", reply.body);
        let answer = reply.json();
        (
            answer["accepted"].as_u64().expect("accepted"),
            answer["duplicates"].as_u64().expect("duplicates"),
        )
    }

    /// Ingests in batches of `batch` from `threads` client threads; returns (accepted, duplicates).
    pub fn ingest_parallel(
        &self,
        messages: &[GenMessage],
        batch: usize,
        threads: usize,
    ) -> (u64, u64) {
        let chunks: Vec<&[GenMessage]> = messages.chunks(batch).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let chunks = &chunks;
                    scope.spawn(move || {
                        let mut sum = (0, 0);
                        for chunk in chunks.iter().skip(t).step_by(threads) {
                            let (a, d) = self.ingest(chunk);
                            sum.0 += a;
                            sum.1 += d;
                        }
                        sum
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("ingest thread"))
                .fold((0, 0), |acc, x| (acc.0 + x.0, acc.1 + x.1))
        })
    }

    /// The value of a metric line `name value` on `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200);
        metric_value(&reply.body, name)
            .unwrap_or_else(|| panic!("no metric {name} in:\n{}", reply.body))
    }

    /// Waits until everything stored is searchable (`convlog_index_lag 0`).
    pub fn wait_indexed(&self) {
        let started = Instant::now();
        while self.metric("convlog_index_lag") != 0.0 {
            if started.elapsed() > PATIENCE {
                self.fail("the index did not catch up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until background work (the tagging job writes tags after ingest) has stopped
    /// changing the store and the index has caught up with it.
    pub fn wait_settled(&self) {
        let started = Instant::now();
        loop {
            self.wait_indexed();
            let before = self.metric("convlog_store_position");
            std::thread::sleep(Duration::from_millis(600));
            self.wait_indexed();
            if self.metric("convlog_store_position") == before {
                return;
            }
            if started.elapsed() > PATIENCE {
                self.fail("the store kept changing");
            }
        }
    }

    /// Pages through a search endpoint (`path` already has a query string); returns every item of `key`.
    pub fn page_all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut total: Option<u64> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}&cursor={}", encode(c)),
                None => path.to_string(),
            };
            let mut page = self.get_ok(&url);
            items.append(page[key].as_array_mut().expect("items"));
            // A cursor that never runs out would hang the test: stop well past the total.
            let total = *total.get_or_insert(page["total"].as_u64().unwrap_or(u64::MAX / 4));
            assert!(
                (items.len() as u64) <= 2 * total + 200,
                "GET {path}: the cursor keeps going after {} items of {total}",
                items.len()
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return items,
            }
        }
    }

    /// Every stored message of `bot` as (message id, conversation id), via message search.
    pub fn message_conversations(&self, bot: &str) -> Vec<(String, String)> {
        let path = format!("/v1/bots/{bot}/messages?from={ALL_FROM}&to={ALL_TO}&limit=100");
        self.page_all(&path, "messages")
            .into_iter()
            .map(|m| {
                (
                    m["id"].as_str().expect("id").to_string(),
                    m["conversation_id"]
                        .as_str()
                        .expect("conversation_id")
                        .to_string(),
                )
            })
            .collect()
    }
}

/// An HTTP client of one server address.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// `POST path` with a body; `Err` when the request could not be completed.
    pub fn try_post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply, ureq::Error> {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .content_type(content_type)
            .send(body)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok(Reply { status, body })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("--- server log ({}) ---\n{}", self.base, self.log_tail());
        }
        self.kill9();
    }
}

fn spawn_watchdog(pid: u32) -> (Child, ChildStdin) {
    let mut watchdog = Command::new("sh")
        .args(["-c", "read _unused; kill -9 \"$1\" 2>/dev/null", "watchdog"])
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog");
    let stdin = watchdog.stdin.take().expect("watchdog stdin");
    (watchdog, stdin)
}

/// Removes a directory once the test process ends (see [`remove_at_exit`]).
pub struct ExitCleaner {
    _process: Child,
    _pipe: ChildStdin,
}

/// Removes `dir` once this test process ends, however it ends: for fixtures kept in a
/// `static`, which is never dropped. Keep the returned handle for as long as `dir` is needed.
pub fn remove_at_exit(dir: &Path) -> ExitCleaner {
    let mut process = Command::new("sh")
        // The pause lets the killed server finish dying before its files go.
        .args(["-c", "read _unused; sleep 1; rm -rf -- \"$1\"", "cleaner"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cleaner");
    let pipe = process.stdin.take().expect("cleaner stdin");
    ExitCleaner {
        _process: process,
        _pipe: pipe,
    }
}

/// The value of `name value` in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Builds a query string from pairs.
pub fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Generated messages in time order.
pub fn generated(
    seed: u64,
    conversations: usize,
    bots: &[&str],
    span_days: u32,
) -> Vec<GenMessage> {
    let mut config = GenConfig::new(seed, conversations, end());
    config.bots = bots.iter().map(|b| b.to_string()).collect();
    config.span_days = span_days;
    let mut messages = Vec::new();
    generate(&config, |m| messages.push(m));
    messages
}

/// A message with only the required fields (plus an id), for hand-made batches.
pub fn message(id: &str, bot: &str, user: &str, text: &str, timestamp: &str) -> GenMessage {
    GenMessage {
        id: id.to_string(),
        bot_id: bot.to_string(),
        user_id: user.to_string(),
        channel: "web".to_string(),
        role: "user".to_string(),
        text: text.to_string(),
        timestamp: timestamp.to_string(),
        session_id: None,
        flow: None,
        step: None,
        node_id: None,
        node_type: None,
        node_name: None,
        intent: None,
        confidence: None,
        unidentified: None,
        flow_completed: None,
        metadata: None,
        lang: None,
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Reads a whole file (a file may vanish while the server runs: then it is empty).
pub fn read_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    bytes
}

/// Runs `convlog ARGS` to completion (killed after a minute); returns (status, stdout, stderr).
pub fn run_cli(args: &[&str], stdin_bytes: Option<&[u8]>) -> (ExitStatus, Vec<u8>, String) {
    run_cli_with(args, stdin_bytes, &[], None)
}

/// Like [`run_cli`] with extra environment variables and, when given, another working
/// directory. `CONVLOG_API_KEY` is set only when `env` names it.
pub fn run_cli_with(
    args: &[&str],
    stdin_bytes: Option<&[u8]>,
    env: &[(&str, &str)],
    dir: Option<&Path>,
) -> (ExitStatus, Vec<u8>, String) {
    let mut command = Command::new(binary());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .env_remove("CONVLOG_API_KEY")
        .env("CONVLOG_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(if stdin_bytes.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convlog");
    if let Some(bytes) = stdin_bytes {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(bytes).expect("write stdin");
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("convlog {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        out_thread.join().unwrap(),
        err_thread.join().unwrap(),
    )
}

/// A small, fully specified PRNG (SplitMix64) so the randomised checks replay from a seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..hi`.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A random element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// RFC 3339 text of UTC microseconds.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// UTC microseconds of an RFC 3339 text.
pub fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{text:?}: {err}"))
        .with_timezone(&Utc)
        .timestamp_micros()
}
