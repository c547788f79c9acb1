"""`offsets show/reset` (worker/offsets_admin.py), run as the console script, on the real broker
and PostgreSQL, beside real workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from devstack.progress import stored_offsets, wait_caught_up, wait_outbox_empty
from devstack.streams import produce
from devstack.topics import end_offsets, read_topic
from devstack.workers import metric_value, running_worker
from tests.integration.ops_cli import cli, fetch_rows
from worker.config import Settings
from worker.loadgen import disorder, encode_mixed, generate_events
from worker.metrics import WorkerMetrics
from worker.reduction import coalesce, distinct_history
from worker.store import receipt_from_row

pytestmark = pytest.mark.integration


async def _state(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Every row of the read model, every column (updated_at, ids and versions included)."""
    return {
        "receipts": await fetch_rows(
            dsn, "SELECT * FROM delivery_receipts ORDER BY message_sid, participant_sid"
        ),
        "history": await fetch_rows(dsn, "SELECT * FROM delivery_receipt_history ORDER BY id"),
        "summaries": await fetch_rows(dsn, "SELECT * FROM message_delivery ORDER BY message_sid"),
    }


def _applied(metrics: WorkerMetrics) -> float:
    return metric_value(metrics, "delivery_worker_records_consumed_total") - metric_value(
        metrics, "delivery_worker_stale_records_total"
    )


async def test_show_and_each_reset_mode(worker_settings: Settings) -> None:
    s = worker_settings
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ms = int(t0.timestamp() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
    await producer.start()
    try:
        # Partition 0: six records one second apart; 1: three; 2: none.
        sent = [
            await producer.send(
                s.input_topic, b"x", partition=p, timestamp_ms=ms + i * 1000, key=b"%d" % i
            )
            for p, n in ((0, 6), (1, 3))
            for i in range(n)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    # Retention took partition 0's first two records: its log starts at 2.
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(s.input_topic, 0): RecordsToDelete(2)})
    finally:
        await admin.close()

    async def stored() -> dict[int, int]:
        return await stored_offsets(s.database_url, s.consumer_group, s.input_topic)

    shown = await cli(s, "offsets", "show", "--json")
    assert shown.code == 0, shown.err
    assert orjson.loads(shown.out) == {
        "group": s.consumer_group,
        "topic": s.input_topic,
        "live_members": 0,
        "partitions": [
            {
                "partition": 0,
                "stored_offset": None,
                "log_start_offset": 2,
                "log_end_offset": 6,
                "lag": 4,
            },
            {
                "partition": 1,
                "stored_offset": None,
                "log_start_offset": 0,
                "log_end_offset": 3,
                "lag": 3,
            },
            {
                "partition": 2,
                "stored_offset": None,
                "log_start_offset": 0,
                "log_end_offset": 0,
                "lag": 0,
            },
        ],
        "total_lag": 7,
    }

    dry = await cli(s, "offsets", "reset", "--to-earliest", "--dry-run")
    assert dry.code == 0, dry.err
    assert "dry run, nothing written" in dry.out and "partition 0: - -> 2" in dry.out
    assert await stored() == {}

    # Partitions without a row get one.
    earliest = await cli(s, "offsets", "reset", "--to-earliest")
    assert earliest.code == 0, earliest.err
    assert "partition 0: - -> 2 (no row before)" in earliest.out
    assert await stored() == {0: 2, 1: 0, 2: 0}

    latest = await cli(s, "offsets", "reset", "--to-latest")
    assert latest.code == 0, latest.err
    assert "partition 0: 2 -> 6" in latest.out and "partition 2: 0 -> 0 (unchanged)" in latest.out
    assert await stored() == {0: 6, 1: 3, 2: 0}

    # The first record at or after t0+3s: offset 3 in partition 0; none in 1 or 2 (their end).
    at = (t0 + timedelta(seconds=3)).isoformat()
    by_time = await cli(s, "offsets", "reset", "--to-datetime", at)
    assert by_time.code == 0, by_time.err
    assert await stored() == {0: 3, 1: 3, 2: 0}
    # A date-time without an offset is UTC.
    naive = await cli(s, "offsets", "reset", "--to-datetime", "2026-03-01T12:00:01")
    assert naive.code == 0, naive.err
    assert await stored() == {0: 2, 1: 1, 2: 0}

    exact = await cli(s, "offsets", "reset", "--to-offset", "0:4", "--to-offset", "2:0")
    assert exact.code == 0, exact.err
    assert await stored() == {0: 4, 1: 1, 2: 0}

    # Offsets the topic does not have: refused with the flag named, nothing written.
    for bad, message in (
        ("0:1", "partition 0 holds offsets 2 to 6"),
        ("0:7", "partition 0 holds offsets 2 to 6"),
        ("9:0", "the topic has no partition 9"),
    ):
        ran = await cli(s, "offsets", "reset", "--to-offset", bad)
        assert ran.code == 2, (bad, ran)
        assert f"--to-offset {bad}" in ran.err and message in ran.err
    assert await stored() == {0: 4, 1: 1, 2: 0}

    table = await cli(s, "offsets", "show")
    assert table.code == 0, table.err
    assert table.out.splitlines() == [
        f"group {s.consumer_group}, topic {s.input_topic}: no live members",
        "PARTITION  STORED  LOG-START  LOG-END  LAG",
        "        0       4          2        6    2",
        "        1       1          0        3    2",
        "        2       0          0        0    0",
        "total lag 4",
    ]

    # A mistyped topic is an error, and is not created by asking about it.
    missing = await cli(s, "offsets", "show", "--topic", "no-such-topic")
    assert missing.code == 1 and "no-such-topic" in missing.err
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:
        assert "no-such-topic" not in await admin.list_topics()
    finally:
        await admin.close()


async def test_reset_refused_while_a_worker_runs_and_forced_reset_is_followed(
    worker_settings: Settings,
) -> None:
    s = worker_settings
    events = list(generate_events(150, seed=5))
    records = encode_mixed(disorder(events, seed=5, duplicate_rate=0.2), seed=5)
    await produce(s.kafka_bootstrap_servers, s.input_topic, records)
    async with running_worker(s) as metrics:
        await wait_caught_up(s)
        await wait_outbox_empty(s.database_url)
        before = await _state(s.database_url)
        ends = await end_offsets(s.kafka_bootstrap_servers, s.input_topic)

        shown = await cli(s, "offsets", "show")
        assert shown.code == 0 and ": 1 live member (" in shown.out.splitlines()[0]
        refused = await cli(s, "offsets", "reset", "--to-earliest")
        assert refused.code == 3, refused
        assert "refused" in refused.err and "1 live member" in refused.err
        assert "--force" in refused.err
        assert await stored_offsets(s.database_url, s.consumer_group, s.input_topic) == ends

        forced = await cli(s, "offsets", "reset", "--to-earliest", "--force")
        assert forced.code == 0, forced.err
        assert "forced past 1 live member" in forced.out
        assert await stored_offsets(s.database_url, s.consumer_group, s.input_topic) == {
            p: 0 for p in ends
        }

        # The running worker still holds the old offsets: its next batch's compare-and-set
        # fails, and it re-reads the stored offsets and replays from there. Records that
        # arrive (here: duplicates, which change nothing) are what give it a next batch.
        for _ in range(20):
            await produce(s.kafka_bootstrap_servers, s.input_topic, records[:1])
            await asyncio.sleep(1)
            if metric_value(metrics, "delivery_worker_fenced_batches_total") >= 1:
                break
        assert metric_value(metrics, "delivery_worker_fenced_batches_total") >= 1
        await produce(s.kafka_bootstrap_servers, s.input_topic, records[:1])
        await wait_caught_up(s)
        await wait_outbox_empty(s.database_url)
        assert _applied(metrics) >= len(records) * 2  # it did replay everything
    assert await _state(s.database_url) == before


async def test_reset_to_earliest_then_restart_replays_exactly(worker_settings: Settings) -> None:
    s = worker_settings
    events = list(generate_events(300, seed=21))
    stream = disorder(events, seed=21, duplicate_rate=0.2)
    records = encode_mixed(stream, seed=21)
    await produce(s.kafka_bootstrap_servers, s.input_topic, records)
    async with running_worker(s):
        await wait_caught_up(s)
        await wait_outbox_empty(s.database_url)
    before = await _state(s.database_url)
    assert {
        (r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in before["receipts"]
    } == coalesce(events)
    assert len(before["history"]) == len(distinct_history(events))
    summary_events = len(await read_topic(s.kafka_bootstrap_servers, s.summary_topic))

    reset = await cli(s, "offsets", "reset", "--to-earliest")
    assert reset.code == 0, reset.err
    assert await stored_offsets(s.database_url, s.consumer_group, s.input_topic) == {
        0: 0,
        1: 0,
        2: 0,
    }

    async with running_worker(s) as replay:
        await wait_caught_up(s)
        await wait_outbox_empty(s.database_url)
    # Every record went through the merge again...
    assert _applied(replay) == len(records)
    assert metric_value(replay, "delivery_worker_events_applied_total") == len(stream)
    # ...and changed nothing: no history row added, no receipt or summary touched (same
    # updated_at, same version), so no summary event published either.
    assert await _state(s.database_url) == before
    assert len(await read_topic(s.kafka_bootstrap_servers, s.summary_topic)) == summary_events
