"""Helpers for integration tests: topics, producing, reading topics back, waiting on state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.config import Settings
from worker.loadgen import Record
from worker.metrics import WorkerMetrics
from worker.service import run_worker


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    n, partitions, 1, topic_configs={"max.message.bytes": str(4 * 1024 * 1024)}
                )
                for n in names
            ]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Unlike the consumer's cache lookup, this waits for the topic's metadata.
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert partitions, f"topic {topic} has no partitions"
    return sorted(partitions)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        # aiokafka 0.14's stop() raises CancelledError for a group-less consumer whose
        # background task never ran; assigning first gives it something to wait on.
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


@dataclass
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    raw_headers: list[tuple[str, bytes]]


async def read_topic(bootstrap: str, topic: str) -> list[TopicRecord]:
    """Every record of `topic` from the beginning up to its current end."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[TopicRecord] = []
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp.partition] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, recs in batch.items():
                for r in recs:
                    headers = list(r.headers or ())
                    out.append(
                        TopicRecord(r.partition, r.offset, r.key, r.value, dict(headers), headers)
                    )
                    if r.offset + 1 >= ends[tp.partition]:
                        remaining.discard(tp)
        assert not remaining, f"could not read {topic} to its end"
    finally:
        await consumer.stop()
    return out


async def stored_offsets(dsn: str, group: str, topic: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2",
            group,
            topic,
        )
    finally:
        await conn.close()
    return {r["partition"]: r["next_offset"] for r in rows}


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 120, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def wait_caught_up(settings: Settings, *, timeout_s: float = 120) -> None:
    """Until Postgres' stored offsets reach the input topic's end offsets."""
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)

    async def caught_up() -> bool:
        stored = await stored_offsets(
            settings.database_url, settings.consumer_group, settings.input_topic
        )
        return all(stored.get(p, -1) >= end for p, end in ends.items() if end > 0)

    await wait_for(caught_up, timeout_s=timeout_s, what="stored offsets to reach the end offsets")


async def wait_outbox_empty(dsn: str, *, timeout_s: float = 60) -> None:
    async def empty() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT count(*) = 0 FROM summary_outbox"))
        finally:
            await conn.close()

    await wait_for(empty, timeout_s=timeout_s, what="the outbox to drain")


@asynccontextmanager
async def running_worker(
    settings: Settings, metrics: WorkerMetrics | None = None
) -> AsyncIterator[WorkerMetrics]:
    """The real worker, in this event loop, stopped (as by SIGTERM) when the block ends."""
    metrics = metrics or WorkerMetrics()
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, handle_signals=False, metrics=metrics))
    try:
        yield metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, settings.shutdown_grace_s + 10)


def metric_value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value
