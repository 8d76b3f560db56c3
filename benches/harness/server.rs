//! The server under test: the release `convlog` binary as a child process, plus
//! what /proc tells about it (memory, CPU per thread) and the data directory's size.

use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running `convlog serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub log: PathBuf,
}

/// A blocking HTTP client that treats every status as an answer.
pub fn agent() -> ureq::Agent {
    convlog_testkit::agent(Duration::from_secs(120))
}

impl Server {
    /// Starts `bin serve` on a free port over `data_dir`, logging (at warn) to `log`;
    /// `extra` goes on the command line (e.g. `--set key=value`). The one
    /// launcher the tests use too (`convlog-testkit`).
    pub fn start(
        bin: &Path,
        data_dir: &Path,
        log: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        // A fresh log per run.
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let started = convlog_testkit::Launch::new(bin, data_dir, log)
            .args(extra)
            .spawn(Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        Ok(Server {
            pid: started.child.id(),
            child: started.child,
            base: started.base,
            log: log.to_path_buf(),
        })
    }

    /// Waits for `/readyz` to answer 200.
    pub fn wait_ready(&mut self, agent: &ureq::Agent, timeout: Duration) -> anyhow::Result<()> {
        convlog_testkit::wait_ready(&mut self.child, &self.base, agent, timeout)
            .map_err(|err| anyhow::anyhow!("{err}; server log:\n{}", self.log_tail()))
    }

    /// GET `path` (with query); returns status, body and the time to the last byte.
    pub fn get(&self, agent: &ureq::Agent, path: &str) -> anyhow::Result<(u16, String, Duration)> {
        let started = Instant::now();
        let mut response = agent
            .get(&format!("{}{path}", self.base))
            .call()
            .with_context(|| format!("GET {path}"))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .with_context(|| format!("reading GET {path}"))?;
        Ok((response.status().as_u16(), body, started.elapsed()))
    }

    /// POST without a body; returns status and body.
    pub fn post(&self, agent: &ureq::Agent, path: &str) -> anyhow::Result<(u16, String)> {
        let mut response = agent
            .post(&format!("{}{path}", self.base))
            .send_empty()
            .with_context(|| format!("POST {path}"))?;
        let body = response.body_mut().read_to_string()?;
        Ok((response.status().as_u16(), body))
    }

    /// Starts a job (`POST path`, 202) and polls it until it ends; returns the job
    /// object and the wall time, or `None` when the endpoint doesn't exist (404/405).
    pub fn job(
        &self,
        agent: &ureq::Agent,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<(serde_json::Value, Duration)>> {
        let started = Instant::now();
        let (status, body) = self.post(agent, path)?;
        if status == 404 || status == 405 {
            return Ok(None);
        }
        if status != 202 && status != 200 {
            bail!("POST {path} answered {status}: {body}");
        }
        let job: serde_json::Value = serde_json::from_str(&body)?;
        let id = job["id"].as_str().context("job without id")?.to_string();
        loop {
            let job = self.get_json(agent, &format!("/v1/admin/jobs/{id}"))?;
            match job["state"].as_str() {
                Some("succeeded") => return Ok(Some((job, started.elapsed()))),
                Some("failed") => bail!("job {id} failed: {}", job["error"]),
                _ => {}
            }
            if started.elapsed() > timeout {
                bail!("job {id} still {} after {timeout:?}", job["state"]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET a JSON endpoint that must answer 200.
    pub fn get_json(&self, agent: &ureq::Agent, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body, _) = self.get(agent, path)?;
        if status != 200 {
            bail!("GET {path} answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path} is not JSON"))
    }

    /// `/metrics` as name (with labels) → value.
    pub fn metrics(&self, agent: &ureq::Agent) -> anyhow::Result<HashMap<String, f64>> {
        let (status, body, _) = self.get(agent, "/metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(parse_metrics(&body))
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        convlog_testkit::log_tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses the Prometheus text format (no escapes in label values needed here).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Memory figures of a process, in KiB, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub hwm_kib: u64,
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
}

/// Reads VmHWM, VmRSS, RssAnon and RssFile of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        hwm_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
    })
}

/// Resets VmHWM to the current RSS, so the next reading is the peak from now on.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (comm, user + system seconds) from a /proc stat line.
fn parse_stat(line: &str, ticks: f64) -> Option<(String, f64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line[open + 1..close].to_string();
    let fields: Vec<&str> = line[close + 2..].split(' ').collect();
    // After the comm: state is field 3 of stat(5), utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks))
}

/// CPU seconds of a process: in total (threads that exited included) and per live thread name.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    pub total: f64,
    pub threads: BTreeMap<String, f64>,
}

/// Thread names without their numbers: `tokio-runtime-w`, `thrd-tantivy-in`, `store-writer`…
fn thread_group(comm: &str) -> String {
    comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_')
        .to_string()
}

/// Reads the CPU time of `pid` and of each of its threads, grouped by name.
pub fn cpu(pid: u32) -> Cpu {
    let ticks = clock_ticks();
    let mut cpu = Cpu::default();
    if let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some((_, seconds)) = parse_stat(&line, ticks)
    {
        cpu.total = seconds;
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(line) = std::fs::read_to_string(task.path().join("stat"))
                && let Some((comm, seconds)) = parse_stat(&line, ticks)
            {
                *cpu.threads.entry(thread_group(&comm)).or_default() += seconds;
            }
        }
    }
    cpu
}

impl Cpu {
    /// CPU used between `earlier` and `self`; threads that exited in between show as "(exited)".
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        let mut threads = BTreeMap::new();
        for (name, seconds) in &self.threads {
            let before = earlier.threads.get(name).copied().unwrap_or(0.0);
            threads.insert(name.clone(), (seconds - before).max(0.0));
        }
        let total = self.total - earlier.total;
        let live: f64 = threads.values().sum();
        if total - live > 0.05 {
            threads.insert("(exited threads)".into(), total - live);
        }
        Cpu { total, threads }
    }
}

/// CPU seconds all processes of the machine have used since boot (idle and I/O wait excluded).
pub fn machine_busy() -> f64 {
    let ticks = clock_ticks();
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| {
            let line = text.lines().next()?.strip_prefix("cpu ")?.to_string();
            let values: Vec<f64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user)
            let busy: f64 = [0, 1, 2, 5, 6, 7]
                .iter()
                .filter_map(|&i| values.get(i))
                .sum();
            Some(busy / ticks)
        })
        .unwrap_or(0.0)
}

/// Waits until processes other than this one use less than a quarter of the
/// machine's cores over 5 s, or `timeout`; returns the wait and the last busy share.
pub fn wait_quiet(timeout: Duration) -> (Duration, f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let started = Instant::now();
    loop {
        let (machine_before, own_before) = (machine_busy(), cpu(std::process::id()).total);
        std::thread::sleep(Duration::from_secs(5));
        let others =
            (machine_busy() - machine_before) - (cpu(std::process::id()).total - own_before);
        let share = (others / 5.0 / cores).max(0.0);
        if share < 0.25 || started.elapsed() >= timeout {
            return (started.elapsed(), share);
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Segments of one tantivy index.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexInfo {
    /// The index directory, relative to the index root ("" for the root itself).
    pub name: String,
    pub segments: usize,
    pub docs: u64,
    pub deleted: u64,
}

/// Every tantivy index (a directory with a `meta.json`) under `root`.
pub fn index_segments(root: &Path) -> Vec<IndexInfo> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<IndexInfo>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("meta.json"))
            && let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(segments) = meta["segments"].as_array()
        {
            out.push(IndexInfo {
                name: dir
                    .strip_prefix(root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                segments: segments.len(),
                docs: segments.iter().filter_map(|s| s["max_doc"].as_u64()).sum(),
                deleted: segments
                    .iter()
                    .filter_map(|s| s["deletes"]["num_deleted_docs"].as_u64())
                    .sum(),
            });
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut dirs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for sub in dirs {
                visit(root, &sub, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out
}

/// Waits until `pid` uses less than 5% of a core over one second (merges and
/// commits done), or `timeout`; returns how long it waited and whether it got idle.
pub fn wait_idle(pid: u32, timeout: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let mut last = cpu(pid).total;
    while started.elapsed() < timeout {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu(pid).total;
        if now - last < 0.05 {
            return (started.elapsed(), true);
        }
        last = now;
    }
    (started.elapsed(), false)
}

/// Disk usage of the index generations (`index`, `index-0001`, …) in a data directory.
pub fn index_disk_usage(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Disk usage (allocated blocks, like `du`) of a file or directory tree.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            total += disk_usage(&entry.path());
        }
    }
    total
}
