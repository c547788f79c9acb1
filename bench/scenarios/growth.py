"""Database growth: the mixed stream's rate with 0, 0.5M, 1M and 2M receipts already stored.

One database for the whole scenario. Before each level it is filled up to that many stored
receipts by SQL (synthetic receipts with random SIDs, ≈ 2.5 history rows each, a summary per
3 receipts, a channel message link for each SMS one, dated over the 30 days before the
measured streams), vacuumed, analysed and checkpointed, as a database that grew over weeks
would be. Then a fresh mixed stream (`--growth-messages` new messages, its own topic and
group, dated a day after the previous stream) is drained into it, `--growth-drains` (2)
times: the first drain meets the cold cache the fill left, the last one a warmer one. Fresh
messages are the common case: nearly every event of a real stream is about a recent message.
Last, the empty database is measured once more, on a new database, and each level's rate is
given as a ratio to the mean of the two empty-database rates. Before all of it, one
unmeasured drain into a throwaway database warms the broker up.

`--growth-max N` shrinks the levels to 0, N/4, N/2, N for a quick run; `--growth-replicas N`
drains each level with N workers in one group.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.loadgen import MIXED
from bench.measure import connect, drain, generate_stream, preload
from bench.stack import Stack, drop_database, migrate, new_target
from bench.util import loadavg, say
from devstack.runs import new_database
from worker.config import Settings
from worker.sids import CHANNEL_MESSAGE_PREFIXES

_CHUNK = 250_000
# The key of the last run in the results: the empty database, measured once more.
EMPTY_AGAIN = "0 (again)"
# Seconds between two filled receipts: 2M receipts span 30 days before the measured stream.
_SPACING_S = 1.3
# worker.loadgen's epoch: the measured streams start here.
_BEFORE_TS = datetime(2026, 3, 1, tzinfo=UTC)

_FILL_RECEIPTS = """
INSERT INTO delivery_receipts (message_sid, participant_sid, receipt_sid, account_sid,
    chat_service_sid, conversation_sid, channel_message_sid, channel, status, error_code,
    date_created, date_updated)
SELECT 'IM' || md5('m' || (i / 3)), 'MB' || md5('p' || i), 'DY' || md5('r' || i),
       'AC' || md5('account'), 'IS' || md5('service'), 'CH' || md5('c' || (i / 3)),
       CASE WHEN i % 2 = 0 THEN 'WA' ELSE 'SM' END || md5('s' || i),
       CASE WHEN i % 2 = 0 THEN 'whatsapp' ELSE 'sms' END,
       (ARRAY['delivered', 'read', 'sent', 'failed', 'undelivered', 'delivered'])[1 + i % 6],
       NULL, t, t + interval '12 seconds'
  FROM generate_series($1::bigint, $2::bigint - 1) AS i,
       LATERAL (SELECT $3::timestamptz - make_interval(secs => (i + 1) * $4)) AS d(t)
"""

# Two rows per receipt (sent, then its final status) and a third for every other one.
_FILL_HISTORY = """
INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid, channel,
    status, error_code, date_updated)
SELECT r.message_sid, r.participant_sid, r.receipt_sid, r.channel, s.status, NULL,
       r.date_created + s.after
  FROM delivery_receipts r,
       LATERAL (VALUES ('queued', interval '1 second'), ('sent', interval '5 seconds'),
                       (r.status, interval '12 seconds')) AS s(status, after)
 WHERE r.receipt_sid = ANY($1::text[])
   AND (s.status <> 'queued' OR right(r.participant_sid, 1) < '8')
ON CONFLICT DO NOTHING
"""

_FILL_SUMMARIES = """
INSERT INTO message_delivery_counts (message_sid, conversation_sid, account_sid,
    chat_service_sid, total, sent_count, delivered_count, read_count, failed_count,
    undelivered_count, version)
SELECT message_sid, min(conversation_sid), min(account_sid), min(chat_service_sid), count(*),
       count(*) FILTER (WHERE status IN ('sent', 'undelivered', 'delivered', 'read')),
       count(*) FILTER (WHERE status IN ('delivered', 'read')),
       count(*) FILTER (WHERE status = 'read'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'undelivered'), 3
  FROM delivery_receipts WHERE receipt_sid = ANY($1::text[])
 GROUP BY message_sid
ON CONFLICT (message_sid) DO NOTHING
"""


# Every stored SMS receipt has its channel message's link (migration 006), as the worker
# writes it (`worker.status_join.receipt_links`: none for WhatsApp channel messages).
_FILL_LINKS = """
INSERT INTO channel_message_links (channel_message_sid, message_sid, participant_sid)
SELECT channel_message_sid, message_sid, participant_sid
  FROM delivery_receipts
 WHERE receipt_sid = ANY($1::text[]) AND left(channel_message_sid, 2) = ANY($2::text[])
ON CONFLICT DO NOTHING
"""


def growth_levels(maximum: int) -> list[int]:
    return [0, maximum // 4, maximum // 2, maximum]


async def fill(conn: asyncpg.Connection, start: int, stop: int) -> None:
    """Synthetic receipts number `start` to `stop` - 1, with their history and summaries."""
    for low in range(start, stop, _CHUNK):
        high = min(stop, low + _CHUNK)
        t0 = time.monotonic()
        oldest = _BEFORE_TS - timedelta(seconds=high * _SPACING_S)
        if await conn.fetchval(
            "SELECT to_regproc('delivery_receipt_history_create_partition') IS NOT NULL"
        ):  # a partitioned history (migration 003): the months of the fill need partitions
            await conn.execute(
                "SELECT delivery_receipt_history_create_partition(m::date) FROM generate_series("
                " date_trunc('month', $1::timestamptz), $2, '1 month') AS m",
                oldest,
                _BEFORE_TS,
            )
        async with conn.transaction():
            await conn.execute(_FILL_RECEIPTS, low, high, _BEFORE_TS, _SPACING_S)
            sids = [f"DY{s}" for s in await _receipt_hashes(conn, low, high)]
            await conn.execute(_FILL_HISTORY, sids)
            await conn.execute(_FILL_SUMMARIES, sids)
            if await conn.fetchval("SELECT to_regclass('channel_message_links') IS NOT NULL"):
                await conn.execute(_FILL_LINKS, sids, list(CHANNEL_MESSAGE_PREFIXES))
        say(f"growth: filled receipts {low}..{high} in {time.monotonic() - t0:.1f}s")
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")


async def _receipt_hashes(conn: asyncpg.Connection, low: int, high: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT md5('r' || i) AS h FROM generate_series($1::bigint, $2::bigint - 1) AS i",
        low,
        high,
    )
    return [r["h"] for r in rows]


async def growth(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    # Not measured: the broker's first minute of work after it starts is also its JIT
    # compiler's, which took a core's tenth from the first drain (11 µs of broker CPU per
    # event in it against 2-7 in the later ones, docs/benchmark.md).
    warm_up = await new_target(stack, "growth", args.partitions)
    await migrate(stack, warm_up)
    await _measure(stack, args, warm_up, -args.growth_drains, name="growth warm-up")
    drop_database(stack, warm_up)

    dsn = new_database(stack.postgres, "bench-growth")
    levels = growth_levels(args.growth_max)
    runs: dict[str, list[dict[str, Any]]] = {}
    filled = 0
    drains = 0  # so far: each is dated a day after the last
    for level in levels:
        target = await new_target(stack, "growth", args.partitions, dsn=dsn)
        await migrate(stack, target)
        conn = await connect(dsn)
        try:
            if level > filled:
                await fill(conn, filled, level)
                filled = level
        finally:
            await conn.close()
        runs[str(level)] = await _measure(stack, args, target, drains)
        drains += args.growth_drains
    # The empty database once more, last: minutes pass between the first level and the last,
    # and the machine's speed drifts over minutes (docs/benchmark.md, "Growth"), so the small
    # run's rate is taken on both sides of the big ones. The grown database is dropped first:
    # its autovacuum must not run beside the last drain.
    drop_database(stack, target)
    again = await new_target(stack, "growth", args.partitions)
    await migrate(stack, again)
    runs[EMPTY_AGAIN] = await _measure(stack, args, again, drains)
    drop_database(stack, again)
    return {
        "levels": levels,
        "messages_per_level": args.growth_messages,
        "drains_per_level": args.growth_drains,
        "replicas": args.growth_replicas,
        "runs": runs,
        # Each level's last drain (the one that met a warm cache) to the mean of the empty
        # database's last drains, first and last in time; then the same for the first drains.
        "ratio_to_empty": _ratios(runs, -1),
        "ratio_to_empty_first_drain": _ratios(runs, 0),
    }


def _ratios(runs: dict[str, list[dict[str, Any]]], drain: int) -> dict[str, float]:
    empty = (runs["0"][drain]["events_per_s"] + runs[EMPTY_AGAIN][drain]["events_per_s"]) / 2
    return {
        level: round(measured[drain]["events_per_s"] / empty, 2)
        for level, measured in runs.items()
        if level != EMPTY_AGAIN
    }


async def _measure(
    stack: Stack,
    args: argparse.Namespace,
    target: Settings,
    drains_before: int,
    *,
    name: str = "growth",
) -> list[dict[str, Any]]:
    """`--growth-drains` fresh mixed streams of `--growth-messages` messages each, drained
    one after the other into the target's database (each on its own topics).

    The first drain after a fill meets a cold cache: the fill and the checkpoint after it
    pushed the indexes out of shared buffers, and every page it changes is the first change
    since that checkpoint (a full-page image in the WAL). The next drain is closer to a
    database that has been running. Each stream's messages are created a day after the
    previous one's, as time passes while a database grows: a new receipt's `date_created`
    is then the newest in its index, as in production, and not among the last stream's
    (where the same dates again would put it).
    """
    results = []
    for n in range(args.growth_drains):
        if n:
            target = await new_target(stack, "growth", args.partitions, dsn=target.database_url)
        conn = await connect(target.database_url)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM delivery_receipts")
        finally:
            await conn.close()
        run = drains_before + n
        start = _BEFORE_TS + timedelta(days=run)
        stream = generate_stream(args.growth_messages * 8, args.seed + 100 + run,
                                 messages=args.growth_messages, start=start, **MIXED)  # fmt: skip
        label = f"{name} {stored}"
        await preload(stack, target, stream, label)
        say(f"growth: {stored} receipts stored; load {loadavg()}")
        result = await drain(stack, target, args.growth_replicas, stream.event_count, label=label)
        results.append({"stored_receipts": stored, **result})
    return results
