//! What the peers (PostgreSQL, SQLite FTS5, DuckDB) are given and what they report.
//!
//! Every peer gets the data convlog stored, read from convlog's SQLite store
//! after the run (server stopped): the messages with the conversation ids convlog
//! assigned (after pseudonymisation and sessions), and per conversation its channel,
//! span, flag, tags (from convlog's tagger), labels, flows, prompt nodes and intents — the
//! values convlog's index counts facets over. So all systems hold identical
//! conversations, and a count that differs is a query that differs.

use super::workloads::{Answer, QueryRun, QuerySpec};
use anyhow::Context;
use rusqlite::OpenFlags;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// One conversation as the peers store it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: i64,
    pub bot: String,
    pub user_key: String,
    pub channel: String,
    pub started_at: i64,
    pub last_message_at: i64,
    pub message_count: i64,
    pub flagged: bool,
    pub tags: Vec<String>,
    pub labels: Vec<String>,
    pub flows: Vec<String>,
    pub prompt_nodes: Vec<String>,
    pub intents: Vec<String>,
}

/// One message as the peers store it.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: i64,
    pub conversation_id: i64,
    pub bot: String,
    pub msg_id: String,
    pub role: String,
    pub text: String,
    pub ts: i64,
    pub flow: Option<String>,
    pub step: Option<String>,
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub node_name: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub unidentified: bool,
    pub flow_completed: bool,
    pub metadata: Option<String>,
    /// Of its conversation (for the archive and tagging exports).
    pub channel: String,
    pub user_key: String,
}

fn open(db: &Path) -> anyhow::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))
}

/// Every conversation of convlog's store with its facet values, by id.
pub fn conversations(db: &Path) -> anyhow::Result<Vec<Conversation>> {
    let conn = open(db)?;
    let mut by_id: BTreeMap<i64, Conversation> = BTreeMap::new();
    let mut statement = conn.prepare(
        "SELECT id, bot_id, user_key, channel, started_at, last_message_at, message_count,
                flagged_at IS NOT NULL
         FROM conversations",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        by_id.insert(
            id,
            Conversation {
                id,
                bot: row.get(1)?,
                user_key: row.get(2)?,
                channel: row.get(3)?,
                started_at: row.get(4)?,
                last_message_at: row.get(5)?,
                message_count: row.get(6)?,
                flagged: row.get(7)?,
                tags: Vec::new(),
                labels: Vec::new(),
                flows: Vec::new(),
                prompt_nodes: Vec::new(),
                intents: Vec::new(),
            },
        );
    }
    // The values convlog's index counts: tags and labels of the conversation, the
    // flows of its messages, the ids of its nodes of type "prompt", the intents
    // of its messages.
    type Field = fn(&mut Conversation) -> &mut Vec<String>;
    let lists: [(&str, Field); 5] = [
        ("SELECT conversation_id, tag FROM tags", |c| &mut c.tags),
        ("SELECT conversation_id, name FROM labels", |c| {
            &mut c.labels
        }),
        (
            "SELECT DISTINCT conversation_id, flow FROM messages WHERE flow IS NOT NULL",
            |c| &mut c.flows,
        ),
        (
            "SELECT DISTINCT conversation_id, node_id FROM messages
             WHERE node_type = 'prompt' AND node_id IS NOT NULL",
            |c| &mut c.prompt_nodes,
        ),
        (
            "SELECT DISTINCT conversation_id, intent FROM messages WHERE intent IS NOT NULL",
            |c| &mut c.intents,
        ),
    ];
    for (sql, field) in lists {
        let mut statement = conn.prepare(sql)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            if let Some(conversation) = by_id.get_mut(&id) {
                field(conversation).push(row.get(1)?);
            }
        }
    }
    let mut out: Vec<Conversation> = by_id.into_values().collect();
    for c in &mut out {
        for list in [
            &mut c.tags,
            &mut c.labels,
            &mut c.flows,
            &mut c.prompt_nodes,
            &mut c.intents,
        ] {
            list.sort();
            list.dedup();
        }
    }
    Ok(out)
}

/// Calls `each` for every message of convlog's store in store order (`seq`).
pub fn for_each_message(
    db: &Path,
    mut each: impl FnMut(Message) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let conn = open(db)?;
    let mut statement = conn.prepare(
        "SELECT m.seq, m.conversation_id, m.bot_id, m.msg_id, m.role, m.text, m.ts, m.flow,
                m.step, m.node_id, m.node_type, m.node_name, m.intent, m.confidence,
                m.unidentified, m.flow_completed, m.metadata, c.channel, c.user_key
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
         ORDER BY m.seq",
    )?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        each(Message {
            seq: row.get(0)?,
            conversation_id: row.get(1)?,
            bot: row.get(2)?,
            msg_id: row.get(3)?,
            role: row.get(4)?,
            text: row.get(5)?,
            ts: row.get(6)?,
            flow: row.get(7)?,
            step: row.get(8)?,
            node_id: row.get(9)?,
            node_type: row.get(10)?,
            node_name: row.get(11)?,
            intent: row.get(12)?,
            confidence: row.get(13)?,
            unidentified: row.get::<_, i64>(14)? != 0,
            flow_completed: row.get::<_, i64>(15)? != 0,
            metadata: row.get(16)?,
            channel: row.get(17)?,
            user_key: row.get(18)?,
        })?;
        count += 1;
    }
    Ok(count)
}

/// Conversations per tag in convlog's store.
pub fn tag_counts(db: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let conn = open(db)?;
    let mut statement = conn.prepare("SELECT tag, count(*) FROM tags GROUP BY tag")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A CSV field (RFC 4180): `None` is an empty unquoted field, text is always quoted.
pub fn csv_field(out: &mut impl Write, value: Option<&str>) -> std::io::Result<()> {
    match value {
        None => Ok(()),
        Some(text) => {
            out.write_all(b"\"")?;
            out.write_all(text.replace('"', "\"\"").as_bytes())?;
            out.write_all(b"\"")
        }
    }
}

/// Columns of [`write_messages_csv`], in order.
pub const MESSAGE_CSV_HEADER: &str = "conversation_id,seq,msg_id,role,text,ts,flow,step,unidentified,flow_completed,confidence,channel,bot_id,user_key,node_id,node_type,node_name,intent,metadata";

/// Every message as CSV with a header (DuckDB's input); returns the rows.
pub fn write_messages_csv(db: &Path, path: &Path) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "{MESSAGE_CSV_HEADER}")?;
    let flag = |b: bool| if b { "true" } else { "false" };
    let count = for_each_message(db, |m| {
        write!(out, "{},{},", m.conversation_id, m.seq)?;
        for (i, field) in [Some(m.msg_id.as_str()), Some(&m.role), Some(&m.text)]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.write_all(b",")?;
            }
            csv_field(&mut out, field)?;
        }
        write!(out, ",{},", m.ts)?;
        csv_field(&mut out, m.flow.as_deref())?;
        out.write_all(b",")?;
        csv_field(&mut out, m.step.as_deref())?;
        write!(out, ",{},{},", flag(m.unidentified), flag(m.flow_completed))?;
        if let Some(confidence) = m.confidence {
            write!(out, "{confidence:?}")?;
        }
        for field in [
            Some(m.channel.as_str()),
            Some(&m.bot),
            Some(&m.user_key),
            m.node_id.as_deref(),
            m.node_type.as_deref(),
            m.node_name.as_deref(),
            m.intent.as_deref(),
            m.metadata.as_deref(),
        ] {
            out.write_all(b",")?;
            csv_field(&mut out, field)?;
        }
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(count)
}

/// Writes conversations as JSON lines (the SQLite peer's input).
pub fn write_conversations(path: &Path, conversations: &[Conversation]) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for c in conversations {
        serde_json::to_writer(&mut out, c)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads [`write_conversations`]' file.
pub fn read_conversations(path: &Path) -> anyhow::Result<Vec<Conversation>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    file.lines()
        .map(|line| Ok(serde_json::from_str(&line?)?))
        .collect()
}

/// Turns a peer's rows of (dimension, value, count) into an [`Answer`]: dimension
/// "total" holds the total, "hit" the top hits (value = id, count = last message time).
pub fn answer_from_rows(rows: impl IntoIterator<Item = (String, Option<String>, i64)>) -> Answer {
    let mut answer = Answer::default();
    let mut hits: Vec<(i64, u64)> = Vec::new();
    for (dimension, value, n) in rows {
        match (dimension.as_str(), value) {
            ("total", _) => answer.total = n as u64,
            ("hit", Some(id)) => hits.push((n, id.parse().unwrap_or(0))),
            (_, Some(value)) if n > 0 => {
                answer
                    .facets
                    .entry(dimension)
                    .or_default()
                    .insert(value, n as u64);
            }
            _ => {}
        }
    }
    hits.sort_by(|a, b| b.cmp(a));
    answer.hits = hits.into_iter().map(|(_, id)| id).collect();
    answer
}

/// Normalises an answer so that an empty dimension and a missing one compare equal.
pub fn normalise(mut answer: Answer) -> Answer {
    answer.facets.retain(|_, counts| !counts.is_empty());
    answer
}

/// A peer's figures for one run.
#[derive(Debug, Clone, Default)]
pub struct PeerResult {
    pub name: &'static str,
    pub version: String,
    /// W1: messages ingested in durable batches, and the time it took.
    pub ingest_messages: u64,
    pub ingest: Duration,
    /// How the W1 figure was taken (clients, durability).
    pub ingest_how: String,
    /// Untimed preparation after W1 (conversation facet values, statistics).
    pub prepare: Duration,
    /// W2: latency per query, in the order of the specs (W2a, then W2b, then W2c).
    pub runs: Vec<QueryRun>,
    /// The answer to every query (before timing), in the order of the specs.
    pub answers: Vec<Answer>,
    /// Queries whose answer differs from convlog's, with what differs.
    pub mismatches: Vec<String>,
    /// Peak RSS in KiB through ingest and while serving the queries.
    pub hwm_ingest_kib: u64,
    pub hwm_serving_kib: u64,
    pub memory_note: String,
    /// On disk: data + indexes (+ WAL).
    pub size_bytes: u64,
    pub size_note: String,
    pub notes: Vec<String>,
}

/// Compares a peer's answers with convlog's; returns the mismatches (at most 20 listed, then a count).
pub fn compare(
    peer: &str,
    specs: &[&QuerySpec],
    ours: &[Answer],
    theirs: &[Answer],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0;
    for ((spec, a), b) in specs.iter().zip(ours).zip(theirs) {
        let diffs = normalise(a.clone()).differences(&normalise(b.clone()));
        if diffs.is_empty() {
            continue;
        }
        if out.len() < 20 {
            out.push(format!(
                "{peer}: {} `{}`: convlog vs {peer}: {}",
                spec.class,
                spec.path,
                diffs.join("; ")
            ));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push(format!("{peer}: {more} more queries differ"));
    }
    out
}

/// Sum over a process and its descendants of VmHWM and of Pss (KiB).
pub fn tree_memory(root: u32) -> (u64, u64) {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some(close) = stat.rfind(')')
                && let Some(ppid) = stat[close + 2..]
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
            {
                parents.insert(pid, ppid);
            }
        }
    }
    let mut tree = BTreeSet::from([root]);
    loop {
        let before = tree.len();
        for (pid, ppid) in &parents {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let (mut hwm, mut pss) = (0, 0);
    for pid in tree {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            hwm += field(&status, "VmHWM:");
        }
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            pss += field(&rollup, "Pss:");
        }
    }
    (hwm, pss)
}

/// Resets VmHWM of a process tree (see [`tree_memory`]).
pub fn reset_tree_peak(root: u32) {
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let is_child = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let close = stat.rfind(')')?;
                    stat[close + 2..].split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(root);
            if pid == root || is_child {
                let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
            }
        }
    }
}
