//! Acceptance 4 and 5 of issue #8: 100 concurrent 50 MiB bodies get 413 without the
//! server's memory growing; fuzzed query strings are answered 200 or refused 400, never a
//! panic or a 5xx.

use crate::access::{AuthServer, cli_create_key, two_bot_messages};
use crate::common::{ALL_FROM, ALL_TO, Rng, encode};
use convlog_engine::query::{SearchRequest, Target};
use convlog_querylang::{QueryLimits, parse};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// `VmRSS` or `VmHWM` of `pid`, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sends a `size`-byte body (a `[` then spaces, generated as it goes) to `path`, with a
/// Content-Length or chunked; returns the status line the server answered, if any.
fn stream_body(address: &str, path: &str, key: &str, size: usize, chunked: bool) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let length = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\n{length}\r\n\r\n"
    );
    let mut reader = stream.try_clone().expect("clone");
    let answer = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 4096];
        while bytes.len() < 65536 {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
        String::from_utf8_lossy(&bytes)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    let mut chunk = vec![b' '; 64 * 1024];
    chunk[0] = b'[';
    let mut sent = 0;
    let mut write = || -> std::io::Result<()> {
        stream.write_all(head.as_bytes())?;
        while sent < size {
            let n = chunk.len().min(size - sent);
            if chunked {
                stream.write_all(format!("{n:x}\r\n").as_bytes())?;
                stream.write_all(&chunk[..n])?;
                stream.write_all(b"\r\n")?;
            } else {
                stream.write_all(&chunk[..n])?;
            }
            chunk[0] = b' ';
            sent += n;
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    };
    // The server may stop reading and close once it has answered: a failed write is fine.
    let _ = write();
    answer.join().expect("reader")
}

#[test]
fn hundred_concurrent_50_mib_bodies_get_413_without_memory_growth() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    let dir = server.data_dir_str();
    let ingest = cli_create_key(&dir, "ingest", "*", "big");
    let address = server.api.base.trim_start_matches("http://").to_string();
    let pid = server.pid();
    // Warm up the paths once with small requests.
    for _ in 0..3 {
        server.ingest(Some(&ingest), &two_bot_messages());
    }
    // The index opens its partition's writers for the first messages: let that
    // happen before the baseline, so only the bodies are measured.
    let started = Instant::now();
    while server.api.get_ok("/readyz", None)["lag"]["changes"] != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the index did not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = proc_kib(pid, "VmRSS");
    let hwm_before = proc_kib(pid, "VmHWM");
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(proc_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let statuses: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..100)
            .map(|n| {
                let (address, ingest) = (&address, &ingest);
                scope.spawn(move || {
                    stream_body(address, "/v1/messages", ingest, 50 * MIB, n % 10 == 9)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    monitor.join().expect("monitor");
    let after = proc_kib(pid, "VmRSS");
    let peak = peak.load(Ordering::Relaxed);
    let hwm_after = proc_kib(pid, "VmHWM");
    // Still serving.
    assert_eq!(server.api.get("/healthz", None).status, 200);
    let not_413: Vec<&String> = statuses
        .iter()
        .filter(|s| !s.starts_with("HTTP/1.1 413"))
        .collect();
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    println!(
        "100 × 50 MiB bodies in {:.1}s: {} answered 413, others {:?}; VmRSS {} → peak {} → {} KiB \
         (growth {growth_mib:.1} MiB); VmHWM {hwm_before} → {hwm_after} KiB",
        elapsed.as_secs_f64(),
        statuses.len() - not_413.len(),
        not_413.iter().take(5).collect::<Vec<_>>(),
        baseline,
        peak,
        after,
    );
    assert!(not_413.is_empty(), "not all 413: {not_413:?}");
    assert!(
        growth_mib < 50.0,
        "the server's RSS grew {growth_mib:.0} MiB (from {baseline} KiB to a peak of {peak} KiB) \
         for 100 concurrent oversized bodies"
    );
}

/// Every route that reads a body answers an oversized one 413 with the JSON error body
/// of the contract (`code: payload_too_large`).
#[test]
fn oversized_bodies_are_413_payload_too_large_on_every_route_that_reads_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(
        root.path(),
        &[
            "--set",
            "auth.rate_limit=0",
            "--set",
            "server.max_body=64KiB",
        ],
        "warn",
    );
    let api = &server.api;
    server.ingest(None, &two_bot_messages());
    server.wait_indexed(None);
    let dir = server.data_dir_str();
    let admin = cli_create_key(&dir, "admin", "*", "root");
    let id = crate::access::conversation_ids(api, &admin, "a")[0].clone();
    let mut body = vec![b' '; 65 * 1024];
    body[0] = b'{';
    let mut problems = Vec::new();
    for (method, path) in [
        ("POST", "/v1/messages".to_string()),
        ("POST", "/v1/traces".to_string()),
        (
            "POST",
            format!("/v1/bots/a/conversations/bulk?from={ALL_FROM}&to={ALL_TO}"),
        ),
        ("POST", format!("/v1/bots/a/conversations/{id}/share")),
        ("PUT", format!("/v1/bots/a/conversations/{id}/flag")),
        ("POST", "/v1/admin/keys".to_string()),
    ] {
        let reply = api.send(method, &path, Some(&admin), Some(&body), &[]);
        if reply.status != 413 || reply.code() != "payload_too_large" {
            problems.push(format!(
                "{method} {path}: {} {:?}",
                reply.status,
                reply.body.chars().take(120).collect::<String>()
            ));
        }
    }
    for line in &problems {
        println!("413 {line}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Pieces of hostile queries: grammar, punctuation that is no syntax, odd Unicode.
const PIECES: [&str; 48] = [
    "refund",
    "hello",
    "alphaword",
    "zebrafoo",
    "a",
    "AND",
    "OR",
    "NOT",
    "and",
    "or",
    "not",
    "user:",
    "bot:",
    "agent:",
    "system:",
    "admin:",
    "user:refund",
    "bot:\"did not\"",
    "(",
    ")",
    "((",
    "))",
    "\"",
    "\"\"",
    "+",
    "-",
    "--",
    "*",
    "~",
    "~2",
    "/",
    "/.*/",
    "\\",
    ":",
    "::",
    "\u{0}",
    "é",
    "İ",
    "ΣΑΣ",
    "日本語",
    "🙂",
    "\u{200b}",
    "e\u{301}",
    "\u{FFFD}",
    "\t",
    "\n",
    "%",
    "&q=",
];

fn random_char(rng: &mut Rng) -> char {
    match rng.below(4) {
        0 => (b' ' + rng.below(95) as u8) as char,
        1 => char::from_u32(rng.below(0x800) as u32).unwrap_or('?'),
        2 => char::from_u32(0x1F300 + rng.below(0x300) as u32).unwrap_or('?'),
        _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}'),
    }
}

/// One hostile query string.
fn fuzz_query(rng: &mut Rng) -> String {
    let word = |rng: &mut Rng| -> String { PIECES[rng.below(PIECES.len())].to_string() };
    match rng.below(9) {
        // Random pieces, glued or spaced.
        0..=2 => {
            let n = 1 + rng.below(40);
            let glue = if rng.chance(0.3) { "" } else { " " };
            (0..n).map(|_| word(rng)).collect::<Vec<_>>().join(glue)
        }
        // Nesting around the limit of 16, balanced or not.
        3 => {
            let open = rng.below(40);
            let close = if rng.chance(0.7) { open } else { rng.below(40) };
            format!("{}{}{}", "(".repeat(open), word(rng), ")".repeat(close))
        }
        // NOT and minus chains.
        4 => {
            let d = rng.below(40);
            let not = if rng.chance(0.5) { "NOT " } else { "-" };
            format!("{}{}", not.repeat(d), word(rng))
        }
        // Term counts around the limit of 64.
        5 => {
            let n = 50 + rng.below(30);
            let op = *rng.pick(&[" ", " OR ", " AND ", " -"]);
            (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(op)
        }
        // Lengths around the limit of 1,024 characters, with multi-byte characters.
        6 => {
            let len = 1020 + rng.below(8);
            let c = *rng.pick(&['x', 'é', '日', '🙂', ' ', '(']);
            let mut text: String = std::iter::repeat_n(c, len).collect();
            if rng.chance(0.5) {
                text.replace_range(0..c.len_utf8(), "\"");
            }
            text
        }
        // Random characters.
        7 => {
            let n = rng.below(80);
            (0..n).map(|_| random_char(rng)).collect()
        }
        // Long tokens around the 64-byte token limit, phrases of them.
        _ => {
            let len = 60 + rng.below(10);
            let long: String = std::iter::repeat_n('a', len).collect();
            format!("\"{long} {} {long}\"", word(rng))
        }
    }
}

/// Other parameters next to `q`, valid or not.
fn fuzz_params(rng: &mut Rng) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for _ in 0..rng.below(3) {
        let pair = match rng.below(8) {
            0 => (
                "limit",
                *rng.pick(&[
                    "0",
                    "1",
                    "100",
                    "101",
                    "-1",
                    "99999999999999999999",
                    "x",
                    "",
                ]),
            ),
            1 => (
                "sort",
                *rng.pick(&["relevance", "started_at", "nope", "last_message_at"]),
            ),
            2 => ("cursor", *rng.pick(&["", "x", "AAAA", "eyJ9", "%%%"])),
            3 => (
                "from",
                *rng.pick(&[
                    "2026-01-01T00:00:00Z",
                    "yesterday",
                    "9999-12-31T23:59:59Z",
                    "",
                ]),
            ),
            4 => ("channel", *rng.pick(&["web", "", "WEB"])),
            5 => ("flow", *rng.pick(&["a-flow", "("])),
            6 => ("step", "x"),
            _ => ("role", *rng.pick(&["user", "robot"])),
        };
        pairs.push((pair.0.to_string(), pair.1.to_string()));
    }
    pairs
}

/// 100,000 fuzzed queries through the parser and the parameter validation, in process:
/// each parsed or refused with a position inside the query, 0 panics.
#[test]
fn hundred_thousand_fuzzed_queries_parse_or_are_refused_without_panic() {
    let mut rng = Rng::new(0x5eed_0008);
    let started = Instant::now();
    let (mut accepted, mut refused, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut problems = Vec::new();
    for n in 0..100_000 {
        let q = fuzz_query(&mut rng);
        let mut pairs = vec![("q".to_string(), q.clone())];
        pairs.extend(fuzz_params(&mut rng));
        let target = *rng.pick(&[Target::Conversations, Target::Messages, Target::Aggregates]);
        let one = Instant::now();
        let outcome = std::panic::catch_unwind(|| {
            let parsed = parse(&q, QueryLimits::default());
            let request = SearchRequest::from_pairs(&pairs, target, 0);
            (parsed, request.map(|_| ()).map_err(|e| e.to_string()))
        });
        slowest = slowest.max(one.elapsed());
        match outcome {
            Err(_) => problems.push(format!("#{n}: panic on {q:?}")),
            Ok((parsed, request)) => {
                match &parsed {
                    Ok(_) => accepted += 1,
                    Err(err) => {
                        refused += 1;
                        if err.position > q.chars().count() {
                            problems.push(format!(
                                "#{n}: position {} past the end of {q:?}",
                                err.position
                            ));
                        }
                    }
                }
                if parsed.is_err() && request.is_ok() {
                    problems.push(format!("#{n}: parse refused {q:?} but from_pairs took it"));
                }
            }
        }
        if problems.len() > 20 {
            break;
        }
    }
    println!(
        "100k fuzzed queries in process: {accepted} parsed, {refused} refused, slowest {:.1} ms, \
         {:.1}s",
        slowest.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// 10,000 fuzzed queries through HTTP on every search endpoint: 200 or 400, no 5xx.
#[test]
fn ten_thousand_fuzzed_queries_over_http_get_200_or_400() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = AuthServer::start(root.path(), &["--set", "auth.rate_limit=0"], "warn");
    server.ingest(None, &two_bot_messages());
    server.wait_indexed(None);
    let dir = server.data_dir_str();
    let viewer = cli_create_key(&dir, "viewer", "a", "fuzz");
    let started = Instant::now();
    let threads = 4;
    let results: Vec<(u64, u64, Duration, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (api, viewer) = (&server.api, &viewer);
                scope.spawn(move || {
                    let mut rng = Rng::new(0xf022 + t as u64);
                    let (mut ok, mut refused, mut slowest) = (0, 0, Duration::ZERO);
                    let mut problems = Vec::new();
                    for _ in 0..10_000 / threads {
                        let q = fuzz_query(&mut rng);
                        let endpoint = *rng.pick(&[
                            "conversations",
                            "messages",
                            "tags",
                            "flows",
                            "conversations/c_1",
                        ]);
                        let mut query = format!("q={}", encode(&q));
                        if rng.chance(0.7) {
                            query.push_str(&format!("&from={ALL_FROM}&to={ALL_TO}"));
                        }
                        for (k, v) in fuzz_params(&mut rng) {
                            query.push_str(&format!("&{k}={}", encode(&v)));
                        }
                        let path = format!("/v1/bots/a/{endpoint}?{query}");
                        let one = Instant::now();
                        let reply = api.get(&path, Some(viewer));
                        slowest = slowest.max(one.elapsed());
                        match reply.status {
                            200 => ok += 1,
                            400 => refused += 1,
                            // An unknown conversation id is fine too.
                            404 if endpoint.contains("c_1") => refused += 1,
                            _ => problems.push(format!("{path}: {} {}", reply.status, reply.body)),
                        }
                    }
                    (ok, refused, slowest, problems)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("fuzz"))
            .collect()
    });
    let ok: u64 = results.iter().map(|r| r.0).sum();
    let refused: u64 = results.iter().map(|r| r.1).sum();
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    let problems: Vec<String> = results.into_iter().flat_map(|r| r.3).collect();
    println!(
        "10k fuzzed queries over HTTP in {:.1}s: {ok} × 200, {refused} × 400, {} others, slowest {:.0} ms",
        started.elapsed().as_secs_f64(),
        problems.len(),
        slowest.as_secs_f64() * 1e3
    );
    assert_eq!(server.api.get("/healthz", None).status, 200);
    assert!(
        problems.is_empty(),
        "{} answers other than 200/400:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
}
