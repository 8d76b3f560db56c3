//! The SQLite FTS5 peer (the bundled SQLite of rusqlite). It runs in a child
//! process (this harness binary again, with `--sqlite-peer JOB`), so its peak RSS
//! is its own and not the harness's.

use super::peers::{self, PeerResult};
use super::workloads::{Answer, Params, QueryRun, QuerySpec};
use anyhow::{Context, ensure};
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Settings: WAL with synchronous=FULL (a commit is durable, like convlog's
/// acknowledgement), a 64 MiB page cache and 256 MiB of mmap, as convlog's own store.
pub const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA cache_size = -65536;
PRAGMA mmap_size = 268435456;
PRAGMA temp_store = MEMORY;
";

/// The schema and its indexes (created before the load: W1 is live ingest).
/// Facet values of a conversation live in one narrow table per dimension.
pub const SCHEMA: &str = "
CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    user_key         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    started_at       INTEGER NOT NULL,  -- microseconds, UTC (as convlog)
    last_message_at  INTEGER NOT NULL,
    message_count    INTEGER NOT NULL,
    flagged          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_recent ON conversations (bot_id, last_message_at);
CREATE INDEX conversations_channel ON conversations (bot_id, channel, last_message_at);
CREATE INDEX conversations_flagged ON conversations (bot_id, flagged, last_message_at);
CREATE TABLE conversation_tags (conversation_id INTEGER NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)) WITHOUT ROWID;
CREATE INDEX conversation_tags_tag ON conversation_tags (tag, conversation_id);
CREATE TABLE conversation_labels (conversation_id INTEGER NOT NULL, label TEXT NOT NULL,
    PRIMARY KEY (conversation_id, label)) WITHOUT ROWID;
CREATE TABLE conversation_flows (conversation_id INTEGER NOT NULL, flow TEXT NOT NULL,
    PRIMARY KEY (conversation_id, flow)) WITHOUT ROWID;
CREATE TABLE conversation_nodes (conversation_id INTEGER NOT NULL, node TEXT NOT NULL,
    PRIMARY KEY (conversation_id, node)) WITHOUT ROWID;
CREATE TABLE conversation_intents (conversation_id INTEGER NOT NULL, intent TEXT NOT NULL,
    PRIMARY KEY (conversation_id, intent)) WITHOUT ROWID;

CREATE TABLE messages (
    seq              INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL,
    bot_id           TEXT NOT NULL,
    msg_id           TEXT NOT NULL,
    role             TEXT NOT NULL,
    text             TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    flow             TEXT,
    step             TEXT,
    node_id          TEXT,
    node_type        TEXT,
    node_name        TEXT,
    intent           TEXT,
    confidence       REAL,
    unidentified     INTEGER NOT NULL,
    flow_completed   INTEGER NOT NULL,
    metadata         TEXT
);
CREATE UNIQUE INDEX messages_id ON messages (bot_id, msg_id);
CREATE INDEX messages_conversation ON messages (conversation_id, ts);
-- External-content FTS5 over messages.text; unicode61 without diacritic folding
-- cuts and lowercases words as convlog's tokenizer does.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = 'messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0');
";

const INSERT_MESSAGE: &str = "INSERT INTO messages (seq, conversation_id, bot_id, msg_id, role, text, ts, flow, step, node_id, node_type, node_name, intent, confidence, unidentified, flow_completed, metadata)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";
const INSERT_FTS: &str = "INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)";
const UPSERT_CONVERSATION: &str = "INSERT INTO conversations (id, bot_id, user_key, channel, started_at, last_message_at, message_count)
VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
ON CONFLICT (id) DO UPDATE SET
    started_at = min(started_at, excluded.started_at),
    last_message_at = max(last_message_at, excluded.last_message_at),
    message_count = message_count + 1";

/// The SQL of a conversation search (the same shape as PostgreSQL's: one
/// statement; a CTE of conversations matching bot, range and text, one flag per
/// filter; total and hits with every filter, each facet without its own).
pub fn sql(p: &Params) -> (String, Vec<Value>) {
    let mut args = vec![
        Value::Text(p.bot.clone()),
        Value::Integer(p.from),
        Value::Integer(p.to),
    ];
    let mut filters: Vec<(&str, String)> = Vec::new();
    if let Some(channel) = &p.channel {
        args.push(Value::Text(channel.clone()));
        filters.push(("channel", format!("c.channel = ?{}", args.len())));
    }
    if let Some(tag) = &p.tag {
        args.push(Value::Text(tag.clone()));
        filters.push((
            "tag",
            format!(
                "EXISTS (SELECT 1 FROM conversation_tags t WHERE t.conversation_id = c.id AND t.tag = ?{})",
                args.len()
            ),
        ));
    }
    if let Some(flagged) = p.flagged {
        args.push(Value::Integer(i64::from(flagged)));
        filters.push(("flagged", format!("c.flagged = ?{}", args.len())));
    }
    let mut where_ = String::from(
        "c.bot_id = ?1
      AND c.last_message_at >= ?2 AND c.started_at < ?3
      AND EXISTS (SELECT 1 FROM messages m
                  WHERE m.conversation_id = c.id AND m.ts >= ?2 AND m.ts < ?3)",
    );
    if let Some(text) = &p.text {
        // An FTS5 string: the words as one phrase.
        args.push(Value::Text(format!("\"{}\"", text.words().join(" "))));
        where_.push_str(&format!(
            "
      AND c.id IN (SELECT m.conversation_id FROM messages_fts f JOIN messages m ON m.seq = f.rowid
                   WHERE messages_fts MATCH ?{})",
            args.len()
        ));
    }
    if filters.len() >= 2 {
        let sum: Vec<String> = filters.iter().map(|(_, c)| format!("({c})")).collect();
        where_.push_str(&format!(
            "
      AND {} >= {}",
            sum.join(" + "),
            filters.len() - 1
        ));
    }
    let flags: String = filters
        .iter()
        .map(|(name, condition)| format!(",\n           {condition} AS by_{name}"))
        .collect();
    let all_but = |except: Option<&str>| -> String {
        let parts: Vec<String> = filters
            .iter()
            .filter(|(name, _)| Some(*name) != except)
            .map(|(name, _)| format!("by_{name}"))
            .collect();
        if parts.is_empty() {
            "1".into()
        } else {
            parts.join(" AND ")
        }
    };
    let all = all_but(None);
    let list_facet = |dimension: &str, table: &str, column: &str| {
        format!(
            "SELECT '{dimension}', x.{column}, count(*) FROM matched JOIN {table} x ON x.conversation_id = matched.id WHERE {} GROUP BY x.{column}",
            all_but(Some(dimension))
        )
    };
    let sql = format!(
        "WITH matched AS MATERIALIZED (
    SELECT c.id, c.last_message_at, c.channel, c.flagged{flags}
    FROM conversations c
    WHERE {where_}
)
SELECT 'total', NULL, count(*) FROM matched WHERE {all}
UNION ALL
SELECT * FROM (
    SELECT 'hit', CAST(id AS TEXT), last_message_at FROM matched WHERE {all}
    ORDER BY last_message_at DESC, id DESC LIMIT {limit})
UNION ALL
SELECT 'channel', channel, count(*) FROM matched WHERE {channel} GROUP BY channel
UNION ALL
SELECT 'flagged', CASE flagged WHEN 1 THEN 'true' ELSE 'false' END, count(*) FROM matched WHERE {flagged} GROUP BY flagged
UNION ALL
{tag}
UNION ALL
{label}
UNION ALL
{flow}
UNION ALL
{node}
UNION ALL
{intent}",
        limit = p.limit,
        channel = all_but(Some("channel")),
        flagged = all_but(Some("flagged")),
        tag = list_facet("tag", "conversation_tags", "tag"),
        label = list_facet("label", "conversation_labels", "label"),
        flow = list_facet("flow", "conversation_flows", "flow"),
        node = list_facet("node", "conversation_nodes", "node"),
        intent = list_facet("intent", "conversation_intents", "intent"),
    );
    (sql, args)
}

/// What the parent asks the child to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub source: PathBuf,
    pub conversations: PathBuf,
    pub target: PathBuf,
    pub batch: usize,
    pub specs: Vec<QuerySpec>,
    pub mix_sizes: Vec<usize>,
    pub out: PathBuf,
}

/// What the child reports.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    version: String,
    ingest_messages: u64,
    ingest_s: f64,
    prepare_s: f64,
    answers: Vec<Answer>,
    /// Per mix: microseconds per query, and the wall time.
    latencies_us: Vec<Vec<u64>>,
    walls_s: Vec<f64>,
    hwm_ingest_kib: u64,
    hwm_serving_kib: u64,
    size_bytes: u64,
}

/// Parent side: runs the child and collects its figures.
pub fn run_peer(
    dir: &Path,
    db: &Path,
    conversations: &Path,
    specs: &[&QuerySpec],
    mix_sizes: &[usize],
    batch: usize,
    log: &dyn Fn(String),
) -> anyhow::Result<PeerResult> {
    let job = Job {
        source: db.to_path_buf(),
        conversations: conversations.to_path_buf(),
        target: dir.join("sqlite-peer.db"),
        batch,
        specs: specs.iter().map(|s| (*s).clone()).collect(),
        mix_sizes: mix_sizes.to_vec(),
        out: dir.join("sqlite-peer-result.json"),
    };
    let job_path = dir.join("sqlite-peer-job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
    log(format!(
        "SQLite {}: W1, load, {} checked queries and W2 in a child process…",
        rusqlite::version(),
        specs.len()
    ));
    // /proc/self/exe still runs this binary if a build replaced the file meanwhile.
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let status = Command::new(exe)
        .arg("--sqlite-peer")
        .arg(&job_path)
        .status()
        .context("starting the SQLite peer process")?;
    ensure!(
        status.success(),
        "the SQLite peer process failed ({status})"
    );
    let outcome: Outcome = serde_json::from_slice(&std::fs::read(&job.out)?)?;
    for file in ["sqlite-peer.db", "sqlite-peer.db-wal", "sqlite-peer.db-shm"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    let mut runs = Vec::new();
    let mut offset = 0;
    for ((size, latencies), wall) in mix_sizes
        .iter()
        .zip(&outcome.latencies_us)
        .zip(&outcome.walls_s)
    {
        let owned: Vec<QuerySpec> = specs[offset..offset + size]
            .iter()
            .map(|s| (*s).clone())
            .collect();
        let totals = outcome.answers[offset..offset + size]
            .iter()
            .map(|a| a.total);
        runs.push(QueryRun::from_measured(
            &owned,
            latencies
                .iter()
                .map(|us| Duration::from_micros(*us))
                .zip(totals),
            Duration::from_secs_f64(*wall),
        ));
        offset += size;
    }
    Ok(PeerResult {
        name: "SQLite FTS5",
        version: format!("SQLite {}", outcome.version),
        ingest_messages: outcome.ingest_messages,
        ingest: Duration::from_secs_f64(outcome.ingest_s),
        ingest_how: format!(
            "one transaction per {batch} messages (rows + FTS5 + conversation upsert), one writer, WAL, synchronous=FULL"
        ),
        prepare: Duration::from_secs_f64(outcome.prepare_s),
        runs,
        answers: outcome.answers,
        mismatches: Vec::new(),
        hwm_ingest_kib: outcome.hwm_ingest_kib,
        hwm_serving_kib: outcome.hwm_serving_kib,
        memory_note: "VmHWM of the peer process (SQLite in-process)".into(),
        size_bytes: outcome.size_bytes,
        size_note: "database + WAL file".into(),
        notes: Vec::new(),
    })
}

fn own_hwm() -> u64 {
    super::server::memory(std::process::id()).map_or(0, |m| m.hwm_kib)
}

/// Child side: `harness --sqlite-peer JOB`.
pub fn child(job_path: &Path) -> anyhow::Result<()> {
    let job: Job = serde_json::from_slice(&std::fs::read(job_path)?)?;
    let conversations = peers::read_conversations(&job.conversations)?;
    let _ = std::fs::remove_file(&job.target);
    let mut conn = Connection::open(&job.target)?;
    conn.execute_batch(PRAGMAS)?;
    conn.execute_batch(SCHEMA)?;

    // W1: one transaction per batch, timed from its first insert to its commit
    // (reading the source store is left out).
    let mut ingest = Duration::ZERO;
    let mut pending = Vec::with_capacity(job.batch);
    let mut write =
        |conn: &mut Connection, batch: &mut Vec<peers::Message>| -> anyhow::Result<()> {
            let started = Instant::now();
            let tx = conn.transaction()?;
            {
                let mut message = tx.prepare_cached(INSERT_MESSAGE)?;
                let mut fts = tx.prepare_cached(INSERT_FTS)?;
                let mut upsert = tx.prepare_cached(UPSERT_CONVERSATION)?;
                for m in batch.iter() {
                    message.execute(params![
                        m.seq,
                        m.conversation_id,
                        m.bot,
                        m.msg_id,
                        m.role,
                        m.text,
                        m.ts,
                        m.flow,
                        m.step,
                        m.node_id,
                        m.node_type,
                        m.node_name,
                        m.intent,
                        m.confidence,
                        m.unidentified,
                        m.flow_completed,
                        m.metadata
                    ])?;
                    fts.execute(params![m.seq, m.text])?;
                    upsert.execute(params![
                        m.conversation_id,
                        m.bot,
                        m.user_key,
                        m.channel,
                        m.ts
                    ])?;
                }
            }
            tx.commit()?;
            ingest += started.elapsed();
            batch.clear();
            Ok(())
        };
    let count = peers::for_each_message(&job.source, |m| {
        pending.push(m);
        if pending.len() == job.batch {
            write(&mut conn, &mut pending)?;
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        write(&mut conn, &mut pending)?;
    }
    let hwm_ingest = own_hwm();

    // Conversation facet values from convlog's store (untimed), then statistics.
    let started = Instant::now();
    {
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM conversations", [])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO conversations (id, bot_id, user_key, channel, started_at, last_message_at, message_count, flagged)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut lists = [
                tx.prepare("INSERT INTO conversation_tags VALUES (?1, ?2)")?,
                tx.prepare("INSERT INTO conversation_labels VALUES (?1, ?2)")?,
                tx.prepare("INSERT INTO conversation_flows VALUES (?1, ?2)")?,
                tx.prepare("INSERT INTO conversation_nodes VALUES (?1, ?2)")?,
                tx.prepare("INSERT INTO conversation_intents VALUES (?1, ?2)")?,
            ];
            for c in &conversations {
                insert.execute(params![
                    c.id,
                    c.bot,
                    c.user_key,
                    c.channel,
                    c.started_at,
                    c.last_message_at,
                    c.message_count,
                    c.flagged
                ])?;
                for (statement, values) in lists.iter_mut().zip([
                    &c.tags,
                    &c.labels,
                    &c.flows,
                    &c.prompt_nodes,
                    &c.intents,
                ]) {
                    for value in values {
                        statement.execute(params![c.id, value])?;
                    }
                }
            }
        }
        tx.commit()?;
    }
    conn.execute_batch(
        "INSERT INTO messages_fts (messages_fts) VALUES ('optimize');
         ANALYZE;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )?;
    let prepare = started.elapsed();

    // W2: every query once (the answers the parent checks), then timed.
    let ask = |conn: &Connection, spec: &QuerySpec| -> anyhow::Result<(Answer, Duration)> {
        let (sql, args) = sql(&spec.params);
        let started = Instant::now();
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(args.iter()), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("SQLite: {}", spec.path))?;
        let elapsed = started.elapsed();
        Ok((peers::answer_from_rows(rows), elapsed))
    };
    let mut answers = Vec::with_capacity(job.specs.len());
    for spec in &job.specs {
        answers.push(ask(&conn, spec)?.0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut latencies_us = Vec::new();
    let mut walls_s = Vec::new();
    let mut offset = 0;
    for &size in &job.mix_sizes {
        let started = Instant::now();
        let mut mix = Vec::with_capacity(size);
        for spec in &job.specs[offset..offset + size] {
            mix.push(ask(&conn, spec)?.1.as_micros() as u64);
        }
        walls_s.push(started.elapsed().as_secs_f64());
        latencies_us.push(mix);
        offset += size;
    }
    let hwm_serving = own_hwm();
    drop(conn);
    let size_bytes = ["", "-wal"]
        .iter()
        .map(|suffix| {
            super::server::disk_usage(Path::new(&format!("{}{suffix}", job.target.display())))
        })
        .sum();
    let outcome = Outcome {
        version: rusqlite::version().to_string(),
        ingest_messages: count,
        ingest_s: ingest.as_secs_f64(),
        prepare_s: prepare.as_secs_f64(),
        answers,
        latencies_us,
        walls_s,
        hwm_ingest_kib: hwm_ingest,
        hwm_serving_kib: hwm_serving,
        size_bytes,
    };
    std::fs::write(&job.out, serde_json::to_vec(&outcome)?)?;
    Ok(())
}
