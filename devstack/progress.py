"""How far a worker got: its stored offsets against the topic's end offsets, and its outbox.

The worker commits its input offsets to PostgreSQL (`consumer_offsets`) in the transaction of
each batch, so "caught up" is those offsets reaching the input topic's end offsets, and "done"
is that plus an empty summary outbox. Used by the tests and by bench/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from devstack.topics import end_offsets
from worker.config import Settings

_STORED = (
    "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2"
)


async def stored_offsets_on(conn: asyncpg.Connection, group: str, topic: str) -> dict[int, int]:
    """partition -> the next offset the worker will read, over an open connection."""
    rows = await conn.fetch(_STORED, group, topic)
    return {r["partition"]: r["next_offset"] for r in rows}


async def stored_offsets(dsn: str, group: str, topic: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await stored_offsets_on(conn, group, topic)
    finally:
        await conn.close()


async def lag(settings: Settings) -> int:
    """Records on the input topic the worker has not committed yet."""
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    return sum(max(0, end - stored.get(p, 0)) for p, end in ends.items())


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 120, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def wait_caught_up(settings: Settings, *, timeout_s: float = 120) -> None:
    """Until Postgres' stored offsets reach the input topic's end offsets."""
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)

    async def caught_up() -> bool:
        stored = await stored_offsets(
            settings.database_url, settings.consumer_group, settings.input_topic
        )
        return all(stored.get(p, -1) >= end for p, end in ends.items() if end > 0)

    await wait_for(caught_up, timeout_s=timeout_s, what="stored offsets to reach the end offsets")


async def wait_outbox_empty(dsn: str, *, timeout_s: float = 60) -> None:
    async def empty() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT count(*) = 0 FROM summary_outbox"))
        finally:
            await conn.close()

    await wait_for(empty, timeout_s=timeout_s, what="the outbox to drain")
