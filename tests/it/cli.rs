//! The command line in a real deployment (issue #13 item 6): client commands
//! against a server with API keys, `--server` without a scheme, discovery that
//! never creates a data directory by accident, and ingest errors named by the
//! file's own lines.

use crate::access::cli_create_key;
use crate::common::{Server, generated, message, run_cli, run_cli_with};
use convlog_gen::GenMessage;
use serde_json::Value;
use std::path::Path;
use std::process::ExitStatus;

/// The fixed clock of the keyed server: the generated data is recent, `old`'s is past retention.
const NOW: &str = "2026-11-20T12:00:00Z";

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn ndjson(messages: &[GenMessage]) -> String {
    messages
        .iter()
        .map(|m| serde_json::to_string(m).expect("serialise") + "\n")
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path.to_str().expect("utf-8 path").to_string()
}

/// The single JSON document a `--json` run printed on stdout.
fn json_out(status: ExitStatus, stdout: &[u8], stderr: &str, what: &str) -> Value {
    assert!(status.success(), "{what}: {stderr}");
    serde_json::from_slice(stdout).unwrap_or_else(|err| {
        panic!(
            "{what}: stdout is not JSON ({err}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// Two conversations of bot `old` from January, due for archiving at [`NOW`].
fn old_messages() -> Vec<GenMessage> {
    vec![
        message("o1", "old", "u-1", "an old refund", "2026-01-01T10:00:00Z"),
        message(
            "o2",
            "old",
            "u-2",
            "an old question",
            "2026-01-01T11:00:00Z",
        ),
    ]
}

/// How the key reaches the command.
#[derive(Debug, Clone, Copy)]
enum KeyBy {
    Flag,
    Env,
}

/// Runs a client command against `base` with the key given as `by` says.
fn keyed(base: &str, key: &str, by: KeyBy, args: &[&str]) -> (ExitStatus, Vec<u8>, String) {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--server", base]);
    match by {
        KeyBy::Flag => {
            full.extend(["--api-key", key]);
            run_cli(&full, None)
        }
        KeyBy::Env => run_cli_with(&full, None, &[("CONVLOG_API_KEY", key)], None),
    }
}

#[test]
fn every_client_command_works_against_a_keyed_server_with_the_flag_or_the_environment() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(root.path(), &[], &[("CONVLOG_CLOCK_AT", NOW)], "warn");
    let data_dir = server.data_dir().to_str().unwrap().to_string();
    let admin = cli_create_key(&data_dir, "admin", "*", "cli-admin");
    let mut messages = generated(31, 40, &["cli"], 5);
    messages.extend(old_messages());
    let file = write(root.path(), "messages.ndjson", &ndjson(&messages));
    let base = server.base().to_string();

    for by in [KeyBy::Flag, KeyBy::Env] {
        let what = |command: &str| format!("{command} with the key by {by:?}");
        // The first load stores everything; the second finds only duplicates.
        let (status, stdout, stderr) = keyed(&base, &admin, by, &["ingest", &file, "--json"]);
        let summary = json_out(status, &stdout, &stderr, &what("ingest"));
        let expected = match by {
            KeyBy::Flag => (messages.len() as u64, 0),
            KeyBy::Env => (0, messages.len() as u64),
        };
        assert_eq!(
            (summary["accepted"].as_u64(), summary["duplicates"].as_u64()),
            (Some(expected.0), Some(expected.1)),
            "{summary}"
        );
        assert_eq!(summary["ok"], true);

        let (status, stdout, stderr) = keyed(&base, &admin, by, &["archive", "--dry-run"]);
        assert!(status.success(), "{}: {stderr}", what("archive --dry-run"));
        let table = String::from_utf8_lossy(&stdout).to_string();
        if matches!(by, KeyBy::Flag) {
            // bot, conversations, messages due; then the total.
            assert!(table.starts_with("bot"), "{table}");
            let row = table.lines().find(|l| l.starts_with("old")).unwrap_or("");
            assert_eq!(
                row.split_whitespace().collect::<Vec<_>>(),
                ["old", "2", "2"],
                "{table}"
            );
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["total", "2", "2"]),
                "{table}"
            );
        }

        let (status, stdout, stderr) = keyed(&base, &admin, by, &["archive", "--json"]);
        let archived = json_out(status, &stdout, &stderr, &what("archive"));
        let due = match by {
            KeyBy::Flag => 2,
            // Restored conversations are not archived twice.
            KeyBy::Env => 0,
        };
        assert_eq!(archived["conversations"], due, "{archived}");
        assert!(archived["job"].is_string(), "{archived}");

        let (status, _, stderr) = keyed(
            &base,
            &admin,
            by,
            &[
                "restore",
                "--bot",
                "old",
                "--from",
                "2025-12-31T00:00:00Z",
                "--to",
                "2026-01-02T00:00:00Z",
            ],
        );
        assert!(status.success(), "{}: {stderr}", what("restore"));
        assert!(
            stderr.contains("restored") && stderr.contains("\"old\""),
            "{stderr}"
        );

        let (status, stdout, stderr) = keyed(&base, &admin, by, &["reindex", "--json"]);
        let reindexed = json_out(status, &stdout, &stderr, &what("reindex"));
        assert!(reindexed["conversations"].as_u64() > Some(0), "{reindexed}");

        let (status, stdout, stderr) = keyed(&base, &admin, by, &["retag", "--json"]);
        let retagged = json_out(status, &stdout, &stderr, &what("retag"));
        assert!(retagged["conversations"].as_u64() > Some(0), "{retagged}");

        let (status, stdout, stderr) = keyed(&base, &admin, by, &["jobs", "--json"]);
        let jobs = json_out(status, &stdout, &stderr, &what("jobs"));
        let kinds: Vec<&str> = jobs["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|j| j["kind"].as_str())
            .collect();
        for kind in ["archive", "restore", "reindex", "tagging"] {
            assert!(kinds.contains(&kind), "{kind} missing from {jobs}");
        }
        let (status, stdout, stderr) = keyed(&base, &admin, by, &["jobs"]);
        assert!(status.success(), "{}: {stderr}", what("jobs"));
        let table = String::from_utf8_lossy(&stdout);
        assert!(
            table.starts_with("id") && table.contains("archived 2 conversations"),
            "{table}"
        );
    }

    // Nothing archived for that bot: not a success that restored nothing.
    let (status, _, stderr) = keyed(
        &base,
        &admin,
        KeyBy::Flag,
        &[
            "restore",
            "--bot",
            "nobody",
            "--from",
            "2025-12-31T00:00:00Z",
            "--to",
            "2026-01-02T00:00:00Z",
        ],
    );
    assert!(!status.success(), "restore of an unknown bot succeeded");
    assert!(
        stderr.contains(
            "nothing archived for bot \"nobody\" in [2025-12-31T00:00:00Z, 2026-01-02T00:00:00Z)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_wrong_missing_or_weak_api_key_is_named_and_never_printed() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let data_dir = server.data_dir().to_str().unwrap().to_string();
    let admin = cli_create_key(&data_dir, "admin", "*", "cli-admin");
    let viewer = cli_create_key(&data_dir, "viewer", "*", "cli-viewer");
    let base = server.base().to_string();
    let last = if admin.ends_with('a') { 'b' } else { 'a' };
    let wrong = format!("{}{last}", &admin[..admin.len() - 1]);

    for (by, args) in [
        (KeyBy::Flag, ["jobs"].as_slice()),
        (KeyBy::Env, ["reindex"].as_slice()),
    ] {
        let (status, _, stderr) = keyed(&base, &wrong, by, args);
        assert!(!status.success(), "{args:?} with a wrong key succeeded");
        assert!(
            stderr.contains(&format!(
                "the server at {base} refused the API key (401: unknown or revoked API key); \
                 check --api-key or CONVLOG_API_KEY"
            )),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&wrong[8..]),
            "the key was printed: {stderr}"
        );
    }

    let file = write(
        root.path(),
        "one.ndjson",
        &ndjson(&[message("k1", "cli", "u", "hi", "2026-11-19T10:00:00Z")]),
    );
    for args in [
        ["jobs", "--server", &base].as_slice(),
        ["ingest", &file, "--server", &base].as_slice(),
    ] {
        let (status, _, stderr) = run_cli(args, None);
        assert!(!status.success(), "{args:?} without a key succeeded");
        assert!(
            stderr.contains("needs an API key")
                && stderr.contains("--api-key")
                && stderr.contains("CONVLOG_API_KEY"),
            "{stderr}"
        );
    }

    let (status, _, stderr) = keyed(&base, &viewer, KeyBy::Flag, &["archive"]);
    assert!(!status.success());
    assert!(
        stderr.contains("refused this to the API key's role (403")
            && stderr.contains("viewer")
            && stderr.contains("admin"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&viewer[8..]),
        "the key was printed: {stderr}"
    );
}

#[test]
fn server_takes_host_and_port_without_a_scheme_and_a_closed_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let address = server.base().strip_prefix("http://").unwrap().to_string();
    let (status, stdout, stderr) = run_cli(&["jobs", "--server", &format!("{address}/")], None);
    assert!(status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).starts_with("id"));

    let closed = format!("127.0.0.1:{}", closed_port());
    let (status, _, stderr) = run_cli(&["jobs", "--server", &closed], None);
    assert!(!status.success());
    assert!(
        stderr.contains(&format!(
            "no server answered at http://{closed} (connection refused)"
        )),
        "{stderr}"
    );
}

#[test]
fn without_a_server_nothing_is_created_unless_a_data_directory_is_asked_for() {
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", closed_port());
    let file = write(
        cwd.path(),
        "one.ndjson",
        &ndjson(&[message("d1", "cli", "u", "hi", "2026-11-19T10:00:00Z")]),
    );
    let in_cwd = |args: &[&str]| run_cli_with(args, None, &[], Some(cwd.path()));
    let data = cwd.path().join("data");

    for args in [
        ["ingest", file.as_str(), "--listen", &listen].as_slice(),
        ["jobs", "--listen", &listen].as_slice(),
        ["retag", "--listen", &listen].as_slice(),
    ] {
        let (status, _, stderr) = in_cwd(args);
        assert!(!status.success(), "{args:?} succeeded without a server");
        assert!(
            stderr.contains(&format!(
                "no server answered at http://{listen}; start one with `convlog serve`, \
                 name it with --server URL, or pass --direct (or --data-dir DIR) to work \
                 on the data directory itself"
            )),
            "{stderr}"
        );
        assert!(!data.exists(), "{args:?} created ./data");
    }

    // Direct admin commands refuse a missing directory; direct ingest makes it, saying so.
    for command in ["jobs", "archive", "reindex", "retag"] {
        let (status, _, stderr) = in_cwd(&[command, "--direct"]);
        assert!(!status.success(), "{command} --direct succeeded");
        assert!(stderr.contains("no data directory at ./data"), "{stderr}");
        assert!(!data.exists(), "{command} --direct created ./data");
    }
    let (status, stdout, stderr) = in_cwd(&["ingest", &file, "--direct", "--json"]);
    let summary = json_out(status, &stdout, &stderr, "ingest --direct");
    assert!(
        stderr.contains("creating data directory ./data"),
        "{stderr}"
    );
    assert_eq!(summary["accepted"], 1, "{summary}");
    assert!(data.join("convlog.db").exists());
    let (status, _, stderr) = in_cwd(&["retag", "--direct"]);
    assert!(status.success(), "retag --direct: {stderr}");
    assert!(stderr.contains("re-tagged 1 conversation"), "{stderr}");
}

#[test]
fn a_data_directory_held_by_a_server_elsewhere_says_to_name_that_server() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let data_dir = server.data_dir().to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", closed_port());
    let (status, _, stderr) = run_cli(
        &["jobs", "--data-dir", &data_dir, "--listen", &listen],
        None,
    );
    assert!(!status.success(), "jobs beside a live server succeeded");
    assert!(
        stderr.contains(&format!(
            "the data directory {data_dir} is in use by a running convlog that did not \
             answer at http://{listen}; pass --server with the address it printed"
        )),
        "{stderr}"
    );
}

/// 3,000 valid messages of bot `lines`, one a line.
fn three_thousand() -> Vec<GenMessage> {
    (0..3000)
        .map(|i| {
            message(
                &format!("m{i}"),
                "lines",
                &format!("user-{}", i % 50),
                &format!("message number {i}"),
                &format!(
                    "2026-11-{:02}T{:02}:{:02}:00Z",
                    10 + i / 1440,
                    (i / 60) % 24,
                    i % 60
                ),
            )
        })
        .collect()
}

#[test]
fn a_refused_batch_is_explained_by_file_line_and_what_was_stored_before_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let mut lines: Vec<String> = three_thousand()
        .iter()
        .map(|m| serde_json::to_string(m).unwrap())
        .collect();
    // Line 2,501 is item 500 of the third batch.
    lines[2500] = lines[2500].replace("2026-11-11T17:40:00Z", "yesterday");
    assert!(lines[2500].contains("yesterday"));
    let file = write(root.path(), "bad.ndjson", &(lines.join("\n") + "\n"));

    let (status, stdout, stderr) = run_cli(
        &[
            "ingest",
            &file,
            "--server",
            server.base(),
            "--batch",
            "1000",
        ],
        None,
    );
    assert!(
        !status.success(),
        "ingest with a bad line succeeded: {stderr}"
    );
    assert!(stdout.is_empty(), "{}", String::from_utf8_lossy(&stdout));
    assert!(
        stderr.contains("the server refused lines 2001–3000 (422 invalid_message):\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  line 2501: field `timestamp`: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "lines 1–2000 were stored (2000 accepted, 0 duplicates); nothing from line 2001 on was stored"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("item 500"), "{stderr}");
    server.wait_indexed();
    let stored = server.get_ok(
        "/v1/bots/lines/messages?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&limit=1",
    );
    assert_eq!(stored["total"], 2000, "{stored}");

    // The same for a script: one JSON document, exit non-zero.
    let (status, stdout, _) = run_cli(
        &[
            "ingest",
            &file,
            "--server",
            server.base(),
            "--batch",
            "1000",
            "--json",
        ],
        None,
    );
    assert!(!status.success());
    let report: Value = serde_json::from_slice(&stdout).expect("--json failure report");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["stored_through"], 2000, "{report}");
    assert_eq!(report["failed_from"], 2001, "{report}");
    assert_eq!(report["problems"][0]["at"], 2501, "{report}");
    assert_eq!(report["problems"][0]["field"], "timestamp", "{report}");
}

#[test]
fn a_json_array_file_is_ingested_and_its_problems_are_named_by_item() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let messages: Vec<GenMessage> = three_thousand().into_iter().take(300).collect();
    let file = write(
        root.path(),
        "messages.json",
        &format!("\n  {}", serde_json::to_string_pretty(&messages).unwrap()),
    );
    let (status, stdout, stderr) = run_cli(
        &[
            "ingest",
            &file,
            "--server",
            server.base(),
            "--batch",
            "64",
            "--json",
        ],
        None,
    );
    let summary = json_out(status, &stdout, &stderr, "ingest of a JSON array");
    assert_eq!(summary["format"], "json-array", "{summary}");
    assert_eq!(summary["accepted"], 300, "{summary}");
    assert_eq!(summary["messages"], 300, "{summary}");

    let mut broken = messages.clone();
    broken[69].channel = String::new();
    let file = write(
        root.path(),
        "broken.json",
        &serde_json::to_string(&broken).unwrap(),
    );
    let (status, _, stderr) = run_cli(
        &["ingest", &file, "--server", server.base(), "--batch", "64"],
        None,
    );
    assert!(!status.success());
    assert!(stderr.contains("  item 70: field `channel`: "), "{stderr}");
    assert!(
        stderr.contains(
            "items 1–64 were stored (0 accepted, 64 duplicates); nothing from item 65 on was stored"
        ),
        "{stderr}"
    );
}

#[test]
fn a_rate_limited_load_waits_and_goes_on_instead_of_stopping_halfway() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(
        root.path(),
        &["--set", "auth.rate_limit=2", "--set", "auth.rate_burst=1"],
    );
    let data_dir = server.data_dir().to_str().unwrap().to_string();
    let key = cli_create_key(&data_dir, "ingest", "*", "slow-runtime");
    let messages: Vec<GenMessage> = three_thousand().into_iter().take(5).collect();
    let file = write(root.path(), "five.ndjson", &ndjson(&messages));
    // Five requests against one a half-second with no burst: some get 429 and are sent again.
    let (status, stdout, stderr) = keyed(
        server.base(),
        &key,
        KeyBy::Env,
        &["ingest", &file, "--batch", "1", "--json"],
    );
    let summary = json_out(status, &stdout, &stderr, "rate-limited ingest");
    assert_eq!(summary["accepted"], 5, "{summary}");
}

/// Runs `convlog ARGS` on a pseudo-terminal (`script`), as a person at a shell
/// would; returns everything the terminal showed.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    let command = std::iter::once(crate::common::binary())
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CONVLOG_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    assert!(output.status.success(), "{command}: {:?}", output);
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn long_work_shows_a_progress_bar_on_a_terminal_and_none_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let file = write(
        dir.path(),
        "many.ndjson",
        &ndjson(&generated(5, 3000, &["demo"], 2)),
    );
    let url = server.base().to_string();
    let Some(shown) = on_a_terminal(&["ingest", "--server", &url, &file]) else {
        eprintln!("skipping: `script` (util-linux) is not available to make a terminal");
        return;
    };
    // indicatif redraws the bar in place: its message, its bar and bytes of the file.
    assert!(shown.contains("ingesting ["), "{shown}");
    assert!(shown.contains("MiB/"), "{shown}");
    assert!(shown.contains("messages stored"), "{shown}");
    server.wait_settled();
    for (command, label) in [("reindex", "reindexing ["), ("retag", "re-tagging [")] {
        let shown = on_a_terminal(&[command, "--server", &url]).expect("script ran before");
        assert!(shown.contains(label), "{command}: {shown}");
        assert!(
            shown.contains("/3000"),
            "{command}: the bar counts conversations: {shown}"
        );
    }
    // In a pipe (scripts, CI logs) there is no bar, only the outcome.
    let (status, _, stderr) = run_cli(&["reindex", "--server", &url], None);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains('['), "{stderr}");
    assert!(stderr.contains("reindexed 3000 conversations"), "{stderr}");
}
