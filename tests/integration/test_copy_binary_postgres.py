"""The compiled COPY encoder and asyncpg's store the same values in PostgreSQL.

The same rows (every column kind the batch uses, NULLs, time zones other than UTC, the ends
of the calendar, non-ASCII text) go into two tables, one by `worker.native.copy_binary`, one
by asyncpg's `copy_records_to_table`; PostgreSQL must then hold the same rows in both. A
receipt's rows also go through the batch's own helper both ways.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from worker import batch_tx, native
from worker.loadgen import generate_events

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(native.copy_binary is None, reason="receipts_native is not built"),
]
COLUMNS = "t text, h smallint, i integer, q bigint, z timestamptz, b bytea"


def _rows(rng: random.Random) -> list[tuple[object, ...]]:
    zones = [UTC, timezone(timedelta(hours=-9, minutes=-30)), timezone(timedelta(hours=14))]
    ends = [datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)]
    rows: list[tuple[object, ...]] = [(None,) * 6]
    for _ in range(500):
        moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=rng.randrange(-(10**16), 10**16)
        )
        rows.append(
            (
                rng.choice(["", "IMabc", "caf\u00e9", "\U0001f600 x", "a\tb\nc\\d"]),
                rng.randrange(-(2**15), 2**15),
                rng.randrange(-(2**31), 2**31),
                rng.randrange(-(2**63), 2**63),
                rng.choice([moment.astimezone(rng.choice(zones)), *ends]),
                rng.randbytes(rng.randrange(0, 40)),
            )
        )
    return rows


async def test_same_rows_either_way(postgres_server: PostgresServer) -> None:
    assert native.copy_binary is not None
    dsn = postgres_server.create_database("copy_binary_kinds", exist_ok=True)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"CREATE TABLE by_asyncpg ({COLUMNS}); CREATE TABLE by_native ({COLUMNS})"
        )
        rows = _rows(random.Random(3))
        await conn.copy_records_to_table("by_asyncpg", records=rows)
        data = memoryview(native.copy_binary(rows, "thiqzb"))
        await conn.copy_to_table("by_native", source=data, format="binary")
        order = "ORDER BY t NULLS FIRST, h, i, q, z, b"
        expected = await conn.fetch(f"SELECT * FROM by_asyncpg {order}")
        assert await conn.fetch(f"SELECT * FROM by_native {order}") == expected
        assert len(expected) == len(rows)
    finally:
        await conn.close()


async def test_the_batch_helper_either_way(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = postgres_server.create_database("copy_binary_events", exist_ok=True)
    conn = await asyncpg.connect(dsn)
    events = list(generate_events(300, seed=4))
    try:
        await conn.execute(batch_tx.TEMP_TABLES)
        tables = []
        for compiled in (True, False):
            if not compiled:
                monkeypatch.setattr(native, "copy_binary", None)
            async with conn.transaction():
                await batch_tx._copy(conn, "batch_history", events, batch_tx._EVENT_KINDS)
                tables.append(await conn.fetch("SELECT * FROM batch_history"))
        assert tables[0] == tables[1]
        assert [tuple(r) for r in tables[0]] == [tuple(e) for e in events]
    finally:
        await conn.close()
