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
