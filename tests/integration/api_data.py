"""What the read API tests read: two accounts' receipts, summaries and history, seeded into
a database of each test module's own (tests/integration/conftest.py), and how to reach them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from devstack._util import free_port

PUBLIC_BASE = "https://receipts.example.test"


def sid(prefix: str, n: int) -> str:
    return f"{prefix}{n:032x}"


def upper(value: str) -> str:
    """The same SID with upper-case hex, as some clients write them."""
    return value[:2] + value[2:].upper()


ACCOUNT = sid("AC", 1)
ACCOUNT_B = sid("AC", 2)
TOKEN = "token-of-account-1-5e1f0c"
TOKEN_B = "token-of-account-2-9a7d44"
AUTH = (ACCOUNT, TOKEN)
AUTH_B = (ACCOUNT_B, TOKEN_B)
SERVICE = sid("IS", 1)
OTHER_SERVICE = sid("IS", 2)
CONV = sid("CH", 1)
OTHER_CONV = sid("CH", 2)
MSG_BIG = sid("IM", 1)  # 120 receipts
MSG_EXAMPLE = sid("IM", 2)  # docs/design.md's "Summary counts" example: 5 receipts
MSG_OLD = sid("IM", 3)  # one receipt created two days ago
MSG_STABLE = sid("IM", 4)  # written to while a client pages
MSG_EMPTY = sid("IM", 5)  # a summary without non-chat receipts
MSG_MIXED = sid("IM", 6)  # rows of both accounts under one message SID
UNKNOWN_MSG = sid("IM", 999)
CONV_B = sid("CH", 3)
MSG_B = sid("IM", 100)  # account B's message


class Clock:
    """When the data was seeded: tests may run long after import, and the stats window is
    relative to the moment of the request."""

    now = datetime.now(UTC).replace(microsecond=0)


STAGES = ("sent", "delivered", "read", "failed", "undelivered")
_REACH = {
    "queued": set(),
    "sent": {"sent"},
    "failed": {"failed"},
    "undelivered": {"sent", "undelivered"},
    "delivered": {"sent", "delivered"},
    "read": {"sent", "delivered", "read"},
}


@dataclass(frozen=True)
class Receipt:
    message_sid: str
    n: int
    status: str
    channel: str = "sms"
    conversation_sid: str = CONV
    service_sid: str | None = SERVICE
    age: timedelta = timedelta(minutes=10)
    account_sid: str = ACCOUNT

    @property
    def participant_sid(self) -> str:
        return sid("MB", self.n)

    @property
    def receipt_sid(self) -> str:
        return sid("DY", self.n)

    @property
    def error_code(self) -> int | None:
        return 30008 if self.status in ("failed", "undelivered") else None

    @property
    def channel_message_sid(self) -> str:
        return sid("WA" if self.channel == "whatsapp" else "SM", self.n)

    @property
    def created(self) -> datetime:
        return Clock.now - self.age

    @property
    def updated(self) -> datetime:
        return self.created + timedelta(seconds=30)

    def row(self) -> tuple[Any, ...]:
        return (
            self.message_sid,
            self.participant_sid,
            self.receipt_sid,
            self.account_sid,
            self.service_sid,
            self.conversation_sid,
            self.channel_message_sid,
            self.channel,
            self.status,
            self.error_code,
            self.created,
            self.updated,
        )


_CYCLE = ("read", "delivered", "sent", "failed", "undelivered", "queued", "read", "delivered")
BIG = [
    Receipt(MSG_BIG, i, _CYCLE[i % len(_CYCLE)], "whatsapp" if i % 3 == 0 else "sms")
    for i in range(1, 121)
]
SUMMARY_EXAMPLE = [
    Receipt(MSG_EXAMPLE, 1000 + i, s)
    for i, s in enumerate(["read", "read", "delivered", "sent", "sent"])
]
OLD = [Receipt(MSG_OLD, 2000, "delivered", "whatsapp", age=timedelta(days=2))]
LONG_AGO = timedelta(days=30)  # outside every stats window
STABLE = [Receipt(MSG_STABLE, 3000 + 10 * i, "sent", age=LONG_AGO) for i in range(25)]
# Account B: its own conversation, recent enough for the stats window.
B_RECEIPTS = [
    Receipt(MSG_B, 5000 + i, s, "whatsapp", conversation_sid=CONV_B, account_sid=ACCOUNT_B)
    for i, s in enumerate(["delivered", "failed", "queued"])
]
# Twilio never makes one message SID in two accounts, but a producer can write anything:
# rows of each account stay invisible to the other even then.
MIXED = [Receipt(MSG_MIXED, 6000 + i, "read", age=LONG_AGO) for i in range(3)] + [
    Receipt(MSG_MIXED, 6100 + i, "sent", age=LONG_AGO, account_sid=ACCOUNT_B) for i in range(2)
]
QUEUED = next(r for r in BIG if r.status == "queued")
HISTORY_RECEIPT = BIG[0]  # n=1: read
HISTORY_PATH = (
    f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts/{HISTORY_RECEIPT.receipt_sid}/History"
)
HISTORY = [("queued", 0), ("sent", 1), ("delivered", 2), ("read", 3), ("undelivered", 1)]

_INSERT_RECEIPT = """
INSERT INTO delivery_receipts (message_sid, participant_sid, receipt_sid, account_sid,
    chat_service_sid, conversation_sid, channel_message_sid, channel, status, error_code,
    date_created, date_updated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""


def counts(receipts: list[Receipt]) -> dict[str, int]:
    out = {"total": len(receipts), **dict.fromkeys(STAGES, 0)}
    for r in receipts:
        for stage in _REACH[r.status]:
            out[stage] += 1
    return out


def word(count: int, total: int) -> str:
    return "none" if count == 0 else "all" if count == total else "some"


async def insert_receipts(conn: asyncpg.Connection, receipts: list[Receipt]) -> None:
    await conn.executemany(_INSERT_RECEIPT, [r.row() for r in receipts])


async def upsert_summary(
    conn: asyncpg.Connection,
    message_sid: str,
    receipts: list[Receipt],
    account_sid: str = ACCOUNT,
    conversation_sid: str = CONV,
) -> None:
    c = counts(receipts)
    await conn.execute(
        """INSERT INTO message_delivery_counts (message_sid, conversation_sid, account_sid,
               chat_service_sid, total, sent_count, delivered_count, read_count, failed_count,
               undelivered_count, version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)
           ON CONFLICT (message_sid) DO UPDATE SET total = excluded.total,
               sent_count = excluded.sent_count, delivered_count = excluded.delivered_count,
               read_count = excluded.read_count, failed_count = excluded.failed_count,
               undelivered_count = excluded.undelivered_count,
               version = message_delivery_counts.version + 1, updated_at = now()""",
        message_sid,
        conversation_sid,
        account_sid,
        SERVICE,
        c["total"],
        *(c[s] for s in STAGES),
    )


async def seed(conn: asyncpg.Connection) -> None:
    Clock.now = datetime.now(UTC).replace(microsecond=0)
    for message_sid, receipts in (
        (MSG_BIG, BIG),
        (MSG_EXAMPLE, SUMMARY_EXAMPLE),
        (MSG_OLD, OLD),
        (MSG_STABLE, STABLE),
    ):
        await insert_receipts(conn, receipts)
        await upsert_summary(conn, message_sid, receipts)
    await upsert_summary(conn, MSG_EMPTY, [])
    await insert_receipts(conn, B_RECEIPTS)
    await upsert_summary(conn, MSG_B, B_RECEIPTS, ACCOUNT_B, CONV_B)
    await insert_receipts(conn, MIXED)
    await upsert_summary(conn, MSG_MIXED, [r for r in MIXED if r.account_sid == ACCOUNT])
    r = HISTORY_RECEIPT
    await conn.executemany(
        """INSERT INTO delivery_receipt_history (message_sid, participant_sid, receipt_sid,
               channel, status, error_code, date_updated)
           VALUES ($1, $2, $3, $4, $5, NULL, $6)""",
        # "undelivered" shares "sent"'s time with a later id: ties are ordered by id.
        [
            (
                r.message_sid,
                r.participant_sid,
                r.receipt_sid,
                r.channel,
                status,
                r.created + timedelta(seconds=s, microseconds=123),
            )
            for status, s in HISTORY
        ],
    )


async def start_server(app: aiohttp.web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    return server


Call = Callable[..., Awaitable[Any]]


def receipts_url(
    base: str, message: str = MSG_BIG, conv: str = CONV, service: str | None = None
) -> str:
    prefix = f"/v1/Services/{service}" if service else "/v1"
    return f"{base}{prefix}/Conversations/{conv}/Messages/{message}/Receipts"
