"""`dlq list/replay` (worker/dlq_admin.py), run as the console script, on the real broker and
PostgreSQL, beside real workers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from devstack.progress import wait_caught_up
from devstack.streams import produce
from devstack.topics import TopicRecord, end_offsets, read_topic
from devstack.workers import running_worker
from tests.integration.ops_cli import cli, fetch_rows
from worker.config import Settings
from worker.loadgen import Record, encode_mixed, generate_events
from worker.publisher import APPENDED_HEADERS

pytestmark = pytest.mark.integration


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
    receipts = await fetch_rows(s.database_url, "SELECT message_sid, status FROM delivery_receipts")
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
