"""Measurements shared by the scenarios: the bare consumer, a timed drain, a timed preload."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import pg_work
from bench.loadgen import produce
from bench.stack import Stack, running_workers
from bench.util import loadavg, rss_kib, say
from devstack.progress import stored_offsets_on
from devstack.streams import Stream, build_stream
from devstack.topics import end_offsets
from devstack.workers import WorkerProcess
from worker.config import Settings

# A drain's first committed batch and its end are only seen at a poll: with 0.5 s, a 9 s
# drain was timed to ±0.5 s (±5 %, rates clustered on a few values). A poll is one indexed
# query, so 20 a second cost PostgreSQL next to nothing.
_POLL_S = 0.05
_SIZES = """
SELECT pg_total_relation_size('delivery_receipts') AS receipts,
       pg_total_relation_size('message_delivery_counts') AS messages,
       coalesce((SELECT sum(pg_total_relation_size(relid))::bigint
                   FROM pg_partition_tree('delivery_receipt_history')
                  WHERE isleaf),
                pg_total_relation_size('delivery_receipt_history')) AS history,
       pg_total_relation_size('summary_outbox') AS outbox
"""
_PROGRESS_S = 5.0
_STATS_SETTLE_S = 1.0

_COMPACT = (
    "VACUUM FULL delivery_receipts, message_delivery_counts, summary_outbox,"
    " delivery_receipt_history"
)


async def bare_consumer_rate(bootstrap: str, topic: str) -> dict[str, float]:
    """A plain aiokafka consumer reading the whole topic: the ceiling for any consumer here."""
    ends = await end_offsets(bootstrap, topic)
    total = sum(ends.values())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        seen = 0
        positions = dict.fromkeys(ends, 0)
        while any(positions[p] < ends[p] for p in ends):
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                seen += len(records)
                if records:
                    positions[tp.partition] = records[-1].offset + 1
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
    return {"records": seen, "seconds": seconds, "records_per_s": total / max(seconds, 1e-9)}


async def stored_total(conn: asyncpg.Connection, target: Settings) -> int:
    """Records the target's group has committed, over one polling connection."""
    stored = await stored_offsets_on(conn, target.consumer_group, target.input_topic)
    return sum(stored.values())


async def connect(dsn: str) -> asyncpg.Connection:
    for _ in range(100):
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            return await asyncpg.connect(dsn)
        await asyncio.sleep(0.1)
    return await asyncpg.connect(dsn)


@dataclass
class _Progress:
    """What a drain saw while it polled: first committed batch, CPU then, RSS samples."""

    t_start: float = field(default_factory=time.monotonic)
    t_first: float | None = None
    done_first: int = 0
    cpu_start: dict[str, float] = field(default_factory=dict)
    rss_samples: list[int] = field(default_factory=list)


async def _wait_drained(
    stack: Stack,
    target: Settings,
    conn: asyncpg.Connection,
    workers: list[WorkerProcess],
    total: int,
    label: str,
) -> _Progress:
    """Poll the stored offsets until every record is committed; then the outbox is empty."""
    seen = _Progress()
    last_print = seen.t_start
    while True:
        await asyncio.sleep(_POLL_S)
        for w in workers:
            w.check_alive()
        now = time.monotonic()
        try:
            done = await stored_total(conn, target)
        except asyncpg.UndefinedTableError:
            done = 0  # not migrated yet
        if done > 0 and seen.t_first is None:
            seen.t_first, seen.done_first = now, done
            seen.cpu_start = stack.cpu(workers)
        seen.rss_samples.append(sum(rss_kib(w.pid)[0] for w in workers))
        if now - last_print >= _PROGRESS_S:
            rate = done / max(now - seen.t_start, 1e-9)
            say(
                f"{label}: {done}/{total} records ({rate:,.0f}/s overall), worker RSS"
                f" {seen.rss_samples[-1] / 1024:.0f} MiB, load {loadavg()}"
            )
            last_print = now
        if done >= total:
            return seen


async def drain(
    stack: Stack, target: Settings, replicas: int, events: int, *, label: str, compact: bool = False
) -> dict[str, Any]:
    """Start `replicas` workers on a preloaded topic; time them to caught-up and outbox empty.

    `events` is how many events the topic's records hold (a CloudEvents array holds several).
    With `compact`, the tables' sizes are also measured after a VACUUM FULL (sizing).
    """
    ends = await end_offsets(stack.bootstrap, target.input_topic)
    total = sum(ends.values())
    say(f"{label}: {replicas} worker(s) draining {total} records; load {loadavg()}")
    conn = await connect(target.database_url)
    try:
        pg_before = await pg_work.snapshot(conn)
        async with running_workers(stack, target, replicas) as workers:
            seen = await _wait_drained(stack, target, conn, workers, total, label)
            t_caught_up = time.monotonic()
            while await conn.fetchval("SELECT count(*) FROM summary_outbox") > 0:  # noqa: ASYNC110
                await asyncio.sleep(_POLL_S)
            t_outbox = time.monotonic()
            cpu_end = stack.cpu(workers)
            rss = [rss_kib(w.pid) for w in workers]
        # Exiting backends publish their counters; wait for them, and count rows only after.
        await asyncio.sleep(_STATS_SETTLE_S)
        pg_after = await pg_work.snapshot(conn)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM delivery_receipts) AS receipts,"
            " (SELECT count(*) FROM message_delivery_counts) AS messages,"
            " (SELECT count(*) FROM delivery_receipt_history) AS history"
        )
        sizes = await conn.fetchrow(_SIZES)
        compacted = None
        if compact:  # after the measurement: it rewrites every table
            await conn.execute(_COMPACT)
            compacted = await conn.fetchrow(_SIZES)
    finally:
        await conn.close()
    result = _rates(seen, t_outbox, total, events, cpu_end)
    return {
        "replicas": replicas,
        "records": total,
        "events": events,
        "seconds_to_caught_up": round(t_caught_up - seen.t_start, 2),
        **result,
        "worker_rss_mib": [round(r / 1024, 1) for r, _ in rss],
        "worker_peak_rss_mib": [round(h / 1024, 1) for _, h in rss],
        "worker_rss_mib_max_sampled": round(max(seen.rss_samples, default=0) / 1024, 1),
        "rows": dict(counts) if counts is not None else {},
        # Bytes on disk, indexes and TOAST included (the history: all its partitions).
        "bytes": dict(sizes) if sizes is not None else {},
        # The same once rewritten without dead rows (VACUUM FULL): the steady-state size,
        # where vacuum keeps up and updates reuse the space.
        "bytes_compact": dict(compacted) if compacted is not None else {},
        # What PostgreSQL did per event over the whole drain (start-up included).
        "pg_work_per_event": pg_work.per_event(pg_before, pg_after, events),
        "load_after": loadavg(),
    }


def _rates(
    seen: _Progress, t_outbox: float, total: int, events: int, cpu_end: dict[str, float]
) -> dict[str, Any]:
    assert seen.t_first is not None
    steady_s = max(t_outbox - seen.t_first, 1e-9)
    # Events of the steady part: records after the first committed batch, scaled to events.
    steady_events = events * (total - seen.done_first) / total if total > seen.done_first else 0
    return {
        "seconds_total": round(t_outbox - seen.t_start, 2),
        "seconds_steady": round(steady_s, 2),
        # From the first committed batch on (start-up excluded), unless it all fit in one poll.
        "events_per_s": round(
            steady_events / steady_s if steady_events else events / (t_outbox - seen.t_start),
            1,
        ),
        "events_per_s_incl_startup": round(events / (t_outbox - seen.t_start), 1),
        # Share of one core each used during the steady part; "all" is the whole machine.
        "cpu_cores_used": {
            k: round((cpu_end[k] - seen.cpu_start.get(k, 0.0)) / steady_s, 2) for k in cpu_end
        },
        # CPU time per event of each part: independent of what else the machine runs.
        "cpu_us_per_event": {
            k: round((cpu_end[k] - seen.cpu_start.get(k, 0.0)) * 1e6 / max(1, steady_events), 1)
            for k in cpu_end
        },
    }


async def preload(stack: Stack, target: Settings, stream: Stream, label: str) -> dict[str, Any]:
    say(f"{label}: producing {len(stream.records)} records; load {loadavg()}")
    seconds = await produce(
        stack.bootstrap,
        target.input_topic,
        stream.records,
        progress=lambda n: say(f"{label}: produced {n}/{len(stream.records)}"),
    )
    return {
        "records": len(stream.records),
        "seconds": round(seconds, 2),
        "records_per_s": round(len(stream.records) / seconds, 1),
    }


def generate_stream(events: int, seed: int, **options: Any) -> Stream:
    """`devstack.streams.build_stream` with a progress line."""
    t0 = time.monotonic()
    stream = build_stream(events, seed=seed, **options)
    say(
        f"generated {len(stream.events)} events in {len(stream.records)} records over"
        f" {stream.messages} messages ({stream.poison} poison) in {time.monotonic() - t0:.1f}s"
    )
    return stream
