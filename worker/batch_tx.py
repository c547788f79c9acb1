"""The statements of one batch's transaction (see worker/batch_commit.py for their order).

The batch's rows travel by binary COPY into temporary tables (one set per connection, emptied
at every commit), and set-based statements move them into the read model: a batch costs a
fixed number of round trips whatever its size, and no per-row Python work beyond encoding.
COPY is used rather than arrays bound to `unnest(...)` parameters: asyncpg's array encoder
makes several `isinstance` checks against collections.abc per element, which was the
largest part of the worker's share of a transaction (docs/benchmark.md). A temporary table
is written without WAL and lives in the backend's local buffers.

Receipt events are COPYed as they are: `ReceiptEvent` is a tuple whose fields are the
temporary table's columns, in order, the status as its rank (`Status` is an IntEnum) and
turned back into its label in SQL. SQL is parameterised only; nothing is formatted in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from worker import native
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


# Columns of ReceiptEvent, in its field order: a ReceiptEvent is a row of these tables. A
# literal, so no SQL is built from computed values; the check below keeps it in step.
_EVENT_COLUMNS = (
    "account_sid text, chat_service_sid text, conversation_sid text, message_sid text,"
    " receipt_sid text, channel_message_sid text, participant_sid text, channel text,"
    " status smallint, error_code integer, date_created timestamptz, date_updated timestamptz"
)
if [c.split()[0] for c in _EVENT_COLUMNS.split(",")] != list(ReceiptEvent._fields):
    raise RuntimeError("_EVENT_COLUMNS must list ReceiptEvent's fields in order, with types")
_KEY_COLUMNS = "message_sid text, participant_sid text"
_LINK_COLUMNS = "channel_message_sid text, message_sid text, participant_sid text, pending text"
_DELTA_COLUMNS = (
    "message_sid text, conversation_sid text, account_sid text, chat_service_sid text,"
    " total integer, sent_count integer, delivered_count integer, read_count integer,"
    " failed_count integer, undelivered_count integer"
)
TEMP_TABLES = f"""
CREATE TEMP TABLE IF NOT EXISTS batch_states ({_EVENT_COLUMNS}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_changed ({_EVENT_COLUMNS}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_history ({_EVENT_COLUMNS}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_keys ({_KEY_COLUMNS}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_links ({_LINK_COLUMNS}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS batch_deltas ({_DELTA_COLUMNS}) ON COMMIT DELETE ROWS;
"""


_KIND_OF_TYPE = {
    "text": "t",
    "smallint": "h",
    "integer": "i",
    "bigint": "q",
    "timestamptz": "z",
    "bytea": "b",
}


def _copy_kinds(columns: str) -> str:
    """The column kinds of `native.copy_binary` for columns written as in CREATE TABLE."""
    return "".join(_KIND_OF_TYPE[column.split()[1]] for column in columns.split(","))


_EVENT_KINDS = _copy_kinds(_EVENT_COLUMNS)
_KEY_KINDS = _copy_kinds(_KEY_COLUMNS)
_LINK_KINDS = _copy_kinds(_LINK_COLUMNS)
_DELTA_KINDS = _copy_kinds(_DELTA_COLUMNS)
_OUTBOX_COPIED = "message_sid text, version bigint, payload bytea"  # id and created_at: defaults
_OUTBOX_COLUMNS = tuple(column.split()[0] for column in _OUTBOX_COPIED.split(","))
_OUTBOX_KINDS = _copy_kinds(_OUTBOX_COPIED)

# Status labels by rank: $1 of the statements that turn a rank into a label (1-based).
_LABELS = [s.label for s in sorted(Status)]

_RECEIPT_COLUMNS = (
    "message_sid, participant_sid, receipt_sid, account_sid, chat_service_sid, conversation_sid,"
    " channel_message_sid, channel, status, error_code, date_created, date_updated"
)

# The batch's statements join small temporary tables to big indexed ones by key; a nested
# loop over the index is always the right plan, and an un-analysed temporary table could
# tempt the planner into hashing a whole table instead.
_JOIN_BY_INDEX = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"

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
SELECT message_sid, participant_sid, receipt_sid, account_sid, chat_service_sid,
       conversation_sid, channel_message_sid, channel, ($1::text[])[status + 1], error_code,
       date_created, date_updated
  FROM batch_states
 ORDER BY message_sid, participant_sid
ON CONFLICT (message_sid, participant_sid) DO NOTHING
RETURNING message_sid, participant_sid
"""

# Step two: the receipts that already existed, locked (in key order) and read as committed.
_LOCK_RECEIPTS = f"""
SELECT {_RECEIPT_COLUMNS}
  FROM batch_keys k
  JOIN delivery_receipts r USING (message_sid, participant_sid)
 ORDER BY message_sid, participant_sid
   FOR UPDATE OF r
"""

# The second line of defence against a lost update: the write itself refuses to move a
# receipt backwards (lower status, or same status with an older date_updated, or a later
# date_created). Ranks compare as Python compares them.
_UPDATE_RECEIPTS = """
UPDATE delivery_receipts AS r
   SET receipt_sid = n.receipt_sid,
       account_sid = n.account_sid,
       chat_service_sid = n.chat_service_sid,
       conversation_sid = n.conversation_sid,
       channel_message_sid = n.channel_message_sid,
       channel = n.channel,
       status = ($1::text[])[n.status + 1],
       error_code = n.error_code,
       date_created = n.date_created,
       date_updated = n.date_updated,
       updated_at = now()
  FROM batch_changed AS n
 WHERE r.message_sid = n.message_sid AND r.participant_sid = n.participant_sid
   AND (n.status + 1, n.date_updated) >= (array_position($1::text[], r.status), r.date_updated)
   AND n.date_created <= r.date_created
"""

# Channel message links (docs/design.md, "Messaging status events"), claimed like receipts:
# the batch's rows are inserted first where none exists (which locks them); of the rows
# that existed, links need no lock (they never change) and placeholders are locked, in key
# order. A link row travels like a receipt event, by COPY: (channel message SID, message
# SID, participant SID, waiting status events as JSON).
_INSERT_NEW_LINKS = """
INSERT INTO channel_message_links (channel_message_sid, message_sid, participant_sid, pending)
SELECT channel_message_sid, message_sid, participant_sid, pending::jsonb
  FROM batch_links
 ORDER BY channel_message_sid
ON CONFLICT (channel_message_sid) DO NOTHING
RETURNING channel_message_sid
"""
_READ_LINKS = """
SELECT channel_message_sid, message_sid, participant_sid, pending::text AS pending
  FROM channel_message_links
 WHERE channel_message_sid = ANY($1::text[])
"""
_LOCK_LINKS = f"""{_READ_LINKS}
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

# In the unique key's order (migration 009), like every other statement of the batch: the
# rows then descend the index left to right, and the pages one brought in serve the next.
_INSERT_HISTORY = """
INSERT INTO delivery_receipt_history
    (message_sid, participant_sid, receipt_sid, channel, status, error_code, date_updated)
SELECT message_sid, participant_sid, receipt_sid, channel, ($1::text[])[status + 1],
       error_code, date_updated
  FROM batch_history
 ORDER BY date_updated, message_sid, participant_sid
ON CONFLICT DO NOTHING
"""

_APPLY_DELTAS = """
INSERT INTO message_delivery_counts AS m
    (message_sid, conversation_sid, account_sid, chat_service_sid, total, sent_count,
     delivered_count, read_count, failed_count, undelivered_count, version)
SELECT d.*, 1
  FROM batch_deltas AS d
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
# - writers take OUTBOX_ORDER_LOCK just before their outbox insert and hold it through the
#   commit, so outbox ids are handed out in commit order: a relay that has seen id N visible
#   knows every lower id is visible too, and paging by id never skips a late commit;
# - relays take OUTBOX_RELAY_LOCK for a whole claim-publish-delete, so one relay at a time
#   publishes, in id order, and waits for the broker's acks before the next one claims.
# It costs one short serialisation per batch commit, not per event.
OUTBOX_ORDER_LOCK = 0x6472_7700_0001
OUTBOX_RELAY_LOCK = 0x6472_7700_0002


def _link_values(row: LinkRow) -> tuple[str | None, str | None, str | None]:
    """A link row's message_sid, participant_sid and pending (JSON text) columns."""
    if row.receipt is None:
        return None, None, _encode_pending(row.pending)
    return row.receipt[0], row.receipt[1], None


def _link_row(record: asyncpg.Record) -> LinkRow:
    if record[1] is None:
        return LinkRow(None, _decode_pending(record[0], record[3]))
    return LinkRow((record[1], record[2]))


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

        `fresh` is, per channel message, the row the batch writes where there is none; it
        is inserted there (and so locked), and absent from the result. Of the rows that
        existed, links are read without a lock (they never change) and placeholders locked.
        """
        conn = self._conn
        fresh_rows = [(sid, *_link_values(row)) for sid, row in fresh.items()]
        await _copy(conn, "batch_links", fresh_rows, _LINK_KINDS)
        inserted = {r[0] for r in await conn.fetch(_INSERT_NEW_LINKS)}
        if len(inserted) == len(fresh):
            return {}
        rows = await conn.fetch(_READ_LINKS, sorted(s for s in fresh if s not in inserted))
        found = {r[0]: _link_row(r) for r in rows}
        placeholders = sorted(s for s, row in found.items() if row.receipt is None)
        if placeholders:
            locked = await conn.fetch(_LOCK_LINKS, placeholders)
            found.update((r[0], _link_row(r)) for r in locked)
        else:
            locked = []
        if len(found) != len(fresh) - len(inserted) or len(locked) != len(placeholders):
            # Rows are deleted only when a placeholder expires: start the batch over.
            raise ConcurrentWrite("a placeholder link expired while the batch claimed it")
        return found

    async def update_links(self, rows: Mapping[str, LinkRow]) -> None:
        """Rewrite placeholders: link them to their receipt, or store their waiting events."""
        if not rows:
            return
        sids = sorted(rows)
        columns = zip(*(_link_values(rows[s]) for s in sids), strict=True)
        status = await self._conn.execute(_UPDATE_LINKS, sids, *map(list, columns))
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
        extra = [k for k in set(also) if k not in states]
        if not states and not extra:
            return {}
        conn = self._conn
        await conn.execute(_JOIN_BY_INDEX)
        new: set[ReceiptKey] = set()
        if states:
            await _copy(conn, "batch_states", states.values(), _EVENT_KINDS)
            created = await conn.fetch(_INSERT_NEW_RECEIPTS, _LABELS)
            new = {(r[0], r[1]) for r in created}
        existing = [k for k in states if k not in new] + extra
        if not existing:
            return {}
        await _copy(conn, "batch_keys", existing, _KEY_KINDS)
        rows = await conn.fetch(_LOCK_RECEIPTS)
        if len(rows) != len(existing):
            # Receipts are never deleted, so a conflicting key that is not there to lock
            # means something outside the worker changed the table: start the batch over.
            raise ConcurrentWrite(f"{len(existing) - len(rows)} receipts vanished while locked")
        return {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows}

    async def update_receipts(self, states: Sequence[ReceiptEvent]) -> None:
        """Write merged states of existing receipts, which `claim_receipts` locked."""
        if not states:
            return
        await _copy(self._conn, "batch_changed", states, _EVENT_KINDS)
        status = await self._conn.execute(_UPDATE_RECEIPTS, _LABELS)
        refused = len(states) - int(status.split()[-1])
        if refused:
            raise ConcurrentWrite(f"{refused} receipt updates would have moved state backwards")

    async def write_history(self, events: Sequence[ReceiptEvent]) -> None:
        if not events:
            return
        await _copy(self._conn, "batch_history", events, _EVENT_KINDS)
        await self._conn.execute(_INSERT_HISTORY, _LABELS)

    async def apply_deltas(self, deltas: Sequence[MessageDelta]) -> list[Summary]:
        """Add each message's count delta to its summary, bumping its version once."""
        if not deltas:
            return []
        await _copy(
            self._conn,
            "batch_deltas",
            [
                (
                    d.message_sid,
                    d.conversation_sid,
                    d.account_sid,
                    d.chat_service_sid,
                    d.delta.total,
                    d.delta.sent,
                    d.delta.delivered,
                    d.delta.read,
                    d.delta.failed,
                    d.delta.undelivered,
                )
                for d in deltas
            ],
            _DELTA_KINDS,
        )
        rows = await self._conn.fetch(_APPLY_DELTAS)
        return [
            Summary(
                message_sid=r[0],
                conversation_sid=r[1],
                account_sid=r[2],
                chat_service_sid=r[3],
                counts=Counts(r[4], r[5], r[6], r[7], r[8], r[9]),
                version=r[10],
                updated_at=r[11],
            )
            for r in rows
        ]

    async def write_outbox(self, events: Sequence[tuple[str, int, bytes]]) -> None:
        if not events:
            return
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_ORDER_LOCK)
        await _copy(self._conn, "summary_outbox", events, _OUTBOX_KINDS, _OUTBOX_COLUMNS)


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    rows: Iterable[tuple[Any, ...]],
    kinds: str,
    columns: Sequence[str] | None = None,
) -> None:
    """Rows into a table by binary COPY, encoded by the compiled module where it is
    installed (without asyncpg's per-value codec calls, docs/benchmark.md), else by asyncpg."""
    if native.copy_binary is None:
        await conn.copy_records_to_table(table, records=rows, columns=columns)
    else:
        # A memoryview: asyncpg would take bytes for a file name.
        data = memoryview(native.copy_binary(rows, kinds))
        await conn.copy_to_table(table, source=data, columns=columns, format="binary")
