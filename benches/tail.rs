//! The live tail's cost to ingest (issue #19): ingest throughput through HTTP
//! with 10 open tails against none, on the real binary, and how long a
//! message takes from its ingest answer to a tail.
//!
//! Each run starts a fresh server (release build), opens the tails (none, or
//! ten with a mix of filters: none, channel, role, words, a prefix, a tag),
//! each read by its own thread, then ingests the generated messages as JSON
//! arrays of 1,000 from two client threads. The settings alternate (and which
//! goes first, too); figures are medians of `--runs`. Each run also reports
//! the CPU seconds the server (by thread) and the bench's readers used until
//! the flat-out ingest ended: steadier than throughput between runs. Then it
//! waits for the unfiltered tail to have all of it (tails yield to a burst)
//! and reports how long that took. Latency: for the unfiltered tail, from the
//! answer to each batch to the arrival of the batch's last message, both
//! while ingest runs flat out and at a steady 200 messages a second (batches
//! of 20, ten a second: the last 1,000 messages).
//!
//! ```sh
//! cargo bench --bench tail                      # 200k messages, 5 runs
//! cargo bench --bench tail -- --messages 50000 --runs 3
//! cargo bench --bench tail -- --dir /dev/shm     # without the disk's noise
//! cargo bench --bench tail -- --server /tmp/convlog-before   # another build's binary
//! ```

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;

use clap::Parser;
use common::median;
use convlog_gen::{GenConfig, generate};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Messages per run (generated; about 11 per conversation).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Runs of each setting; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Give all ten tails this filter (a query string) instead of the mix.
    #[arg(long)]
    only: Option<String>,
    /// Where each run's data directory goes (default: the system's temporary
    /// directory); `/dev/shm` takes the disk's noise out of the comparison.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Measure this `convlog` binary instead of this build's (e.g. a copy of
    /// another commit's, to compare two builds in one session).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Accepted for `cargo bench`'s own arguments.
    #[arg(long)]
    bench: bool,
}

/// The filters of the ten tails.
const TAILS: [&str; 10] = [
    "",
    "channel=web",
    "channel=whatsapp",
    "role=user",
    "role=bot&channel=web",
    "q=help",
    "q=need%20help",
    "q=hel*",
    "tag=unidentified_response",
    "channel=telegram&q=help",
];

/// When each batch's last message was acknowledged, by message id.
type Acks = Arc<Mutex<HashMap<String, Instant>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let end = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut messages: Vec<convlog_gen::GenMessage> = Vec::with_capacity(args.messages);
    generate(&GenConfig::new(7, args.messages / 11 + 10, end), |m| {
        if messages.len() < args.messages {
            messages.push(m);
        }
    });
    let batch = |chunk: &[convlog_gen::GenMessage]| {
        let last = chunk.last().expect("a batch").id.clone();
        (last, serde_json::to_vec(chunk).expect("messages serialise"))
    };
    let (flat_out, steady) = messages.split_at(messages.len().saturating_sub(1000));
    let batches: Vec<(String, Vec<u8>)> = flat_out.chunks(1000).map(batch).collect();
    let paced: Vec<(String, Vec<u8>)> = steady.chunks(20).map(batch).collect();
    println!(
        "{} messages in batches of 1,000; {} runs per setting; {} cores",
        messages.len(),
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut latencies: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut delivered: Vec<u64> = Vec::new();
    let mut cpu: [Vec<Cpu>; 2] = [Vec::new(), Vec::new()];
    let mut caught_up: Vec<f64> = Vec::new();
    let server = args
        .server
        .as_deref()
        .unwrap_or(Path::new(env!("CARGO_BIN_EXE_convlog")));
    // The first run of a session was the slowest whatever it ran (the page
    // cache, the disk): one with no tails warms up and isn't counted.
    let warm_up = run_once(server, args.dir.as_deref(), &batches, &paced, &[])?;
    eprintln!("[tail] warm-up, not counted: {:.0} msg/s", warm_up.rate);
    for run in 0..args.runs {
        // Alternate which setting goes first: a run pays for the previous one's cleanup.
        let mut order = [(0, 0usize), (1, TAILS.len())];
        if run % 2 == 1 {
            order.reverse();
        }
        for (at, tails) in order {
            let filters: Vec<&str> = match &args.only {
                Some(only) => vec![only.as_str(); tails],
                None => TAILS.iter().take(tails).copied().collect(),
            };
            let measured = run_once(server, args.dir.as_deref(), &batches, &paced, &filters)?;
            eprintln!(
                "[tail] run {}: {tails} tails: {:.0} msg/s, {} events delivered; {}",
                run + 1,
                measured.rate,
                measured.events,
                measured.cpu.line()
            );
            rates[at].push(measured.rate);
            cpu[at].push(measured.cpu);
            if tails > 0 {
                let [flat_out, steady] = measured.latencies;
                latencies[0].extend(flat_out);
                latencies[1].extend(steady);
                delivered.push(measured.events);
                caught_up.extend(measured.caught_up);
            }
        }
    }
    let (none, ten) = (median(&rates[0]), median(&rates[1]));
    println!(
        "\ningest through HTTP, messages per second (median of {}):",
        args.runs
    );
    println!("  no tails   {none:.0}  (runs {:?})", rounded(&rates[0]));
    println!("  10 tails   {ten:.0}  (runs {:?})", rounded(&rates[1]));
    // Each run's pair ran back to back, so their ratio is free of the drift
    // between runs (the disk's write-back of earlier runs, other load).
    let paired: Vec<f64> = rates[1]
        .iter()
        .zip(&rates[0])
        .map(|(ten, none)| 100.0 * ten / none)
        .collect();
    println!(
        "  10 tails / none = {:.1}%; median of each run's pair {:.1}% (pairs {:?})  (bar: ≥ 90%)",
        100.0 * ten / none,
        median(&paired),
        rounded(&paired)
    );
    for (name, mut latencies) in ["flat out", "200 msg/s"].into_iter().zip(latencies) {
        latencies.sort_by(f64::total_cmp);
        if latencies.is_empty() {
            continue;
        }
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "ingest answer → unfiltered tail, {name}, {} batches: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    println!("events delivered to the ten tails per run: {delivered:?}");
    if !caught_up.is_empty() {
        println!(
            "the unfiltered tail had all of the flat-out ingest {:.1} s after it ended (median; runs {:?})",
            median(&caught_up),
            caught_up
                .iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
        );
    }
    // CPU is steadier than throughput between runs: what the tails cost in it.
    let seconds =
        |runs: &[Cpu], of: &dyn Fn(&Cpu) -> f64| median(&runs.iter().map(of).collect::<Vec<_>>());
    let server = |cpu: &Cpu| cpu.server.get("all").copied().unwrap_or(0.0);
    println!(
        "CPU seconds to the end of the flat-out ingest (medians): server {:.2} with no tails, {:.2} with ten; \
         of which the tails' threads {:.2}; the readers {:.2}",
        seconds(&cpu[0], &server),
        seconds(&cpu[1], &server),
        seconds(&cpu[1], &|cpu| cpu
            .server
            .get("tail")
            .copied()
            .unwrap_or(0.0)),
        seconds(&cpu[1], &|cpu| cpu.readers),
    );
    Ok(())
}

/// One run: throughput, latencies (seconds; flat out, steady) and events the tails received.
fn run_once(
    server: &Path,
    dir: Option<&Path>,
    batches: &[(String, Vec<u8>)],
    paced: &[(String, Vec<u8>)],
    filters: &[&str],
) -> anyhow::Result<Run> {
    let dir = match dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let log = dir.path().join("server.log");
    let mut started = convlog_testkit::Launch::new(server, &dir.path().join("data"), &log)
        .args(["--set", "retention.schedule=0s"])
        .spawn(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let agent = convlog_testkit::agent(Duration::from_secs(600));
    convlog_testkit::wait_ready(
        &mut started.child,
        &started.base,
        &agent,
        Duration::from_secs(60),
    )
    .map_err(anyhow::Error::msg)?;
    let base = started.base.clone();
    let acks: Acks = Arc::default();
    let arrivals: Arc<Mutex<Vec<f64>>> = Arc::default();
    let events = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        let response = agent
            .get(format!("{base}/v1/bots/demo/tail?{filter}"))
            .call()?;
        anyhow::ensure!(
            response.status() == 200,
            "tail {filter}: {}",
            response.status()
        );
        let reader = BufReader::new(response.into_body().into_reader());
        let (acks, arrivals, events, stop) =
            (acks.clone(), arrivals.clone(), events.clone(), stop.clone());
        let reading = std::thread::Builder::new().name("reader".into());
        readers.push(reading.spawn(move || {
            // The readers stand for clients on other machines: on these two
            // cores they yield to the server (nice +10), which is measured.
            // SAFETY: a plain system call on the calling thread.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
            if i == 0 {
                // The unfiltered tail: each event's message id, for the latency.
                for line in reader.lines() {
                    let Ok(line) = line else { return };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    events.fetch_add(1, Ordering::Relaxed);
                    // The message's id leads its JSON (the generator's ids
                    // need no escapes): found without parsing the rest, as
                    // the client runs on the server's two cores.
                    if let Some(id) = data
                        .strip_prefix("{\"id\":\"")
                        .and_then(|rest| rest.split('"').next())
                        && let Some(acked) = acks.lock().unwrap().get(id)
                    {
                        arrivals.lock().unwrap().push(acked.elapsed().as_secs_f64());
                    }
                }
            } else {
                // The others only count, as cheaply as a client can: the
                // measurement is of the server, on the same two cores.
                count_events(reader, &events, &stop);
            }
        })?);
    }
    let next = AtomicUsize::new(0);
    let begun = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some((last, body)) = batches.get(at) else {
                        break;
                    };
                    let response = agent
                        .post(format!("{base}/v1/messages"))
                        .content_type("application/json")
                        .send(&body[..])
                        .expect("ingest answers");
                    assert_eq!(response.status(), 200, "ingest");
                    acks.lock().unwrap().insert(last.clone(), Instant::now());
                }
            });
        }
    });
    let rate = batches.len() as f64 * 1000.0 / begun.elapsed().as_secs_f64();
    // Everything the tails cost is done by now: what they could take
    // from ingest is what they used meanwhile.
    let cpu = Cpu {
        server: thread_seconds(started.child.id()),
        readers: thread_seconds(std::process::id())
            .get("reader")
            .copied()
            .unwrap_or(0.0),
    };
    // Let the tails catch up (the unfiltered one has every batch's last
    // message; tails yield to a burst), then send at a steady pace.
    // A tail that dropped events never has all: waiting ends too once no
    // event has come for two seconds.
    let ended = Instant::now();
    let mut caught_up = None;
    if filters.first() == Some(&"") {
        let mut last = (events.load(Ordering::Relaxed), Instant::now());
        while last.1.elapsed() < Duration::from_secs(2) {
            if arrivals.lock().unwrap().len() >= batches.len() {
                caught_up = Some(ended.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            let now = events.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let flat_out = std::mem::take(&mut *arrivals.lock().unwrap());
    for (last, body) in paced {
        let response = agent
            .post(format!("{base}/v1/messages"))
            .content_type("application/json")
            .send(&body[..])?;
        anyhow::ensure!(response.status() == 200, "ingest");
        acks.lock().unwrap().insert(last.clone(), Instant::now());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let _ = started.child.kill();
    let _ = started.child.wait();
    for reader in readers {
        let _ = reader.join();
    }
    let steady = arrivals.lock().unwrap().clone();
    Ok(Run {
        rate,
        latencies: [flat_out, steady],
        events: events.load(Ordering::Relaxed),
        caught_up,
        cpu,
    })
}

/// What one run measured.
struct Run {
    /// Ingest throughput, messages a second.
    rate: f64,
    /// Ingest answer → unfiltered tail, seconds: flat out, steady.
    latencies: [Vec<f64>; 2],
    /// Events the tails received.
    events: u64,
    /// Seconds from the end of the flat-out ingest until the unfiltered
    /// tail had all of it.
    caught_up: Option<f64>,
    cpu: Cpu,
}

/// CPU seconds used from the server's start to the end of the flat-out ingest.
struct Cpu {
    /// By thread name (`all`: the whole process, threads that ended too).
    server: BTreeMap<String, f64>,
    /// The bench's tail readers.
    readers: f64,
}

impl Cpu {
    /// The server's total and its tails' threads (searches, reads, rendering),
    /// the runtime's (HTTP, socket writes) and the readers'.
    fn line(&self) -> String {
        let of = |name: &str| self.server.get(name).copied().unwrap_or(0.0);
        format!(
            "CPU s: server {:.2} (tails' threads {:.2}, runtime {:.2}), readers {:.2}",
            of("all"),
            of("tail"),
            of("tokio-rt-worker"),
            self.readers
        )
    }
}

/// CPU seconds (user + system) of process `pid`'s live threads by name, a
/// number at the end of the name dropped (`tail-0` counts as `tail`), and
/// the whole process's under `all`. Empty where `/proc` isn't there.
fn thread_seconds(pid: u32) -> BTreeMap<String, f64> {
    // Clock ticks a second: 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let times = |stat: &str| -> Option<(String, f64)> {
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((name.to_string(), ticks / TICKS))
    };
    let mut out = BTreeMap::new();
    if let Some((_, all)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| times(&stat))
    {
        out.insert("all".to_string(), all);
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some((name, seconds)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| times(&stat))
        else {
            continue;
        };
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        *out.entry(name).or_insert(0.0) += seconds;
    }
    out
}

/// Counts `event: message` lines in a stream, reading it in blocks.
fn count_events(mut reader: impl Read, events: &AtomicU64, stop: &AtomicBool) {
    const MARK: &[u8] = b"event: message\n";
    let mut buffer = vec![0u8; 1 << 16];
    let mut carry = 0;
    loop {
        let Ok(n) = reader.read(&mut buffer[carry..]) else {
            return;
        };
        if n == 0 || stop.load(Ordering::Relaxed) {
            return;
        }
        let filled = carry + n;
        let found = buffer[..filled]
            .windows(MARK.len())
            .filter(|w| *w == MARK)
            .count();
        events.fetch_add(found as u64, Ordering::Relaxed);
        // Keep a partial mark for the next block.
        carry = (MARK.len() - 1).min(filled);
        buffer.copy_within(filled - carry..filled, 0);
    }
}

fn rounded(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.round() as u64).collect()
}
