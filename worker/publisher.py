"""Writes to Kafka: dead letters for bad records, and the outbox relay for summary events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from worker import native
from worker.faults import CrashPoints
from worker.metrics import WorkerMetrics
from worker.parsing import InvalidRecord
from worker.retry import Backoff, is_transient
from worker.store import OutboxRow, Store

log = logging.getLogger(__name__)

# DLQ header names. The original record's key, value and headers are kept untouched; these
# are appended after them.
H_REASON = "dlq.reason"
H_ERROR = "dlq.error"
H_ERROR_CLASS = "dlq.error.class"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_FAILED_AT = "dlq.failed.at"
# Exactly what dead_letter_headers appends, in its order: `dlq replay` strips this block and
# nothing else, so an original header that happens to start with "dlq." survives a replay.
APPENDED_HEADERS = (H_REASON, H_ERROR, H_ERROR_CLASS, H_TOPIC, H_PARTITION, H_OFFSET, H_FAILED_AT)

_MAX_ERROR_HEADER_CHARS = 500


def dead_letter_headers(
    record: ConsumerRecord, error: InvalidRecord, *, now: datetime | None = None
) -> list[tuple[str, bytes]]:
    """The record's own headers followed by the ones that say why and where it failed."""
    when = (now or datetime.now(UTC)).isoformat()
    return [
        *(record.headers or ()),
        (H_REASON, error.reason.encode()),
        (H_ERROR, str(error)[:_MAX_ERROR_HEADER_CHARS].encode()),
        (H_ERROR_CLASS, type(error).__name__.encode()),
        (H_TOPIC, record.topic.encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
        (H_FAILED_AT, when.encode()),
    ]


def _sendable_value(record: ConsumerRecord) -> bytes | None:
    """The record's value, or b"" for a record with neither key nor value.

    Other clients can produce such a record (a keyless tombstone); aiokafka refuses to send
    one, and a dead letter that cannot be sent would stop the worker. Its DLQ copy carries
    an empty value instead of a null one, with reason `empty_value`.
    """
    value: bytes | None = record.value
    if value is None and record.key is None:
        return b""
    return value


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's `Utils.murmur2`, as aiokafka's), twice as fast:
    the words are unpacked at once and masked only where they can overflow 32 bits."""
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    for k in struct.unpack_from(f"<{length // 4}I", data):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    tail, base = length & 3, length & ~3
    if tail >= 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h = ((h ^ data[base]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives `key` (all partitions, sorted)."""
    hash_of = native.murmur2 or murmur2  # the compiled one where installed, same results
    return partitions[(hash_of(key) & 0x7FFFFFFF) % len(partitions)]


def _summary_headers(row: OutboxRow) -> list[tuple[str, bytes]]:
    return [("content-type", b"application/json"), ("summary-version", str(row.version).encode())]


async def _send_batch(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[object]:
    batch.close()  # nothing sent with producer.send() may join it
    future: asyncio.Future[object] = await producer.send_batch(batch, topic, partition=partition)
    return future


class Publisher:
    """Sends to the summary and dead-letter topics and waits for the broker's acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, *, summary_topic: str, dlq_topic: str) -> None:
        self._producer = producer
        self._summary_topic = summary_topic
        self._dlq_topic = dlq_topic

    async def dead_letter(self, failures: Sequence[tuple[ConsumerRecord, InvalidRecord]]) -> None:
        pending = [
            await self._producer.send(
                self._dlq_topic,
                value=_sendable_value(record),
                key=record.key,
                headers=dead_letter_headers(record, error),
            )
            for record, error in failures
        ]
        await asyncio.gather(*pending)

    async def publish_summaries(self, rows: Sequence[OutboxRow]) -> None:
        """Publish `rows` (in id order) and wait for every acknowledgement.

        Rows are grouped by the partition their key maps to (the default partitioner's
        mapping, murmur2 as in Kafka's Java client) and each group goes out as a few
        ready-made batches: one `send` per row cost a future, a lock and a lookup each
        (docs/benchmark.md). Within a partition, rows keep their id order and batches go
        out one after the other, so each message's versions reach the topic in order.
        """
        topic = self._summary_topic
        partitions = sorted(await self._producer.partitions_for(topic))
        groups: dict[int, list[OutboxRow]] = {}
        for row in rows:
            key = row.message_sid.encode()
            groups.setdefault(partition_for(key, partitions), []).append(row)
        pending = []
        for partition, group in groups.items():
            pending += await self._send_group(topic, partition, group)
        await asyncio.gather(*pending)

    async def _send_group(
        self, topic: str, partition: int, rows: Sequence[OutboxRow]
    ) -> list[asyncio.Future[object]]:
        producer = self._producer
        sent: list[asyncio.Future[object]] = []
        batch = producer.create_batch()
        for row in rows:
            key, headers = row.message_sid.encode(), _summary_headers(row)
            if batch.append(key=key, value=row.payload, timestamp=None, headers=headers):
                continue
            if batch.record_count():
                sent.append(await _send_batch(producer, batch, topic, partition))
                batch = producer.create_batch()
            if batch.append(key=key, value=row.payload, timestamp=None, headers=headers):
                continue
            # Larger than a batch on its own: the producer sends it as one.
            sent.append(
                await producer.send(
                    topic, row.payload, key=key, partition=partition, headers=headers
                )
            )
        if batch.record_count():
            sent.append(await _send_batch(producer, batch, topic, partition))
        return sent


class OutboxRelay:
    """Moves committed summary events from the outbox table to the summary topic.

    It runs beside the consumer loop, so a summary topic that is down makes the outbox grow
    without stopping consumption; the loop wakes it after each commit to keep latency low.
    """

    # When idle, look anyway: another replica may have crashed with rows in the outbox.
    IDLE_POLL_S = 1.0
    # A failed publish is retried after this; long enough not to spin, short enough to drain soon.
    RETRY_DELAY_S = 1.0
    # A drain from the first id runs at least this often (and on start-up), see drain().
    FULL_DRAIN_S = 5.0
    # The backlog gauge is refreshed this often, apart from draining: a count is a table scan,
    # and while the summary topic is away a publish blocks for the producer's request timeout.
    BACKLOG_POLL_S = 5.0

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        metrics: WorkerMetrics,
        *,
        batch_rows: int,
        crash_points: CrashPoints | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._crash = crash_points or CrashPoints()
        self._metrics = metrics
        self._batch_rows = batch_rows
        self._wake = asyncio.Event()
        self._last_id = 0

    def wake(self) -> None:
        self._wake.set()

    async def drain(self, *, full: bool = True) -> int:
        """Publish until the outbox is empty; returns how many events went out.

        A partial drain starts after the last id this relay published, which is all that is
        new when this worker's own batches (committed one at a time, in id order) woke it. A
        full drain starts from the beginning and also finds rows committed out of id order by
        another replica, or left behind by one that crashed.
        """
        after_id = 0 if full else self._last_id
        sent = 0
        while True:
            rows = await self._store.drain_outbox(
                self._batch_rows, self._publish, after_id=after_id
            )
            self._metrics.summaries_published.inc(len(rows))
            sent += len(rows)
            if rows:
                after_id = rows[-1].id
                self._last_id = max(self._last_id, after_id)
            if len(rows) < self._batch_rows:
                return sent

    async def _publish(self, rows: Sequence[OutboxRow]) -> None:
        self._crash.reached("before_publish")
        await self._publisher.publish_summaries(rows)
        self._crash.reached("after_publish")

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch_backlog(stop), name="outbox-backlog")
        try:
            await self._relay(stop)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _watch_backlog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.BACKLOG_POLL_S)
            try:
                self._metrics.outbox_backlog.set(await self._store.outbox_backlog())
            except Exception as exc:  # a gauge refresh must never stop the worker
                log.info("outbox backlog not refreshed", extra={"error": repr(exc)})

    async def _relay(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial_s=self.RETRY_DELAY_S, max_s=5.0)
        last_full = float("-inf")
        while not stop.is_set():
            # Cleared before draining, so a wake-up that arrives during the drain is kept.
            self._wake.clear()
            full = time.monotonic() - last_full >= self.FULL_DRAIN_S
            try:
                await self.drain(full=full)
                if full:
                    last_full = time.monotonic()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("outbox publish failed; will retry", extra={"error": repr(exc)})
                await backoff.sleep()
                continue
            backoff.reset()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.IDLE_POLL_S)
