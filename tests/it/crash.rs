//! Acceptance 3 and 8: acknowledged messages survive `kill -9`; a graceful
//! shutdown leaves everything searchable as soon as `/readyz` is green again.

use crate::common::{ALL_FROM, ALL_TO, Server, encode, generated};
use crate::oracle::World;
use convlog_gen::GenMessage;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 1_000;

/// The ids of every message of `bot` that message search lists, asserting none is listed twice.
fn stored_ids(server: &Server, bot: &str) -> BTreeSet<String> {
    let listed = server.message_conversations(bot);
    let ids: BTreeSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids.len(),
        listed.len(),
        "message search listed some message twice"
    );
    ids
}

fn message_total(server: &Server, bot: &str) -> u64 {
    server.get_ok(&format!(
        "/v1/bots/{bot}/messages?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ))["total"]
        .as_u64()
        .expect("total")
}

fn conversation_total(server: &Server, bot: &str) -> u64 {
    server.get_ok(&format!(
        "/v1/bots/{bot}/conversations?from={ALL_FROM}&to={ALL_TO}&limit=1"
    ))["total"]
        .as_u64()
        .expect("total")
}

#[test]
fn acknowledged_messages_survive_kill_9_and_resending_only_adds_duplicates() {
    let mut messages = generated(33, 4_600, &["crash"], 30);
    assert!(messages.len() >= 50_000);
    messages.truncate(50_000);
    let batches: Vec<&[GenMessage]> = messages.chunks(BATCH).collect();
    let bodies: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| serde_json::to_vec(b).unwrap())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let client = server.client();
    let next = AtomicUsize::new(0);
    let acked: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= bodies.len() {
                        return;
                    }
                    match client.try_post("/v1/messages", "application/json", &bodies[n]) {
                        Ok(reply) if reply.status == 200 => acked.lock().unwrap().push(n),
                        // The server is gone (or refusing): this batch is unacknowledged.
                        _ => return,
                    }
                }
            });
        }
        // Kill mid-ingest, after some acknowledgements.
        let started = Instant::now();
        while acked.lock().unwrap().len() < 12 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no acknowledgements"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill9();
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() < batches.len(),
        "the kill came after the whole ingest: nothing was proven"
    );

    let restarted = Instant::now();
    server.restart();
    let ready_after = restarted.elapsed();
    eprintln!(
        "{} of {} batches acknowledged before kill -9; ready {:.1}s after restart",
        acked.len(),
        batches.len(),
        ready_after.as_secs_f64()
    );
    assert!(
        ready_after < Duration::from_secs(10),
        "/readyz took {ready_after:?} to turn green"
    );

    // Searchable at once (no waiting for the index beyond /readyz).
    let stored = stored_ids(&server, "crash");
    let lost: Vec<&str> = acked
        .iter()
        .flat_map(|&n| batches[n].iter())
        .map(|m| m.id.as_str())
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Batches are atomic even when the process dies: each is stored whole or not at all.
    for (n, batch) in batches.iter().enumerate() {
        let kept = batch.iter().filter(|m| stored.contains(&m.id)).count();
        assert!(
            kept == 0 || kept == batch.len(),
            "batch {n}: {kept} of {} messages stored",
            batch.len()
        );
    }
    let sent: BTreeSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    assert!(
        stored.iter().all(|id| sent.contains(id.as_str())),
        "messages nobody sent are stored"
    );

    // Re-sending everything adds only what was missing.
    let (accepted, duplicates) = server.ingest_parallel(&messages, BATCH, 3);
    assert_eq!(
        duplicates as usize,
        stored.len(),
        "every stored message is a duplicate when re-sent"
    );
    assert_eq!((accepted + duplicates) as usize, messages.len());
    server.wait_indexed();
    assert_eq!(
        message_total(&server, "crash") as usize,
        sent.len(),
        "total messages = distinct ids sent"
    );
    let world = World::new(&messages);
    assert_eq!(
        conversation_total(&server, "crash") as usize,
        world.convs.len()
    );
}

#[test]
fn everything_is_searchable_once_ready_after_a_graceful_shutdown() {
    let messages = generated(44, 1_800, &["calm"], 30);
    let world = World::new(&messages);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let (accepted, _) = server.ingest_parallel(&messages, BATCH, 3);
    assert_eq!(accepted as usize, messages.len());
    // SIGTERM right after the last acknowledgement, before the index has necessarily caught up.
    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exited with {status}");
    server.restart();

    assert_eq!(message_total(&server, "calm") as usize, messages.len());
    assert_eq!(
        conversation_total(&server, "calm") as usize,
        world.convs.len()
    );
    // Text search too, for a word of the last message sent.
    let last = messages.last().unwrap();
    let word = crate::oracle::words(&last.text)
        .into_iter()
        .next()
        .expect("a word");
    let expected = (0..world.convs.len())
        .filter(|&c| world.text_matches(&crate::oracle::Query::term(None, &[&word]), c))
        .count();
    let got = server.get_ok(&format!(
        "/v1/bots/calm/conversations?from={ALL_FROM}&to={ALL_TO}&q={}",
        encode(&word)
    ))["total"]
        .as_u64()
        .unwrap();
    assert_eq!(got as usize, expected, "conversations with {word:?}");
    let by_id: HashMap<&str, &GenMessage> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
    assert_eq!(stored_ids(&server, "calm").len(), by_id.len());
}

/// Sends the `pending` batches from three threads until `kill_after` of them are acknowledged,
/// then kills the server; returns the batches acknowledged.
fn send_until_killed(
    server: &mut Server,
    bodies: &[Vec<u8>],
    pending: &[usize],
    kill_after: usize,
) -> Vec<usize> {
    let client = server.client();
    let next = AtomicUsize::new(0);
    let acked: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&batch) = pending.get(n) else { break };
                    match client.try_post("/v1/messages", "application/json", &bodies[batch]) {
                        Ok(reply) if reply.status == 200 => acked.lock().unwrap().push(batch),
                        _ => break,
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while acked.lock().unwrap().len() < kill_after && done.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill9();
    });
    acked.into_inner().unwrap()
}

#[test]
fn repeated_kill_9_with_client_retries_loses_and_duplicates_nothing() {
    let messages = generated(77, 2_000, &["retry"], 30);
    let batches: Vec<&[GenMessage]> = messages.chunks(500).collect();
    let bodies: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| serde_json::to_vec(b).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut pending: Vec<usize> = (0..batches.len()).collect();
    let mut interrupted = 0;
    for round in 0..6 {
        let acked = send_until_killed(&mut server, &bodies, &pending, 2 + 2 * round);
        interrupted += usize::from(acked.len() < pending.len());
        // The client retries every batch it has no acknowledgement for.
        pending.retain(|n| !acked.contains(n));
        server.restart();
        if pending.is_empty() {
            break;
        }
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} kills interrupted the ingest"
    );
    let retried: Vec<GenMessage> = pending
        .iter()
        .flat_map(|&n| batches[n].iter().cloned())
        .collect();
    let (accepted, duplicates) = server.ingest_parallel(&retried, 500, 3);
    assert_eq!((accepted + duplicates) as usize, retried.len());
    server.wait_indexed();
    let stored = stored_ids(&server, "retry");
    let sent: BTreeSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(stored, sent, "stored ids differ from the ids sent");
    assert_eq!(message_total(&server, "retry") as usize, sent.len());
}
