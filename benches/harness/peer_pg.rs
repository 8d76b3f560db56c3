//! The PostgreSQL 15 peer: a throwaway cluster in a temporary directory on a free
//! loopback port, loaded with COPY in durable batches, queried with the
//! `postgres` crate (one connection, like convlog's one client).

use super::peers::{self, Conversation, PeerResult};
use super::workloads::{Answer, Params, QueryRun, QuerySpec};
use anyhow::{Context, bail, ensure};
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where the binaries are looked for: $CONVLOG_BENCH_PG_BIN, then Debian's place.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("CONVLOG_BENCH_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    if !dir.join("initdb").exists() || !dir.join("pg_ctl").exists() {
        bail!(
            "PostgreSQL 15 not found: no initdb/pg_ctl in {} (install it with `apt-get install postgresql-15`, \
             point CONVLOG_BENCH_PG_BIN at its bin directory, or leave it out with `--peers sqlite,duckdb`)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Server settings (appended to postgresql.conf): durable commits as convlog's
/// acknowledgements, memory in the range convlog's W6 bar allows, no JIT (it only
/// adds compile time to millisecond queries), SSD costs, no checkpoint mid-run.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
shared_buffers = 256MB
work_mem = 32MB
maintenance_work_mem = 256MB
effective_cache_size = 2GB
random_page_cost = 1.1
jit = off
max_wal_size = 4GB
checkpoint_timeout = 30min
logging_collector = off
";

/// The schema and its indexes (created before the load: W1 is live ingest).
pub const SCHEMA: &str = "
CREATE TABLE conversations (
    id               bigint PRIMARY KEY,
    bot_id           text NOT NULL,
    user_key         text NOT NULL,
    channel          text NOT NULL,
    started_at       bigint NOT NULL,   -- microseconds, UTC (as convlog)
    last_message_at  bigint NOT NULL,
    message_count    integer NOT NULL,
    flagged          boolean NOT NULL DEFAULT false,
    tags             text[] NOT NULL DEFAULT '{}',
    labels           text[] NOT NULL DEFAULT '{}',
    flows            text[] NOT NULL DEFAULT '{}',
    prompt_nodes     text[] NOT NULL DEFAULT '{}',
    intents          text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX conversations_recent ON conversations (bot_id, last_message_at);
CREATE INDEX conversations_channel ON conversations (bot_id, channel, last_message_at);
CREATE INDEX conversations_flagged ON conversations (bot_id, flagged, last_message_at);
CREATE INDEX conversations_tags ON conversations USING gin (tags);
CREATE INDEX conversations_labels ON conversations USING gin (labels);
CREATE INDEX conversations_flows ON conversations USING gin (flows);

CREATE TABLE messages (
    seq              bigint PRIMARY KEY,
    conversation_id  bigint NOT NULL,
    bot_id           text NOT NULL,
    msg_id           text NOT NULL,
    role             text NOT NULL,
    text             text NOT NULL,
    ts               bigint NOT NULL,
    flow             text,
    step             text,
    node_id          text,
    node_type        text,
    node_name        text,
    intent           text,
    confidence       double precision,
    unidentified     boolean NOT NULL,
    flow_completed   boolean NOT NULL,
    metadata         jsonb,
    -- Stored, so a lossy bitmap's recheck doesn't parse the text again.
    text_tsv         tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
);
CREATE UNIQUE INDEX messages_id ON messages (bot_id, msg_id);
CREATE INDEX messages_conversation ON messages (conversation_id, ts);
CREATE INDEX messages_text ON messages USING gin (text_tsv);
";

const MESSAGE_COLUMNS: &str = "seq, conversation_id, bot_id, msg_id, role, text, ts, flow, step, node_id, node_type, node_name, intent, confidence, unidentified, flow_completed, metadata";

/// Per batch, after the COPY of its messages: the conversations it touches.
const UPSERT: &str = "
INSERT INTO conversations (id, bot_id, user_key, channel, started_at, last_message_at, message_count)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::int[])
ON CONFLICT (id) DO UPDATE SET
    started_at = least(conversations.started_at, excluded.started_at),
    last_message_at = greatest(conversations.last_message_at, excluded.last_message_at),
    message_count = conversations.message_count + excluded.message_count";

/// A parameter of a generated query.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
    Bool(bool),
    TextArray(Vec<String>),
}

impl Arg {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Arg::Text(v) => v,
            Arg::Int(v) => v,
            Arg::Bool(v) => v,
            Arg::TextArray(v) => v,
        }
    }
}

/// The SQL of a conversation search: one statement, one round trip. The CTE
/// holds the conversations matching the bot, the time range and the text, with
/// one boolean per filter; the total and the hits take every filter, each facet
/// dimension every filter but its own (disjunctive counts, as convlog).
pub fn sql(p: &Params) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Text(p.bot.clone()), Arg::Int(p.from), Arg::Int(p.to)];
    let mut filters: Vec<(&str, String)> = Vec::new();
    if let Some(channel) = &p.channel {
        args.push(Arg::Text(channel.clone()));
        filters.push(("channel", format!("c.channel = ${}", args.len())));
    }
    if let Some(tag) = &p.tag {
        args.push(Arg::TextArray(vec![tag.clone()]));
        filters.push(("tag", format!("c.tags && ${}::text[]", args.len())));
    }
    if let Some(flagged) = p.flagged {
        args.push(Arg::Bool(flagged));
        filters.push(("flagged", format!("c.flagged = ${}", args.len())));
    }
    let mut where_ = String::from(
        "c.bot_id = $1
      AND c.last_message_at >= $2 AND c.started_at < $3
      AND EXISTS (SELECT 1 FROM messages m
                  WHERE m.conversation_id = c.id AND m.ts >= $2 AND m.ts < $3)",
    );
    if let Some(text) = &p.text {
        args.push(Arg::Text(text.words().join(" ")));
        where_.push_str(&format!(
            "
      AND c.id IN (SELECT m.conversation_id FROM messages m
                   WHERE m.text_tsv @@ phraseto_tsquery('simple', ${}))",
            args.len()
        ));
    }
    if filters.len() >= 2 {
        // Only conversations that fail at most one filter count anywhere.
        let sum: Vec<String> = filters.iter().map(|(_, c)| format!("({c})::int")).collect();
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
            "true".into()
        } else {
            parts.join(" AND ")
        }
    };
    let all = all_but(None);
    let list_facet = |dimension: &str, column: &str| {
        format!(
            "SELECT '{dimension}', v, count(*) FROM matched, unnest({column}) v WHERE {} GROUP BY v",
            all_but(Some(dimension))
        )
    };
    let sql = format!(
        "WITH matched AS MATERIALIZED (
    SELECT c.id, c.last_message_at, c.channel, c.flagged, c.tags, c.labels, c.flows, c.prompt_nodes, c.intents{flags}
    FROM conversations c
    WHERE {where_}
)
SELECT 'total' AS dimension, NULL::text AS value, count(*) AS n FROM matched WHERE {all}
UNION ALL
SELECT 'hit', id::text, last_message_at FROM (
    SELECT id, last_message_at FROM matched WHERE {all}
    ORDER BY last_message_at DESC, id DESC LIMIT {limit}) hits
UNION ALL
SELECT 'channel', channel, count(*) FROM matched WHERE {channel} GROUP BY channel
UNION ALL
SELECT 'flagged', flagged::text, count(*) FROM matched WHERE {flagged} GROUP BY flagged
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
        tag = list_facet("tag", "tags"),
        label = list_facet("label", "labels"),
        flow = list_facet("flow", "flows"),
        node = list_facet("node", "prompt_nodes"),
        intent = list_facet("intent", "intents"),
    );
    (sql, args)
}

/// A running throwaway cluster; stopped and deleted when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    pub port: u16,
    pub pid: u32,
}

/// Clusters to stop if the harness is interrupted (see [`stop_all`]).
static RUNNING: Mutex<Vec<(PathBuf, PathBuf, bool)>> = Mutex::new(Vec::new());

fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Stops every cluster still running (on ctrl-c): immediate shutdown, then the directory goes.
pub fn stop_all() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    for (bin, data, as_postgres) in running {
        let mut command = pg_command(&bin, "pg_ctl", as_postgres);
        command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"]);
        let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        if let Some(parent) = data.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

impl Cluster {
    /// initdb + pg_ctl start in a fresh temporary directory (as user postgres when root).
    pub fn start() -> anyhow::Result<Cluster> {
        let bin = bin_dir()?;
        let as_postgres = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")?.uid() == 0
        };
        let dir = tempfile::Builder::new()
            .prefix("convlog-bench-pg-")
            .tempdir()?;
        if as_postgres {
            let output = Command::new("id").args(["-u", "postgres"]).output()?;
            ensure!(
                output.status.success(),
                "running as root and there is no user `postgres` to run PostgreSQL as (initdb refuses root)"
            );
            let uid: u32 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
            let gid: u32 = String::from_utf8_lossy(
                &Command::new("id").args(["-g", "postgres"]).output()?.stdout,
            )
            .trim()
            .parse()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let mut initdb = pg_command(&bin, "initdb", as_postgres);
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run(initdb, "initdb")?;
        let port = free_port()?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        write!(
            conf,
            "{SETTINGS}port = {port}\nunix_socket_directories = '{}'\n",
            dir.path().display()
        )?;
        drop(conf);
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push((
            bin.clone(),
            data.clone(),
            as_postgres,
        ));
        let mut start = pg_command(&bin, "pg_ctl", as_postgres);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("server.log"))
            .args(["-w", "-t", "120", "start"]);
        run(start, "pg_ctl start")?;
        let pid_text = std::fs::read_to_string(data.join("postmaster.pid"))?;
        let pid = pid_text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid")?;
        Ok(Cluster {
            bin,
            dir,
            as_postgres,
            port,
            pid,
        })
    }

    /// A new connection.
    pub fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            NoTls,
        )?)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log, last lines.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = pg_command(&self.bin, "pg_ctl", self.as_postgres);
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let data = self.data();
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, d, _)| *d != data);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One W1 batch: messages as CSV for COPY, and the conversations it touches.
struct Batch {
    csv: Vec<u8>,
    messages: usize,
    ids: Vec<i64>,
    bots: Vec<String>,
    users: Vec<String>,
    channels: Vec<String>,
    started: Vec<i64>,
    last: Vec<i64>,
    counts: Vec<i32>,
}

fn batches(db: &Path, size: usize) -> anyhow::Result<Vec<Batch>> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let mut csv = Vec::new();
    let mut n = 0;
    type Touched = BTreeMap<i64, (String, String, String, i64, i64, i32)>;
    let mut touched: Touched = BTreeMap::new();
    let finish = |csv: &mut Vec<u8>, n: &mut usize, touched: &mut Touched, out: &mut Vec<Batch>| {
        let mut batch = Batch {
            csv: std::mem::take(csv),
            messages: std::mem::take(n),
            ids: Vec::new(),
            bots: Vec::new(),
            users: Vec::new(),
            channels: Vec::new(),
            started: Vec::new(),
            last: Vec::new(),
            counts: Vec::new(),
        };
        // Sorted by id, so concurrent batches lock conversations in one order.
        for (id, (bot, user, channel, first, last, count)) in std::mem::take(touched) {
            batch.ids.push(id);
            batch.bots.push(bot);
            batch.users.push(user);
            batch.channels.push(channel);
            batch.started.push(first);
            batch.last.push(last);
            batch.counts.push(count);
        }
        out.push(batch);
    };
    let flag = |b: bool| if b { "t" } else { "f" };
    peers::for_each_message(db, |m| {
        write!(csv, "{},{},", m.seq, m.conversation_id)?;
        for field in [Some(m.bot.as_str()), Some(&m.msg_id), Some(&m.role)] {
            peers::csv_field(&mut csv, field)?;
            csv.push(b',');
        }
        peers::csv_field(&mut csv, Some(&m.text))?;
        write!(csv, ",{},", m.ts)?;
        for field in [
            m.flow.as_deref(),
            m.step.as_deref(),
            m.node_id.as_deref(),
            m.node_type.as_deref(),
            m.node_name.as_deref(),
            m.intent.as_deref(),
        ] {
            peers::csv_field(&mut csv, field)?;
            csv.push(b',');
        }
        if let Some(c) = m.confidence {
            write!(csv, "{c:?}")?;
        }
        write!(csv, ",{},{},", flag(m.unidentified), flag(m.flow_completed))?;
        peers::csv_field(&mut csv, m.metadata.as_deref())?;
        csv.push(b'\n');
        let entry = touched.entry(m.conversation_id).or_insert((
            m.bot.clone(),
            m.user_key.clone(),
            m.channel.clone(),
            m.ts,
            m.ts,
            0,
        ));
        entry.3 = entry.3.min(m.ts);
        entry.4 = entry.4.max(m.ts);
        entry.5 += 1;
        n += 1;
        if n == size {
            finish(&mut csv, &mut n, &mut touched, &mut out);
        }
        Ok(())
    })?;
    if n > 0 {
        finish(&mut csv, &mut n, &mut touched, &mut out);
    }
    Ok(out)
}

/// A PostgreSQL array literal of quoted elements.
fn array_literal(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Everything the PostgreSQL peer does in one run.
pub fn run_peer(
    db: &Path,
    conversations: &[Conversation],
    specs: &[&QuerySpec],
    mix_sizes: &[usize],
    batch: usize,
    clients: usize,
    log: &dyn Fn(String),
) -> anyhow::Result<PeerResult> {
    let cluster = Cluster::start()?;
    log(format!(
        "PostgreSQL: cluster pid {} on 127.0.0.1:{}",
        cluster.pid, cluster.port
    ));
    let result = measure(
        &cluster,
        db,
        conversations,
        specs,
        mix_sizes,
        batch,
        clients,
        log,
    );
    if result.is_err() {
        eprintln!("PostgreSQL log (last lines):\n{}", cluster.log_tail());
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn measure(
    cluster: &Cluster,
    db: &Path,
    conversations: &[Conversation],
    specs: &[&QuerySpec],
    mix_sizes: &[usize],
    batch: usize,
    clients: usize,
    log: &dyn Fn(String),
) -> anyhow::Result<PeerResult> {
    let mut client = cluster.connect()?;
    let version: String = client.query_one("SHOW server_version", &[])?.get(0);
    client.batch_execute(SCHEMA)?;

    // W1: durable batches from `clients` connections.
    let prepared = batches(db, batch)?;
    let total_messages: usize = prepared.iter().map(|b| b.messages).sum();
    log(format!(
        "PostgreSQL {version}: W1, {} messages in {} transactions from {clients} connections…",
        total_messages,
        prepared.len()
    ));
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                let outcome = (|| -> anyhow::Result<()> {
                    let mut client = cluster.connect()?;
                    let upsert = client.prepare(UPSERT)?;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(b) = prepared.get(index) else {
                            return Ok(());
                        };
                        let mut tx = client.transaction()?;
                        let mut writer = tx.copy_in(&format!(
                            "COPY messages ({MESSAGE_COLUMNS}) FROM STDIN (FORMAT csv)"
                        ))?;
                        writer.write_all(&b.csv)?;
                        writer.finish()?;
                        tx.execute(
                            &upsert,
                            &[
                                &b.ids,
                                &b.bots,
                                &b.users,
                                &b.channels,
                                &b.started,
                                &b.last,
                                &b.counts,
                            ],
                        )?;
                        tx.commit()?;
                        if !errors.lock().map(|e| e.is_empty()).unwrap_or(false) {
                            return Ok(());
                        }
                    }
                })();
                if let Err(err) = outcome {
                    errors.lock().expect("errors lock").push(err);
                }
            });
        }
    });
    let ingest = started.elapsed();
    if let Some(err) = errors.into_inner().expect("errors lock").pop() {
        return Err(err.context("PostgreSQL W1"));
    }
    drop(prepared);
    let (hwm_ingest, _) = peers::tree_memory(cluster.pid);

    // Conversation facet values from convlog's store (untimed), then statistics.
    let started = Instant::now();
    let mut tx = client.transaction()?;
    tx.batch_execute("TRUNCATE conversations")?;
    let mut writer = tx.copy_in(
        "COPY conversations (id, bot_id, user_key, channel, started_at, last_message_at, message_count, flagged, tags, labels, flows, prompt_nodes, intents) FROM STDIN (FORMAT csv)",
    )?;
    let mut csv = Vec::new();
    for c in conversations {
        write!(csv, "{},", c.id)?;
        for field in [&c.bot, &c.user_key, &c.channel] {
            peers::csv_field(&mut csv, Some(field))?;
            csv.push(b',');
        }
        write!(
            csv,
            "{},{},{},{},",
            c.started_at,
            c.last_message_at,
            c.message_count,
            if c.flagged { "t" } else { "f" }
        )?;
        for (i, list) in [&c.tags, &c.labels, &c.flows, &c.prompt_nodes, &c.intents]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                csv.push(b',');
            }
            peers::csv_field(&mut csv, Some(&array_literal(list)))?;
        }
        csv.push(b'\n');
    }
    writer.write_all(&csv)?;
    writer.finish()?;
    tx.commit()?;
    for statement in [
        "VACUUM ANALYZE conversations",
        "VACUUM ANALYZE messages",
        "CHECKPOINT",
    ] {
        client.batch_execute(statement)?;
    }
    let prepare = started.elapsed();
    let counted: i64 = client
        .query_one("SELECT count(*) FROM messages", &[])?
        .get(0);
    ensure!(
        counted as usize == total_messages,
        "PostgreSQL holds {counted} messages of {total_messages}"
    );

    // W2: every query once (checked against convlog), then timed.
    let ask = |client: &mut Client, spec: &QuerySpec| -> anyhow::Result<(Answer, Duration)> {
        let (sql, args) = sql(&spec.params);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_sql).collect();
        let started = Instant::now();
        let rows = client
            .query(sql.as_str(), &params)
            .with_context(|| format!("PostgreSQL: {}", spec.path))?;
        let elapsed = started.elapsed();
        let answer = peers::answer_from_rows(rows.iter().map(|row| {
            (
                row.get::<_, String>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
            )
        }));
        Ok((answer, elapsed))
    };
    log(format!(
        "PostgreSQL: checking {} queries against convlog…",
        specs.len()
    ));
    let mut answers = Vec::with_capacity(specs.len());
    for spec in specs {
        answers.push(ask(&mut client, spec)?.0);
    }
    peers::reset_tree_peak(cluster.pid);
    log("PostgreSQL: timing W2…".to_string());
    let mut runs = Vec::new();
    let mut offset = 0;
    for &size in mix_sizes {
        let mix = &specs[offset..offset + size];
        let started = Instant::now();
        let mut measured = Vec::with_capacity(size);
        for spec in mix {
            let (answer, elapsed) = ask(&mut client, spec)?;
            measured.push((elapsed, answer.total));
        }
        let owned: Vec<QuerySpec> = mix.iter().map(|s| (*s).clone()).collect();
        runs.push(QueryRun::from_measured(&owned, measured, started.elapsed()));
        offset += size;
    }
    let (hwm_serving, pss) = peers::tree_memory(cluster.pid);
    let size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);
    let wal: i64 = client
        .query_one(
            "SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()",
            &[],
        )?
        .get(0);
    Ok(PeerResult {
        name: "PostgreSQL",
        version: format!("PostgreSQL {version}"),
        ingest_messages: total_messages as u64,
        ingest,
        ingest_how: format!(
            "COPY + conversation upsert per transaction of {batch}, {clients} connections, synchronous_commit on, GIN + B-tree indexes live"
        ),
        prepare,
        runs,
        mismatches: Vec::new(),
        hwm_ingest_kib: hwm_ingest,
        hwm_serving_kib: hwm_serving,
        memory_note: format!(
            "sum of VmHWM over the postmaster and its processes (shared buffers counted in each); Pss sum after W2 {} MiB",
            pss / 1024
        ),
        size_bytes: size as u64,
        size_note: format!(
            "pg_database_size (tables + indexes); WAL {} MiB more",
            wal / 1048576
        ),
        notes: Vec::new(),
        answers,
    })
}
