#!/usr/bin/env python3
"""DuckDB peer of the benchmark harness (benches/harness.rs): W3 and W4.

Given the messages the harness exported from convlog's store (CSV with a
header, see MESSAGE_CSV_HEADER in benches/harness/peers.rs), it loads them into
an in-memory table (not timed), then:

- W3: runs convlog's 8 built-in tagging rules as one SQL statement (the same SQL
  as benches/tagging_duckdb.py), --runs times at --threads, and counts
  conversations per tag;
- W4: writes every message to Parquet with zstd in the layout of convlog's
  messages table: COPY ... TO 'dir' (FORMAT parquet, COMPRESSION zstd,
  PARTITION_BY (bot_id, date)), --runs times.

Prints one JSON object on stdout:
  {"duckdb": version, "rows": n, "load_seconds": s, "threads": t,
   "tagging_seconds": [...], "counts": {tag: conversations},
   "archive_seconds": [...], "archive_bytes": n, "peak_rss_kib": n}
Exit code 3 (and a message on stderr) when duckdb is not importable.
"""

import argparse
import json
import os
import shutil
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import duckdb
except ImportError:
    print("duckdb is not importable (pip install duckdb)", file=sys.stderr)
    sys.exit(3)

from tagging_duckdb import rules_sql  # noqa: E402  (same directory)

COLUMNS = {
    "conversation_id": "BIGINT", "seq": "BIGINT", "msg_id": "VARCHAR", "role": "VARCHAR",
    "text": "VARCHAR", "ts": "BIGINT", "flow": "VARCHAR", "step": "VARCHAR",
    "unidentified": "BOOLEAN", "flow_completed": "BOOLEAN", "confidence": "DOUBLE",
    "channel": "VARCHAR", "bot_id": "VARCHAR", "user_key": "VARCHAR", "node_id": "VARCHAR",
    "node_type": "VARCHAR", "node_name": "VARCHAR", "intent": "VARCHAR", "metadata": "VARCHAR",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--parquet", required=True, help="W4 output file")
    parser.add_argument("--now", type=int, required=True, help="evaluation time, UTC microseconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    started = time.perf_counter()
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    con.execute(f"""CREATE TABLE messages AS SELECT * FROM read_csv('{args.csv}', header = true,
                    allow_quoted_nulls = false, columns = {columns})""")
    load_seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM messages").fetchone()[0]

    tagging = []
    for _ in range(args.runs):
        con.execute("DROP TABLE IF EXISTS tags")
        started = time.perf_counter()
        con.execute("CREATE TABLE tags AS " + rules_sql("messages", args.now))
        tagging.append(time.perf_counter() - started)
    counts = dict(con.execute("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY tag").fetchall())
    con.execute("DROP TABLE tags")

    archive = []
    for _ in range(args.runs):
        shutil.rmtree(args.parquet, ignore_errors=True)
        started = time.perf_counter()
        # The layout of convlog's messages table: Hive partitions by bot and UTC
        # day, rows by conversation then time, timestamps as TIMESTAMP.
        con.execute(f"""COPY (SELECT bot_id, CAST(make_timestamp(ts) AS DATE) AS date,
                                     conversation_id, msg_id AS message_id, user_key, channel,
                                     role, text, make_timestamp(ts) AS ts, flow, step, node_id,
                                     node_type, node_name, intent, confidence, unidentified,
                                     flow_completed, metadata
                              FROM messages ORDER BY bot_id, conversation_id, ts, seq)
                        TO '{args.parquet}' (FORMAT parquet, COMPRESSION zstd,
                                             PARTITION_BY (bot_id, date))""")
        archive.append(time.perf_counter() - started)
    archive_bytes = sum(os.path.getsize(os.path.join(root, name))
                        for root, _, names in os.walk(args.parquet) for name in names)

    json.dump({
        "duckdb": duckdb.__version__, "rows": rows, "load_seconds": load_seconds,
        "threads": args.threads, "tagging_seconds": tagging, "counts": counts,
        "archive_seconds": archive, "archive_bytes": archive_bytes,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
