"""Applies the versioned SQL migrations in worker/migrations/ to PostgreSQL, idempotently."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every replica racing to migrate.
_MIGRATION_LOCK_ID = 0x6472_6563_6569_7074  # "drecipt"
_FILENAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    found: list[Migration] = []
    for entry in resources.files("worker.migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def apply_migrations(dsn: str, *, up_to: int | None = None) -> list[int]:
    """Apply every migration not yet recorded (none past version `up_to`, if given: an
    upgrade test's old schema); returns the versions applied now.

    Replicas may start together, so the work happens under an advisory lock and each
    migration commits with its bookkeeping row in one transaction.
    """
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied: list[int] = []
            for migration in load_migrations():
                if migration.version in done or (up_to is not None and migration.version > up_to):
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("migration applied", extra={"version": migration.version})
                applied.append(migration.version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
