"""Latency: the worker caught up; produce at a fixed rate and time each message from the
produce of its last summary-changing event to the summary event showing its final counts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.loadgen import produce
from bench.measure import connect, generate_stream
from bench.stack import Stack, new_target, running_workers
from bench.util import loadavg, percentile, rss_kib, say
from devstack.topics import partitions_of
from devstack.workers import WorkerProcess
from worker.config import Settings
from worker.events import ReceiptEvent, Status
from worker.reduction import Counts, recount


def last_changes(events: Sequence[ReceiptEvent]) -> tuple[dict[str, int], dict[str, Counts]]:
    """Per message: index of its last summary-changing event in produce order, final counts."""
    statuses: dict[str, dict[str, Status]] = {}
    last: dict[str, int] = {}
    final: dict[str, Counts] = {}
    for i, e in enumerate(events):
        receipts = statuses.setdefault(e.message_sid, {})
        before = receipts.get(e.participant_sid)
        if before is None or e.status > before:
            receipts[e.participant_sid] = e.status
            counts = recount(receipts.values())
            if counts != final.get(e.message_sid):
                final[e.message_sid] = counts
                last[e.message_sid] = i
    return last, final


async def _wait_adopted(target: Settings, worker: WorkerProcess, partitions: int) -> None:
    """Ready when the worker has adopted every partition (rows in consumer_offsets)."""
    conn = await connect(target.database_url)
    try:
        while True:
            worker.check_alive()
            with contextlib.suppress(asyncpg.UndefinedTableError):
                n = await conn.fetchval(
                    "SELECT count(*) FROM consumer_offsets WHERE consumer_group = $1",
                    target.consumer_group,
                )
                if n >= partitions:
                    return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


class _SummaryReader:
    """Reads the summary topic; notes when each message's final counts first arrive."""

    def __init__(self, bootstrap: str, topic: str, final: dict[str, Counts]) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self.topic = topic
        self.final = final
        self.received: dict[str, float] = {}
        self.stop = asyncio.Event()

    async def start(self) -> None:
        await self.consumer.start()
        tps = [
            TopicPartition(self.topic, p) for p in await partitions_of(self.bootstrap, self.topic)
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def read(self) -> None:
        while not self.stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for records in batch.values():
                for r in records:
                    doc = orjson.loads(r.value or b"{}")
                    m, c = doc["message_sid"], doc["counts"]
                    if m not in self.received and self.final.get(m) == Counts(
                        c["total"], c["sent"], c["delivered"], c["read"], c["failed"],
                        c["undelivered"],
                    ):  # fmt: skip
                        self.received[m] = now


async def _sample_rss(pid: int, stop: asyncio.Event) -> list[int]:
    samples: list[int] = []
    while not stop.is_set():
        samples.append(rss_kib(pid)[0])
        await asyncio.sleep(1)
    return samples


async def latency(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rate, seconds = args.latency_rate, args.latency_seconds
    stream = generate_stream(int(rate * seconds), args.seed + 7)
    last, final = last_changes(stream.events)
    sent_at = [0.0] * len(stream.records)
    target = await new_target(stack, "latency", args.partitions)
    reader = _SummaryReader(stack.bootstrap, target.summary_topic, final)
    async with running_workers(stack, target, 1) as workers:
        await _wait_adopted(target, workers[0], args.partitions)
        await reader.start()
        try:
            reading = asyncio.create_task(reader.read())
            rss_task = asyncio.create_task(_sample_rss(workers[0].pid, reader.stop))
            say(f"latency: producing {len(stream.records)} events at {rate:,.0f}/s")
            produced_s = await produce(
                stack.bootstrap,
                target.input_topic,
                stream.records,
                rate=rate,
                linger_ms=args.latency_linger_ms,
                on_sent=sent_at.__setitem__,
                progress=lambda n: say(
                    f"latency: produced {n}, matched {len(reader.received)}, load {loadavg()}"
                ),
            )
            deadline = time.monotonic() + 60
            while len(reader.received) < len(last) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            reader.stop.set()
            await reading
            rss_samples = await rss_task
        finally:
            await reader.consumer.stop()
    received = reader.received
    latencies_ms = [(received[m] - sent_at[i]) * 1000 for m, i in last.items() if m in received]
    return {
        "offered_events_per_s": rate,
        "achieved_events_per_s": round(len(stream.records) / produced_s, 1),
        "events": len(stream.records),
        "messages": len(last),
        "matched": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 1),
        "p90_ms": round(percentile(latencies_ms, 90), 1),
        "p99_ms": round(percentile(latencies_ms, 99), 1),
        "max_ms": round(max(latencies_ms, default=float("nan")), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1) if latencies_ms else None,
        "worker_rss_mib_max": round(max(rss_samples, default=0) / 1024, 1),
        "producer_linger_ms": args.latency_linger_ms,
    }
