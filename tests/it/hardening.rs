//! Issue #13: the holes a stranger could use, each reproduced and shown closed —
//! cross-site requests and DNS rebinding in open mode, stalled and idle
//! connections, one key's stalled uploads against another key's ingest,
//! share links, file modes, methods, refused access in metrics and the audit
//! log, label rules, UI headers and the bots list.

use crate::access::cli_create_key;
use crate::common::{Server, message, metric_value, run_cli};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One raw HTTP/1.1 exchange, so tests can send what a browser or an attacker
/// would (any `Host`, `Origin`, method or content type).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn address(server: &Server) -> String {
    server.base().trim_start_matches("http://").to_string()
}

/// Sends `method path` with `headers` (a `Host` is added unless given) and `body`.
fn raw(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let address = address(server);
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_response(&bytes)
}

fn parse_response(bytes: &[u8]) -> Raw {
    let mut text: &str = &String::from_utf8_lossy(bytes);
    // Interim answers (`100 Continue`) come before the final one.
    while text.starts_with("HTTP/1.1 1") {
        text = text.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

fn one_message(id: &str, bot: &str) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339();
    serde_json::to_vec(&[message(id, bot, "+491510001", "I want a refund", &now)]).unwrap()
}

fn stored_messages(server: &Server, bot: &str) -> u64 {
    server.wait_indexed();
    server.get_ok(&format!(
        "/v1/bots/{bot}/messages?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
    ))["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn open_mode_refuses_cross_site_requests_foreign_hosts_and_non_json_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let own_origin = format!("http://{}", address(&server));
    let json_type = ("Content-Type", "application/json");
    let job_ids = || -> Vec<Value> {
        let jobs = server.get_ok("/v1/admin/jobs")["jobs"].clone();
        jobs.as_array()
            .unwrap()
            .iter()
            .map(|job| job["id"].clone())
            .collect()
    };
    let jobs_before = job_ids();

    // A page elsewhere posts text/plain (no CORS preflight): refused, nothing stored.
    let plain = raw(
        &server,
        "POST",
        "/v1/messages",
        &[("Content-Type", "text/plain"), ("Origin", &own_origin)],
        &one_message("m1", "demo"),
    );
    assert_eq!(plain.status, 415, "{}", plain.body);
    assert_eq!(plain.code(), "unsupported_media_type");
    let form = raw(
        &server,
        "POST",
        "/v1/bots/demo/conversations/bulk",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        br#"{"add_labels":["x"]}"#,
    );
    assert_eq!(form.status, 415, "{}", form.body);

    // A foreign Origin can't create a key (locking the owner out) or start jobs.
    let evil = ("Origin", "http://evil.example");
    let key = raw(
        &server,
        "POST",
        "/v1/admin/keys",
        &[json_type, evil],
        br#"{"role":"admin","bots":"*","name":"mine now"}"#,
    );
    assert_eq!(key.status, 403, "{}", key.body);
    assert_eq!(key.code(), "forbidden");
    assert!(
        key.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Origin")
    );
    for path in ["/v1/admin/reindex", "/v1/admin/tagging"] {
        assert_eq!(
            raw(&server, "POST", path, &[evil], b"").status,
            403,
            "{path}"
        );
    }
    assert_eq!(
        raw(
            &server,
            "POST",
            "/v1/messages",
            &[json_type, ("Origin", "null")],
            &one_message("m2", "demo")
        )
        .status,
        403
    );
    assert_eq!(server.get_ok("/v1/admin/keys")["keys"], json!([]));
    assert_eq!(job_ids(), jobs_before);

    // DNS rebinding: the browser sends the attacker's name as Host.
    let rebound = raw(
        &server,
        "GET",
        "/v1/bots/demo/conversations",
        &[("Host", "evil.example:7700")],
        b"",
    );
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert_eq!(
        raw(&server, "GET", "/", &[("Host", "evil.example")], b"").status,
        403
    );

    // The server's own page, and loopback names, still work.
    let own = raw(
        &server,
        "POST",
        "/v1/messages",
        &[json_type, ("Origin", &own_origin)],
        &one_message("m3", "demo"),
    );
    assert_eq!(own.status, 200, "{}", own.body);
    let port = address(&server).rsplit_once(':').unwrap().1.to_string();
    for host in [format!("localhost:{port}"), format!("[::1]:{port}")] {
        let reply = raw(&server, "GET", "/healthz", &[("Host", &host)], b"");
        assert_eq!(reply.status, 200, "Host {host}");
    }
    assert_eq!(stored_messages(&server, "demo"), 1);
    let metrics = server.get("/metrics").body;
    assert!(
        metric_value(
            &metrics,
            "convlog_auth_refusals_total{reason=\"foreign_origin\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert!(
        metric_value(
            &metrics,
            "convlog_auth_refusals_total{reason=\"foreign_host\"}"
        )
        .unwrap()
            >= 2.0
    );
}

#[test]
fn unsupported_methods_get_405_with_allow_and_no_error_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_log_level(dir.path(), &[], "info");
    for (method, path, allow) in [
        ("TRACE", "/v1/bots/demo/conversations", "GET"),
        ("PATCH", "/v1/bots/demo/conversations", "GET"),
        ("OPTIONS", "/healthz", "GET"),
        ("DELETE", "/v1/messages", "POST"),
        ("POST", "/v1/bots/demo/conversations/c_1/labels/x", "PUT"),
    ] {
        let reply = raw(&server, method, path, &[], b"");
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.code(), "method_not_allowed", "{method} {path}");
        let allowed = reply.header("allow").unwrap_or_default().to_string();
        assert!(
            allowed.contains(allow),
            "{method} {path}: Allow {allowed:?}"
        );
    }
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_connection_that_stalls_its_headers_or_idles_is_closed() {
    // Each timer alone closes all three kinds of socket: the header timer
    // (hyper's, also between requests) and the idle timer (no request in flight).
    for (header, idle) in [("1s", "60s"), ("60s", "1s")] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            dir.path(),
            &[
                "--set",
                &format!("server.header_timeout={header}"),
                "--set",
                &format!("server.idle_timeout={idle}"),
            ],
        );
        let closed = |stream: &mut TcpStream| -> bool {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut buffer = [0u8; 4096];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(err) => return err.kind() == std::io::ErrorKind::ConnectionReset,
                }
            }
        };
        let what = format!("header_timeout {header}, idle_timeout {idle}");
        // Headers begun and never finished (slowloris).
        let mut stalled = TcpStream::connect(address(&server)).unwrap();
        stalled
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
            .unwrap();
        assert!(
            closed(&mut stalled),
            "{what}: a stalled header was kept open"
        );
        // Connected, never a byte.
        let mut silent = TcpStream::connect(address(&server)).unwrap();
        assert!(
            closed(&mut silent),
            "{what}: a silent connection was kept open"
        );
        // One request answered, then idle on keep-alive.
        let mut idle = TcpStream::connect(address(&server)).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        assert!(
            closed(&mut idle),
            "{what}: an idle keep-alive connection was kept open"
        );
        assert_eq!(server.get("/healthz").status, 200);
    }
}

#[test]
fn a_body_where_a_route_takes_none_is_refused_unread_and_http2_is_not_spoken() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "server.body_timeout=60s"]);
    // 100 bytes announced, one sent: refused at once, not held for the body deadline.
    let mut stream = TcpStream::connect(address(&server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    let mut bytes = vec![0u8; 4096];
    let n = stream
        .read(&mut bytes)
        .expect("an answer before the body deadline");
    let reply = parse_response(&bytes[..n]);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("takes no body"), "{}", reply.body);
    // Cleartext HTTP/2 (prior knowledge) is not served.
    let mut h2 = TcpStream::connect(address(&server)).unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = h2.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "an HTTP/2 answer: {answer:?}"
    );
}

#[test]
fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            "server.max_connections=20",
            "--set",
            "server.header_timeout=60s",
            "--set",
            "server.idle_timeout=60s",
            "--set",
            "server.body_timeout=60s",
        ],
    );
    // Far more idle sockets than the cap: the server keeps answering.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").status, 200);
    }
    let metrics = server.get("/metrics").body;
    assert!(metric_value(&metrics, "convlog_connections_evicted_total").unwrap() >= 180.0);
    assert!(metric_value(&metrics, "convlog_open_connections").unwrap() <= 20.0);
    drop(idle);

    // Requests in flight (uploads waiting for their body) are never evicted:
    // past the cap, a new connection is told to come back.
    let busy: Vec<TcpStream> = (0..20)
        .map(|_| stalled_upload(&address(&server), None, 100, true))
        .collect();
    let refused = raw(&server, "GET", "/healthz", &[], b"");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(busy);
    let started = Instant::now();
    while server.try_get_status("/healthz") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no room after the uploads ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens an upload of `length` bytes (as `key`, if any) with `Expect:
/// 100-continue`. With `wait`, returns once the server asked for the body —
/// the request is in flight and its body budget taken — then sends one byte
/// and leaves it hanging.
fn stalled_upload(address: &str, key: Option<&str>, length: usize, wait: bool) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = key.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    stream
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nHost: {address}\r\n{auth}\
                 Content-Type: application/json\r\nContent-Length: {length}\r\n\
                 Expect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    if wait {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = [0u8; 25];
        stream.read_exact(&mut head).expect("100 Continue");
        assert!(head.starts_with(b"HTTP/1.1 100 Continue"), "{head:?}");
    }
    stream.write_all(b"[").unwrap();
    stream
}

#[test]
fn stalled_uploads_of_one_key_do_not_hold_up_another_keys_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            "server.body_timeout=4s",
            "--set",
            "auth.rate_limit=0",
        ],
    );
    let data_dir = server.data_dir().display().to_string();
    let slow = cli_create_key(&data_dir, "ingest", "*", "slow tenant");
    let other = cli_create_key(&data_dir, "ingest", "*", "other tenant");
    let address = address(&server);
    // Four fill the key's 32 MiB budget (the server asked each for its body),
    // two more wait for it.
    let uploads: Vec<TcpStream> = (0..6)
        .map(|n| stalled_upload(&address, Some(&slow), 8 << 20, n < 4))
        .collect();

    let started = Instant::now();
    let reply = raw(
        &server,
        "POST",
        "/v1/messages",
        &[
            ("Authorization", &format!("Bearer {other}")),
            ("Content-Type", "application/json"),
        ],
        &one_message("fast", "other-bot"),
    );
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        waited < Duration::from_secs(4),
        "the other key waited {waited:?}"
    );

    // The stalled uploads end: those holding the key's budget time out (408),
    // those that never got it are told to retry (503); none holds anything after.
    let statuses: Vec<u16> = uploads
        .into_iter()
        .map(|mut stream| {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            parse_response(&bytes).status
        })
        .collect();
    assert!(
        statuses.iter().all(|s| [408, 503].contains(s)) && statuses.contains(&408),
        "{statuses:?}"
    );
    let again = raw(
        &server,
        "POST",
        "/v1/messages",
        &[
            ("Authorization", &format!("Bearer {slow}")),
            ("Content-Type", "application/json"),
        ],
        &one_message("later", "slow-bot"),
    );
    assert_eq!(again.status, 200, "{}", again.body);
}

#[test]
fn a_huge_batch_of_tiny_values_is_refused_by_its_item_count() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let body = format!("[{}0]", "0,".repeat((4 << 20) - 2));
    let reply = server.post("/v1/messages", "application/json", body.as_bytes());
    assert_eq!(
        reply.status,
        422,
        "{}",
        &reply.body[..reply.body.len().min(300)]
    );
    let details = &reply.json()["error"]["details"];
    assert_eq!(details[0]["field"], "body");
    assert!(
        details[0]["reason"]
            .as_str()
            .unwrap()
            .contains("at most 10000"),
        "{details}"
    );
}

#[test]
fn share_links_show_the_transcript_not_the_review_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now();
    let mut first = message(
        "s1",
        "demo",
        "+4900",
        "my card was charged twice",
        &now.to_rfc3339(),
    );
    first.metadata = Some(json!({"crm_id": "internal-7731"}));
    first.unidentified = Some(true);
    server.ingest(&[first]);
    server.wait_settled();
    let id = server.get_ok("/v1/bots/demo/conversations")["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let conversation = format!("/v1/bots/demo/conversations/{id}");
    let json_type = "application/json";
    assert_eq!(
        server
            .put(
                &format!("{conversation}/labels/vip-customer"),
                json_type,
                b""
            )
            .status,
        200
    );
    let flagged = server.put(
        &format!("{conversation}/flag"),
        json_type,
        br#"{"note":"agent promised a refund"}"#,
    );
    assert_eq!(flagged.status, 200, "{}", flagged.body);

    let share = server.post(&format!("{conversation}/share"), json_type, b"");
    assert_eq!(share.status, 200, "{}", share.body);
    let share = share.json();
    let token = share["token"].as_str().unwrap();
    assert_eq!(share["url"], format!("/shared/{token}"));
    assert_eq!(share["api_url"], format!("/v1/shared/{token}"));
    let page = server.get(share["url"].as_str().unwrap());
    assert!(
        page.status == 200 && page.body.contains("<html"),
        "the url is the page"
    );

    let shown = server.get_ok(share["api_url"].as_str().unwrap());
    let text = shown.to_string();
    assert_eq!(shown["messages"][0]["text"], "my card was charged twice");
    assert_eq!(shown["user"], server.get_ok(&conversation)["user"]);
    assert!(
        shown["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "unidentified_response")
    );
    for secret in [
        "agent promised a refund",
        "vip-customer",
        "internal-7731",
        "rule_version",
    ] {
        assert!(
            !text.contains(secret),
            "the shared view shows {secret:?}: {text}"
        );
    }
    assert!(shown.get("labels").is_none() && shown.get("flag_note").is_none());
    assert_eq!(shown["tag_details"][0]["tag"], "unidentified_response");
    assert!(shown["tag_details"][0].get("message_ids").is_none());

    let everything = server.post(
        &format!("{conversation}/share"),
        json_type,
        br#"{"include": ["labels", "flag", "tag_details", "metadata"]}"#,
    );
    let everything = server.get_ok(everything.json()["api_url"].as_str().unwrap());
    assert_eq!(everything["labels"], json!(["vip-customer"]));
    assert_eq!(everything["flag_note"], "agent promised a refund");
    assert_eq!(
        everything["messages"][0]["metadata"]["crm_id"],
        "internal-7731"
    );
    assert!(everything["tag_details"][0]["rule_version"].is_number());

    let wrong = server.post(
        &format!("{conversation}/share"),
        json_type,
        br#"{"include": ["notes"]}"#,
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(wrong.body.contains("include"), "{}", wrong.body);
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.ingest(&[message(
        "p1",
        "demo",
        "+4901",
        "hello",
        &chrono::Utc::now().to_rfc3339(),
    )]);
    server.wait_indexed();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let data = server.data_dir().to_path_buf();
    assert_eq!(mode(&data), 0o700);
    let check_all = |data: &std::path::Path| {
        let files = crate::common::files_under(data);
        for name in ["convlog.db", "convlog.db-wal", "user-key.secret"] {
            assert!(files.iter().any(|f| f.ends_with(name)), "{name} missing");
        }
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains("index")),
            "no index files"
        );
        for file in files {
            assert_eq!(
                mode(&file) & 0o077,
                0,
                "{} is readable by others",
                file.display()
            );
        }
    };
    check_all(&data);
    // Files from an older version (or another tool) are tightened at start-up.
    server.terminate();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("convlog.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir_all(data.join("archive")).unwrap();
    let stray = data.join("archive/old.parquet");
    std::fs::write(&stray, b"x").unwrap();
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o666)).unwrap();
    server.restart();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&stray), 0o600);
    check_all(&data);
}

#[test]
fn labels_refuse_invisible_text_and_bidi_controls_and_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "review.max_labels=3"]);
    let now = chrono::Utc::now().to_rfc3339();
    server.ingest(&[message("l1", "demo", "+4902", "hello", &now)]);
    server.wait_indexed();
    let id = server.get_ok("/v1/bots/demo/conversations")["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let label = |name: &str| {
        server.put(
            &format!("/v1/bots/demo/conversations/{id}/labels/{name}"),
            "application/json",
            b"",
        )
    };
    for bad in [
        "%E2%80%8B",
        "%E2%80%8B%EF%BB%BF",
        "refund%E2%80%AEdnuf",
        "%E2%81%A6x",
    ] {
        let reply = label(bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert!(reply.body.contains("label"), "{}", reply.body);
    }
    for good in ["one", "two", "three", "two"] {
        assert_eq!(label(good).status, 200, "{good}");
    }
    let over = label("four");
    assert_eq!(over.status, 400, "{}", over.body);
    assert!(over.body.contains("max_labels"), "{}", over.body);
    let bulk = server.post(
        "/v1/bots/demo/conversations/bulk?from=2000-01-01T00:00:00Z",
        "application/json",
        br#"{"add_labels": ["five"]}"#,
    );
    assert_eq!(bulk.status, 400, "{}", bulk.body);
    let labels = &server.get_ok(&format!("/v1/bots/demo/conversations/{id}"))["labels"];
    assert_eq!(labels.as_array().unwrap().len(), 3, "{labels}");
}

#[test]
fn the_ui_sends_csp_frame_ancestors_and_nosniff() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for path in [
        "/",
        "/bots/demo",
        "/shared/x",
        "/ui/js/main.js",
        "/ui/app.css",
    ] {
        let reply = raw(&server, "GET", path, &[], b"");
        assert_eq!(reply.status, 200, "{path}");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp:?}");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
    }
    assert_eq!(
        raw(&server, "GET", "/healthz", &[], b"").header("x-content-type-options"),
        Some("nosniff")
    );
}

/// The UI is one table of embedded files: every file under `ui/` but the page itself
/// (served at `/`) and the unit tests is served byte for byte, with its type and the
/// UI's headers; any other path under `/ui/` is a 404, also one naming a file on disk.
#[test]
fn the_ui_serves_exactly_the_files_of_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut served = 0;
    for file in files_under(&ui) {
        let rel = file
            .strip_prefix(&ui)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let reply = raw(&server, "GET", &format!("/ui/{rel}"), &[], b"");
        if rel == "index.html" || rel == "package.json" || rel.starts_with("test/") {
            assert_eq!(reply.status, 404, "/ui/{rel} must not be served");
            continue;
        }
        assert_eq!(
            reply.status, 200,
            "/ui/{rel} is not served: add it to FILES in src/http/ui.rs"
        );
        assert_eq!(reply.body, std::fs::read_to_string(&file).unwrap(), "{rel}");
        let expected = match rel.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => panic!("{rel}: a type of file the UI doesn't serve"),
        };
        assert_eq!(reply.header("content-type"), Some(expected), "{rel}");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{rel}: {csp:?}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{rel}");
        served += 1;
    }
    assert!(
        served >= 2,
        "only {served} UI files found under {}",
        ui.display()
    );
    for path in [
        "/ui/",
        "/ui/app.js",
        "/ui/nope.js",
        "/ui/js/../app.css",
        "/ui/%2e%2e/Cargo.toml",
    ] {
        let reply = raw(&server, "GET", path, &[], b"");
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.code(), "not_found", "{path}");
    }
}

/// Every file under `dir`, recursively, in path order.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn refused_access_is_counted_and_audited_without_flooding_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "auth.rate_limit=0"]);
    let data_dir = server.data_dir().display().to_string();
    let admin = cli_create_key(&data_dir, "admin", "*", "ops");
    let viewer = cli_create_key(&data_dir, "viewer", "demo", "reader");
    let bogus = format!("clk_{}_nope", crate::access::key_id(&admin));
    let call = |key: Option<&str>, path: &str| {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        raw(&server, "GET", path, &headers, b"").status
    };
    // The scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let header = format!("{scheme} {admin}");
        assert_eq!(
            raw(
                &server,
                "GET",
                "/v1/admin/jobs",
                &[("Authorization", &header)],
                b""
            )
            .status,
            200,
            "{scheme}"
        );
    }
    // With keys too, a body must be JSON: 415 for text/plain even with a valid key.
    let plain = raw(
        &server,
        "POST",
        "/v1/messages",
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "text/plain"),
        ],
        &one_message("k1", "demo"),
    );
    assert_eq!(plain.status, 415, "{}", plain.body);
    assert_eq!(call(Some(&bogus), "/v1/bots/demo/conversations"), 401);
    assert_eq!(call(None, "/v1/bots/demo/conversations"), 401);
    assert_eq!(call(Some(&viewer), "/v1/admin/jobs"), 403);
    // The audit's page size is bounded, not clamped (the API description says 1 to 1000).
    assert_eq!(call(Some(&admin), "/v1/admin/audit?limit=1000"), 200);
    assert_eq!(call(Some(&admin), "/v1/admin/audit?limit=1001"), 400);
    assert_eq!(call(Some(&admin), "/v1/admin/audit?limit=0"), 400);
    for _ in 0..200 {
        assert_eq!(call(Some(&bogus), "/v1/bots/demo/tags"), 401);
    }
    let metrics = raw(
        &server,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .body;
    assert_eq!(
        metric_value(&metrics, "convlog_auth_refusals_total{reason=\"bad_key\"}"),
        Some(201.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "convlog_auth_refusals_total{reason=\"missing_key\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "convlog_auth_refusals_total{reason=\"not_allowed\"}"
        ),
        Some(1.0)
    );
    let audit = raw(
        &server,
        "GET",
        "/v1/admin/audit?limit=1000",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .json();
    let refused: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("refused"))
        .collect();
    assert!(refused.len() >= 3, "{audit}");
    assert!(
        refused.len() <= 40,
        "{} refusals audited: the flood reached the log",
        refused.len()
    );
    assert!(
        refused
            .iter()
            .any(|e| e["key_id"] == crate::access::key_id(&admin) && e["status"] == 401),
        "{audit}"
    );
    assert!(
        refused
            .iter()
            .all(|e| e["target"].as_str().unwrap().contains("from 127.0.0.1"))
    );
    let (status, _, stderr) = run_cli(&["audit", "verify", "--data-dir", &data_dir], None);
    assert!(status.success(), "{stderr}");
}

#[test]
fn bots_lists_what_the_key_may_see_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();
    server.ingest(&[
        message("b1", "alpha", "+1", "hi", &at(50)),
        message("b2", "alpha", "+2", "hi", &at(40)),
        message("b3", "beta", "+3", "hi", &at(30)),
    ]);
    let open = server.get_ok("/v1/bots");
    assert_eq!(open["bots"].as_array().unwrap().len(), 2, "{open}");
    assert_eq!(open["bots"][0]["id"], "alpha");
    assert_eq!(open["bots"][0]["conversations"], 2);
    assert_eq!(open["bots"][1]["conversations"], 1);
    assert!(
        open["bots"][1]["last_message_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let data_dir = server.data_dir().display().to_string();
    let beta = cli_create_key(&data_dir, "viewer", "beta", "beta only");
    let ingest = cli_create_key(&data_dir, "ingest", "*", "runtime");
    let scoped = raw(
        &server,
        "GET",
        "/v1/bots",
        &[("Authorization", &format!("Bearer {beta}"))],
        b"",
    )
    .json();
    assert_eq!(scoped, json!({"bots": [open["bots"][1].clone()]}));
    assert_eq!(
        raw(
            &server,
            "GET",
            "/v1/bots",
            &[("Authorization", &format!("Bearer {ingest}"))],
            b""
        )
        .status,
        403
    );
}

#[test]
fn revoking_the_last_key_says_the_server_is_open_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_log_level(dir.path(), &[], "info");
    let data_dir = server.data_dir().display().to_string();
    let admin = cli_create_key(&data_dir, "admin", "*", "ops");
    let viewer = cli_create_key(&data_dir, "viewer", "*", "reader");
    let auth = format!("Bearer {admin}");
    let revoke = |key: &str| {
        let path = format!("/v1/admin/keys/{}", crate::access::key_id(key));
        raw(&server, "DELETE", &path, &[("Authorization", &auth)], b"")
    };
    // Through the API: one key of two goes, nothing to warn about.
    let first = revoke(&viewer);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["open_mode"], false);
    assert!(first.json().get("warning").is_none());
    // Through the command line: the last one goes, and it says so.
    let (status, _, stderr) = run_cli(
        &[
            "keys",
            "revoke",
            &crate::access::key_id(&admin),
            "--data-dir",
            &data_dir,
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("open mode"), "{stderr}");
    // The server notices at the next request, and says so in its log.
    assert_eq!(server.get("/healthz").status, 200);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("open mode again"), "{log}");

    // And through the API, on a fresh key.
    let again = cli_create_key(&data_dir, "admin", "*", "ops again");
    let path = format!("/v1/admin/keys/{}", crate::access::key_id(&again));
    let last = raw(
        &server,
        "DELETE",
        &path,
        &[("Authorization", &format!("Bearer {again}"))],
        b"",
    );
    assert_eq!(last.status, 200, "{}", last.body);
    assert_eq!(last.json()["open_mode"], true);
    assert!(
        last.json()["warning"]
            .as_str()
            .unwrap()
            .contains("no active API keys")
    );
}
