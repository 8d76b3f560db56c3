//! The NATS JetStream source (issue #21) against a real `nats-server -js` on
//! loopback (Debian's package; CI installs it and sets
//! `CONVLOG_REQUIRE_NATS=1`, which makes its absence a failure): messages
//! stored exactly once through `kill -9`s, dead letters with their reason that
//! never block the stream, and the source's metrics.

use crate::common::{Rng, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `nats-server` runs here.
fn nats_available() -> bool {
    available(
        "nats-server",
        "CONVLOG_REQUIRE_NATS",
        "apt-get install nats-server",
    )
}

/// Whether `program --version` runs here. When it doesn't, the test skips,
/// unless the environment variable `require` is set: then that is a failure.
pub(crate) fn available(program: &str, require: &str, install: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {program} is missing ({install})"
        );
        eprintln!("skipping: {program} is not installed ({install})");
    }
    ok
}

/// A server program a test started, its stderr in `log`; killed on drop.
pub(crate) struct Daemon(Child);

impl Daemon {
    /// Starts `command` and waits until it listens on loopback port `port`.
    pub(crate) fn start(mut command: Command, port: u16, log: &Path) -> Daemon {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|err| panic!("{command:?} starts: {err}"));
        let daemon = Daemon(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{command:?} did not listen:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `nats-server -js` on a free loopback port, its store under `dir`; killed on drop.
struct Nats {
    _daemon: Daemon,
    url: String,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        Nats::start_with(dir, "")
    }

    /// With `settings` added to its configuration file (e.g. subject mappings).
    fn start_with(dir: &Path, settings: &str) -> Nats {
        let port = free_port();
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n{settings}\n",
                dir.join("jetstream")
            ),
        )
        .unwrap();
        let mut command = Command::new("nats-server");
        command.arg("-c").arg(&conf);
        Nats {
            _daemon: Daemon::start(command, port, &dir.join("nats.log")),
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

/// A JetStream publisher (the bots' side of the log), on its own runtime.
struct Publisher {
    runtime: tokio::runtime::Runtime,
    context: async_nats::jetstream::Context,
}

impl Publisher {
    /// Connects and creates stream `stream` over `convlog.>`.
    fn new(url: &str, stream: &str) -> Publisher {
        Publisher::over(url, stream, "convlog.>")
    }

    /// Connects and creates stream `stream` over `subjects`.
    fn over(url: &str, stream: &str, subjects: &str) -> Publisher {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let context = runtime.block_on(async {
            let client = async_nats::connect(url).await.expect("connect to nats");
            let context = async_nats::jetstream::new(client);
            context
                .create_stream(async_nats::jetstream::stream::Config {
                    name: stream.to_string(),
                    subjects: vec![subjects.into()],
                    ..Default::default()
                })
                .await
                .expect("create the stream");
            context
        });
        Publisher { runtime, context }
    }

    /// Publishes each payload to `subject`, waiting for the stream's acks.
    fn publish(&self, subject: &str, payloads: Vec<Vec<u8>>) {
        self.runtime.block_on(async {
            let mut acks = Vec::with_capacity(payloads.len());
            for payload in payloads {
                acks.push(
                    self.context
                        .publish(subject.to_string(), payload.into())
                        .await
                        .expect("publish"),
                );
            }
            for ack in acks {
                ack.await.expect("the stream stored it");
            }
        });
    }
}

/// A message without an id (so only the source's position can keep a
/// redelivery from being stored twice), told apart by its text.
pub(crate) fn note(n: usize, at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "bot_id": "nats",
        "user_id": format!("user-{}", n % 97),
        "channel": "web",
        "role": if n.is_multiple_of(2) { "user" } else { "bot" },
        "text": format!("note {n:06}"),
        "timestamp": at,
    }))
    .unwrap()
}

fn config(root: &Path, url: &str) -> std::path::PathBuf {
    let path = root.join("convlog.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.nats]\nurl = \"{url}\"\nstream = \"convlog\"\nsubject = \"convlog.>\"\ndurable = \"node-a\"\n"
        ),
    )
    .unwrap();
    path
}

const SOURCE: &str = "nats:convlog:node-a";
const RANGE: &str = "from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z";

/// Waits until the source's stored position is `position`; its state then.
fn wait_position(server: &Server, position: u64) -> Value {
    wait_source(|path| server.get_ok(path), SOURCE, position)
}

/// Waits until source `name`'s stored position is `position`, asking with
/// `get` (a path → its JSON answer); the source's state then.
fn wait_source(get: impl Fn(&str) -> Value, name: &str, position: u64) -> Value {
    let started = Instant::now();
    loop {
        let sources = get("/v1/admin/sources");
        let source = sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned();
        if let Some(source) = source.filter(|s| s["position"] == json!(position)) {
            return source;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} not at {position}: {sources}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kill -9`s the server `kills` times, each at a random moment (seeded), and restarts it.
pub(crate) fn kill_at_random_moments(server: &mut Server, kills: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for kill in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.range_i64(150, 900) as u64));
        server.kill9();
        server.restart();
        eprintln!("kill {} done", kill + 1);
    }
}

/// Bot `nats` holds the notes `0..total` each once, none lost; the index agrees.
pub(crate) fn assert_each_stored_once(server: &Server, total: usize) {
    let texts = texts(server);
    let twice: Vec<_> = texts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    assert_eq!(texts.len(), total, "lost {}", total - texts.len());
    let found = server.get_ok(&format!("/v1/bots/nats/messages?{RANGE}&limit=1"));
    assert_eq!(found["total"], json!(total), "{found}");
}

/// Every message of bot `nats`, by text, from the export (read as it streams).
fn texts(server: &Server) -> BTreeMap<String, u64> {
    use std::io::BufRead;
    let response = crate::common::agent()
        .get(format!(
            "{}/v1/bots/nats/conversations/export?format=ndjson&{RANGE}",
            server.base()
        ))
        .call()
        .expect("export");
    assert_eq!(response.status(), 200);
    let mut texts = BTreeMap::new();
    for line in std::io::BufReader::new(response.into_body().into_reader()).lines() {
        let message: Value = serde_json::from_str(&line.expect("a line")).unwrap();
        *texts
            .entry(message["text"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    texts
}

#[test]
fn a_poison_message_is_a_dead_letter_with_its_reason_and_the_stream_moves_on() {
    if !nats_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let nats = Nats::start(root.path());
    let publisher = Publisher::new(&nats.url, "convlog");
    let config = config(root.path(), &nats.url);
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    let at = chrono::Utc::now().to_rfc3339();
    let mut payloads: Vec<Vec<u8>> = (0..5).map(|n| note(n, &at)).collect();
    payloads.push(b"this is not json".to_vec());
    payloads.push(br#"{"bot_id": "nats", "text": "no user, no role"}"#.to_vec());
    payloads.push(serde_json::to_vec(&json!({"bot_id": "nats", "user_id": "+4915199990000", "channel": "web", "role": "user", "text": "x", "timestamp": "yesterday"})).unwrap());
    payloads.extend((5..10).map(|n| note(n, &at)));
    publisher.publish("convlog.p.0", payloads);

    let source = wait_position(&server, 13);
    assert_eq!(source["dead_letters"], json!(3), "{source}");
    assert_eq!(source["connected"], json!(true), "{source}");
    assert_eq!(source["lag"], json!(0), "{source}");
    let letters = server.get_ok(&format!("/v1/admin/sources/{SOURCE}/dead-letters"));
    let letters = letters["dead_letters"].as_array().unwrap();
    let by_position: BTreeMap<u64, &Value> = letters
        .iter()
        .map(|l| (l["position"].as_u64().unwrap(), l))
        .collect();
    assert_eq!(by_position.keys().copied().collect::<Vec<_>>(), [6, 7, 8]);
    assert!(
        by_position[&6]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    assert_eq!(by_position[&6]["payload"], "this is not json");
    let missing = by_position[&7]["reason"].as_str().unwrap();
    assert!(
        missing.contains("user_id") && missing.contains("role"),
        "{missing}"
    );
    assert!(
        by_position[&8]["reason"]
            .as_str()
            .unwrap()
            .contains("timestamp")
    );
    // The stream moved on: every valid message is stored once.
    server.wait_indexed();
    let texts = texts(&server);
    assert_eq!(texts.len(), 10, "{texts:?}");
    assert!(texts.values().all(|&n| n == 1));
    let metrics = server.get("/metrics").body;
    for (line, value) in [
        (
            format!("convlog_source_records_total{{source=\"{SOURCE}\",outcome=\"stored\"}}"),
            10,
        ),
        (
            format!("convlog_source_records_total{{source=\"{SOURCE}\",outcome=\"dead_letter\"}}"),
            3,
        ),
        (
            format!("convlog_source_position{{source=\"{SOURCE}\"}}"),
            13,
        ),
        (format!("convlog_source_lag{{source=\"{SOURCE}\"}}"), 0),
        (
            format!("convlog_source_connected{{source=\"{SOURCE}\"}}"),
            1,
        ),
    ] {
        assert!(
            metrics.contains(&format!("{line} {value}\n")),
            "{line} {value} not in:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("source"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // A dead letter keeps the record as it came, raw user id and all: erasing
    // that user forgets it.
    assert!(
        by_position[&8]["payload"]
            .as_str()
            .unwrap()
            .contains("+4915199990000")
    );
    let erase = server.post(
        "/v1/admin/erase",
        "application/json",
        br#"{"bot_id": "nats", "user_id": "+4915199990000"}"#,
    );
    assert_eq!(erase.status, 202, "{}", erase.body);
    let left = server.get_ok(&format!("/v1/admin/sources/{SOURCE}/dead-letters"));
    let positions: Vec<u64> = left["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [7, 6], "{left}");
    // Bad parameters of the dead letters: 400 naming them.
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("page=2", "page"),
    ] {
        let reply = server.get(&format!("/v1/admin/sources/{SOURCE}/dead-letters?{query}"));
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.body.contains(name), "{}", reply.body);
    }
}

#[test]
fn messages_published_while_the_consumer_is_killed_ten_times_are_stored_exactly_once() {
    if !nats_available() {
        return;
    }
    const TOTAL: usize = 100_000;
    let root = tempfile::tempdir().unwrap();
    let nats = Nats::start(root.path());
    let config = config(root.path(), &nats.url);
    let publisher = Publisher::new(&nats.url, "convlog");
    let mut server = Server::start_with_env(
        root.path(),
        &["--config", config.to_str().unwrap()],
        &[],
        "error",
    );
    let at = chrono::Utc::now().to_rfc3339();
    // The bots publish at about 20,000 messages a second while the node dies.
    let publishing = std::thread::spawn(move || {
        for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(2_000) {
            publisher.publish(
                &format!("convlog.p.{}", chunk[0] % 4),
                chunk.iter().map(|&n| note(n, &at)).collect(),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    kill_at_random_moments(&mut server, 10, 0x21);
    publishing.join().expect("publisher");
    let source = wait_position(&server, TOTAL as u64);
    assert_eq!(source["dead_letters"], json!(0), "{source}");
    server.wait_indexed();
    // The store: each message once, none lost.
    assert_each_stored_once(&server, TOTAL);
    let users = server.get_ok(&format!("/v1/bots/nats/conversations?{RANGE}&limit=1"));
    let in_conversations: u64 = server
        .page_all(
            &format!("/v1/bots/nats/conversations?{RANGE}"),
            "conversations",
        )
        .iter()
        .map(|c| c["message_count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_conversations, TOTAL as u64, "{users}");
}

/// NATS's partition of a subject token: FNV-1a (32 bits) modulo the partitions.
fn nats_partition(token: &str, partitions: u32) -> u32 {
    token.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }) % partitions
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_nodes_on_four_partitions_hold_each_bot_once_answer_for_each_other_and_503_while_one_is_down()
{
    if !nats_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // The log partitions by bot: convlog.in.<bot> → convlog.p.<partition>.<bot>.
    let nats = Nats::start_with(
        root.path(),
        "mappings = { \"convlog.in.*\": \"convlog.p.{{partition(4,1)}}.{{wildcard(1)}}\" }",
    );
    let publisher = Publisher::new(&nats.url, "convlog");

    let (port_a, port_b) = (free_port(), free_port());
    let node = |name: &str, port: u16| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("convlog.toml");
        std::fs::write(
            &config,
            format!(
                "[cluster]\nnode = \"{name}\"\npartitions = 4\n\
                 [[cluster.nodes]]\nname = \"a\"\nurl = \"http://127.0.0.1:{port_a}\"\npartitions = [0, 1]\n\
                 [[cluster.nodes]]\nname = \"b\"\nurl = \"http://127.0.0.1:{port_b}\"\npartitions = [2, 3]\n\
                 [sources.nats]\nurl = \"{}\"\nstream = \"convlog\"\nsubject = \"convlog.p.{{partition}}.>\"\ndurable = \"node\"\n",
                nats.url
            ),
        )
        .unwrap();
        Server::start(
            &dir,
            &[
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
        )
    };
    let a = node("a", port_a);
    let mut b = node("b", port_b);

    // 40 bots, 30 messages each, published by bot to the log.
    let bots: Vec<String> = (0..40).map(|i| format!("bot-{i:02}")).collect();
    let at = chrono::Utc::now();
    for bot in &bots {
        let payloads = (0..30)
            .map(|n| {
                serde_json::to_vec(&json!({
                    "id": format!("{bot}-{n}"),
                    "bot_id": bot,
                    "user_id": format!("user-{}", n % 5),
                    "channel": "web",
                    "role": if n % 2 == 0 { "user" } else { "bot" },
                    "text": format!("question {n} about refunds"),
                    "timestamp": (at + chrono::Duration::milliseconds(n)).to_rfc3339(),
                }))
                .unwrap()
            })
            .collect();
        publisher.publish(&format!("convlog.in.{bot}"), payloads);
    }
    // Each node lists the bots it holds (a forwarded request answers for its node alone).
    let local = |server: &Server| -> BTreeMap<String, u64> {
        let reply = crate::common::agent()
            .get(format!("{}/v1/bots", server.base()))
            .header("x-convlog-forwarded", "test")
            .call()
            .unwrap()
            .into_body()
            .read_json::<Value>()
            .unwrap();
        reply["bots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|bot| {
                (
                    bot["id"].as_str().unwrap().to_string(),
                    bot["conversations"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let started = Instant::now();
    loop {
        let total: u64 = local(&a).values().chain(local(&b).values()).sum();
        let count = local(&a).len() + local(&b).len();
        if count == bots.len() && total == 5 * bots.len() as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?} {:?}",
            local(&a),
            local(&b)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.wait_indexed();
    b.wait_indexed();
    let (on_a, on_b) = (local(&a), local(&b));
    for bot in &bots {
        let owner = if nats_partition(bot, 4) < 2 { "a" } else { "b" };
        // Exactly one node holds it: the one its partition names.
        assert_eq!(
            (on_a.contains_key(bot), on_b.contains_key(bot)),
            (owner == "a", owner == "b"),
            "{bot} (partition {})",
            nats_partition(bot, 4)
        );
    }
    assert!(!on_a.is_empty() && !on_b.is_empty(), "{on_a:?} {on_b:?}");
    // GET /v1/bots on either node lists every bot.
    for server in [&a, &b] {
        let listed = server.get_ok("/v1/bots");
        assert_eq!(
            listed["bots"].as_array().unwrap().len(),
            bots.len(),
            "{listed}"
        );
        assert_eq!(listed["unavailable_nodes"], json!([]));
    }
    // Either node answers any bot's search as its owner does.
    let search = |server: &Server, bot: &str| -> (u16, Value) {
        let reply = server.get(&format!(
            "/v1/bots/{bot}/conversations?{RANGE}&q=refunds&limit=3"
        ));
        let mut body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if let Some(object) = body.as_object_mut() {
            object.remove("next_cursor");
        }
        (reply.status, body)
    };
    for bot in &bots {
        let (status_a, from_a) = search(&a, bot);
        let (status_b, from_b) = search(&b, bot);
        assert_eq!((status_a, status_b), (200, 200), "{bot}: {from_a} {from_b}");
        assert_eq!(from_a, from_b, "{bot}");
        assert_eq!(from_a["total"], json!(5), "{bot}: {from_a}");
    }
    // A node stores only its own bots over HTTP too.
    let theirs = bots.iter().find(|bot| !on_a.contains_key(*bot)).unwrap();
    let refused = a.post(
        "/v1/messages",
        "application/json",
        serde_json::to_string(
            &json!([{"id": "x", "bot_id": theirs, "user_id": "u", "channel": "web",
            "role": "user", "text": "hi", "timestamp": at.to_rfc3339()}]),
        )
        .unwrap()
        .as_bytes(),
    );
    assert_eq!(refused.status, 421, "{}", refused.body);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("node \"b\""), "{message}");

    // Node b dies: its bots answer 503 from a, a's bots still answer.
    b.kill9();
    let mine = bots.iter().find(|bot| on_a.contains_key(*bot)).unwrap();
    let (status, body) = search(&a, theirs);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "owner_unavailable", "{body}");
    assert_eq!(search(&a, mine).0, 200);
    let listed = a.get_ok("/v1/bots");
    assert_eq!(listed["unavailable_nodes"], json!(["b"]), "{listed}");
    assert_eq!(listed["bots"].as_array().unwrap().len(), on_a.len());
    // And recover when it returns.
    b.restart();
    let (status, from_a) = search(&a, theirs);
    assert_eq!(status, 200, "{from_a}");
    assert_eq!(from_a, search(&b, theirs).1);
}

/// Rasa's event broker, bridged to NATS: one event per record on
/// `rasa.<bot>`. The events make the same conversations, sessions, fallbacks
/// and debugger steps as `POST /v1/ingest/rasa`, across batches (the second
/// half comes after the first is stored), and a bad event is a dead letter.
#[test]
fn rasa_events_through_the_log_make_the_conversations_the_rasa_route_makes() {
    use crate::adapters::{check_rasa_tracker, keyed_server, rasa_tracker};
    if !nats_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let nats = Nats::start(root.path());
    let publisher = Publisher::over(&nats.url, "rasa", "rasa.>");
    let config = root.path().join("convlog.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\ncapture_all_traces = true\n[sources.nats]\nurl = \"{}\"\nstream = \"rasa\"\nsubject = \"rasa.>\"\ndurable = \"node-a\"\nformat = \"rasa\"\n",
            nats.url
        ),
    )
    .unwrap();
    let (server, admin, _) = keyed_server(
        root.path(),
        &["--config", config.to_str().unwrap()],
        "rasa-log",
    );
    let sender = "+4915100001111";
    let start = (chrono::Utc::now().timestamp() - 3 * 86_400) as f64;
    let tracker = rasa_tracker(sender, start);
    let events: Vec<Vec<u8>> = tracker["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            let mut event = event.clone();
            event["sender_id"] = json!(sender);
            serde_json::to_vec(&event).unwrap()
        })
        .collect();
    let half = events.len() / 2;
    let wait = |position: u64| {
        let get = |path: &str| server.api.get_ok(path, Some(&admin));
        wait_source(get, "nats:rasa:node-a", position)
    };
    publisher.publish("rasa.rasa-log", events[..half].to_vec());
    wait(half as u64);
    let mut rest = vec![br#"{"event": "user", "text": "who sent me?", "timestamp": 1}"#.to_vec()];
    rest.extend(events[half..].iter().cloned());
    publisher.publish("rasa.rasa-log", rest);
    let state = wait(events.len() as u64 + 1);
    assert_eq!(state["dead_letters"], json!(1), "{state}");
    let letters = server.api.get_ok(
        "/v1/admin/sources/nats:rasa:node-a/dead-letters",
        Some(&admin),
    );
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["position"], json!(half as u64 + 1), "{letters}");
    assert!(
        letter["reason"].as_str().unwrap().contains("sender_id"),
        "{letters}"
    );
    server.wait_indexed(Some(&admin));
    check_rasa_tracker(&server, &admin, "rasa-log", sender);
    // The debugger's events are counted like those of the Rasa route.
    let metrics = server
        .api
        .send("GET", "/metrics", Some(&admin), None, &[])
        .body;
    let stored = crate::common::metric_value(&metrics, "convlog_traces_stored_total");
    assert!(stored.is_some_and(|n| n >= 3.0), "{stored:?}");
}
