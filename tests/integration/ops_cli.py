"""The operator commands as the tests run them: the console script configured by environment for
a test's run (devstack/workers.py), and the rows they leave behind."""

from __future__ import annotations

import asyncpg

from devstack.workers import Completed, worker_command
from worker.config import Settings


async def cli(settings: Settings, *argv: str) -> Completed:
    """The console script, configured by environment like a deployment, as a subprocess."""
    return await worker_command(settings, *argv, LOG_LEVEL="WARNING")


async def fetch_rows(dsn: str, query: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()
