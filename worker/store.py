"""PostgreSQL access: the connection pool, stored offsets and the summary outbox.

The batch transaction's statements are in worker/batch_tx.py (re-exported here). Every
statement is set-based, so a batch costs a fixed number of round trips whatever its size.
SQL is parameterised only; no value is ever formatted into a query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from worker.batch_tx import (
    OUTBOX_RELAY_LOCK,
    TEMP_TABLES,
    BatchTransaction,
    ConcurrentWrite,
    Fenced,
    receipt_from_row,
)
from worker.history import D, HistoryPartitions

__all__ = ["BatchTransaction", "ConcurrentWrite", "Fenced", "OutboxRow", "Store"]
__all__ += ["receipt_from_row"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message_sid: str
    version: int
    payload: bytes


# The claim is planned by index whatever the statistics say. The relay keeps the outbox
# nearly empty, so whenever autovacuum measures it, it records "no rows": a plan cached
# then (asyncpg prepares statements; PostgreSQL keeps a generic plan) joined the claimed ids
# to a scan of the whole table, once per claim, so a backlog was drained in quadratic time
# (one drain of the growth benchmark: 207 buffers per event in this statement instead of 1,
# docs/benchmark.md). The statement only ever runs after these settings, so every plan made
# for it, cached or not, is made under them.
_CLAIM_BY_INDEX = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off;"
    " SET LOCAL enable_mergejoin = off"
)
_CLAIM_OUTBOX = """
DELETE FROM summary_outbox
 WHERE id IN (SELECT id FROM summary_outbox WHERE id > $2 ORDER BY id LIMIT $1 FOR UPDATE)
RETURNING id, message_sid, version, payload
"""


# Placeholders whose status events waited too long for their receipt (docs/design.md,
# "Messaging status events"); links of receipts never expire.
_EXPIRE_PENDING = """
DELETE FROM channel_message_links
 WHERE message_sid IS NULL AND updated_at < now() - make_interval(secs => $1)
RETURNING jsonb_array_length(pending) AS statuses
"""


async def _create_temp_tables(conn: asyncpg.Connection) -> None:
    """The batch transaction's temporary tables, once per connection (they outlive
    the pool's reset between uses; their rows are deleted at every commit)."""
    await conn.execute(TEMP_TABLES)


class Store:
    """The worker's PostgreSQL connection pool and the operations outside the batch."""

    def __init__(self, pool: asyncpg.Pool, *, history_retention_days: int = 0) -> None:
        self._pool = pool
        self.history = HistoryPartitions(history_retention_days)

    @classmethod
    async def connect(
        cls, dsn: str, *, max_size: int = 4, history_retention_days: int = 0
    ) -> Store:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, init=_create_temp_tables
        )
        return cls(pool, history_retention_days=history_retention_days)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def prepare_history(self, events: Sequence[D]) -> Sequence[D]:
        """The history events a batch records; their partitions exist when this returns.

        Runs before the batch's transaction: creating a partition locks the history table
        briefly, which must not happen inside a transaction that holds receipt locks. Status
        events are prepared too: the receipt events they become inside the transaction take
        their dates.
        """
        kept, missing = self.history.select(events)
        if missing:
            async with self._pool.acquire() as conn:
                await self.history.ensure(conn, missing)
        return kept

    async def maintain_history(self) -> tuple[list[str], list[str]]:
        """Partitions created ahead and dropped by retention: (created, dropped)."""
        async with self._pool.acquire() as conn:
            return await self.history.maintain(conn)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[BatchTransaction]:
        """One transaction: commits when the block ends, rolls back on any exception."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield BatchTransaction(conn)

    async def claim_offsets(
        self, group: str, topic: str, defaults: Mapping[int, int]
    ) -> dict[int, int]:
        """The stored next offset per partition, recording `defaults` where none is stored."""
        partitions = sorted(defaults)
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
                " SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS u(p, o)"
                " ON CONFLICT DO NOTHING",
                group,
                topic,
                partitions,
                [defaults[p] for p in partitions],
            )
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])",
                group,
                topic,
                partitions,
            )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def drain_outbox(
        self,
        limit: int,
        publish: Callable[[list[OutboxRow]], Awaitable[None]],
        *,
        after_id: int = 0,
    ) -> list[OutboxRow]:
        """Claim up to `limit` outbox rows with ids above `after_id`, publish them, and delete
        them only if that worked; returns the rows published, in id order.

        The rows stay locked while `publish` runs; if it raises, the transaction rolls back
        and the rows are published later (at least once; readers dedupe by version). Relays
        of other replicas wait meanwhile (see OUTBOX_RELAY_LOCK).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_RELAY_LOCK)
            await conn.execute(_CLAIM_BY_INDEX)
            rows = await conn.fetch(_CLAIM_OUTBOX, limit, after_id)
            if not rows:
                return []
            claimed = sorted(
                (
                    OutboxRow(r["id"], r["message_sid"], r["version"], bytes(r["payload"]))
                    for r in rows
                ),
                key=lambda row: row.id,
            )
            await publish(claimed)
            return claimed

    async def expire_pending_statuses(self, ttl_s: float) -> int:
        """Drop placeholders whose status events waited longer than `ttl_s` for a receipt;
        returns how many status events went with them."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_EXPIRE_PENDING, ttl_s)
        return sum(r["statuses"] or 0 for r in rows)

    async def pending_status_links(self) -> int:
        """Channel messages with status events waiting for their receipt."""
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM channel_message_links WHERE message_sid IS NULL"
            )
        return count

    async def outbox_backlog(self) -> int:
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM summary_outbox")
        return count

    async def stored_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Every stored next offset of `topic` for `group`, by partition."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE consumer_group = $1 AND topic = $2",
                group,
                topic,
            )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def set_offsets(
        self, group: str, topic: str, offsets: Mapping[int, int]
    ) -> dict[int, int | None]:
        """Overwrite the stored next offsets (creating missing rows) in one transaction.

        Returns what each partition held before (None: no row). A worker still holding the old
        value fails its compare-and-set at its next batch and re-reads these (see Fenced).
        """
        partitions = sorted(offsets)
        async with self._pool.acquire() as conn, conn.transaction():
            # Locked, so the values reported as "before" are the ones actually overwritten.
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])"
                " ORDER BY partition FOR UPDATE",
                group,
                topic,
                partitions,
            )
            await conn.execute(
                "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
                " SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS u(p, o)"
                " ON CONFLICT (consumer_group, topic, partition)"
                " DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()",
                group,
                topic,
                partitions,
                [offsets[p] for p in partitions],
            )
        before: dict[int, int | None] = dict.fromkeys(partitions)
        before.update({r["partition"]: r["next_offset"] for r in rows})
        return before
