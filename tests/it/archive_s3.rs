//! The archive on real S3 servers: s3s-fs (in this process; it checks SigV4 and
//! honours conditional puts) and Garage (a production S3 server that ignores
//! conditional puts; run when its binary is installed, and required when
//! `CONVLOG_REQUIRE_GARAGE=1`, as `.ci/run` sets). Multipart uploads, restore
//! round trips and ageing out again without duplicates.

use crate::archive::{hot_messages, run_job};
use crate::common::{
    ALL_FROM, ALL_TO, Rng, Server, agent, encode, end, generated, message, remove_at_exit,
};
use convlog_gen::GenMessage;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "convlog-test-key";
const SECRET_KEY: &str = "convlog-test-secret-0123456789";

/// An S3 endpoint with credentials and a bucket.
pub struct S3 {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
    /// Objects of the bucket as files, for s3s-fs (Garage stores data its own way).
    pub files: Option<PathBuf>,
    _garage: Option<GarageProcess>,
}

impl S3 {
    pub fn args(&self, prefix: &str) -> Vec<String> {
        [
            format!("retention.archive_url=s3://{}/{prefix}", self.bucket),
            format!("retention.s3.endpoint={}", self.endpoint),
            "retention.s3.region=garage".to_string(),
            format!("retention.s3.access_key_id={}", self.access_key),
            format!("retention.s3.secret_access_key={}", self.secret_key),
            "retention.s3.allow_http=true".to_string(),
            "retention.multipart_threshold=5MiB".to_string(),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect()
    }
}

/// s3s-fs serving `root` on a random loopback port, on its own runtime thread.
pub fn start_s3s(root: &Path) -> S3 {
    let bucket = "convlog";
    std::fs::create_dir_all(root.join(bucket)).unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let fs_root = root.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let fs = s3s_fs::FileSystem::new(&fs_root).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            let service = builder.build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let http = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
    });
    let address = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("s3s-fs started");
    S3 {
        endpoint: format!("http://{address}"),
        bucket: bucket.to_string(),
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
        files: Some(root.join(bucket)),
        _garage: None,
    }
}

/// A Garage server (killed on drop).
struct GarageProcess(Child);

impl Drop for GarageProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Garage 2.x on `root`, single node, with a bucket and a key; `None` when not installed.
fn start_garage(root: &Path) -> Option<S3> {
    let binary = std::env::var("CONVLOG_GARAGE_BIN").unwrap_or_else(|_| "garage".to_string());
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        assert!(
            std::env::var("CONVLOG_REQUIRE_GARAGE").is_err(),
            "CONVLOG_REQUIRE_GARAGE is set but `{binary} --version` fails"
        );
        eprintln!("skipping the Garage run: no `garage` binary (see .ci/run to install it)");
        return None;
    }
    let (s3_port, rpc_port) = (free_port(), free_port());
    let config = root.join("garage.toml");
    let mut secret = [0u8; 32];
    let mut rng = Rng::new(u64::from(s3_port) << 16 | u64::from(rpc_port));
    for byte in &mut secret {
        *byte = rng.next_u64() as u8;
    }
    let rpc_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(root.join("garage.log")).unwrap();
    let child = Command::new(&binary)
        .args(["-c", config.to_str().unwrap(), "server"])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start garage");
    let process = GarageProcess(child);
    let garage = |args: &[&str]| -> String {
        let started = Instant::now();
        loop {
            let output = Command::new(&binary)
                .args(["-c", config.to_str().unwrap()])
                .args(args)
                .output()
                .expect("run garage");
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).to_string();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "garage {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let node = garage(&["node", "id", "-q"]);
    let node = node.trim().split('@').next().unwrap().to_string();
    garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
    garage(&["layout", "apply", "--version", "1"]);
    garage(&["bucket", "create", "convlog"]);
    let key = garage(&["key", "create", "convlog-test"]);
    let field = |name: &str| -> String {
        key.lines()
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in `garage key create` output:\n{key}"))
    };
    let (access_key, secret_key) = (field("Key ID"), field("Secret key"));
    garage(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        "convlog",
        "--key",
        "convlog-test",
    ]);
    Some(S3 {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        bucket: "convlog".to_string(),
        access_key,
        secret_key,
        files: None,
        _garage: Some(process),
    })
}

/// Messages whose texts don't compress, so one partition passes the multipart threshold.
fn bulky_messages(count: usize) -> Vec<GenMessage> {
    let mut rng = Rng::new(99);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..count)
        .map(|i| {
            let text: String = (0..10_000)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
                .collect();
            let at = (end() - chrono::Duration::days(3) + chrono::Duration::seconds(i as i64))
                .to_rfc3339();
            message(
                &format!("bulk-{i}"),
                "bulk",
                &format!("bulk-user-{}", i % 7),
                &text,
                &at,
            )
        })
        .collect()
}

fn hot_ids(server: &Server) -> BTreeSet<(String, String)> {
    hot_messages(server.data_dir())
}

/// (key, sha256, rows) of the manifest.
fn manifest(server: &Server) -> BTreeSet<(String, String, i64)> {
    let conn = rusqlite::Connection::open_with_flags(
        server.data_dir().join("convlog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = conn
        .prepare("SELECT key, sha256, rows FROM archive_objects")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn put(server: &Server, path: &str) -> u16 {
    agent()
        .put(format!("{}{path}", server.base()))
        .send_empty()
        .unwrap()
        .status()
        .as_u16()
}

/// Archive everything to S3, restore one bot's range, check it is searchable
/// with its labels and tags and read-only, then let it age out again.
fn round_trip(s3: &S3) {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let mut messages = generated(77, 150, &["shop"], 10);
    messages.extend(bulky_messages(800));
    let now = (end() + chrono::Duration::days(200)).to_rfc3339();
    let args = s3.args("archive/v1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server =
        Server::start_with_env(root.path(), &args, &[("CONVLOG_CLOCK_AT", &now)], "warn");
    for chunk in messages.chunks(300) {
        server.ingest(chunk);
    }
    server.wait_settled();

    // Remember a conversation with tags, and label it.
    let list = server.get_ok(&format!(
        "/v1/bots/shop/conversations?from={}&to={}&limit=100",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    let before_total = list["total"].as_u64().unwrap();
    let tagged = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| !c["tags"].as_array().unwrap().is_empty())
        .expect("a tagged conversation")
        .clone();
    let id = tagged["id"].as_str().unwrap().to_string();
    assert_eq!(
        put(
            &server,
            &format!("/v1/bots/shop/conversations/{id}/labels/Incident-42")
        ),
        200
    );
    server.wait_settled();
    let original = server.get_ok(&format!("/v1/bots/shop/conversations/{id}"));

    run_job(&server, "/v1/admin/archive", b"");
    server.wait_indexed();
    assert!(hot_ids(&server).is_empty(), "everything was due");
    let objects = manifest(&server);
    let rows: i64 = objects
        .iter()
        .filter(|(key, _, _)| key.starts_with("messages/"))
        .map(|(_, _, rows)| rows)
        .sum();
    assert_eq!(rows as usize, messages.len());
    if let Some(files) = &s3.files {
        // s3s-fs keeps objects as files: they are the manifest's, byte for byte.
        let on_disk: BTreeSet<(String, String)> =
            crate::common::files_under(&files.join("archive/v1"))
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                .map(|f| {
                    let key = f
                        .strip_prefix(files.join("archive/v1"))
                        .unwrap()
                        .display()
                        .to_string();
                    (
                        key,
                        convlog_engine::archive::target::sha256_hex(&std::fs::read(&f).unwrap()),
                    )
                })
                .collect();
        let listed: BTreeSet<(String, String)> = objects
            .iter()
            .map(|(k, s, _)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(on_disk, listed);
        let largest = crate::common::files_under(files)
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .map(|f| std::fs::metadata(f).unwrap().len())
            .max()
            .unwrap();
        assert!(
            largest > 5 << 20,
            "one object went up in parts ({largest} bytes)"
        );
    }
    let reply = server.get(&format!("/v1/bots/shop/conversations/{id}"));
    assert_eq!(reply.status, 404);

    // Restore the shop's whole range.
    let body = format!(
        r#"{{"bot_id":"shop","from":"{}","to":"{}"}}"#,
        (end() - chrono::Duration::days(40)).to_rfc3339(),
        (end() + chrono::Duration::days(1)).to_rfc3339()
    );
    let job = run_job(&server, "/v1/admin/restore", body.as_bytes());
    assert_eq!(job["processed"].as_u64(), Some(before_total), "{job}");
    // No waiting: a finished restore is searchable.
    let restored = server.get_ok(&format!("/v1/bots/shop/conversations/{id}"));
    for field in [
        "labels",
        "tags",
        "tag_details",
        "messages",
        "started_at",
        "last_message_at",
    ] {
        assert_eq!(
            restored[field], original[field],
            "{field} after the restore"
        );
    }
    let search = server.get_ok(&format!(
        "/v1/bots/shop/conversations?from={}&to={}&label=Incident-42",
        encode(ALL_FROM),
        encode(ALL_TO)
    ));
    assert_eq!(search["total"].as_u64(), Some(1), "{search}");
    let total = server.get_ok(&format!(
        "/v1/bots/shop/conversations?from={}&to={}&limit=1",
        encode(ALL_FROM),
        encode(ALL_TO)
    ))["total"]
        .as_u64();
    assert_eq!(total, Some(before_total));
    // Read-only while restored.
    assert_eq!(
        put(
            &server,
            &format!("/v1/bots/shop/conversations/{id}/labels/Another")
        ),
        409
    );
    // A second restore of the same range changes nothing.
    let again = run_job(&server, "/v1/admin/restore", body.as_bytes());
    assert_eq!(again["processed"].as_u64(), Some(before_total));
    // Archive passes during the hold leave it hot and write nothing.
    run_job(&server, "/v1/admin/archive", b"");
    assert_eq!(
        server
            .get(&format!("/v1/bots/shop/conversations/{id}"))
            .status,
        200
    );
    assert_eq!(manifest(&server), objects);

    // After the hold (7 days) it ages out again, without a second copy in the archive.
    server.kill9();
    let later = (end() + chrono::Duration::days(208)).to_rfc3339();
    server.set_env("CONVLOG_CLOCK_AT", Some(&later));
    server.restart();
    run_job(&server, "/v1/admin/archive", b"");
    server.wait_indexed();
    assert!(hot_ids(&server).is_empty());
    assert_eq!(manifest(&server), objects, "no new objects");
    assert_eq!(
        server
            .get(&format!("/v1/bots/shop/conversations/{id}"))
            .status,
        404
    );
    let partitions = server.get_ok("/v1/admin/archive/partitions");
    let listed: u64 = partitions["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(listed as usize, messages.len());
}

#[test]
fn archive_and_restore_round_trip_on_s3s() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let s3 = start_s3s(root.path());
    round_trip(&s3);
}

#[test]
fn archive_and_restore_round_trip_on_garage() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    if let Some(s3) = start_garage(root.path()) {
        round_trip(&s3);
    }
}

#[test]
fn wrong_s3_credentials_fail_the_job_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let mut s3 = start_s3s(&root.path().join("s3"));
    s3.secret_key = "not-the-secret".to_string();
    let args = s3.args("archive");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let now = (end() + chrono::Duration::days(400)).to_rfc3339();
    std::fs::create_dir_all(root.path().join("svc")).unwrap();
    let server = Server::start_with_env(
        &root.path().join("svc"),
        &args,
        &[("CONVLOG_CLOCK_AT", &now)],
        "error",
    );
    let messages = generated(5, 20, &["x"], 3);
    server.ingest(&messages);
    server.wait_settled();
    let reply = server.post("/v1/admin/archive", "application/json", b"");
    assert_eq!(reply.status, 202);
    let id = reply.json()["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let job = loop {
        let job = server.get_ok(&format!("/v1/admin/jobs/{id}"));
        if job["state"] != "running" && job["state"] != "queued" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        hot_ids(&server).len(),
        messages.len(),
        "nothing left the store"
    );
    assert!(manifest(&server).is_empty());
}

/// The crash test of `archive.rs` with the archive on S3 (s3s-fs, whose objects
/// are files, so the check reads them): fewer runs per step than on the local
/// filesystem, each server under its own prefix of one bucket.
#[test]
fn a_crash_after_any_archive_step_on_s3_loses_and_duplicates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = remove_at_exit(root.path());
    let s3 = start_s3s(root.path());
    let files = s3.files.clone().expect("s3s-fs keeps objects as files");
    let at = |run_root: &Path| {
        let prefix = format!("crash/{}", run_root.file_name().unwrap().to_string_lossy());
        (s3.args(&prefix), files.join(&prefix))
    };
    std::thread::scope(|scope| {
        for (s, step) in crate::archive::STEPS.iter().enumerate() {
            let at = &at;
            scope.spawn(move || crate::archive::crash_runs(5000 + 100 * s as u64, step, 4, at));
        }
    });
}
