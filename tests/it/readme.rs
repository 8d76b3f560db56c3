//! The README's tour, run as written on a fresh directory: every command of
//! every `sh` block of "## A tour" in order, in one bash session, with the
//! server the README starts (`cargo run --release -- serve`, on port 7700).
//!
//! `cargo run --release --` stands for the binary under test (the same
//! program, built by this `cargo test`). The `#` lines right under a command
//! are what it prints: a JSON line must be contained in one JSON line of the
//! output (objects by their keys shown, `…` in a string for any text), a text
//! line must equal one output line, `…` standing for any text and runs of
//! spaces for any spacing. Every command must succeed, and a JSON answer must
//! not be an error. After a command that writes, the runner waits until the
//! index has caught up (`convlog_index_lag 0` on `/metrics`; a second once
//! keys make `/metrics` private), as a reader following along would.

use crate::common::binary;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One command of the tour and the lines it should print.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The commands of the tour's `sh` blocks, with their expected output.
fn tour_steps(readme: &str) -> Vec<Step> {
    let start = readme.find("## A tour").expect("README has ## A tour");
    let rest = &readme[start..];
    let end = rest.find("\n## How it works").unwrap_or(rest.len());
    let tour = &rest[..end];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    // Whether the last line closed a command (so `#` lines after it are its output).
    let mut after_command = false;
    for line in tour.lines() {
        if line.trim_start().starts_with("```") {
            in_block = line.trim() == "```sh";
            after_command = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if pending.is_empty() && line.trim_start().starts_with('#') {
            if after_command {
                let text = line.trim_start().trim_start_matches('#').trim();
                steps
                    .last_mut()
                    .expect("a command")
                    .expected
                    .push(text.to_string());
            }
            continue;
        }
        if pending.is_empty() && line.trim().is_empty() {
            after_command = false;
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        let open_quote = pending.matches('\'').count() % 2 == 1;
        if !line.ends_with('\\') && !open_quote {
            steps.push(Step {
                command: std::mem::take(&mut pending),
                expected: Vec::new(),
            });
            after_command = true;
        }
    }
    assert!(
        pending.is_empty(),
        "unfinished command in the tour: {pending}"
    );
    steps
}

/// Whether `text` matches `pattern`, where `…` is any text (possibly none).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` has what `shown` shows: objects by the keys shown, arrays
/// element by element, strings with `…` wildcards.
fn contains(shown: &Value, actual: &Value) -> bool {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => shown
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|a| contains(value, a))),
        (Value::Array(shown), Value::Array(actual)) => {
            shown.len() == actual.len() && shown.iter().zip(actual).all(|(s, a)| contains(s, a))
        }
        (Value::String(shown), Value::String(actual)) => wildcard(shown, actual),
        (shown, actual) => shown == actual,
    }
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks one step's output; `Err` says what is wrong.
fn check(step: &Step, status: i32, output: &str) -> Result<(), String> {
    if status != 0 {
        return Err(format!("exited with {status}"));
    }
    let lines: Vec<&str> = output.lines().collect();
    for line in &lines {
        if let Ok(value) = serde_json::from_str::<Value>(line)
            && value.get("error").is_some()
        {
            return Err(format!("answered an error: {line}"));
        }
    }
    for expected in &step.expected {
        let found = match serde_json::from_str::<Value>(expected) {
            Ok(shown) if expected.starts_with(['{', '[', '"']) => lines.iter().any(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|actual| contains(&shown, &actual))
            }),
            _ => lines
                .iter()
                .any(|line| wildcard(&squeeze(expected), &squeeze(line))),
        };
        if !found {
            return Err(format!("printed nothing like {expected:?}"));
        }
    }
    Ok(())
}

/// The start of the tour's script: `settle` waits until everything written is
/// searchable (at most 30 s), or a second when `/metrics` needs a key.
const SETTLE: &str = r#"set -o pipefail
settle() {
  for _ in $(seq 300); do
    metrics=$(curl -sf localhost:7700/metrics) || { sleep 1; return; }
    grep -qx 'convlog_index_lag 0' <<<"$metrics" && return
    sleep 0.1
  done
}
"#;

/// Writes change what the next command sees: let the index catch up.
fn writes(command: &str) -> bool {
    [
        "ingest", " -d ", "-X ", "archive", "restore", "reindex", "retag",
    ]
    .iter()
    .any(|word| command.contains(word))
}

fn missing_prerequisite() -> Option<String> {
    for (program, args) in [
        ("curl", &["--version"][..]),
        ("jq", &["--version"][..]),
        ("python3", &["-c", "import duckdb"][..]),
    ] {
        let ok = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("{program} {}", args.join(" ")));
        }
    }
    None
}

fn wait_for_server(log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:7700").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tour's server did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn readme_parses_its_tour_into_commands_and_outputs() {
    let readme = include_str!("../../README.md");
    let steps = tour_steps(readme);
    assert!(steps.len() >= 25, "{} steps", steps.len());
    let post = steps
        .iter()
        .find(|s| s.command.contains("/v1/messages"))
        .expect("the curl post");
    assert_eq!(post.command.lines().count(), 2, "{}", post.command);
    assert_eq!(post.expected, vec![r#"{"accepted":1,"duplicates":0}"#]);
    assert!(wildcard("a…c…", "abxcyz") && !wildcard("a…c", "abxcyz"));
    assert!(contains(
        &serde_json::json!({"url": "/shared/…"}),
        &serde_json::json!({"url": "/shared/abc", "token": "abc"})
    ));
}

#[test]
fn readme_tour_runs_as_written_on_a_fresh_directory() {
    if let Some(missing) = missing_prerequisite() {
        assert!(
            std::env::var_os("CONVLOG_REQUIRE_DUCKDB").is_none(),
            "the README tour needs {missing}"
        );
        eprintln!("skipping the README tour: {missing} is not available");
        return;
    }
    assert!(
        std::net::TcpListener::bind("127.0.0.1:7700").is_ok(),
        "port 7700 is in use: the README tour runs the server there, as the README does"
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = binary();
    let log = dir.path().join("serve.log");
    let mut server = Command::new(bin)
        .arg("serve")
        .current_dir(dir.path())
        .env("CONVLOG_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the tour's server");
    let guard = KillOnDrop(&mut server);
    wait_for_server(&log);

    let steps = tour_steps(include_str!("../../README.md"));
    // One bash session, so variables (`now`, `id`, `key`) carry from step to step.
    let mut script = String::from(SETTLE);
    for (n, step) in steps.iter().enumerate() {
        let command = step.command.replace("cargo run --release --", bin);
        script.push_str(&format!(
            "{{\n{command}}} > .tour/out.{n} 2>&1; echo $? > .tour/rc.{n}\n"
        ));
        if writes(&step.command) {
            script.push_str("settle\n");
        }
    }
    std::fs::create_dir(dir.path().join(".tour")).unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .status()
        .expect("run bash");
    assert!(status.success(), "the tour's script failed to run");
    let mut problems = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(".tour").join(format!("{name}.{n}")))
                .unwrap_or_default()
        };
        let output = read("out");
        let rc = read("rc").trim().parse().unwrap_or(-1);
        if let Err(problem) = check(step, rc, &output) {
            problems.push(format!(
                "{}\n  -> {problem}\n  output:\n{}",
                step.command.trim(),
                output
                    .lines()
                    .take(12)
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    drop(guard);
    assert!(
        problems.is_empty(),
        "{} of {} tour commands do not do what the README shows:\n\n{}\n\nserver log:\n{}",
        problems.len(),
        steps.len(),
        problems.join("\n\n"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Kills the tour's server however the test ends.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
