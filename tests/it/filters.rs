//! `GET /v1/filters`: the filter table as clients see it, and the searches
//! taking exactly the filters it says they take.

use crate::common::Server;
use serde_json::Value;

/// The search path of each target the descriptor names.
const TARGETS: [(&str, &str); 3] = [
    ("conversations", "/v1/bots/demo/conversations"),
    ("messages", "/v1/bots/demo/messages"),
    ("aggregates", "/v1/bots/demo/tags"),
];

#[test]
fn descriptor_lists_every_filter_and_searches_take_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let body = server.get_ok("/v1/filters");
    let filters = body["filters"].as_array().expect("a list of filters");
    let params: Vec<&str> = filters
        .iter()
        .map(|f| f["param"].as_str().unwrap())
        .collect();
    for known in [
        "channel", "tag", "flagged", "label", "flow", "step", "dropoff", "node", "intent", "role",
    ] {
        assert!(params.contains(&known), "{known} missing from {params:?}");
    }
    let sections: Vec<&str> = filters
        .iter()
        .filter_map(|f| f["section"]["title"].as_str())
        .collect();
    assert_eq!(
        sections,
        [
            "Source", "Tags", "Flagged", "Labels", "Flows", "Nodes", "Intents"
        ]
    );

    for filter in filters {
        let param = filter["param"].as_str().unwrap();
        let value = match filter["kind"].as_str().unwrap() {
            "bool" => "true",
            "multi" => "user",
            other => panic!("{param}: unknown kind {other}"),
        };
        let mut query = format!("{param}={value}");
        if let Some(needed) = filter["requires"].as_str() {
            query.push_str(&format!("&{needed}=user"));
        }
        let targets: Vec<&str> = filter["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for (target, path) in TARGETS {
            let reply = server.get(&format!("{path}?{query}"));
            if targets.contains(&target) {
                assert_eq!(reply.status, 200, "{path}?{query}: {}", reply.body);
            } else {
                assert_eq!(reply.status, 400, "{path}?{query}: {}", reply.body);
                let error: Value = reply.json();
                let message = error["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(param), "{message}");
            }
        }
        if let Some(facet) = filter["facet"].as_str() {
            let page = server.get_ok(&format!("/v1/bots/demo/conversations?{query}"));
            assert!(page["facets"].get(facet).is_some(), "{facet}: {page}");
        }
    }
}

/// The facets and total of a conversation search, and its first page's ids.
fn counts(server: &Server, query: &str) -> (Value, Value, Vec<String>) {
    let page = server.get_ok(&format!("/v1/bots/demo/conversations?limit=10&{query}"));
    let ids = page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    (page["total"].clone(), page["facets"].clone(), ids)
}

#[test]
fn the_default_views_counts_per_hour_equal_counts_per_conversation_through_changes() {
    // A search with nothing but a time range counts the conversations that
    // started in its whole hours from per-segment summaries; the same search
    // with a channel filter naming every channel counts each conversation one
    // by one. Both must agree for ranges on and off the hour, and after labels
    // and flags rewrite conversation documents (deletes the summaries must see).
    use crate::common::{ALL_FROM, ALL_TO, encode, end, generated, message};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "index.partition_span=6h"]);
    server.ingest(&generated(11, 600, &["demo"], 3));
    let minute = chrono::Duration::minutes(1);
    let ranges: Vec<(chrono::DateTime<chrono::Utc>, chrono::Duration)> = vec![
        (end() - chrono::Duration::days(1), chrono::Duration::days(1)),
        (
            end() - chrono::Duration::hours(30) - minute * 17,
            chrono::Duration::hours(26),
        ),
        (end() - chrono::Duration::days(2) + minute * 7, minute * 50),
        (end() - chrono::Duration::days(3), chrono::Duration::days(5)),
        (
            end() - chrono::Duration::hours(50) - minute * 3,
            chrono::Duration::hours(1) + minute,
        ),
    ];
    // Conversations that started hours before each range and go on into it:
    // a plain search doesn't visit them through its query but through the
    // summaries' list of long conversations.
    let mut long = Vec::new();
    for (r, (from, _)) in ranges.iter().enumerate() {
        for k in 0..8i32 {
            let mut m = message(
                &format!("long-{r}-{k}"),
                "demo",
                &format!("long-user-{r}"),
                "still waiting for my order",
                &(*from - minute * (150 - 25 * k)).to_rfc3339(),
            );
            m.session_id = Some(format!("long-{r}"));
            long.push(m);
        }
    }
    server.ingest(&long);
    server.wait_settled();
    let everything = format!("from={}&to={}", encode(ALL_FROM), encode(ALL_TO));
    let (_, facets, _) = counts(&server, &everything);
    let channels: Vec<String> = facets["channel"]
        .as_object()
        .unwrap()
        .keys()
        .map(|c| format!("&channel={}", encode(c)))
        .collect();
    assert!(channels.len() >= 2, "{facets}");
    let all_channels = channels.concat();
    let ids: Vec<String> = server
        .page_all(
            &format!("/v1/bots/demo/conversations?{everything}"),
            "conversations",
        )
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for round in 0..3 {
        for (from, span) in &ranges {
            let range = format!(
                "from={}&to={}",
                encode(&from.to_rfc3339()),
                encode(&(*from + *span).to_rfc3339())
            );
            let plain = counts(&server, &range);
            let one_by_one = counts(&server, &format!("{range}{all_channels}"));
            assert_eq!(plain, one_by_one, "round {round}, {range}");
            assert!(
                plain.0.as_u64().unwrap() > 0,
                "round {round}, {range}: no match"
            );
            // First pages (top hits from the summaries' best per hour) in
            // both time orders, at the largest page size, and the pages after
            // them (cursor pages count from summaries but rank one by one).
            for order in ["sort=last_message_at", "sort=started_at"] {
                for limit in [3, 100] {
                    let path = format!("/v1/bots/demo/conversations?limit={limit}&{order}&{range}");
                    let ids = |path: &str| -> Vec<Value> {
                        let all = server.page_all(path, "conversations");
                        all.iter().map(|c| c["id"].clone()).collect()
                    };
                    assert_eq!(
                        ids(&path),
                        ids(&format!("{path}{all_channels}")),
                        "round {round}, {path}"
                    );
                }
            }
            // The aggregate lists count from the same summaries.
            for list in ["tags", "labels"] {
                let path = format!("/v1/bots/demo/{list}?{range}");
                assert_eq!(
                    server.get_ok(&path),
                    server.get_ok(&format!("{path}{all_channels}")),
                    "round {round}, {path}"
                );
            }
        }
        // Rewrite a tenth of the conversations' documents.
        for id in ids.iter().skip(round).step_by(10) {
            let base = format!("/v1/bots/demo/conversations/{id}");
            let label = server.put(
                &format!("{base}/labels/round-{round}"),
                "application/json",
                b"",
            );
            assert_eq!(label.status, 200, "{}", label.body);
            let flag = server.put(&format!("{base}/flag"), "application/json", b"");
            assert_eq!(flag.status, 200, "{}", flag.body);
        }
        server.wait_indexed();
        let (_, facets, _) = counts(&server, &everything);
        let labelled = ids.iter().skip(round).step_by(10).count() as u64;
        assert_eq!(
            facets["label"][format!("round-{round}")],
            labelled,
            "{facets}"
        );
    }
}
