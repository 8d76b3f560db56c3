//! The Kafka source (issue #21) against a real Kafka-protocol broker on
//! loopback: `tansu` from crates.io with its memory storage engine (`cargo
//! install --locked tansu --features dynostore`; CI installs it and sets
//! `CONVLOG_REQUIRE_KAFKA=1`, which makes its absence a failure). The bots'
//! side produces with `rskafka`.

use crate::common::Server;
use crate::sources::{
    Daemon, assert_each_stored_once, available, free_port, kill_at_random_moments, note,
};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOPIC: &str = "convlog.in";
const PARTITIONS: u32 = 4;

/// Whether `tansu` runs here.
fn tansu_available() -> bool {
    available(
        "tansu",
        "CONVLOG_REQUIRE_KAFKA",
        "cargo install --locked tansu --features dynostore",
    )
}

/// A `tansu broker` on a free loopback port, storing in memory; killed on drop.
struct Tansu {
    _daemon: Daemon,
    address: String,
}

impl Tansu {
    fn start(dir: &Path) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}/");
        let mut command = Command::new("tansu");
        command.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]);
        Tansu {
            _daemon: Daemon::start(command, port, &dir.join("tansu.log")),
            address: format!("127.0.0.1:{port}"),
        }
    }
}

/// The bots' side: produces to the topic's partitions, on its own runtime.
struct Producer {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Producer {
    /// Connects and creates the topic with [`PARTITIONS`] partitions.
    fn new(address: &str) -> Producer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let client = ClientBuilder::new(vec![address.to_string()])
                .build()
                .await
                .expect("connect to the broker");
            client
                .controller_client()
                .unwrap()
                .create_topic(TOPIC, PARTITIONS as i32, 1, 5_000)
                .await
                .expect("create the topic");
            client
        });
        Producer { runtime, client }
    }

    /// Produces each payload to `partition`, in order.
    fn produce(&self, partition: u32, payloads: Vec<Vec<u8>>, compression: Compression) {
        self.runtime.block_on(async {
            let partition = self
                .client
                .partition_client(TOPIC, partition as i32, UnknownTopicHandling::Retry)
                .await
                .expect("the partition");
            let records = payloads
                .into_iter()
                .map(|payload| Record {
                    key: None,
                    value: Some(payload),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            partition
                .produce(records, compression)
                .await
                .expect("produce");
        });
    }
}

fn config(root: &Path, address: &str) -> std::path::PathBuf {
    let path = root.join("convlog.toml");
    std::fs::write(
        &path,
        format!("[sources.kafka]\nbrokers = \"{address}\"\ntopic = \"{TOPIC}\"\n"),
    )
    .unwrap();
    path
}

/// Waits until every partition's stored offset is the one `last` gives and
/// its source is connected (after a restart the
/// store has the offsets before the source has reconnected); the sources'
/// states then, by name.
fn wait_offsets(server: &Server, last: &[u64]) -> BTreeMap<String, Value> {
    let started = Instant::now();
    loop {
        let sources = server.get_ok("/v1/admin/sources");
        let states: BTreeMap<String, Value> = sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s.clone()))
            .collect();
        let done = last.iter().enumerate().all(|(p, last)| {
            let state = states.get(&format!("kafka:{TOPIC}:{p}"));
            state.is_some_and(|s| s["connected"] == json!(true) && s["position"] == json!(last))
        });
        if done {
            return states;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stuck at {sources}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kafka_records_are_stored_exactly_once_through_kill_9s_and_a_poison_record_is_a_dead_letter() {
    if !tansu_available() {
        return;
    }
    const TOTAL: usize = 20_000;
    let root = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(root.path());
    let producer = Producer::new(&tansu.address);
    let config = config(root.path(), &tansu.address);
    let mut server = Server::start_with_env(
        root.path(),
        &["--config", config.to_str().unwrap()],
        &[],
        "error",
    );
    let at = chrono::Utc::now().to_rfc3339();
    // Partition 1 starts with a poison record at offset 0 (nothing stored
    // yet: the first offset counts too); compressions differ by partition.
    producer.produce(
        1,
        vec![b"{\"bot_id\": \"nats\"".to_vec()],
        Compression::NoCompression,
    );
    let mut counts = [0_u64; PARTITIONS as usize];
    counts[1] = 1;
    let publishing = {
        let at = at.clone();
        std::thread::spawn(move || {
            let compressions = [
                Compression::NoCompression,
                Compression::Gzip,
                Compression::Lz4,
                Compression::Zstd,
            ];
            for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(500) {
                let partition = (chunk[0] / 500) as u32 % PARTITIONS;
                producer.produce(
                    partition,
                    chunk.iter().map(|&n| note(n, &at)).collect(),
                    compressions[partition as usize],
                );
                std::thread::sleep(Duration::from_millis(40));
            }
            producer
        })
    };
    for chunk in 0..TOTAL / 500 {
        counts[chunk % PARTITIONS as usize] += 500;
    }
    kill_at_random_moments(&mut server, 5, 0x4b);
    let _producer = publishing.join().expect("producer");
    let last: Vec<u64> = counts.iter().map(|&n| n - 1).collect();
    let states = wait_offsets(&server, &last);
    let poisoned = &states[&format!("kafka:{TOPIC}:1")];
    assert_eq!(poisoned["dead_letters"], json!(1), "{poisoned}");
    assert_eq!(poisoned["lag"], json!(0), "{poisoned}");
    assert_eq!(poisoned["connected"], json!(true), "{poisoned}");
    let letters = server.get_ok(&format!("/v1/admin/sources/kafka:{TOPIC}:1/dead-letters"));
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["position"], json!(0), "{letters}");
    assert!(
        letter["reason"].as_str().unwrap().contains("invalid JSON"),
        "{letters}"
    );
    server.wait_indexed();
    assert_each_stored_once(&server, TOTAL);
    // The partitions' offsets and lag, as /metrics gives them.
    let metrics = server.get("/metrics").body;
    for (p, last) in last.iter().enumerate() {
        let source = format!("kafka:{TOPIC}:{p}");
        for line in [
            format!("convlog_source_position{{source=\"{source}\"}} {}\n", last),
            format!("convlog_source_lag{{source=\"{source}\"}} 0\n"),
        ] {
            assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
        }
    }
}
