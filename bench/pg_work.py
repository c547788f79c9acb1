"""What PostgreSQL did during a drain, per event: WAL written (full-page images apart), the
buffers it had to read in or write out itself, and which tables and indexes missed its cache.

CPU per event says *that* PostgreSQL's cost grows with the database (docs/benchmark.md,
"Growth"); these counters say *where*: a random-keyed index that outgrew shared_buffers shows
as block reads per event, and every first change of a page after a checkpoint as a full-page
image in the WAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

_CLUSTER = """
SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint AS wal_bytes,
       b.buffers_backend, b.buffers_checkpoint + b.buffers_clean AS buffers_background,
       b.checkpoints_timed + b.checkpoints_req AS checkpoints,
       (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
          FROM pg_stat_user_tables)::bigint AS autovacuum_runs
  FROM pg_stat_wal w, pg_stat_bgwriter b
"""
# Per table or index: blocks read into shared buffers, and for a table its updates and how
# many of them were HOT (no index entry added). Partitions are summed under their table's
# name (the history's months).
_RELATIONS = """
SELECT coalesce(p.relname, c.relname) AS relation, sum(s.read)::bigint AS read,
       sum(s.updates)::bigint AS updates, sum(s.hot)::bigint AS hot
  FROM (SELECT t.relid AS oid, coalesce(io.heap_blks_read, 0) AS read,
               t.n_tup_upd AS updates, t.n_tup_hot_upd AS hot
          FROM pg_stat_user_tables t JOIN pg_statio_user_tables io USING (relid)
        UNION ALL
        SELECT indexrelid, coalesce(idx_blks_read, 0), 0, 0 FROM pg_statio_user_indexes) AS s
  JOIN pg_class c ON c.oid = s.oid
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
  LEFT JOIN pg_class p ON p.oid = i.inhparent
 GROUP BY 1
"""
# With `--pg-set shared_preload_libraries=pg_stat_statements`: the time of each statement.
_STATEMENTS = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query,
       total_exec_time AS ms, calls, rows, shared_blks_hit + shared_blks_read AS blocks
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# The relations and statements named in a result: the ones with the most reads or time.
_TOP = 6
_TOP_STATEMENTS = 10


@dataclass(frozen=True, slots=True)
class PgWork:
    """Cumulative counters at one moment (the whole cluster's WAL; this database's blocks)."""

    cluster: dict[str, int]
    blocks_read: dict[str, int]
    # Per statement (empty without pg_stat_statements): milliseconds spent, calls, rows, and
    # shared buffers touched (hit or read).
    statement_ms: dict[str, float]
    statement_counts: dict[str, tuple[int, int, int]]
    # Per table: (updates, of which HOT).
    updates: dict[str, tuple[int, int]]


async def snapshot(conn: asyncpg.Connection) -> PgWork:
    """The counters now. Backends publish theirs when idle or on exit; take the closing
    snapshot once the workers have stopped."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    cluster = await conn.fetchrow(_CLUSTER)
    relations = await conn.fetch(_RELATIONS)
    statements: dict[str, float] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    if await _statements_on(conn):
        for r in await conn.fetch(_STATEMENTS):
            key = r["query"]
            statements[key] = statements.get(key, 0.0) + float(r["ms"])
            calls, rows, blocks = counts.get(key, (0, 0, 0))
            counts[key] = (calls + r["calls"], rows + r["rows"], blocks + r["blocks"])
    return PgWork(
        {k: int(v) for k, v in dict(cluster or {}).items()},
        {r["relation"]: int(r["read"]) for r in relations},
        statements,
        counts,
        {r["relation"]: (int(r["updates"]), int(r["hot"])) for r in relations if r["updates"]},
    )


async def _statements_on(conn: asyncpg.Connection) -> bool:
    """Whether the server loads pg_stat_statements; its view is then created here."""
    loaded = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
    if "pg_stat_statements" not in loaded:
        return False
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return True


def per_event(before: PgWork, after: PgWork, events: int) -> dict[str, Any]:
    """The counters' growth between two snapshots, per event (WAL in bytes)."""
    n = max(events, 1)
    cluster = {k: after.cluster[k] - before.cluster.get(k, 0) for k in after.cluster}
    reads = {
        name: count - before.blocks_read.get(name, 0) for name, count in after.blocks_read.items()
    }
    top = sorted(((c, name) for name, c in reads.items() if c > 0), reverse=True)[:_TOP]
    spent = {q: ms - before.statement_ms.get(q, 0.0) for q, ms in after.statement_ms.items()}
    slowest = sorted(((ms, q) for q, ms in spent.items() if ms > 0), reverse=True)
    slowest = slowest[:_TOP_STATEMENTS]
    return {
        "wal_bytes": round(cluster["wal_bytes"] / n, 1),
        "wal_fpi": round(cluster["wal_fpi"] / n, 3),
        "buffers_written_by_backends": round(cluster["buffers_backend"] / n, 3),
        "buffers_written_in_background": round(cluster["buffers_background"] / n, 3),
        # Counts over the whole drain, not per event: background work the drain paid for.
        "checkpoints": cluster["checkpoints"],
        "autovacuum_runs": cluster["autovacuum_runs"],
        "blocks_read": round(sum(reads.values()) / n, 3),
        "blocks_read_by_relation": {name: round(c / n, 3) for c, name in top},
        "statement_us": {q: round(ms * 1000 / n, 2) for ms, q in slowest},
        # Per statement above: calls per 1,000 events, then rows and buffers touched per event.
        "statement_calls_rows_buffers": {
            q: _count_growth(before.statement_counts.get(q), after.statement_counts[q], n)
            for _, q in slowest
        },
        "hot_update_share": _hot_shares(before.updates, after.updates),
    }


def _count_growth(
    before: tuple[int, int, int] | None, after: tuple[int, int, int], events: int
) -> tuple[float, float, float]:
    calls, rows, blocks = (a - b for a, b in zip(after, before or (0, 0, 0), strict=True))
    return round(calls * 1000 / events, 2), round(rows / events, 3), round(blocks / events, 2)


def _hot_shares(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """Per table updated during the drain: the share of its updates that were HOT."""
    out = {}
    for name, (updates, hot) in after.items():
        u0, h0 = before.get(name, (0, 0))
        if updates > u0:
            out[name] = round((hot - h0) / (updates - u0), 3)
    return out
