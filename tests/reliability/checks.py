"""The exact checks of a run's end state: what the workers left in PostgreSQL and on the topics
against the reference reduction of the input (`worker.reduction.coalesce`) and a recount.

`verify_final` waits for the workers to finish a stream (devstack/streams.py) and checks it all;
`assert_state_matches_stored_offsets` checks a crash's atomicity (state and offsets together).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from devstack.progress import stored_offsets, wait_caught_up, wait_outbox_empty
from devstack.streams import Stream
from devstack.topics import end_offsets, read_topic
from worker.config import Settings
from worker.events import ReceiptEvent, Status
from worker.parsing import InvalidRecord, parse_record
from worker.reduction import coalesce, delivery_object, distinct_history, recount
from worker.store import receipt_from_row
from worker.summaries import EVENT_TYPE


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


def _assert_same(actual: Mapping[Any, Any], expected: Mapping[Any, Any], what: str) -> None:
    """Dict equality with a short, readable report instead of a huge diff."""
    if actual == expected:
        return
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    differ = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
    examples = [(k, actual[k], expected[k]) for k in differ[:3]]
    raise AssertionError(
        f"{what}: {len(missing)} missing, {len(extra)} unexpected, {len(differ)} different "
        f"(of {len(expected)} expected); e.g. missing {list(missing)[:2]}, "
        f"unexpected {list(extra)[:2]}, different (actual, expected) {examples}"
    )


async def assert_state_is_reduction_of(dsn: str, events: Sequence[ReceiptEvent]) -> int:
    """Receipts, summaries and history in PostgreSQL are exactly those of `events`.

    The summary counts are maintained by deltas, so an event applied twice (or a change
    lost) would show as a count that differs from a recount of the receipt statuses.
    Returns the number of receipts.
    """
    expected = coalesce(events)
    rows = await _fetch(dsn, "SELECT * FROM delivery_receipts")
    _assert_same(
        {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows},
        expected,
        "receipts vs the reference reduction",
    )
    statuses: dict[str, list[Status]] = defaultdict(list)
    for state in expected.values():
        statuses[state.message_sid].append(state.status)
    want = {}
    for message, sts in statuses.items():
        c = recount(sts)
        words = delivery_object(c)
        want[message] = (
            (c.total, c.sent, c.delivered, c.read, c.failed, c.undelivered),
            tuple(words[k] for k in ("sent", "delivered", "read", "failed", "undelivered")),
        )
    got = {
        r["message_sid"]: (
            (
                r["total"],
                r["sent_count"],
                r["delivered_count"],
                r["read_count"],
                r["failed_count"],
                r["undelivered_count"],
            ),
            (r["sent"], r["delivered"], r["read"], r["failed"], r["undelivered"]),
        )
        for r in await _fetch(dsn, "SELECT * FROM message_delivery")
    }
    _assert_same(got, want, "message summaries vs a recount")
    [history] = await _fetch(dsn, "SELECT count(*) AS n FROM delivery_receipt_history")
    assert history["n"] == len(distinct_history(events)), (
        f"history rows {history['n']} vs {len(distinct_history(events))} distinct events"
    )
    return len(expected)


async def assert_summary_topic_complete(settings: Settings) -> tuple[int, int]:
    """Every committed summary version reached the summary topic; the latest equals the DB.

    Versions of a message go up by one per committed change (one outbox row each), so the
    versions on the topic must be exactly 1..version for every message; a version published
    twice (at least once) must carry the same bytes. The topic must be safe to compact: the
    last record of every key is its latest version. Returns (events on topic, duplicates).
    """
    published = await read_topic(settings.kafka_bootstrap_servers, settings.summary_topic)
    published.sort(key=lambda r: (r.partition, r.offset))
    seen: dict[str, dict[int, bytes]] = defaultdict(dict)
    last_version: dict[str, int] = {}
    duplicates = 0
    for rec in published:
        body = orjson.loads(rec.value or b"")
        message, version = body["message_sid"], body["version"]
        assert body["type"] == EVENT_TYPE and rec.key == message.encode()
        if version in seen[message]:
            duplicates += 1
            assert seen[message][version] == rec.value, f"{message} v{version} differs"
        seen[message][version] = rec.value or b""
        last_version[message] = version
    rows = {
        r["message_sid"]: r
        for r in await _fetch(settings.database_url, "SELECT * FROM message_delivery")
    }
    assert seen.keys() == rows.keys(), "messages on the summary topic vs in PostgreSQL"
    behind = {
        m: (v, rows[m]["version"]) for m, v in last_version.items() if v != rows[m]["version"]
    }
    assert not behind, (
        f"{len(behind)} keys whose last record is not the latest version (last, latest), "
        f"e.g. {list(behind.items())[:3]}: compaction would keep an old summary"
    )
    for message, row in rows.items():
        versions = seen[message]
        assert set(versions) == set(range(1, row["version"] + 1)), (
            f"{message}: versions on topic {sorted(versions)} vs committed 1..{row['version']}"
        )
        latest = orjson.loads(versions[row["version"]])
        assert latest["counts"] == {
            "total": row["total"],
            "sent": row["sent_count"],
            "delivered": row["delivered_count"],
            "read": row["read_count"],
            "failed": row["failed_count"],
            "undelivered": row["undelivered_count"],
        }
        assert latest["delivery"] == {
            "total": row["total"],
            **{k: row[k] for k in ("sent", "delivered", "read", "failed", "undelivered")},
        }
    return len(published), duplicates


async def assert_dead_letters(settings: Settings, poison_keys: Iterable[bytes]) -> int:
    """Each poison record reached the DLQ (at least once) and nothing else did."""
    dead = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic)
    keys = [d.key for d in dead]
    assert set(keys) == set(poison_keys), f"DLQ keys {sorted(set(keys), key=str)}"
    return len(dead)


async def assert_offsets_at_end(settings: Settings) -> dict[int, int]:
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    assert stored == ends, f"stored offsets {stored} vs end offsets {ends}"
    return ends


async def outbox_rows(dsn: str) -> int:
    [row] = await _fetch(dsn, "SELECT count(*) AS n FROM summary_outbox")
    return int(row["n"])


async def verify_final(
    settings: Settings, stream: Stream, *, timeout_s: float = 180
) -> dict[str, int]:
    """Wait for the workers to finish the stream, then check the end state exactly."""
    await wait_caught_up(settings, timeout_s=timeout_s)
    await wait_outbox_empty(settings.database_url, timeout_s=timeout_s)
    ends = await assert_offsets_at_end(settings)
    receipts = await assert_state_is_reduction_of(settings.database_url, stream.events)
    on_topic, duplicates = await assert_summary_topic_complete(settings)
    dead = await assert_dead_letters(settings, stream.poison_keys)
    assert await outbox_rows(settings.database_url) == 0
    return {
        "records": sum(ends.values()),
        "events": len(stream.events),
        "receipts": receipts,
        "summary_events": on_topic,
        "summary_duplicates": duplicates,
        "dead_letters": dead,
    }


async def assert_state_matches_stored_offsets(settings: Settings) -> int:
    """PostgreSQL holds exactly the effect of the input records below its stored offsets.

    This is the atomicity of a batch: after a crash at any instant, state and offsets were
    committed together or not at all. Returns how many input records that prefix holds.
    """
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    records = await read_topic(settings.kafka_bootstrap_servers, settings.input_topic)
    events: list[ReceiptEvent] = []
    prefix = 0
    for rec in records:
        if rec.offset >= stored.get(rec.partition, 0):
            continue
        prefix += 1
        try:
            events.extend(parse_record(rec.value, rec.raw_headers, max_bytes=65536).events)
        except InvalidRecord:
            continue
    await assert_state_is_reduction_of(settings.database_url, events)
    return prefix
