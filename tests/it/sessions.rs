//! Session edges the generated data never reaches (its users rest longer than any
//! timeout): the exact timeout, late messages that bridge sessions, explicit ids.

use crate::common::{ALL_FROM, ALL_TO, Server, message};
use convlog_gen::GenMessage;
use serde_json::Value;

fn at(id: &str, channel: &str, timestamp: &str) -> GenMessage {
    let mut m = message(
        id,
        "sess",
        "+33612345678",
        &format!("text of {id}"),
        timestamp,
    );
    m.channel = channel.to_string();
    m
}

/// Conversations of the bot, oldest first, as (id, message_count).
fn conversations(server: &Server) -> Vec<(String, u64)> {
    server.wait_indexed();
    let page = server.get_ok(&format!(
        "/v1/bots/sess/conversations?from={ALL_FROM}&to={ALL_TO}&sort=started_at&limit=100"
    ));
    let mut list: Vec<(String, u64)> = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c: &Value| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["message_count"].as_u64().unwrap(),
            )
        })
        .collect();
    list.reverse();
    list
}

fn counts(list: &[(String, u64)]) -> Vec<u64> {
    list.iter().map(|(_, n)| *n).collect()
}

#[test]
fn a_gap_of_exactly_the_timeout_keeps_the_session_and_a_longer_one_starts_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.ingest(&[
        // sms: 30 minutes.
        at("s1", "sms", "2026-11-10T10:00:00Z"),
        at("s2", "sms", "2026-11-10T10:30:00Z"),
        at("s3", "sms", "2026-11-10T11:00:00.000001Z"),
        // web: 24 hours.
        at("w1", "web", "2026-11-12T10:00:00Z"),
        at("w2", "web", "2026-11-13T10:00:00Z"),
        at("w3", "web", "2026-11-14T10:00:00.001Z"),
    ]);
    assert_eq!(counts(&conversations(&server)), vec![2, 1, 2, 1]);
}

#[test]
fn a_late_message_bridging_two_sessions_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.ingest(&[
        at("a", "sms", "2026-11-10T10:00:00Z"),
        at("b", "sms", "2026-11-10T10:50:00Z"),
    ]);
    let before = conversations(&server);
    assert_eq!(counts(&before), vec![1, 1]);
    server.ingest(&[at("late", "sms", "2026-11-10T10:25:00Z")]);
    let after = conversations(&server);
    assert_eq!(counts(&after), vec![3], "{after:?}");
    // docs/api.md: the older conversation id survives, the other answers 404.
    assert_eq!(after[0].0, before[0].0);
    assert_eq!(
        server
            .get(&format!("/v1/bots/sess/conversations/{}", before[1].0))
            .status,
        404
    );
}

#[test]
fn arrival_order_does_not_change_the_sessions() {
    let messages = [
        at("1", "telegram", "2026-11-10T10:00:00Z"),
        at("2", "telegram", "2026-11-10T10:20:00Z"),
        at("3", "telegram", "2026-11-10T11:20:00Z"),
        at("4", "telegram", "2026-11-10T11:40:00Z"),
        at("5", "telegram", "2026-11-10T12:05:00Z"),
    ];
    let mut results = Vec::new();
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        for i in order {
            server.ingest(std::slice::from_ref(&messages[i]));
        }
        results.push(counts(&conversations(&server)));
    }
    assert_eq!(results, vec![vec![2, 3]; 3]);
}

#[test]
fn messages_with_one_session_id_form_one_conversation_whatever_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut batch = vec![
        at("x1", "sms", "2026-11-01T10:00:00Z"),
        at("x2", "sms", "2026-11-05T10:00:00Z"),
    ];
    for m in &mut batch {
        m.session_id = Some("ticket-7".to_string());
    }
    server.ingest(&batch);
    assert_eq!(counts(&conversations(&server)), vec![2]);
}
