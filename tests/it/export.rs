//! The export (`GET /v1/bots/{bot}/conversations/export`): the same
//! conversations as the search, CSV rows that say what the search says of
//! each, NDJSON with every one of their messages, and bad parameters refused.

use crate::common::{Server, encode, generated, message};
use crate::review::{Client, all_time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Parses RFC 4180 CSV (quoted cells may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        !quoted && cell.is_empty() && row.is_empty(),
        "CSV ends mid-row"
    );
    rows
}

/// The export as (status, content type, body).
fn export(c: &Client, bot: &str, query: &str) -> (u16, String, String) {
    let answer = c.req(
        "GET",
        &format!("/v1/bots/{bot}/conversations/export?{query}"),
        None,
    );
    let content_type = answer
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    (answer.status, content_type, answer.body)
}

/// The CSV export as rows keyed by column name.
fn csv_rows(c: &Client, bot: &str, query: &str) -> Vec<BTreeMap<String, String>> {
    let (status, content_type, body) = export(c, bot, &format!("format=csv&{query}"));
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let mut rows = parse_csv(&body).into_iter();
    let header = rows.next().expect("a header row");
    rows.map(|row| {
        assert_eq!(row.len(), header.len(), "{row:?}");
        header.iter().cloned().zip(row).collect()
    })
    .collect()
}

fn joined(value: &Value) -> String {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn export_downloads_the_conversations_the_search_finds_as_csv_rows_and_ndjson_messages() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(root.path(), &[]);
    let c = Client::new(server.base());
    let mut messages = generated(0xE4, 300, &["exp", "other"], 10);
    // A first message a spreadsheet would take for a formula, with a comma,
    // quotes and a line break.
    let now = chrono::Utc::now();
    let at = |s: i64| (now - chrono::Duration::seconds(s)).to_rfc3339();
    messages.push(message(
        "tricky-1",
        "exp",
        "tricky-user",
        "=HYPERLINK(\"x\"), then\na \"quote\"",
        &at(60),
    ));
    let mut reply = message(
        "tricky-2",
        "exp",
        "tricky-user",
        "Sorry, I didn't get that",
        &at(59),
    );
    reply.role = "bot".into();
    reply.unidentified = Some(true);
    messages.push(reply);
    server.ingest_parallel(&messages, 2000, 2);
    server.wait_indexed();
    let all = all_time();
    let tricky = c.search_ids("exp", &format!("{all}&q=HYPERLINK"));
    assert_eq!(tricky.len(), 1);
    let tricky = tricky.into_iter().next().unwrap();
    let path = |id: &str| format!("/v1/bots/exp/conversations/{id}");
    c.ok(
        "PUT",
        &format!("{}/labels/{}", path(&tricky), encode("a, b")),
        None,
    );
    c.ok("PUT", &format!("{}/labels/second", path(&tricky)), None);
    c.ok(
        "PUT",
        &format!("{}/flag", path(&tricky)),
        Some(r#"{"note": "@see this"}"#),
    );
    server.wait_indexed();

    let filters = [
        all.clone(),
        format!("{all}&channel=web&channel=sms"),
        format!("{all}&q=order"),
        format!("{all}&flagged=true"),
        format!("{all}&label=second"),
        // The default range: the last 24 hours, like the search.
        String::new(),
    ];
    for query in &filters {
        let found = c.all_conversations("exp", query);
        let by_id: BTreeMap<String, &Value> = found
            .iter()
            .map(|conv| (conv["id"].as_str().unwrap().to_string(), conv))
            .collect();
        let rows = csv_rows(&c, "exp", query);
        let exported: BTreeSet<String> = rows.iter().map(|row| row["id"].clone()).collect();
        assert_eq!(exported.len(), rows.len(), "no row twice ({query})");
        assert_eq!(
            exported,
            by_id.keys().cloned().collect::<BTreeSet<_>>(),
            "{query}"
        );
        for row in &rows {
            let conv = by_id[&row["id"]];
            assert_eq!(row["user"], conv["user"].as_str().unwrap());
            assert_eq!(row["channel"], conv["channel"].as_str().unwrap());
            assert_eq!(row["started_at"], conv["started_at"].as_str().unwrap());
            assert_eq!(row["message_count"], conv["message_count"].to_string());
            assert_eq!(row["tags"], joined(&conv["tags"]), "{row:?}");
            assert_eq!(row["labels"], joined(&conv["labels"]), "{row:?}");
            assert_eq!(row["flagged"], conv["flagged"].to_string());
            assert_eq!(row["flows"], joined(&conv["flows"]));
            assert_eq!(row["url"], conv["url"].as_str().unwrap());
            let preview = conv["preview"].as_str().unwrap_or("");
            if preview.starts_with('=') {
                assert_eq!(
                    row["preview"],
                    format!("'{preview}"),
                    "a formula is defused"
                );
            } else {
                assert_eq!(row["preview"], preview);
            }
        }

        // NDJSON: every message of exactly those conversations.
        let (status, content_type, body) = export(&c, "exp", &format!("format=ndjson&{query}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/x-ndjson");
        let lines: Vec<Value> = body
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        let mut per_conversation: BTreeMap<String, u64> = BTreeMap::new();
        for line in &lines {
            assert_eq!(line["bot_id"], "exp");
            *per_conversation
                .entry(line["conversation_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let expected: BTreeMap<String, u64> = by_id
            .iter()
            .map(|(id, conv)| (id.clone(), conv["message_count"].as_u64().unwrap()))
            .collect();
        assert_eq!(per_conversation, expected, "{query}");
    }

    // The tricky conversation's row and lines, cell by cell.
    let rows = csv_rows(&c, "exp", &format!("{all}&label=second"));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["labels"], "a, b; second");
    assert_eq!(row["flagged"], "true");
    assert_eq!(row["flag_note"], "'@see this");
    assert_eq!(row["preview"], "'=HYPERLINK(\"x\"), then a \"quote\"");
    let (_, _, body) = export(&c, "exp", &format!("format=ndjson&{all}&label=second"));
    let detail = c.ok("GET", &path(&tricky), None);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&Value> = lines.iter().map(|l| &l["id"]).collect();
    let detail_ids: Vec<&Value> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, detail_ids, "in the conversation's order");
    assert_eq!(lines[0]["text"], "=HYPERLINK(\"x\"), then\na \"quote\"");
    assert_eq!(lines[1]["unidentified"], json!(true));
    assert_eq!(lines[0]["channel"], "web");

    // A download, not a page.
    let answer = c.req("GET", "/v1/bots/exp/conversations/export?format=csv", None);
    let disposition = answer.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\"convlog-exp-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    // Nothing matched: the header row only.
    let (status, _, body) = export(&c, "exp", &format!("format=csv&{all}&q=zzzqqqxxx"));
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 1, "{body}");
    // Another bot's export has none of this one's conversations.
    let theirs: BTreeSet<String> = csv_rows(&c, "other", &all)
        .into_iter()
        .map(|row| row["id"].clone())
        .collect();
    assert!(!theirs.is_empty() && !theirs.contains(&tricky));

    // Bad parameters: 400 naming them, before anything is sent.
    for (query, name) in [
        ("format=xml", "format"),
        ("format=csv&limit=10", "limit"),
        ("format=csv&cursor=abc", "cursor"),
        ("format=csv&channel=", "channel"),
        ("format=csv&from=yesterday", "from"),
        ("format=csv&q=%22open", "q"),
    ] {
        let (status, _, body) = export(&c, "exp", query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(name), "{query}: {body}");
    }
}
