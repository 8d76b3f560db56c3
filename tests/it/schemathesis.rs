//! Schemathesis (property-based API testing) against the real server with an
//! admin key: every operation of the generated OpenAPI description, fuzzed
//! with valid and invalid data and in stateful sequences, must answer as the
//! description says. Config and the checks left out (with why):
//! `tests/schemathesis/schemathesis.toml`.
//!
//! Needs Schemathesis (`pip install schemathesis`: `st`, or `python3 -m
//! schemathesis.cli` when `st` is off the PATH); skipped with a message when it is
//! missing unless `CONVLOG_REQUIRE_SCHEMATHESIS=1`. The time budget is
//! `CONVLOG_SCHEMATHESIS_SECONDS` (default 120).

use crate::common::{Server, agent, generated};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Creates an admin key through the API, with `admin` (none in open mode).
fn admin_key(server: &Server, name: &str, admin: Option<&str>) -> String {
    let mut request = agent().post(format!("{}/v1/admin/keys", server.base()));
    if let Some(admin) = admin {
        request = request.header("Authorization", format!("Bearer {admin}"));
    }
    let mut reply = request
        .send_json(json!({"name": name, "role": "admin", "bots": "*"}))
        .expect("create key");
    let body: Value = reply.body_mut().read_json().expect("key json");
    match body["key"].as_str() {
        Some(key) => key.to_string(),
        None => panic!("creating key {name}: {} {body}", reply.status()),
    }
}

/// `st`, or the same CLI through Python when pip put `st` off the PATH.
fn schemathesis() -> Option<Command> {
    let works = |command: &mut Command| {
        command
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if works(&mut Command::new("st")) {
        return Some(Command::new("st"));
    }
    let python = || {
        let mut command = Command::new("python3");
        command.args(["-m", "schemathesis.cli"]);
        command
    };
    works(&mut python()).then(python)
}

#[test]
fn api_description_holds_under_schemathesis() {
    let Some(mut st) = schemathesis() else {
        let why = "neither `st` nor `python3 -m schemathesis.cli` runs (pip install schemathesis)";
        if std::env::var("CONVLOG_REQUIRE_SCHEMATHESIS").as_deref() == Ok("1") {
            panic!("CONVLOG_REQUIRE_SCHEMATHESIS=1 but {why}");
        }
        eprintln!("skipping the Schemathesis run: {why}");
        return;
    };
    let seconds = std::env::var("CONVLOG_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "120".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let messages = generated(11, 200, &["demo", "shop"], 2);
    for chunk in messages.chunks(2_000) {
        server.ingest(chunk);
    }
    server.wait_indexed();
    let key = admin_key(&server, "schemathesis", None);
    // A second admin key, so that no key the run may reach is the last one.
    admin_key(&server, "spare", Some(&key));

    let output = st
        .arg("--config-file")
        .arg(root().join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/v1/openapi.json", server.base()))
        .args(["--max-time", &seconds, "--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.path().join("report"))
        .env("NO_COLOR", "1")
        // Its cache (`.schemathesis/`) goes to the temporary directory, not the repository.
        .current_dir(dir.path())
        .output()
        .expect("run st");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(
        output.status.success() || only_interpreter_crashes(&text),
        "Schemathesis found failures (the run's output is above):\n{}\n--- server log ---\n{}",
        text.lines()
            .skip_while(|line| !line.contains("FAILURES"))
            .take(200)
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );
}

/// Whether the run failed only because Python itself crashed while
/// Schemathesis generated data for some operations: CPython 3.11's `ast`
/// module raises "AST constructor recursion depth mismatch" when two threads
/// parse at once (python/cpython#106905), inside Hypothesis. Such an
/// operation went untested in one phase, and nothing was found wrong with
/// the server; any failure, or any other error, still fails the test.
fn only_interpreter_crashes(text: &str) -> bool {
    const CRASH: &str = "AST constructor recursion depth mismatch";
    let Some(errors) = text.split("= ERRORS =").nth(1) else {
        return false;
    };
    let errors = errors.split("= SUMMARY =").next().unwrap_or(errors);
    // Each error starts with a `____ METHOD /path ____` heading.
    let mut blocks: Vec<String> = Vec::new();
    for line in errors.lines() {
        if line.starts_with("____") {
            blocks.push(String::new());
        } else if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    let crashed = !text.contains("= FAILURES =")
        && !blocks.is_empty()
        && blocks.iter().all(|block| block.contains(CRASH));
    if crashed {
        eprintln!(
            "Schemathesis: {} operation(s) hit a CPython ast crash while generating data; no failure found",
            blocks.len()
        );
    }
    crashed
}

#[test]
fn only_a_python_crash_is_forgiven() {
    let error = |what: &str| {
        format!(
            "==== ERRORS ====\n____ POST /v1/x ____\nRuntime Error\n\n{what}\n\n==== SUMMARY ====\n1 error\n"
        )
    };
    let crash = error("AST constructor recursion depth mismatch (before=66, after=60)");
    assert!(only_interpreter_crashes(&crash));
    assert!(!only_interpreter_crashes(&error(
        "Network Error: connection refused"
    )));
    assert!(!only_interpreter_crashes(&format!(
        "==== FAILURES ====\n____ GET /v1/y ____\nServer error\n{crash}"
    )));
    assert!(!only_interpreter_crashes("all passed"));
}
