//! The live tail (issue #19): `GET /v1/bots/{bot}/tail` as Server-Sent
//! Events, through HTTP against the real binary.

use crate::common::{Server, agent, encode, message, rfc3339};
use chrono::Utc;
use convlog_gen::GenMessage;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One event of a stream: its name, id and data, or a comment (heartbeat).
#[derive(Debug, Clone)]
enum Sse {
    Event {
        name: String,
        id: Option<String>,
        data: Value,
    },
    Comment,
}

/// Opens a tail and reads its events on a thread; the receiver gets them.
fn open(server: &Server, query: &str, last_event_id: Option<&str>) -> mpsc::Receiver<Sse> {
    let url = format!("{}/v1/bots/shop/tail?{query}", server.base());
    let mut request = agent().get(&url).header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.call().expect("tail answers");
    assert_eq!(response.status().as_u16(), 200, "tail {query}");
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let reader = BufReader::new(response.into_body().into_reader());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || read_events(reader, tx));
    rx
}

fn read_events(reader: impl BufRead, tx: mpsc::Sender<Sse>) {
    let (mut name, mut id, mut data) = (String::new(), None, String::new());
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.is_empty() {
            if !data.is_empty() {
                let event = Sse::Event {
                    name: std::mem::take(&mut name),
                    id: id.take(),
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                };
                data.clear();
                if tx.send(event).is_err() {
                    return;
                }
            }
        } else if line.starts_with(':') {
            if tx.send(Sse::Comment).is_err() {
                return;
            }
        } else if let Some(value) = line.strip_prefix("event:") {
            name = value.trim().to_string();
        } else if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
}

/// The `message` events of `rx` until `count` have come (or a minute passed).
fn messages(rx: &mpsc::Receiver<Sse>, count: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Sse::Event { name, id, data }) => {
                assert_eq!(name, "message", "{data}");
                out.push((id.expect("a message event has an id"), data));
            }
            Ok(Sse::Comment) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(err) => panic!("the stream ended: {err}"),
        }
    }
    out
}

/// Whatever else arrives within `wait`: no more `message` events.
fn nothing_more(rx: &mpsc::Receiver<Sse>, wait: Duration) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(Sse::Event { data, .. }) = rx.recv_timeout(Duration::from_millis(100)) {
            panic!("unexpected event: {data}");
        }
    }
}

fn mixed(prefix: &str, count: usize, now: i64) -> Vec<GenMessage> {
    let texts = [
        "I want a refund",
        "they refunded me twice",
        "where is my order",
        "hello there",
        "Refunds take how long?",
    ];
    (0..count)
        .map(|i| {
            // A few arrive with old timestamps (a backfill): the tail has no time range.
            let at = if i % 17 == 0 {
                now - 30 * 86_400_000_000
            } else {
                now - 1_000_000 * (count - i) as i64
            };
            let mut m = message(
                &format!("{prefix}{i}"),
                "shop",
                &format!("user-{}", i % 7),
                texts[i % texts.len()],
                &rfc3339(at),
            );
            m.channel = ["web", "whatsapp", "telegram"][i % 3].into();
            m.role = ["user", "bot"][(i / 3) % 2].into();
            m
        })
        .collect()
}

fn ids(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, data)| data["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_tail_delivers_exactly_the_matching_messages_in_order() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path(), &["--set", "tail.heartbeat=1s"]);
    let now = Utc::now().timestamp_micros();
    // Before the streams open: never sent.
    server.ingest(&mixed("before-", 40, now));
    server.wait_indexed();

    let all = open(&server, "", None);
    let whatsapp = open(&server, "channel=whatsapp", None);
    let refund = open(&server, &format!("q={}", encode("refund")), None);
    let users_on_web = open(&server, "role=user&channel=web", None);
    let quiet = open(&server, "channel=nowhere", None);

    let batch = mixed("m", 300, now);
    for chunk in batch.chunks(37) {
        server.ingest(chunk);
    }
    let expect = |keep: &dyn Fn(&GenMessage) -> bool| -> Vec<String> {
        batch
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.id.clone())
            .collect()
    };
    let cases: [(&mpsc::Receiver<Sse>, Vec<String>); 4] = [
        (&all, expect(&|_| true)),
        (&whatsapp, expect(&|m| m.channel == "whatsapp")),
        (
            &refund,
            expect(&|m| m.text.to_lowercase().contains("refund")),
        ),
        (
            &users_on_web,
            expect(&|m| m.role == "user" && m.channel == "web"),
        ),
    ];
    let mut everything = Vec::new();
    for (rx, wanted) in &cases {
        let got = messages(rx, wanted.len());
        assert_eq!(
            ids(&got),
            *wanted,
            "exactly the matching messages, in ingest order"
        );
        nothing_more(rx, Duration::from_millis(300));
        if wanted.len() == batch.len() {
            everything = got;
        }
    }
    // Each event carries what a reviewer reads.
    let (_, first) = &everything[0];
    for field in [
        "text",
        "role",
        "conversation_id",
        "timestamp",
        "channel",
        "id",
    ] {
        assert!(first[field].is_string(), "{field} in {first}");
    }
    assert_eq!(first["channel"], "web");
    assert_eq!(first["text"], "I want a refund");
    // An idle stream gets heartbeats (comment lines) and no events.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut heartbeats = 0;
    while heartbeats < 2 && Instant::now() < deadline {
        match quiet.recv_timeout(Duration::from_millis(200)) {
            Ok(Sse::Comment) => heartbeats += 1,
            Ok(event) => panic!("nothing matches channel=nowhere: {event:?}"),
            Err(_) => {}
        }
    }
    assert_eq!(heartbeats, 2);

    // A reconnecting client resumes after the last event it saw.
    let (tenth, _) = &everything[9];
    let resumed = open(&server, "", Some(tenth));
    let rest = messages(&resumed, batch.len() - 10);
    assert_eq!(ids(&rest), ids(&everything[10..]));

    // Bad parameters: 400 naming them.
    server.assert_400_naming(
        "/v1/bots/shop/tail",
        &[
            ("limit=5", "limit"),
            ("cursor=x", "cursor"),
            ("colour=red", "colour"),
            ("role=robot", "role"),
        ],
    );
    let reply = server.get("/v1/bots/shop/tail?q=%22unclosed");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = agent()
        .get(format!("{}/v1/bots/shop/tail", server.base()))
        .header("Last-Event-ID", "yesterday")
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 400);

    // Shutting down ends open streams rather than waiting for them.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match all.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            _ if Instant::now() > deadline => panic!("the stream did not end"),
            _ => {}
        }
    }
}

#[test]
fn a_client_that_reads_too_slowly_loses_messages_and_is_told_not_ingest() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &["--set", "tail.buffer=10"]);
    let now = Utc::now().timestamp_micros();
    // Open a stream and read nothing of it while messages arrive.
    let url = format!("{}/v1/bots/shop/tail", server.base());
    let response = agent().get(&url).call().expect("tail answers");
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.into_body().into_reader();
    let filler = "x".repeat(2000);
    let mut sent = Vec::new();
    for round in 0..20 {
        let mut batch = mixed(&format!("r{round}-"), 1000, now);
        for m in &mut batch {
            m.text = format!("{} {filler}", m.text);
        }
        server.ingest(&batch);
        sent.extend(batch.into_iter().map(|m| m.id));
    }
    server.wait_indexed();
    std::thread::sleep(Duration::from_secs(1));
    // Now read what the stream kept: in order, with the losses counted.
    let mut first = [0u8; 1];
    body.read_exact(&mut first).unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = BufReader::new(std::io::Cursor::new(first).chain(body));
    std::thread::spawn(move || read_events(reader, tx));
    let (mut delivered, mut dropped) = (Vec::new(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (delivered.len() as u64 + dropped) < sent.len() as u64 && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Sse::Event { name, data, .. }) if name == "dropped" => {
                dropped += data["dropped"].as_u64().unwrap();
            }
            Ok(Sse::Event { data, .. }) => delivered.push(data["id"].as_str().unwrap().to_string()),
            _ => {}
        }
    }
    assert!(dropped > 0, "a stalled client loses messages");
    assert_eq!(delivered.len() as u64 + dropped, sent.len() as u64);
    let position: std::collections::HashMap<&String, usize> =
        sent.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let order: Vec<usize> = delivered.iter().map(|id| position[id]).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn tails_yield_to_an_ingest_burst_then_deliver_all_of_it_in_order() {
    let root = tempfile::tempdir().unwrap();
    // The index commits every 5 s: a burst leaves it several pages behind.
    let server = Server::start(root.path(), &["--set", "index.refresh_interval=5s"]);
    let all = open(&server, "", None);
    let web = open(&server, "channel=web", None);
    assert_eq!(server.metric("convlog_tail_streams"), 2.0);
    assert_eq!(server.metric("convlog_tail_yielded_seconds_total"), 0.0);

    // 12,000 messages, each its own conversation: 12,000 changes to index,
    // ingested before the index's next commit.
    let now = Utc::now().timestamp_micros();
    let burst: Vec<GenMessage> = (0..12_000)
        .map(|i| {
            let mut m = message(
                &format!("burst-{i}"),
                "shop",
                &format!("burst-user-{i}"),
                "where is my order",
                &rfc3339(now - 1_000 * (12_000 - i) as i64),
            );
            m.channel = ["web", "whatsapp", "telegram"][i % 3].into();
            m
        })
        .collect();
    for chunk in burst.chunks(1000) {
        server.ingest(chunk);
    }
    let expected: Vec<String> = burst.iter().map(|m| m.id.clone()).collect();
    let on_web: Vec<String> = burst
        .iter()
        .filter(|m| m.channel == "web")
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(ids(&messages(&all, expected.len())), expected);
    assert_eq!(ids(&messages(&web, on_web.len())), on_web);
    nothing_more(&all, Duration::from_millis(300));
    // While the index was pages behind, the tails read a page a second.
    assert!(server.metric("convlog_tail_yielded_seconds_total") > 0.0);
}
