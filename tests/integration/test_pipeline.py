"""The worker end to end on the real broker and Postgres: all forms, duplicates, poison."""

from __future__ import annotations

import time
from collections import defaultdict

import asyncpg
import orjson
import pytest

from devstack.progress import stored_offsets, wait_caught_up, wait_outbox_empty
from devstack.streams import produce
from devstack.topics import end_offsets, read_topic
from devstack.workers import metric_value, running_worker
from worker.config import Settings
from worker.loadgen import Record, disorder, encode_mixed, generate_events
from worker.metrics import WorkerMetrics
from worker.reduction import coalesce, delivery_object, distinct_history, recount
from worker.store import receipt_from_row
from worker.summaries import EVENT_TYPE

pytestmark = pytest.mark.integration

POISON: list[tuple[bytes, list[tuple[str, bytes]], str]] = [
    (b'{"EventType": "onDeliveryUpdated", "MessageSid": ', [], "malformed"),
    (b"\xff\xfe\x00garbage", [("trace-id", b"abc")], "not_utf8"),
    (b'{"hello": "world"}', [], "unknown_form"),
    (
        orjson.dumps(
            {
                "EventType": "onDeliveryUpdated",
                "AccountSid": "AC" + "1" * 32,
                "ConversationSid": "CH" + "2" * 32,
                "MessageSid": "IM" + "3" * 32,
                "DeliveryReceiptSid": "DY" + "4" * 32,
                "ParticipantSid": "MB" + "5" * 32,
                "Status": "exploded",
                "DateCreated": "2026-03-01T00:00:00Z",
                "DateUpdated": "2026-03-01T00:00:00Z",
            }
        ),
        [],
        "unknown_status",
    ),
    (b"EventType=onDeliveryUpdated&MessageSid=IMnothex", [], "missing_field"),
    (b"{" + b" " * 70_000 + b"}", [], "too_large"),
]
SKIPPED = [
    Record(b"k", orjson.dumps({"EventType": "onMessageAdded", "Body": "hi"}), []),
    Record(b"k", orjson.dumps({"specversion": "1.0", "type": "com.twilio.x", "data": {}}), []),
]


async def _rows(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_mixed_stream_ends_in_exactly_the_expected_state(
    worker_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = worker_settings
    events = list(generate_events(1500, seed=7))
    stream = disorder(events, seed=7, duplicate_rate=0.2)
    records = encode_mixed(stream, seed=7)
    # Poison and skipped records sprinkled through the stream.
    for n, (value, headers, _) in enumerate(POISON):
        records.insert(n * 97 % len(records), Record(b"poison-%d" % n, value, headers))
    for n, rec in enumerate(SKIPPED):
        records.insert(n * 131 % len(records), rec)
    await produce(s.kafka_bootstrap_servers, s.input_topic, records)

    started = time.perf_counter()
    async with running_worker(s) as metrics:
        await wait_caught_up(s)
        elapsed = time.perf_counter() - started
        await wait_outbox_empty(s.database_url)
    with capsys.disabled():
        print(
            f"\n[pipeline] {len(stream)} events in {len(records)} records applied in "
            f"{elapsed:.2f}s: {len(stream) / elapsed:,.0f} events/s (including start-up)"
        )

    # Receipts: exactly the reference reduction of the input.
    expected = coalesce(events)
    rows = await _rows(s.database_url, "SELECT * FROM delivery_receipts")
    assert {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows} == expected

    # Summaries equal a direct recount, in counts and in Twilio's words.
    by_message: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for state in expected.values():
        by_message[state.message_sid].append(state.status)
    summaries = {
        r["message_sid"]: r for r in await _rows(s.database_url, "SELECT * FROM message_delivery")
    }
    assert summaries.keys() == by_message.keys()
    for message, statuses in by_message.items():
        counts, row = recount(statuses), summaries[message]
        assert (
            row["total"],
            row["sent_count"],
            row["delivered_count"],
            row["read_count"],
            row["failed_count"],
            row["undelivered_count"],
        ) == (
            counts.total,
            counts.sent,
            counts.delivered,
            counts.read,
            counts.failed,
            counts.undelivered,
        )
        words = delivery_object(counts)
        assert {k: row[k] for k in ("sent", "delivered", "read", "failed", "undelivered")} == {
            k: words[k] for k in ("sent", "delivered", "read", "failed", "undelivered")
        }

    # History: one row per distinct event.
    [history] = await _rows(s.database_url, "SELECT count(*) AS n FROM delivery_receipt_history")
    assert history["n"] == len(distinct_history(events))

    # Summary topic: versions per message are distinct, and the latest equals the database.
    published = await read_topic(s.kafka_bootstrap_servers, s.summary_topic)
    latest: dict[str, dict] = {}  # type: ignore[type-arg]
    seen_versions: set[tuple[str, int]] = set()
    for rec in published:
        body = orjson.loads(rec.value or b"")
        assert body["type"] == EVENT_TYPE and rec.key == body["message_sid"].encode()
        seen_versions.add((body["message_sid"], body["version"]))
        if body["version"] > latest.get(body["message_sid"], {"version": 0})["version"]:
            latest[body["message_sid"]] = body
    assert len(seen_versions) == len(published)  # no duplicates without a crash
    assert latest.keys() == summaries.keys()
    for message, body in latest.items():
        row = summaries[message]
        assert body["version"] == row["version"]
        assert body["counts"]["delivered"] == row["delivered_count"]
        assert body["delivery"] == {
            "total": row["total"],
            **{k: row[k] for k in ("sent", "delivered", "read", "failed", "undelivered")},
        }

    # Dead letters: each poison record once, untouched, with the reason and its origin.
    dead = await read_topic(s.kafka_bootstrap_servers, s.dlq_topic)
    assert sorted(d.key or b"" for d in dead) == sorted(
        b"poison-%d" % n for n in range(len(POISON))
    )
    for d in dead:
        n = int((d.key or b"").split(b"-")[1])
        value, headers, reason = POISON[n]
        assert d.value == value
        assert d.raw_headers[: len(headers)] == headers
        assert d.headers["dlq.reason"] == reason.encode()
        assert d.headers["dlq.source.topic"] == s.input_topic.encode()
        assert int(d.headers["dlq.source.partition"]) >= 0
        assert int(d.headers["dlq.source.offset"]) >= 0
        assert d.headers["dlq.error"]

    # Metrics saw the same things.
    assert metric_value(metrics, "delivery_worker_records_consumed_total") - metric_value(
        metrics, "delivery_worker_stale_records_total"
    ) == len(records)
    assert metric_value(metrics, "delivery_worker_events_applied_total") == len(stream)
    assert metric_value(
        metrics, "delivery_worker_events_skipped_total", reason="other_event_type"
    ) == len(SKIPPED)
    for _, _, reason in POISON:
        assert metric_value(metrics, "delivery_worker_dead_letters_total", reason=reason) >= 1
    delivered = sum(
        metric_value(metrics, "delivery_receipt_stage_reached_total", channel=c, stage="delivered")
        for c in ("sms", "whatsapp")
    )
    assert delivered == sum(
        1 for st in expected.values() if st.status.label in ("delivered", "read")
    )
    created = sum(
        metric_value(metrics, "delivery_receipts_created_total", channel=c)
        for c in ("sms", "whatsapp")
    )
    assert created == len(expected)


async def test_restart_resumes_from_stored_offsets_without_reprocessing(
    worker_settings: Settings,
) -> None:
    s = worker_settings
    events = list(generate_events(800, seed=11))
    records = encode_mixed(disorder(events, seed=11), seed=11)
    half = len(records) // 2
    await produce(s.kafka_bootstrap_servers, s.input_topic, records[:half])
    async with running_worker(s) as first:
        await wait_caught_up(s)
    # Second half arrives while the worker is down.
    await produce(s.kafka_bootstrap_servers, s.input_topic, records[half:])
    async with running_worker(s) as second:
        await wait_caught_up(s)
        await wait_outbox_empty(s.database_url)

    def applied(m: WorkerMetrics) -> float:
        # Refetched records (after a rebalance's seek) are dropped as stale, not reapplied.
        return metric_value(m, "delivery_worker_records_consumed_total") - metric_value(
            m, "delivery_worker_stale_records_total"
        )

    assert applied(first) == half
    assert applied(second) == len(records) - half  # resumed exactly at the stored offsets
    assert await stored_offsets(
        s.database_url, s.consumer_group, s.input_topic
    ) == await end_offsets(s.kafka_bootstrap_servers, s.input_topic)
    rows = await _rows(s.database_url, "SELECT * FROM delivery_receipts")
    assert {
        (r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows
    } == coalesce(events)
