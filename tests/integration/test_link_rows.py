"""Channel message links on the real PostgreSQL: written only where a status event can join
(SMS/MMS), and migration 007 removing the ones written before for other channel messages."""

from __future__ import annotations

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from worker.batch_commit import commit_batch
from worker.loadgen import generate_events
from worker.migrate import apply_migrations, load_migrations
from worker.store import Store

pytestmark = pytest.mark.integration


async def test_only_sms_and_mms_channel_messages_get_a_link(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database("links_sms_only")
    await apply_migrations(dsn)
    events = list(generate_events(60, seed=7))  # channel messages SM, MM and WA
    prefixes = {e.channel_message_sid[:2] for e in events if e.channel_message_sid}
    assert prefixes == {"SM", "MM", "WA"}
    store = await Store.connect(dsn)
    try:
        await commit_batch(store, group="g", topic="t", moves={}, events=events)
    finally:
        await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        linked = {
            (r["channel_message_sid"], r["message_sid"], r["participant_sid"])
            for r in await conn.fetch("SELECT * FROM channel_message_links")
        }
    finally:
        await conn.close()
    assert linked == {
        (e.channel_message_sid, e.message_sid, e.participant_sid)
        for e in events
        if e.channel_message_sid and e.channel_message_sid[:2] in ("SM", "MM")
    }


async def test_migration_007_drops_links_no_status_can_read(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database("links_migration_007")
    await apply_migrations(dsn, up_to=6)
    conn = await asyncpg.connect(dsn)
    try:
        sid = {p: p + "0" * 31 + "1" for p in ("SM", "MM", "WA", "XY")}
        await conn.execute(
            "INSERT INTO channel_message_links (channel_message_sid, message_sid,"
            " participant_sid, pending) VALUES"
            " ($1, 'IM1', 'MB1', NULL), ($2, 'IM2', 'MB2', NULL), ($3, 'IM3', 'MB3', NULL),"
            " ($4, 'IM4', 'MB4', NULL), ($5, NULL, NULL, '[]')",
            sid["SM"], sid["MM"], sid["WA"], sid["XY"], "SM" + "0" * 31 + "2",
        )  # fmt: skip
        newer = [m.version for m in load_migrations() if m.version > 6]
        assert await apply_migrations(dsn) == newer
        left = {
            r[0] for r in await conn.fetch("SELECT channel_message_sid FROM channel_message_links")
        }
        index = await conn.fetchval(
            "SELECT to_regclass('message_delivery_counts_conversation_idx') IS NOT NULL"
        )
    finally:
        await conn.close()
    assert left == {sid["SM"], sid["MM"], "SM" + "0" * 31 + "2"}
    assert not index
