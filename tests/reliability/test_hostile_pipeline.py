"""The hostile corpus through the real worker, broker and database.

Every bad record lands in the DLQ exactly once, untouched (key, value, headers byte for
byte), with reason, error class and source topic/partition/offset headers; the worker keeps
running (its task never ends, /healthz stays ok); the good records of the same batches are
applied, so the final state equals the reference reduction of the good events alone.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from devstack._util import free_port
from devstack.progress import wait_caught_up, wait_outbox_empty
from devstack.streams import produce
from devstack.topics import read_topic
from devstack.workers import metric_value, running_worker
from tests.reliability.corpus.hostile import (
    BIG_LIMIT,
    CORPUS,
    DEFAULT_LIMIT,
    GOOD_TRICKY,
    SKIPPED_TRICKY,
)
from worker.config import Settings
from worker.loadgen import Record, disorder, encode_mixed, generate_events
from worker.reduction import coalesce, distinct_history
from worker.store import receipt_from_row

pytestmark = pytest.mark.integration


def _worker_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "run_worker"
        or t.get_name() == "consumer-loop"
    ]


@pytest.mark.parametrize("limit", [DEFAULT_LIMIT, BIG_LIMIT], ids=["limit-64KiB", "limit-2MiB"])
async def test_hostile_corpus_is_dead_lettered_and_good_records_applied(
    worker_settings: Settings, limit: int
) -> None:
    s = dataclasses.replace(worker_settings, http_port=free_port(), max_record_bytes=limit)
    base = f"http://127.0.0.1:{s.http_port}"

    events = list(generate_events(120, seed=limit % 997))
    tricky_events = events[: len(GOOD_TRICKY)]
    tricky = [make(e) for make, e in zip(GOOD_TRICKY.values(), tricky_events, strict=True)]
    good = encode_mixed(disorder(events[len(GOOD_TRICKY) :], seed=3), seed=3)
    bad = [Record(e.key, e.value, e.headers) for e in CORPUS]  # type: ignore[arg-type]
    records = [*good, *tricky, *SKIPPED_TRICKY, *bad]
    random.Random(limit).shuffle(records)
    await produce(s.kafka_bootstrap_servers, s.input_topic, records)

    async with running_worker(s) as metrics, aiohttp.ClientSession() as http:
        await asyncio.sleep(0.5)
        tasks = _worker_tasks()
        assert len(tasks) == 2, tasks
        await wait_caught_up(s, timeout_s=90)
        await wait_outbox_empty(s.database_url)
        assert not any(t.done() for t in tasks), "the worker stopped"
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        assert set(_worker_tasks()) == set(tasks), "the worker was restarted"

    # Good records, tricky ones included, are applied; nothing of a bad record is.
    conn = await asyncpg.connect(s.database_url)
    try:
        rows = await conn.fetch("SELECT * FROM delivery_receipts")
        history = await conn.fetchval("SELECT count(*) FROM delivery_receipt_history")
        messages = {r["message_sid"] for r in await conn.fetch("SELECT * FROM message_delivery")}
    finally:
        await conn.close()
    expected = coalesce(events)
    assert {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows} == expected
    assert history == len(distinct_history(events))
    assert messages == {e.message_sid for e in events}

    # Every bad record exactly once in the DLQ, untouched, with where and why.
    placed = {
        r.key: r
        for r in await read_topic(s.kafka_bootstrap_servers, s.input_topic)
        if (r.key or b"").startswith(b"bad-")
    }
    dead = await read_topic(s.kafka_bootstrap_servers, s.dlq_topic)
    keys = collections.Counter(d.key for d in dead)
    assert keys == collections.Counter(e.key for e in CORPUS), "each bad record exactly once"
    by_key = {d.key: d for d in dead}
    for entry in CORPUS:
        d = by_key[entry.key]
        source = placed[entry.key]
        assert d.value == entry.value, entry.name
        n = len(entry.headers)
        assert d.raw_headers[:n] == entry.headers, entry.name
        extra = dict(d.raw_headers[n:])
        assert extra["dlq.reason"] == entry.reason_at(limit).encode(), (entry.name, extra)
        assert extra["dlq.error.class"] == b"InvalidRecord"
        assert extra["dlq.error"]
        assert extra["dlq.source.topic"] == s.input_topic.encode()
        assert extra["dlq.source.partition"] == str(source.partition).encode()
        assert extra["dlq.source.offset"] == str(source.offset).encode()
        assert extra["dlq.failed.at"]

    # And counted, by reason.
    reasons = collections.Counter(e.reason_at(limit) for e in CORPUS)
    for reason, count in reasons.items():
        assert (
            metric_value(metrics, "delivery_worker_dead_letters_total", reason=reason) == count
        ), reason
    assert metric_value(metrics, "delivery_worker_events_skipped_total", reason="empty_batch") == 1
    assert metric_value(metrics, "delivery_worker_events_skipped_total", reason="chat_channel") == 1


async def test_keyless_tombstone_is_dead_lettered_and_the_worker_goes_on(
    worker_settings: Settings,
) -> None:
    """A record with neither key nor value, as other clients can write: a dead letter."""
    s = dataclasses.replace(worker_settings, http_port=free_port())
    [event] = list(generate_events(1, seed=5, max_receipts=1))[:1]
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
    await producer.start()
    try:
        # aiokafka's send() refuses key=None and value=None; a raw batch does not.
        batch = producer.create_batch()
        batch.append(key=None, value=None, timestamp=None, headers=[("origin", b"other")])
        await (await producer.send_batch(batch, s.input_topic, partition=0))
    finally:
        await producer.stop()
    await produce(s.kafka_bootstrap_servers, s.input_topic, encode_mixed([event], seed=5))

    async with running_worker(s):
        await wait_caught_up(s, timeout_s=60)
        tasks = _worker_tasks()
        assert tasks and not any(t.done() for t in tasks), "the worker stopped"
    [dead] = await read_topic(s.kafka_bootstrap_servers, s.dlq_topic)
    assert (dead.key, dead.value) == (None, b"")
    assert dead.raw_headers[0] == ("origin", b"other")
    assert dead.headers["dlq.reason"] == b"empty_value"
    conn = await asyncpg.connect(s.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM delivery_receipts") == 1
    finally:
        await conn.close()
