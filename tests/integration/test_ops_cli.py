"""`offsets show/reset` and `dlq list/replay`, run as the console script, on the real broker
and PostgreSQL, beside real workers."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from devstack.progress import stored_offsets, wait_caught_up, wait_outbox_empty
from devstack.streams import produce
from devstack.topics import TopicRecord, end_offsets, read_topic
from devstack.workers import Completed, metric_value, running_worker, worker_command
from worker.config import Settings
from worker.loadgen import Record, disorder, encode_mixed, generate_events
from worker.metrics import WorkerMetrics
from worker.publisher import APPENDED_HEADERS
from worker.reduction import coalesce, distinct_history
from worker.store import receipt_from_row

pytestmark = pytest.mark.integration


async def cli(settings: Settings, *argv: str) -> Completed:
    """The console script, configured by environment like a deployment, as a subprocess."""
    return await worker_command(settings, *argv, LOG_LEVEL="WARNING")


async def _fetch(dsn: str, query: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def _state(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Every row of the read model, every column (updated_at, ids and versions included)."""
    return {
        "receipts": await _fetch(
            dsn, "SELECT * FROM delivery_receipts ORDER BY message_sid, participant_sid"
        ),
        "history": await _fetch(dsn, "SELECT * FROM delivery_receipt_history ORDER BY id"),
        "summaries": await _fetch(dsn, "SELECT * FROM message_delivery ORDER BY message_sid"),
    }


def _applied(metrics: WorkerMetrics) -> float:
    return metric_value(metrics, "delivery_worker_records_consumed_total") - metric_value(
        metrics, "delivery_worker_stale_records_total"
    )


# -- offsets show / reset --------------------------------------------------------------------


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


# -- dlq list / replay -----------------------------------------------------------------------


def _valid_but_large(pad: int) -> bytes:
    return orjson.dumps(
        {
            "EventType": "onDeliveryUpdated",
            "AccountSid": "AC" + "a" * 32,
            "ConversationSid": "CH" + "b" * 32,
            "MessageSid": "IM" + "c" * 32,
            "DeliveryReceiptSid": "DY" + "d" * 32,
            "ChannelMessageSid": "SM" + "e" * 32,
            "ParticipantSid": "MB" + "f" * 32,
            "Status": "delivered",
            "DateCreated": "2026-03-01T00:00:00Z",
            "DateUpdated": "2026-03-01T00:00:05Z",
            "Padding": "x" * pad,  # unknown fields are ignored
        }
    )


# key, value, headers, reason: headers with repeated names, binary values and a dlq.* name
# of the producer's own, all of which must come back exactly.
POISON: list[tuple[bytes | None, bytes, list[tuple[str, bytes]], str]] = [
    (
        b"bad-0",
        b'{"EventType": "onDeliveryUpdated", "MessageSid": ',
        [("trace-id", b"t0"), ("dlq.note", b"the producer's own")],
        "malformed",
    ),
    (b"bad-1", b"\xff\xfe\x00garbage", [("trace-id", b"t1"), ("bin", b"\x00\xff")], "not_utf8"),
    (b"bad-2", b'{"oops": ', [], "malformed"),
    (b"bad-3", b"\xff\xfe\x01garbage", [("a", b"1"), ("a", b"2"), ("a", b"")], "not_utf8"),
    (None, b'{"hello": "world"}', [("content-type", b"application/json")], "unknown_form"),
    (b"big-0", _valid_but_large(2000), [("trace-id", b"big")], "too_large"),
]


async def _produce_raw(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    await produce(bootstrap, topic, [Record(k, v, h) for k, v, h in records])


def _original(
    key: bytes | None, value: bytes | None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    [match] = [(k, v, h) for k, v, h, _ in POISON if (k, v) == (key, value)]
    return match


async def test_dlq_list_and_replay_put_the_original_records_back(
    worker_settings: Settings,
) -> None:
    s = worker_settings
    good = encode_mixed(list(generate_events(20, seed=3)), seed=3)
    await produce(s.kafka_bootstrap_servers, s.input_topic, good)
    await _produce_raw(s.kafka_bootstrap_servers, s.input_topic, [p[:3] for p in POISON])
    # A small record limit, so the padded valid record is dead-lettered as too large. Run
    # twice over the topic (offsets reset between): every bad record is dead-lettered twice.
    small = dataclasses.replace(s, max_record_bytes=1024)
    async with running_worker(small):
        await wait_caught_up(s)
    assert (await cli(s, "offsets", "reset", "--to-earliest")).code == 0
    async with running_worker(small):
        await wait_caught_up(s)
    dead = await read_topic(s.kafka_bootstrap_servers, s.dlq_topic)
    assert len(dead) == 2 * len(POISON)

    listed = await cli(s, "dlq", "list", "--json")
    assert listed.code == 0, listed.err
    listing = orjson.loads(listed.out)
    assert (listing["total"], listing["total_distinct"]) == (2 * len(POISON), len(POISON))
    assert {r["reason"]: (r["count"], r["distinct"]) for r in listing["reasons"]} == {
        "malformed": (4, 2),
        "not_utf8": (4, 2),
        "unknown_form": (2, 1),
        "too_large": (2, 1),
    }
    for row in listing["reasons"]:
        assert row["first_failed_at"] < row["last_failed_at"]
    table = await cli(s, "dlq", "list")
    assert table.code == 0
    assert table.out.splitlines()[-1] == "total 12 (6 distinct source records)"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert orjson.loads((await cli(s, "dlq", "list", "--json", "--since", later)).out)["total"] == 0

    input_ends = await end_offsets(s.kafka_bootstrap_servers, s.input_topic)

    async def new_input() -> list[TopicRecord]:
        return [
            r
            for r in await read_topic(s.kafka_bootstrap_servers, s.input_topic)
            if r.offset >= input_ends[r.partition]
        ]

    dry = await cli(s, "dlq", "replay", "--reason", "not_utf8", "--dry-run")
    assert dry.code == 0 and "would replay 2 dead letters" in dry.out, dry
    assert await new_input() == []

    # --reason and --limit: the first not_utf8 dead letter of the DLQ, and only it.
    first = await cli(s, "dlq", "replay", "--reason", "not_utf8", "--limit", "1")
    assert first.code == 0, first.err
    assert "replayed 1 dead letter " in first.out
    [replayed] = await new_input()
    [first_not_utf8, *_] = [d for d in dead if d.headers["dlq.reason"] == b"not_utf8"]
    assert (replayed.key, replayed.value) == (first_not_utf8.key, first_not_utf8.value)
    assert replayed.raw_headers == _original(replayed.key, replayed.value)[2]

    # Each source record once, though each is on the DLQ twice.
    rest = await cli(s, "dlq", "replay", "--reason", "malformed", "--reason", "too_large")
    assert rest.code == 0, rest.err
    assert "replayed 3 dead letters" in rest.out and "skipped 3 duplicates" in rest.out
    again = await new_input()
    assert len(again) == 4
    for record in again:
        key, value, headers = _original(record.key, record.value)
        assert (record.key, record.value, record.raw_headers) == (key, value, headers)
    assert sorted(r.key or b"" for r in again) == sorted(
        [replayed.key or b"", b"bad-0", b"bad-2", b"big-0"]
    )

    # With the default record limit the large one is applied now; the bad ones come back to
    # the DLQ: same original key, value and headers, a new dlq.* block naming their new offset.
    async with running_worker(s):
        await wait_caught_up(s)
    receipts = await _fetch(s.database_url, "SELECT message_sid, status FROM delivery_receipts")
    assert {"message_sid": "IM" + "c" * 32, "status": "delivered"} in receipts
    dead_again = (await read_topic(s.kafka_bootstrap_servers, s.dlq_topic))[len(dead) :]
    assert len(dead_again) == 3
    for d in dead_again:
        key, value, headers = _original(d.key, d.value)
        n = len(APPENDED_HEADERS)
        assert d.raw_headers[:-n] == headers
        assert tuple(name for name, _ in d.raw_headers[-n:]) == APPENDED_HEADERS
        assert (
            int(d.headers["dlq.source.offset"])
            >= input_ends[int(d.headers["dlq.source.partition"])]
        )

    relisted = orjson.loads((await cli(s, "dlq", "list", "--json")).out)
    assert {r["reason"]: r["count"] for r in relisted["reasons"]} == {
        "malformed": 6,
        "not_utf8": 5,
        "unknown_form": 2,
        "too_large": 2,
    }
