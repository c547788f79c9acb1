"""PostgreSQL access: the batch transaction, stored offsets and the summary outbox.

Every statement is set-based (unnest of arrays), so a batch costs a fixed number of round
trips whatever its size. SQL is parameterised only; no value is ever formatted into a query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from worker.events import ReceiptEvent, Status, StatusEvent
from worker.reduction import Counts, MessageDelta, ReceiptKey
from worker.status_join import LinkRow
from worker.summaries import Summary


class Fenced(Exception):
    """Another consumer advanced the stored offsets: this batch is stale and must not commit."""


class ConcurrentWrite(Exception):
    """A receipt was not as locked: the batch rolls back and is applied again.

    The locking of `claim_receipts` makes this unreachable; it is the alarm of the second
    line of defence (the write that refuses to go backwards), not a normal path.
    """


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message_sid: str
    version: int
    payload: bytes


_RECEIPT_COLUMNS = (
    "message_sid, participant_sid, receipt_sid, account_sid, chat_service_sid, conversation_sid,"
    " channel_message_sid, channel, status, error_code, date_created, date_updated"
)

_ADVANCE_OFFSETS = """
UPDATE consumer_offsets AS o
   SET next_offset = m.new_offset, updated_at = now()
  FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS m(partition, expected, new_offset)
 WHERE o.consumer_group = $1 AND o.topic = $2
   AND o.partition = m.partition AND o.next_offset = m.expected
"""

# Receipts are locked before they are read, rows that do not exist yet included: two
# transactions that both bring the first events of one receipt must not both see "no row".
# Step one inserts the receipts that are new, with the batch's state; the inserted rows are
# this transaction's until it commits, and a concurrent insert of the same key waits for it,
# then finds the row. Keys in sorted order everywhere, so replicas cannot deadlock.
_INSERT_NEW_RECEIPTS = f"""
INSERT INTO delivery_receipts ({_RECEIPT_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::int[], $11::timestamptz[],
                     $12::timestamptz[])
ON CONFLICT (message_sid, participant_sid) DO NOTHING
RETURNING message_sid, participant_sid
"""

# Step two: the receipts that already existed, locked and read as last committed.
_LOCK_RECEIPTS = f"""
SELECT {_RECEIPT_COLUMNS}
  FROM delivery_receipts
 WHERE (message_sid, participant_sid) IN (SELECT * FROM unnest($1::text[], $2::text[]))
 ORDER BY message_sid, participant_sid
   FOR UPDATE
"""

# The second line of defence against a lost update: the write itself refuses to move a
# receipt backwards (lower status, or same status with an older date_updated, or a later
# date_created). $13 is the status labels in merge order, so SQL ranks as Python does.
_UPDATE_RECEIPTS = f"""
UPDATE delivery_receipts AS r
   SET receipt_sid = n.receipt_sid,
       account_sid = n.account_sid,
       chat_service_sid = n.chat_service_sid,
       conversation_sid = n.conversation_sid,
       channel_message_sid = n.channel_message_sid,
       channel = n.channel,
       status = n.status,
       error_code = n.error_code,
       date_created = n.date_created,
       date_updated = n.date_updated,
       updated_at = now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::int[], $11::timestamptz[],
              $12::timestamptz[]) AS n({_RECEIPT_COLUMNS})
 WHERE r.message_sid = n.message_sid AND r.participant_sid = n.participant_sid
   AND (array_position($13::text[], n.status), n.date_updated)
       >= (array_position($13::text[], r.status), r.date_updated)
   AND n.date_created <= r.date_created
"""
_STATUS_ORDER = [s.label for s in sorted(Status)]

# Channel message links (SPEC §2b, migration 003), claimed like receipts: links already
# written need no lock (they never change), the rest are inserted first or locked, in order.
_READ_LINKED = """
SELECT channel_message_sid, message_sid, participant_sid
  FROM channel_message_links
 WHERE channel_message_sid = ANY($1::text[]) AND message_sid IS NOT NULL
"""
_INSERT_NEW_LINKS = """
INSERT INTO channel_message_links (channel_message_sid, message_sid, participant_sid, pending)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
ON CONFLICT (channel_message_sid) DO NOTHING
RETURNING channel_message_sid
"""
_LOCK_LINKS = """
SELECT channel_message_sid, message_sid, participant_sid, pending::text AS pending
  FROM channel_message_links
 WHERE channel_message_sid = ANY($1::text[])
 ORDER BY channel_message_sid
   FOR UPDATE
"""
_UPDATE_LINKS = """
UPDATE channel_message_links AS l
   SET message_sid = u.message_sid, participant_sid = u.participant_sid, pending = u.pending,
       updated_at = now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
       AS u(channel_message_sid, message_sid, participant_sid, pending)
 WHERE l.channel_message_sid = u.channel_message_sid AND l.message_sid IS NULL
"""
_EXPIRE_PENDING = """
DELETE FROM channel_message_links
 WHERE message_sid IS NULL AND updated_at < now() - make_interval(secs => $1)
RETURNING jsonb_array_length(pending) AS statuses
"""

_INSERT_HISTORY = """
INSERT INTO delivery_receipt_history
    (message_sid, participant_sid, receipt_sid, channel, status, error_code, date_updated)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                     $7::timestamptz[])
ON CONFLICT DO NOTHING
"""

_APPLY_DELTAS = """
INSERT INTO message_delivery_counts AS m
    (message_sid, conversation_sid, account_sid, chat_service_sid, total, sent_count,
     delivered_count, read_count, failed_count, undelivered_count, version)
SELECT d.*, 1
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[],
              $8::int[], $9::int[], $10::int[]) AS d
 ORDER BY 1
ON CONFLICT (message_sid) DO UPDATE SET
    total = m.total + excluded.total,
    sent_count = m.sent_count + excluded.sent_count,
    delivered_count = m.delivered_count + excluded.delivered_count,
    read_count = m.read_count + excluded.read_count,
    failed_count = m.failed_count + excluded.failed_count,
    undelivered_count = m.undelivered_count + excluded.undelivered_count,
    version = m.version + 1,
    updated_at = now()
RETURNING message_sid, conversation_sid, account_sid, chat_service_sid, total, sent_count,
          delivered_count, read_count, failed_count, undelivered_count, version, updated_at
"""

# Two transaction-scoped advisory locks keep the summary topic in version order per message
# (so it is safe to compact) whatever the number of replicas:
# - writers take _OUTBOX_ORDER_LOCK just before their outbox insert and hold it through the
#   commit, so outbox ids are handed out in commit order: a relay that has seen id N visible
#   knows every lower id is visible too, and paging by id never skips a late commit;
# - relays take _OUTBOX_RELAY_LOCK for a whole claim-publish-delete, so one relay at a time
#   publishes, in id order, and waits for the broker's acks before the next one claims.
# It costs one short serialisation per batch commit, not per event.
_OUTBOX_ORDER_LOCK = 0x6472_7700_0001
_OUTBOX_RELAY_LOCK = 0x6472_7700_0002

_INSERT_OUTBOX = """
INSERT INTO summary_outbox (message_sid, version, payload)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])
"""

# Starting after a known id matters under load: deleted rows stay in the index until vacuum,
# and an `ORDER BY id` scan from the start would step over all of them on every claim.
_CLAIM_OUTBOX = """
DELETE FROM summary_outbox
 WHERE id IN (SELECT id FROM summary_outbox WHERE id > $2 ORDER BY id LIMIT $1 FOR UPDATE)
RETURNING id, message_sid, version, payload
"""


def _receipt_columns(states: Sequence[ReceiptEvent]) -> list[list[object]]:
    """The states as the twelve column arrays of _RECEIPT_COLUMNS, in that order."""
    return [
        [s.message_sid for s in states],
        [s.participant_sid for s in states],
        [s.receipt_sid for s in states],
        [s.account_sid for s in states],
        [s.chat_service_sid for s in states],
        [s.conversation_sid for s in states],
        [s.channel_message_sid for s in states],
        [s.channel for s in states],
        [s.status.label for s in states],
        [s.error_code for s in states],
        [s.date_created for s in states],
        [s.date_updated for s in states],
    ]


def _link_columns(rows: Sequence[LinkRow]) -> list[list[object]]:
    """Link rows as the message_sid, participant_sid and pending (jsonb text) arrays."""
    return [
        [None if r.receipt is None else r.receipt[0] for r in rows],
        [None if r.receipt is None else r.receipt[1] for r in rows],
        [_encode_pending(r.pending) for r in rows],
    ]


def _encode_pending(statuses: Sequence[StatusEvent]) -> str | None:
    if not statuses:
        return None
    return orjson.dumps(
        [
            [s.account_sid, s.status.label, s.error_code, s.date_updated.isoformat()]
            for s in statuses
        ]
    ).decode()


def _decode_pending(sid: str, text: str | None) -> tuple[StatusEvent, ...]:
    if text is None:
        return ()
    return tuple(
        StatusEvent(account, sid, Status.from_label(status), code, datetime.fromisoformat(at))
        for account, status, code, at in orjson.loads(text)
    )


def receipt_from_row(row: asyncpg.Record) -> ReceiptEvent:
    """A delivery_receipts row as the receipt state it stores."""
    return ReceiptEvent(
        account_sid=row["account_sid"],
        chat_service_sid=row["chat_service_sid"],
        conversation_sid=row["conversation_sid"],
        message_sid=row["message_sid"],
        receipt_sid=row["receipt_sid"],
        channel_message_sid=row["channel_message_sid"],
        participant_sid=row["participant_sid"],
        channel=row["channel"],
        status=Status.from_label(row["status"]),
        error_code=row["error_code"],
        date_created=row["date_created"],
        date_updated=row["date_updated"],
    )


class BatchTransaction:
    """The statements of one batch, all inside one transaction on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def advance_offsets(
        self, group: str, topic: str, moves: Mapping[int, tuple[int, int]]
    ) -> None:
        """Move each partition's stored offset from `expected` to `new` (compare-and-set).

        If any partition's stored offset is not what this worker last saw, another consumer
        owns it now (or owned it meanwhile): raise Fenced so the whole batch rolls back.
        """
        partitions = sorted(moves)
        status = await self._conn.execute(
            _ADVANCE_OFFSETS,
            group,
            topic,
            partitions,
            [moves[p][0] for p in partitions],
            [moves[p][1] for p in partitions],
        )
        if int(status.split()[-1]) != len(partitions):
            raise Fenced(f"stored offsets moved for {topic} partitions {partitions}")

    async def claim_links(self, fresh: Mapping[str, LinkRow]) -> dict[str, LinkRow]:
        """Lock the link rows of these channel messages; returns those that existed.

        `fresh` is, per channel message, the row the batch would write if there were none;
        it is inserted where there is none (and so locked), and absent from the result.
        Links that name a receipt never change, so they are read without a lock.
        """
        sids = sorted(fresh)
        rows = await self._conn.fetch(_READ_LINKED, sids)
        found = {r[0]: LinkRow((r[1], r[2])) for r in rows}
        rest = [s for s in sids if s not in found]
        if not rest:
            return found
        inserted = await self._conn.fetch(
            _INSERT_NEW_LINKS,
            rest,
            *_link_columns([fresh[s] for s in rest]),
        )
        new = {r[0] for r in inserted}
        others = [s for s in rest if s not in new]
        if not others:
            return found
        locked = await self._conn.fetch(_LOCK_LINKS, others)
        if len(locked) != len(others):
            # A placeholder expired between the insert and the lock: start the batch over.
            raise ConcurrentWrite(f"{len(others) - len(locked)} links vanished while locked")
        for r in locked:
            receipt = None if r[1] is None else (r[1], r[2])
            found[r[0]] = LinkRow(receipt, _decode_pending(r[0], r[3]))
        return found

    async def update_links(self, rows: Mapping[str, LinkRow]) -> None:
        """Rewrite placeholders: link them to their receipt, or store their waiting events."""
        if not rows:
            return
        sids = sorted(rows)
        status = await self._conn.execute(
            _UPDATE_LINKS, sids, *_link_columns([rows[s] for s in sids])
        )
        if int(status.split()[-1]) != len(sids):
            raise ConcurrentWrite("a link changed while locked")

    async def claim_receipts(
        self, states: Mapping[ReceiptKey, ReceiptEvent], also: Iterable[ReceiptKey] = ()
    ) -> dict[ReceiptKey, ReceiptEvent]:
        """Lock every receipt of the batch; returns the stored state of those that existed.

        Receipts that did not exist are inserted here with their batch state, so they are
        locked too; they are absent from the result, which is how `apply_batch` knows them
        as new. `also` names receipts outside `states` that must exist (those a status
        event applies to): they are locked and read with the others.
        """
        keys = sorted(states)
        created = await self._conn.fetch(
            _INSERT_NEW_RECEIPTS, *_receipt_columns([states[k] for k in keys])
        )
        new = {(r["message_sid"], r["participant_sid"]) for r in created}
        existing = sorted({k for k in keys if k not in new} | (set(also) - states.keys()))
        if not existing:
            return {}
        rows = await self._conn.fetch(
            _LOCK_RECEIPTS, [k[0] for k in existing], [k[1] for k in existing]
        )
        if len(rows) != len(existing):
            # Receipts are never deleted, so a conflicting key that is not there to lock
            # means something outside the worker changed the table: start the batch over.
            raise ConcurrentWrite(f"{len(existing) - len(rows)} receipts vanished while locked")
        return {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows}

    async def update_receipts(self, states: Sequence[ReceiptEvent]) -> None:
        """Write merged states of existing receipts, which `claim_receipts` locked."""
        if not states:
            return
        ordered = sorted(states, key=lambda s: s.key)
        status = await self._conn.execute(
            _UPDATE_RECEIPTS, *_receipt_columns(ordered), _STATUS_ORDER
        )
        refused = len(ordered) - int(status.split()[-1])
        if refused:
            raise ConcurrentWrite(f"{refused} receipt updates would have moved state backwards")

    async def write_history(self, events: Sequence[ReceiptEvent]) -> None:
        if not events:
            return
        await self._conn.execute(
            _INSERT_HISTORY,
            [e.message_sid for e in events],
            [e.participant_sid for e in events],
            [e.receipt_sid for e in events],
            [e.channel for e in events],
            [e.status.label for e in events],
            [e.error_code for e in events],
            [e.date_updated for e in events],
        )

    async def apply_deltas(self, deltas: Sequence[MessageDelta]) -> list[Summary]:
        """Add each message's count delta to its summary, bumping its version once."""
        if not deltas:
            return []
        rows = await self._conn.fetch(
            _APPLY_DELTAS,
            [d.message_sid for d in deltas],
            [d.conversation_sid for d in deltas],
            [d.account_sid for d in deltas],
            [d.chat_service_sid for d in deltas],
            [d.delta.total for d in deltas],
            [d.delta.sent for d in deltas],
            [d.delta.delivered for d in deltas],
            [d.delta.read for d in deltas],
            [d.delta.failed for d in deltas],
            [d.delta.undelivered for d in deltas],
        )
        return [
            Summary(
                message_sid=r["message_sid"],
                conversation_sid=r["conversation_sid"],
                account_sid=r["account_sid"],
                chat_service_sid=r["chat_service_sid"],
                counts=Counts(
                    r["total"],
                    r["sent_count"],
                    r["delivered_count"],
                    r["read_count"],
                    r["failed_count"],
                    r["undelivered_count"],
                ),
                version=r["version"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    async def write_outbox(self, events: Sequence[tuple[str, int, bytes]]) -> None:
        if not events:
            return
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _OUTBOX_ORDER_LOCK)
        await self._conn.execute(
            _INSERT_OUTBOX,
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
        )


class Store:
    """The worker's PostgreSQL connection pool and the operations outside the batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 4) -> Store:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

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
        of other replicas wait meanwhile (see _OUTBOX_RELAY_LOCK).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _OUTBOX_RELAY_LOCK)
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
