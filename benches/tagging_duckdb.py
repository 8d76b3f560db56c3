#!/usr/bin/env python3
"""W3 peer: the 8 built-in tagging rules of convlog as SQL in DuckDB.

Called by `benches/tagging.rs` with the messages it exported from convlog's
store (CSV, one row per message with its conversation's channel). Converts the
CSV to Parquet (zstd), loads it into an in-memory table, then times the rules
(median of --runs) at each thread count, materialising one row per
(conversation, tag) with the triggering message ids, as convlog does.

Prints one JSON object on stdout:
  {"duckdb": version, "rows": n, "load_seconds": s,
   "runs": {"1": {"seconds": [...], "median": s, "parquet_median": s}, "2": {...}},
   "counts": {tag: conversations}}
Exit code 3 (and a message on stderr) when duckdb is not importable.

Rule semantics follow API.md "Tags, nodes, flows" and src/tag/rules.rs, with
the default parameters; messages are in conversation order (ts, then seq).
"""

import argparse
import json
import statistics
import sys
import time

try:
    import duckdb
except ImportError:
    print("duckdb is not importable (pip install duckdb); skipping the DuckDB peer", file=sys.stderr)
    sys.exit(3)

MINUTE = 60_000_000

# Unicode white space as Rust's char::is_whitespace sees it (RE2 \s is ASCII only).
WHITESPACE = r"[\s\x{0B}\x{85}\p{Z}]+"


def rules_sql(source: str, now: int) -> str:
    """One row per (conversation, tag) with the triggering message ids."""
    return f"""
WITH m AS (
    SELECT *,
           row_number() OVER (PARTITION BY conversation_id ORDER BY ts DESC, seq DESC) AS from_end
    FROM {source}
),
unidentified_response AS (
    SELECT conversation_id, 'unidentified_response' AS tag, list(msg_id ORDER BY ts, seq) AS ids
    FROM m WHERE unidentified GROUP BY conversation_id
),
runs AS (
    -- A bot message that is not unidentified ends a run.
    SELECT conversation_id, msg_id, ts, seq, unidentified,
           sum(CASE WHEN role = 'bot' AND NOT unidentified THEN 1 ELSE 0 END)
               OVER (PARTITION BY conversation_id ORDER BY ts, seq ROWS UNBOUNDED PRECEDING) AS run
    FROM m
),
qualifying AS (
    SELECT conversation_id, run, list(msg_id ORDER BY ts, seq) AS ids
    FROM runs WHERE unidentified GROUP BY conversation_id, run HAVING count(*) >= 2
),
repeated_unidentified AS (
    SELECT conversation_id, 'repeated_unidentified' AS tag, flatten(list(ids ORDER BY run)) AS ids
    FROM qualifying GROUP BY conversation_id
),
last_flow AS (
    SELECT conversation_id, msg_id, flow_completed,
           row_number() OVER (PARTITION BY conversation_id ORDER BY ts DESC, seq DESC) AS r
    FROM m WHERE flow IS NOT NULL
),
dropoff AS (
    SELECT conversation_id, 'dropoff' AS tag, [msg_id] AS ids
    FROM last_flow WHERE r = 1 AND NOT flow_completed
),
agent_handoff AS (
    SELECT conversation_id, 'agent_handoff' AS tag, [first(msg_id ORDER BY ts, seq)] AS ids
    FROM m WHERE role = 'agent' GROUP BY conversation_id
),
low_confidence AS (
    SELECT conversation_id, 'low_confidence' AS tag, list(msg_id ORDER BY ts, seq) AS ids
    FROM m WHERE role = 'user' AND confidence < 0.5 GROUP BY conversation_id
),
normalised AS (
    SELECT conversation_id, msg_id, ts, seq,
           lower(trim(regexp_replace(text, '{WHITESPACE}', ' ', 'g'))) AS norm
    FROM m WHERE role = 'user'
),
repeats AS (
    SELECT conversation_id, msg_id, ts, seq,
           count(*) OVER (PARTITION BY conversation_id, norm) AS times
    FROM normalised WHERE norm <> ''
),
user_repeated AS (
    SELECT conversation_id, 'user_repeated' AS tag, list(msg_id ORDER BY ts, seq) AS ids
    FROM repeats WHERE times >= 2 GROUP BY conversation_id
),
no_bot_reply AS (
    SELECT conversation_id, 'no_bot_reply' AS tag, [msg_id] AS ids
    FROM m
    WHERE from_end = 1 AND role = 'user'
      AND {now} - ts > CASE WHEN channel IN ('web', 'whatsapp') THEN {24 * 60 * MINUTE} ELSE {30 * MINUTE} END
),
long_conversation AS (
    SELECT conversation_id, 'long_conversation' AS tag, []::VARCHAR[] AS ids
    FROM m GROUP BY conversation_id HAVING count(*) > 50
)
SELECT * FROM unidentified_response
UNION ALL SELECT * FROM repeated_unidentified
UNION ALL SELECT * FROM dropoff
UNION ALL SELECT * FROM agent_handoff
UNION ALL SELECT * FROM low_confidence
UNION ALL SELECT * FROM user_repeated
UNION ALL SELECT * FROM no_bot_reply
UNION ALL SELECT * FROM long_conversation
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, help="messages exported by benches/tagging.rs")
    parser.add_argument("--parquet", required=True, help="where to write the Parquet copy")
    parser.add_argument("--now", type=int, required=True, help="evaluation time, UTC microseconds")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(f"""
        COPY (SELECT * FROM read_csv('{args.csv}', header = true, allow_quoted_nulls = false,
              columns = {{'conversation_id': 'BIGINT', 'seq': 'BIGINT', 'msg_id': 'VARCHAR',
                         'role': 'VARCHAR', 'text': 'VARCHAR', 'ts': 'BIGINT', 'flow': 'VARCHAR',
                         'step': 'VARCHAR', 'unidentified': 'BOOLEAN', 'flow_completed': 'BOOLEAN',
                         'confidence': 'DOUBLE', 'channel': 'VARCHAR'}}))
        TO '{args.parquet}' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute(f"CREATE TABLE messages AS SELECT * FROM read_parquet('{args.parquet}')")
    load_seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM messages").fetchone()[0]

    result = {"duckdb": duckdb.__version__, "rows": rows, "load_seconds": load_seconds, "runs": {}}
    counts = None
    for threads in [int(t) for t in args.threads.split(",")]:
        con.execute(f"SET threads = {threads}")
        timings, parquet_timings = [], []
        for _ in range(args.runs):
            con.execute("DROP TABLE IF EXISTS tags")
            started = time.perf_counter()
            con.execute("CREATE TABLE tags AS " + rules_sql("messages", args.now))
            timings.append(time.perf_counter() - started)
        for _ in range(args.runs):
            started = time.perf_counter()
            con.execute(
                "CREATE OR REPLACE TABLE tags_parquet AS "
                + rules_sql(f"read_parquet('{args.parquet}')", args.now)
            )
            parquet_timings.append(time.perf_counter() - started)
        result["runs"][str(threads)] = {
            "seconds": timings,
            "median": statistics.median(timings),
            "parquet_median": statistics.median(parquet_timings),
        }
        counts = dict(con.execute("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY tag").fetchall())
    result["counts"] = counts
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
