//! The SQLite schema of the store, applied at open.

/// The comparison key of a label (the `name_key` of `labels` and
/// `label_names`): case-insensitive, also beyond ASCII.
pub fn label_key(name: &str) -> String {
    name.to_lowercase()
}

/// Bumped when the tables change; stored in `PRAGMA user_version`.
pub const STORE_VERSION: i64 = 1;

/// A column added after its table was first released. `CREATE TABLE IF NOT
/// EXISTS` leaves an older table as it was, so these are added to it at open,
/// and `fill` gives the rows already there their value.
pub struct AddedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub declaration: &'static str,
    /// Run once, right after the column is added to an existing table.
    pub fill: Option<&'static str>,
    /// An index over it (`CREATE INDEX IF NOT EXISTS …`), made once the column exists.
    pub index: Option<&'static str>,
}

pub const ADDED_COLUMNS: &[AddedColumn] = &[
    AddedColumn {
        table: "shares",
        column: "reveal",
        declaration: "TEXT NOT NULL DEFAULT ''",
        fill: None,
        index: None,
    },
    AddedColumn {
        table: "jobs",
        column: "result",
        declaration: "TEXT",
        fill: None,
        index: None,
    },
    AddedColumn {
        table: "conversations",
        column: "placed_at",
        declaration: "INTEGER",
        fill: Some("UPDATE conversations SET placed_at = started_at WHERE placed_at IS NULL"),
        index: Some("CREATE INDEX IF NOT EXISTS conversations_placed ON conversations(placed_at)"),
    },
    AddedColumn {
        table: "tombstones",
        column: "placed_at",
        declaration: "INTEGER",
        fill: None,
        index: None,
    },
    AddedColumn {
        table: "traces",
        column: "source_id",
        declaration: "TEXT",
        fill: None,
        index: Some(
            "CREATE UNIQUE INDEX IF NOT EXISTS traces_source ON traces(bot_id, source_id) WHERE source_id IS NOT NULL",
        ),
    },
    AddedColumn {
        table: "traces",
        column: "user_key",
        declaration: "TEXT",
        fill: None,
        index: Some(
            "CREATE INDEX IF NOT EXISTS traces_user ON traces(bot_id, user_key) WHERE user_key IS NOT NULL",
        ),
    },
    AddedColumn {
        table: "messages",
        column: "lang",
        declaration: "TEXT",
        fill: None,
        index: None,
    },
];

/// Creates every table and index (idempotent).
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS conversations (
    id               INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    user_key         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    session_id       TEXT,              -- explicit session id; NULL for timeout-based sessions
    started_at       INTEGER NOT NULL,  -- microseconds, UTC
    last_message_at  INTEGER NOT NULL,
    message_count    INTEGER NOT NULL,
    flows            TEXT NOT NULL DEFAULT '[]',  -- JSON array, in order of first entry
    dropoff_flow     TEXT,
    dropoff_step     TEXT,
    flagged_at       INTEGER,
    flag_note        TEXT,
    debug            INTEGER NOT NULL DEFAULT 0,
    change_seq       INTEGER NOT NULL,  -- position in the change stream the index follows
    placed_at        INTEGER            -- places it in the index's time partitions: the time of
                                        -- its first message when created; never changes
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_session
    ON conversations(bot_id, session_id) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS conversations_user
    ON conversations(bot_id, user_key, channel, last_message_at);
CREATE INDEX IF NOT EXISTS conversations_change ON conversations(change_seq);
CREATE INDEX IF NOT EXISTS conversations_debug ON conversations(bot_id) WHERE debug = 1;

CREATE TABLE IF NOT EXISTS messages (
    seq              INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    msg_id           TEXT NOT NULL,
    conversation_id  INTEGER NOT NULL,
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
    metadata         TEXT,
    lang             TEXT               -- the language the message said it is in (BCP 47
                                        -- primary tag); NULL: detected when indexed
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages(bot_id, msg_id);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, ts, seq);
-- The conversations with a fallback answer (the insights' unidentified inputs).
CREATE INDEX IF NOT EXISTS messages_unidentified
    ON messages(bot_id, conversation_id) WHERE unidentified = 1;

-- Sessions a source opened before their first message arrived (Rasa's
-- `session_started`, sent alone by its event brokers), so later requests'
-- messages join them. Keyed by the pseudonymous user key, like conversations.
CREATE TABLE IF NOT EXISTS session_starts (
    bot_id           TEXT NOT NULL,
    user_key         TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    session_id       TEXT NOT NULL,
    PRIMARY KEY (bot_id, user_key, started_at)
);

-- Erasures of one end user of one bot (POST /v1/admin/erase), a state machine
-- that only moves forward: planned -> hot_deleted -> rewritten -> swapped -> done.
-- The raw user id is never stored: user_key is its keyed hash.
CREATE TABLE IF NOT EXISTS erasures (
    id               INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    user_key         TEXT NOT NULL,
    state            TEXT NOT NULL,
    requested_at     INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    key_id           TEXT,              -- the API key that asked; NULL: the command line
    conversations    INTEGER NOT NULL,
    messages         INTEGER NOT NULL,
    objects          INTEGER NOT NULL,  -- archive objects rewritten or removed
    delete_change    INTEGER            -- change position of its last tombstone
);
-- Archive objects an erasure rewrote without the user's rows: the new copy
-- (NULL when no row was left) replaces old_key in the manifest at the swap.
CREATE TABLE IF NOT EXISTS erasure_objects (
    erasure_id       INTEGER NOT NULL,
    old_key          TEXT NOT NULL,
    run_id           INTEGER NOT NULL,
    new_key          TEXT,
    rows             INTEGER,
    bytes            INTEGER,
    sha256           TEXT,
    removed          INTEGER NOT NULL,  -- rows of the user left out
    PRIMARY KEY (erasure_id, old_key)
);

-- Conversations removed by a merge, so the index can drop their documents.
CREATE TABLE IF NOT EXISTS tombstones (
    change_seq       INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL,
    placed_at        INTEGER            -- the conversation's placed_at (NULL: written before it existed)
);

-- Labels compare case-insensitively (name_key is the lowercased name) and keep
-- the bot's first spelling (label_names), so every conversation shows one spelling.
CREATE TABLE IF NOT EXISTS labels (
    conversation_id  INTEGER NOT NULL,
    name_key         TEXT NOT NULL,
    name             TEXT NOT NULL,
    added_at         INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, name_key)
);
CREATE TABLE IF NOT EXISTS label_names (
    bot_id           TEXT NOT NULL,
    name_key         TEXT NOT NULL,
    name             TEXT NOT NULL,
    PRIMARY KEY (bot_id, name_key)
);

-- Share links: only a hash of the token is kept, so a copy of the store opens nothing.
CREATE TABLE IF NOT EXISTS shares (
    token_hash       TEXT PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    conversation_id  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    reveal           TEXT NOT NULL DEFAULT ''   -- what besides the transcript it shows (store::review::Reveal)
);

-- Bulk actions (the last few per bot) and what each changed conversation
-- was before, so an action can be undone (store::bulk).
CREATE TABLE IF NOT EXISTS bulk_actions (
    id               INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    change           TEXT NOT NULL,     -- JSON: add_labels, remove_labels, flag
    matched          INTEGER NOT NULL,  -- conversations it was asked to change
    done             INTEGER NOT NULL,  -- gone through so far
    changed          INTEGER NOT NULL,
    finished_at      INTEGER,
    undone_at        INTEGER,
    restored         INTEGER NOT NULL   -- conversations an undo put back
);
CREATE INDEX IF NOT EXISTS bulk_actions_bot ON bulk_actions(bot_id, id);
CREATE TABLE IF NOT EXISTS bulk_changes (
    action_id        INTEGER NOT NULL,
    conversation_id  INTEGER NOT NULL,
    before           TEXT NOT NULL,     -- JSON: labels added, labels removed, the flag before
    PRIMARY KEY (action_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS bulk_changes_conversation ON bulk_changes(conversation_id);

-- The logs convlog consumes: how far each is stored, and what it carried that
-- could not be (store::sources). Written in the same transaction as the messages.
CREATE TABLE IF NOT EXISTS source_positions (
    source           TEXT PRIMARY KEY,
    position         INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS source_dead_letters (
    source           TEXT NOT NULL,
    position         INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    payload          BLOB NOT NULL,     -- cut to 4 KiB
    PRIMARY KEY (source, position)
);

CREATE TABLE IF NOT EXISTS tags (
    conversation_id  INTEGER NOT NULL,
    tag              TEXT NOT NULL,
    rule             TEXT NOT NULL,
    rule_version     INTEGER NOT NULL,
    message_ids      TEXT NOT NULL,     -- JSON array
    reason           TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
);

-- The tagging job's bookkeeping: the change position it wrote itself (so it
-- doesn't re-evaluate its own writes) and when a time-dependent rule
-- (no_bot_reply) must look at the conversation again.
CREATE TABLE IF NOT EXISTS tag_state (
    conversation_id  INTEGER PRIMARY KEY,
    own_change       INTEGER NOT NULL,
    recheck_at       INTEGER
);
CREATE INDEX IF NOT EXISTS tag_state_recheck ON tag_state(recheck_at) WHERE recheck_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS meta (
    key              TEXT PRIMARY KEY,
    value            TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    processed        INTEGER NOT NULL DEFAULT 0,
    total            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    error            TEXT,
    result           TEXT               -- JSON summary of a finished job (NULL: none)
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);

-- API keys: only the SHA-256 of each secret is kept.
CREATE TABLE IF NOT EXISTS api_keys (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL,
    scope            TEXT NOT NULL,     -- "*" or comma-separated bot ids
    secret_hash      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER
);

-- Every change, hash-chained: hash = SHA-256(previous hash | this row's fields).
CREATE TABLE IF NOT EXISTS audit (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    key_id           TEXT,
    action           TEXT NOT NULL,
    target           TEXT NOT NULL,
    bot_id           TEXT,
    request_id       TEXT NOT NULL,
    status           INTEGER NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_bot ON audit(bot_id, at);

CREATE TABLE IF NOT EXISTS nodes (
    bot_id           TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    name             TEXT,
    type             TEXT,
    PRIMARY KEY (bot_id, node_id)
);

CREATE TABLE IF NOT EXISTS traces (
    id               INTEGER PRIMARY KEY,
    bot_id           TEXT NOT NULL,
    conversation_id  INTEGER,
    ts               INTEGER NOT NULL,
    message_id       TEXT,
    action           TEXT NOT NULL,
    detail           TEXT,
    duration_ms      REAL,
    level            TEXT NOT NULL,
    source_id        TEXT               -- the sender's id of the event, if it gave one
);
CREATE INDEX IF NOT EXISTS traces_conversation ON traces(conversation_id, ts, id);
-- The archive's state machine (src/archive). One row per run, in a state that
-- only moves forward: planned -> written -> verified -> manifested -> deleted -> done
-- (or rolled_back before manifested).
CREATE TABLE IF NOT EXISTS archive_runs (
    id               INTEGER PRIMARY KEY,
    state            TEXT NOT NULL,
    planned_at       INTEGER NOT NULL,  -- the run's clock; written into its rows as archived_at
    cutoff           INTEGER NOT NULL,  -- conversations whose last message is before this were due
    conversations    INTEGER NOT NULL,
    messages         INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delete_change    INTEGER,           -- change position of its last tombstone (index deletion)
    error            TEXT
);

-- Conversations held out of ordinary changes: planned for a run ('archiving'),
-- or brought back by a restore ('restored', hot until `hold_until`). Ingest
-- never joins a held conversation; review changes to it are refused.
CREATE TABLE IF NOT EXISTS archive_holds (
    conversation_id  INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    hold_until       INTEGER
);
CREATE INDEX IF NOT EXISTS archive_holds_run ON archive_holds(run_id);

-- Objects a run wrote; rows of runs in state manifested, deleted or done are the manifest.
CREATE TABLE IF NOT EXISTS archive_objects (
    key              TEXT PRIMARY KEY,
    run_id           INTEGER NOT NULL,
    kind             TEXT NOT NULL,     -- messages | conversations
    bot_id           TEXT NOT NULL,
    date             TEXT NOT NULL,     -- YYYY-MM-DD, UTC
    rows             INTEGER NOT NULL,
    bytes            INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    min_ts           INTEGER NOT NULL,
    max_ts           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_objects_partition ON archive_objects(bot_id, kind, date);
CREATE INDEX IF NOT EXISTS archive_objects_run ON archive_objects(run_id);
"#;
