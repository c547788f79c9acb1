"""The relay's claim stays an index lookup when the outbox's statistics say it is empty.

The relay keeps the outbox nearly empty, so autovacuum records it as empty; a plan cached
then scanned the whole table for every claim, and a backlog drained in quadratic time. This
test makes that happen on the real PostgreSQL: the claim is planned on one connection while
the table is analysed empty, then a backlog is drained through the same connection, and the
table's sequential scans are counted.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from worker.migrate import apply_migrations
from worker.store import OutboxRow, Store

pytestmark = pytest.mark.integration

_ADD_ROWS = """
INSERT INTO summary_outbox (message_sid, version, payload)
SELECT 'IM' || md5(i::text), 1, '\\x7b7d'::bytea FROM generate_series(1, $1::int) AS i
"""
_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
_SEQ_SCANS = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'summary_outbox'"


async def _published(rows: list[OutboxRow]) -> None:
    return None


async def test_a_backlog_drains_by_index_after_the_outbox_was_analysed_empty(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database("outbox_claim_plan")
    await apply_migrations(dsn)
    admin = await asyncpg.connect(dsn)
    store = await Store.connect(dsn, max_size=1)  # one connection: one cached plan
    try:
        await admin.execute(_ADD_ROWS, 20)
        await admin.execute("DELETE FROM summary_outbox")
        await admin.execute("VACUUM ANALYZE summary_outbox")  # "no rows", as autovacuum finds it
        for _ in range(8):  # past the custom plans: PostgreSQL now reuses a generic one
            await admin.execute(_ADD_ROWS, 2)
            assert len(await store.drain_outbox(100, _published)) == 2
        await admin.execute(_ADD_ROWS, 20_000)
        await admin.execute("SELECT pg_stat_force_next_flush()")
        before = await admin.fetchval(_SEQ_SCANS)

        drained = 0
        while rows := await store.drain_outbox(100, _published):
            drained += len(rows)
        assert drained == 20_000
    finally:
        await store.close()  # the store's backend reports its counters as it exits
    try:
        for _ in range(100):  # until the store's backend is gone, at most 5 s
            await admin.execute("SELECT pg_stat_clear_snapshot()")
            if await admin.fetchval(_BACKENDS, "outbox_claim_plan") == 1:
                break
            await asyncio.sleep(0.05)
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        scans = await admin.fetchval(_SEQ_SCANS) - before
    finally:
        await admin.close()
    # 201 claims; a claim that scanned the table would count one each.
    assert scans == 0
