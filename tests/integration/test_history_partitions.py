"""History partitions on a real PostgreSQL: conversion, creation on demand and ahead,
the default partition's take-over, retention by dropping whole partitions, duplicates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from worker.batch_commit import commit_batch
from worker.history import HistoryPartitions
from worker.loadgen import generate_events
from worker.migrate import apply_migrations
from worker.reduction import distinct_history
from worker.store import Store

pytestmark = pytest.mark.integration

_ids = itertools.count(1)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


async def _partitions(conn: asyncpg.Connection) -> dict[str, int]:
    """Each partition of the history and how many rows it holds."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'delivery_receipt_history'::regclass ORDER BY 1"
    )
    out = {}
    for r in names:
        out[r["relname"]] = await conn.fetchval(
            "SELECT count(*) FROM delivery_receipt_history WHERE tableoid = $1::regclass",
            r["relname"],
        )
    return out


async def _database(postgres_server: PostgresServer, migrate: bool = True) -> str:
    dsn = postgres_server.create_database(f"history_{next(_ids)}")
    if migrate:
        await apply_migrations(dsn)
    return dsn


async def test_batches_create_the_months_they_need_and_duplicates_stay_single(
    postgres_server: PostgresServer,
) -> None:
    dsn = await _database(postgres_server)
    events = list(generate_events(40, seed=4))  # March 2026
    store = await Store.connect(dsn)
    store.history = HistoryPartitions(clock=lambda: NOW)  # March is within 36 months of it
    try:
        for _ in range(2):  # the second time, every event is an exact duplicate
            await commit_batch(store, group="g", topic="t", moves={}, events=events)
    finally:
        await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        parts = await _partitions(conn)
    finally:
        await conn.close()
    assert parts == {
        "delivery_receipt_history_default": 0,
        "delivery_receipt_history_p202603": len(distinct_history(events)),
    }


async def test_migration_converts_existing_history(postgres_server: PostgresServer) -> None:
    dsn = await _database(postgres_server, migrate=False)
    await apply_migrations(dsn, up_to=2)  # the schema before partitioning
    conn = await asyncpg.connect(dsn)
    try:
        rows = [
            ("IM1", "MB1", "DY1", "sms", "sent", None, datetime(2025, 11, 30, 23, tzinfo=UTC)),
            ("IM1", "MB1", "DY1", "sms", "read", None, datetime(2025, 12, 1, 1, tzinfo=UTC)),
            ("IM2", "MB2", "DY2", "sms", "failed", 30003, datetime(2026, 2, 3, tzinfo=UTC)),
        ]
        await conn.executemany(
            "INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid,"
            " channel, status, error_code, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            rows,
        )
        before = await conn.fetch("SELECT * FROM delivery_receipt_history ORDER BY id")
        await apply_migrations(dsn)
        after = await conn.fetch("SELECT * FROM delivery_receipt_history ORDER BY id")
        assert [tuple(r) for r in after] == [tuple(r) for r in before]  # ids and columns kept
        assert await _partitions(conn) == {
            "delivery_receipt_history_default": 0,
            "delivery_receipt_history_p202511": 1,
            "delivery_receipt_history_p202512": 1,
            "delivery_receipt_history_p202602": 1,
        }
        # The id sequence goes on; an exact duplicate (NULL error codes equal) is refused.
        inserted = await conn.execute(
            "INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid,"
            " channel, status, error_code, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT DO NOTHING",
            *rows[0],
        )
        assert inserted == "INSERT 0 0"
        new_id = await conn.fetchval(
            "INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid,"
            " channel, status, error_code, date_updated) VALUES ('IM3', 'MB3', 'DY3', 'sms',"
            " 'sent', NULL, '2026-02-04Z') RETURNING id"
        )
        assert new_id > max(r["id"] for r in before)
    finally:
        await conn.close()


async def test_a_late_partition_takes_over_its_rows_from_the_default(
    postgres_server: PostgresServer,
) -> None:
    dsn = await _database(postgres_server)
    conn = await asyncpg.connect(dsn)
    try:
        far = datetime(2031, 5, 17, tzinfo=UTC)  # outside the window: default partition
        await conn.execute(
            "INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid,"
            " channel, status, error_code, date_updated) VALUES ('IM1', 'MB1', 'DY1', 'sms',"
            " 'sent', NULL, $1)",
            far,
        )
        assert (await _partitions(conn))["delivery_receipt_history_default"] == 1
        # Time passes: the month comes within the window and gets its partition.
        later = HistoryPartitions(clock=lambda: far - timedelta(days=20))
        created, dropped = await later.maintain(conn)
        assert "delivery_receipt_history_p203105" in created and dropped == []
        parts = await _partitions(conn)
        assert parts["delivery_receipt_history_default"] == 0
        assert parts["delivery_receipt_history_p203105"] == 1
        assert "delivery_receipt_history_p203106" in parts  # two months ahead (April + 2)
    finally:
        await conn.close()


async def test_retention_drops_whole_partitions_and_skips_older_events(
    postgres_server: PostgresServer,
) -> None:
    dsn = await _database(postgres_server)
    history = HistoryPartitions(retention_days=60, clock=lambda: NOW)
    conn = await asyncpg.connect(dsn)
    try:
        await history.ensure(conn, {2026 * 12 + m for m in range(6, 12)})  # July..December
        for month in range(7, 13):
            await conn.execute(
                "INSERT INTO delivery_receipt_history (message_sid, participant_sid,"
                " receipt_sid, channel, status, error_code, date_updated)"
                " VALUES ('IM1', 'MB1', 'DY1', 'sms', 'sent', NULL, $1)",
                datetime(2026, month, 15, tzinfo=UTC),
            )
        created, dropped = await history.maintain(conn)
        # Horizon 2026-10-03: July, August and September end before it; October stays.
        assert sorted(dropped) == [f"delivery_receipt_history_p2026{m:02}" for m in (7, 8, 9)]
        assert created == ["delivery_receipt_history_p202701", "delivery_receipt_history_p202702"]
        parts = await _partitions(conn)
        assert sorted(parts) == [
            "delivery_receipt_history_default",
            *(f"delivery_receipt_history_p{m}" for m in ("202610", "202611", "202612")),
            "delivery_receipt_history_p202701",
            "delivery_receipt_history_p202702",
        ]
        assert sum(parts.values()) == 3
    finally:
        await conn.close()
    events = list(generate_events(3, seed=1))  # dated March 2026, before the horizon
    kept, missing = history.select(events)
    assert kept == [] and missing == set()
    recent = [e._replace(date_updated=NOW - timedelta(days=1)) for e in events]
    kept, missing = history.select(recent)
    assert list(kept) == recent and missing == set()  # December exists already
