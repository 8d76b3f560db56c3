//! Acceptance 6: two bots with the same texts and user ids never see each other's data.

use crate::common::{ALL_FROM, ALL_TO, Server, generated, message};
use crate::oracle::World;
use convlog_gen::GenMessage;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Three conversations only `bot` has: their own word, channel, flow and prompt node. The
/// first belongs to `user`, a day after `after`, so it shows in that user's history.
fn own_conversations(bot: &str, user: &str, after: &str) -> Vec<GenMessage> {
    let start = crate::common::micros(after) + 86_400_000_000;
    let mut out = Vec::new();
    for c in 0..3 {
        for n in 0..4 {
            let at = crate::common::rfc3339(start + c * 7_200_000_000 + n * 60_000_000);
            let user = if c == 0 {
                user.to_string()
            } else {
                format!("{bot}-own-user-{c}")
            };
            let mut m = message(
                &format!("own-{c}-{n}"),
                bot,
                &user,
                &format!("{bot}onlyword talk {n}"),
                &at,
            );
            m.channel = format!("{bot}channel");
            m.role = if n % 2 == 0 { "user" } else { "bot" }.to_string();
            if n % 2 == 1 {
                m.flow = Some(format!("{bot}-only-flow"));
                m.step = Some("ask".to_string());
                m.node_id = Some(format!("n-{bot}-only"));
                m.node_type = Some("prompt".to_string());
            }
            out.push(m);
        }
    }
    out
}

fn as_bot(messages: &[GenMessage], bot: &str) -> Vec<GenMessage> {
    messages
        .iter()
        .cloned()
        .map(|mut m| {
            m.bot_id = bot.to_string();
            m
        })
        .collect()
}

fn get_total(server: &Server, path: &str) -> u64 {
    server.get_ok(path)["total"].as_u64().expect("total")
}

fn strings(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn one_bots_data_never_appears_in_another_bots_answers() {
    let base = generated(55, 150, &["a"], 3);
    let first = &base[0];
    let mut data: BTreeMap<&str, Vec<GenMessage>> = BTreeMap::new();
    for bot in ["a", "b"] {
        let mut messages = as_bot(&base, bot);
        messages.extend(own_conversations(bot, &first.user_id, &first.timestamp));
        data.insert(bot, messages);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for messages in data.values() {
        // The same message ids under another bot are new messages, not duplicates.
        assert_eq!(server.ingest(messages), (messages.len() as u64, 0));
    }
    server.wait_indexed();

    let range = format!("from={ALL_FROM}&to={ALL_TO}");
    let mut conversation_ids: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (bot, other) in [("a", "b"), ("b", "a")] {
        let world = World::new(&data[bot]);
        let listed = server.page_all(
            &format!("/v1/bots/{bot}/conversations?{range}&limit=100"),
            "conversations",
        );
        assert_eq!(
            listed.len(),
            world.convs.len(),
            "{bot}: conversations listed"
        );
        for c in &listed {
            assert_eq!(c["bot_id"], bot, "{c}");
            assert!(
                c["url"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("/bots/{bot}/")),
                "{c}"
            );
        }
        let ids: BTreeSet<String> = listed
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();

        // The other bot's word, channel, flow and node find nothing here; our own do.
        for (param, own, foreign) in [
            ("q", format!("{bot}onlyword"), format!("{other}onlyword")),
            (
                "channel",
                format!("{bot}channel"),
                format!("{other}channel"),
            ),
            (
                "flow",
                format!("{bot}-only-flow"),
                format!("{other}-only-flow"),
            ),
            ("node", format!("n-{bot}-only"), format!("n-{other}-only")),
        ] {
            assert_eq!(
                get_total(
                    &server,
                    &format!("/v1/bots/{bot}/conversations?{range}&{param}={own}")
                ),
                3
            );
            assert_eq!(
                get_total(
                    &server,
                    &format!("/v1/bots/{bot}/conversations?{range}&{param}={foreign}")
                ),
                0
            );
            assert_eq!(
                get_total(
                    &server,
                    &format!("/v1/bots/{bot}/messages?{range}&{param}={foreign}")
                ),
                0
            );
        }
        let all = server.get_ok(&format!("/v1/bots/{bot}/conversations?{range}"));
        for (dimension, foreign) in [
            ("channel", format!("{other}channel")),
            ("flow", format!("{other}-only-flow")),
            ("node", format!("n-{other}-only")),
        ] {
            assert!(
                !strings(&all["facets"][dimension]).contains(&foreign),
                "{bot} facets: {}",
                all["facets"]
            );
        }

        // Message search: exactly our messages, each in one of our conversations.
        let messages = server.page_all(
            &format!("/v1/bots/{bot}/messages?{range}&limit=100"),
            "messages",
        );
        assert_eq!(messages.len(), data[bot].len(), "{bot}: messages listed");
        for m in &messages {
            assert!(
                ids.contains(m["conversation_id"].as_str().unwrap()),
                "{bot}: {m}"
            );
        }

        // Nodes and flows: only ours, with our counts.
        let nodes = server.get_ok(&format!("/v1/bots/{bot}/nodes"));
        let node_ids: BTreeSet<String> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        let own_nodes: BTreeSet<String> =
            data[bot].iter().filter_map(|m| m.node_id.clone()).collect();
        assert_eq!(node_ids, own_nodes, "{bot}: nodes");
        let flows = server.get_ok(&format!("/v1/bots/{bot}/flows?{range}"));
        let flow_counts: BTreeMap<String, u64> = flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["flow"].as_str().unwrap().to_string(),
                    f["conversations"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut own_flows: BTreeMap<String, u64> = BTreeMap::new();
        for conv in &world.convs {
            for flow in &conv.flows {
                *own_flows.entry(flow.clone()).or_default() += 1;
            }
        }
        assert_eq!(flow_counts, own_flows, "{bot}: flows");

        // Every conversation, with its messages and the user's history, is ours alone.
        for id in &ids {
            let c = server.get_ok(&format!("/v1/bots/{bot}/conversations/{id}"));
            assert_eq!(c["bot_id"], bot);
            let count = c["message_count"].as_u64().unwrap() as usize;
            assert_eq!(c["messages"].as_array().unwrap().len(), count, "{c}");
            for text in c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap())
            {
                assert!(
                    !text.contains(&format!("{other}onlyword")),
                    "{bot}/{id} shows {other}'s message"
                );
            }
            for h in c["history"].as_array().unwrap() {
                assert_eq!(h["bot_id"], bot, "{bot}/{id} history: {h}");
                assert!(
                    ids.contains(h["id"].as_str().unwrap()),
                    "{bot}/{id} history: {h}"
                );
            }
        }
        conversation_ids.insert(bot, ids);
    }

    // The history check above is not vacuous: the shared user's own conversation has history.
    for bot in ["a", "b"] {
        let own = server.get_ok(&format!(
            "/v1/bots/{bot}/conversations?{range}&q={bot}onlyword"
        ));
        let with_history = own["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                let detail = server.get_ok(&format!(
                    "/v1/bots/{bot}/conversations/{}",
                    c["id"].as_str().unwrap()
                ));
                !detail["history"].as_array().unwrap().is_empty()
            })
            .count();
        assert_eq!(
            with_history, 1,
            "{bot}: the shared user's conversation should show earlier ones"
        );
    }

    // One bot's conversation ids do not exist under the other bot's path.
    for (bot, other) in [("a", "b"), ("b", "a")] {
        assert!(conversation_ids[bot].is_disjoint(&conversation_ids[other]));
        for id in &conversation_ids[bot] {
            let reply = server.get(&format!("/v1/bots/{other}/conversations/{id}"));
            assert_eq!(reply.status, 404, "{other}/{id}: {}", reply.body);
            assert_eq!(reply.json()["error"]["code"], "not_found");
        }
    }
}
