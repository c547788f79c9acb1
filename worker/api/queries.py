"""The SQL this API runs against the read model, one function per question it asks.

Every statement is bounded: single rows by primary key, lists by keyset and LIMIT, the
stats by a time window the caller cannot make larger than seven days. The SQL text is
constant; only parameters vary, so nothing a client sends is ever spliced into it.

Every statement is also scoped to the caller's account (``account_sid``): a row of another
account is not found, exactly like a row that does not exist. ``None`` (the API running
open, without credentials) sees every account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from worker.api.paging import Cursor
from worker.events import STAGES, STATUSES_REACHING

Row = Mapping[str, Any]

# Receipts of one message sort by participant: unique within the message (the primary key
# is (message_sid, participant_sid)), never changed by an update, and served by that index.
_RECEIPT_COLUMNS: Final = (
    "receipt_sid, account_sid, chat_service_sid, conversation_sid, message_sid, "
    "participant_sid, channel_message_sid, channel, status, error_code, date_created, "
    "date_updated"
)
# $3 NULL = the unscoped path, which (like Twilio's default service) sees every service;
# $4 NULL = no account scope (the API running open).
_RECEIPT_SCOPE: Final = (
    "message_sid = $1 AND conversation_sid = $2 AND ($3::text IS NULL OR chat_service_sid = $3)"
    " AND ($4::text IS NULL OR account_sid = $4)"
)

_LIST_RECEIPTS_FORWARD: Final = f"""
SELECT {_RECEIPT_COLUMNS} FROM delivery_receipts
WHERE {_RECEIPT_SCOPE} AND ($5::text IS NULL OR participant_sid > $5)
ORDER BY participant_sid
LIMIT $6"""

_LIST_RECEIPTS_BACKWARD: Final = f"""
SELECT {_RECEIPT_COLUMNS} FROM delivery_receipts
WHERE {_RECEIPT_SCOPE} AND participant_sid < $5
ORDER BY participant_sid DESC
LIMIT $6"""

_FETCH_RECEIPT: Final = f"""
SELECT {_RECEIPT_COLUMNS} FROM delivery_receipts
WHERE {_RECEIPT_SCOPE} AND receipt_sid = $5
ORDER BY participant_sid
LIMIT 1"""

_MESSAGE_EXISTS: Final = f"""
SELECT EXISTS (SELECT 1 FROM message_delivery WHERE {_RECEIPT_SCOPE})
    OR EXISTS (SELECT 1 FROM delivery_receipts WHERE {_RECEIPT_SCOPE})"""

_FETCH_MESSAGE: Final = f"""
SELECT message_sid, conversation_sid, account_sid, chat_service_sid, total,
       sent_count, delivered_count, read_count, failed_count, undelivered_count,
       sent, delivered, read, failed, undelivered, version, updated_at
FROM message_delivery
WHERE {_RECEIPT_SCOPE}"""

# History is shown in the order things happened upstream; id breaks ties, which makes the
# key unique so a page boundary never falls between two rows with equal times.
_HISTORY_COLUMNS: Final = (
    "id, message_sid, participant_sid, receipt_sid, channel, status, error_code, "
    "date_updated, recorded_at"
)
_LIST_HISTORY_FORWARD: Final = f"""
SELECT {_HISTORY_COLUMNS} FROM delivery_receipt_history
WHERE message_sid = $1 AND participant_sid = $2
  AND ($3::timestamptz IS NULL OR (date_updated, id) > ($3::timestamptz, $4::bigint))
ORDER BY date_updated, id
LIMIT $5"""

_LIST_HISTORY_BACKWARD: Final = f"""
SELECT {_HISTORY_COLUMNS} FROM delivery_receipt_history
WHERE message_sid = $1 AND participant_sid = $2
  AND (date_updated, id) < ($3::timestamptz, $4::bigint)
ORDER BY date_updated DESC, id DESC
LIMIT $5"""

# Channels are few (the parser bounds their names); the LIMIT keeps the answer bounded anyway.
MAX_STATS_CHANNELS: Final = 100
_DELIVERY_STATS: Final = """
SELECT channel,
       count(*)::int AS total,
       count(*) FILTER (WHERE status = ANY($5::text[]))::int AS sent,
       count(*) FILTER (WHERE status = ANY($6::text[]))::int AS delivered,
       count(*) FILTER (WHERE status = ANY($7::text[]))::int AS read,
       count(*) FILTER (WHERE status = ANY($8::text[]))::int AS failed,
       count(*) FILTER (WHERE status = ANY($9::text[]))::int AS undelivered
FROM delivery_receipts
WHERE date_created >= $1 AND date_created < $2 AND channel <> 'chat'
  AND ($4::text IS NULL OR account_sid = $4)
GROUP BY channel
ORDER BY channel
LIMIT $3"""


@dataclass(frozen=True, slots=True)
class MessageKey:
    """Which message a request is about, and whose eyes it is for."""

    account_sid: str | None
    service_sid: str | None
    conversation_sid: str
    message_sid: str

    def params(self) -> tuple[str | None, ...]:
        """The values of ``_RECEIPT_SCOPE``'s $1 to $4."""
        return (self.message_sid, self.conversation_sid, self.service_sid, self.account_sid)


async def list_receipts(
    pool: asyncpg.Pool, message: MessageKey, *, cursor: Cursor | None, limit: int
) -> list[Row]:
    """Up to ``limit`` receipts of a message after (or before) ``cursor``, in travel order."""
    after = cursor.key[0] if cursor is not None else None
    sql = _LIST_RECEIPTS_FORWARD if cursor is None or cursor.forward else _LIST_RECEIPTS_BACKWARD
    rows: list[Row] = await pool.fetch(sql, *message.params(), after, limit)
    return rows


async def fetch_receipt(pool: asyncpg.Pool, message: MessageKey, receipt_sid: str) -> Row | None:
    row: Row | None = await pool.fetchrow(_FETCH_RECEIPT, *message.params(), receipt_sid)
    return row


async def message_exists(pool: asyncpg.Pool, message: MessageKey) -> bool:
    """Whether the worker has seen the message (a summary row or at least one receipt)."""
    found = await pool.fetchval(_MESSAGE_EXISTS, *message.params())
    return bool(found)


async def fetch_message(pool: asyncpg.Pool, message: MessageKey) -> Row | None:
    row: Row | None = await pool.fetchrow(_FETCH_MESSAGE, *message.params())
    return row


async def list_history(
    pool: asyncpg.Pool,
    *,
    message_sid: str,
    participant_sid: str,
    after: tuple[datetime, int] | None,
    forward: bool,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` history rows of one receipt after (or before) ``after``."""
    when, row_id = after if after is not None else (None, None)
    sql = _LIST_HISTORY_FORWARD if forward else _LIST_HISTORY_BACKWARD
    rows: list[Row] = await pool.fetch(sql, message_sid, participant_sid, when, row_id, limit)
    return rows


async def delivery_stats(
    pool: asyncpg.Pool, *, account_sid: str | None, start: datetime, end: datetime
) -> list[Row]:
    """Per-channel stage counts of the account's receipts created in ``[start, end)``."""
    # $5..$9: the statuses that reached each stage, from the one statement of the rule.
    reaching = [STATUSES_REACHING[stage] for stage in STAGES]
    rows: list[Row] = await pool.fetch(
        _DELIVERY_STATS, start, end, MAX_STATS_CHANNELS, account_sid, *reaching
    )
    return rows
