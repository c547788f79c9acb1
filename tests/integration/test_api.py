"""The REST read API against a real PostgreSQL, driven by Twilio's own helper library.

The library is used unchanged; only its HTTP client is pointed at the local server, so
these tests prove that code written for Twilio's Conversations API reads this API. Every
response, through the library or raw, is validated against Twilio's official OpenAPI
document and the project's docs/openapi.yaml (tests/integration/api_client.py). The API
runs as the CLI serves it: with two accounts' credentials from a file, and only where a
test says so, open.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from devstack._util import free_port
from devstack.postgres import PostgresServer
from tests.integration.api_client import (
    PROJECT_OPENAPI_PATH,
    basic_auth,
    in_thread,
    load_project_openapi,
    load_twilio_openapi,
    twilio_client,
    twilio_document,
    twilio_error,
    validate,
)
from worker.api import Credentials, create_app, serve_api
from worker.api.credentials import load_credentials
from worker.api.paging import Cursor, encode_token
from worker.config import Settings
from worker.migrate import apply_migrations

pytestmark = pytest.mark.integration

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


# -- fixtures -------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def api_dsn(postgres_server: PostgresServer) -> str:
    """A migrated database of its own (other tests share the server)."""
    dsn = postgres_server.create_database(f"api_test_{uuid.uuid4().hex[:12]}")
    await apply_migrations(dsn)
    return dsn


@pytest_asyncio.fixture(scope="module")
async def api_pool(api_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    dsn = api_dsn
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await seed(conn)
    yield pool
    await pool.close()


async def _start(app: aiohttp.web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    return server


@pytest.fixture(scope="module")
def credentials_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two accounts' credentials, in the format a mounted Kubernetes Secret would hold."""
    path = tmp_path_factory.mktemp("api") / "credentials"
    path.write_text(
        f"# accounts of the read API\n\n{ACCOUNT}:{TOKEN}\n{upper(ACCOUNT_B)}:{TOKEN_B}\n"
    )
    return path


@pytest.fixture(scope="module")
def credentials(credentials_file: Path) -> Credentials:
    """What the CLI loads from API_CREDENTIALS_FILE."""
    settings = Settings(
        database_url="postgresql://unused", api_credentials_file=str(credentials_file)
    )
    loaded = load_credentials(settings)
    assert loaded is not None and loaded.accounts == {ACCOUNT, ACCOUNT_B}
    return loaded


@pytest_asyncio.fixture(scope="module")
async def authed_api(api_pool: asyncpg.Pool, credentials: Credentials) -> AsyncIterator[str]:
    """Base URL of the API as it runs by default: every request authenticated and scoped."""
    server = await _start(create_app(api_pool, base_url=None, credentials=credentials))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest_asyncio.fixture(scope="module")
async def open_api(api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Base URL of an API explicitly run without authentication (sees every account)."""
    server = await _start(create_app(api_pool, base_url=None, credentials=None))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def client(authed_api: str) -> Client:
    """Twilio's client, logged in as ACCOUNT, which owns the seeded data (but account B's)."""
    return twilio_client(authed_api, AUTH)


Call = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[Call]:
    """GET a URL, validate the response against the OpenAPI documents, return (status, body)."""
    async with aiohttp.ClientSession() as session:

        async def get(
            url: str,
            auth: tuple[str, str] | None = AUTH,
            *,
            documented: bool = True,
            headers: dict[str, str] | None = None,
        ) -> tuple[int, Any]:
            sent = dict(headers or {})
            if auth:
                sent["Authorization"] = basic_auth(*auth)
            async with session.get(url, headers=sent) as resp:
                raw = await resp.read()
                if documented:
                    validate(url, resp.status, raw, resp.headers)
                return resp.status, await resp.json()

        yield get


def receipts_url(
    base: str, message: str = MSG_BIG, conv: str = CONV, service: str | None = None
) -> str:
    prefix = f"/v1/Services/{service}" if service else "/v1"
    return f"{base}{prefix}/Conversations/{conv}/Messages/{message}/Receipts"


# -- Twilio's helper library ------------------------------------------------------------


async def test_twilio_client_lists_120_receipts_in_pages_of_50(client: Client) -> None:
    receipts_api = client.conversations.v1.conversations(CONV).messages(MSG_BIG).delivery_receipts

    def walk() -> list[list[Any]]:
        pages = []
        page = receipts_api.page(page_size=50)
        while page is not None:
            pages.append(list(page))
            page = page.next_page()
        return pages

    pages = await in_thread(walk)
    assert [len(p) for p in pages] == [50, 50, 20]
    got = [r for p in pages for r in p]
    expected = sorted(BIG, key=lambda r: r.participant_sid)
    assert [r.sid for r in got] == [r.receipt_sid for r in expected]
    first, want = got[0], expected[0]
    assert (first.account_sid, first.conversation_sid, first.message_sid) == (
        ACCOUNT,
        CONV,
        MSG_BIG,
    )
    assert first.participant_sid == want.participant_sid
    assert first.channel_message_sid == want.channel_message_sid
    assert first.status == want.status
    assert first.date_created == want.created
    assert first.date_updated == want.updated


async def test_twilio_list_with_only_a_limit_is_served_in_pages_of_50(client: Client) -> None:
    # The library then asks for PageSize=<limit>; above 50 it is clamped, never refused.
    receipts_api = client.conversations.v1.conversations(CONV).messages(MSG_BIG).delivery_receipts
    got = await in_thread(lambda: receipts_api.list(limit=120))
    assert len({r.sid for r in got}) == 120
    some = await in_thread(lambda: receipts_api.list(limit=7))
    assert [r.sid for r in some] == [r.sid for r in got[:7]]


async def test_twilio_fetches_one_receipt(client: Client) -> None:
    want = next(r for r in BIG if r.status == "failed")
    receipt = await in_thread(
        client.conversations.v1.conversations(CONV)
        .messages(MSG_BIG)
        .delivery_receipts(want.receipt_sid)
        .fetch
    )
    assert receipt.sid == want.receipt_sid
    assert receipt.status == "failed"
    assert receipt.error_code == 30008
    assert receipt.participant_sid == want.participant_sid
    assert receipt.url.endswith(
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts/{want.receipt_sid}"
    )
    ok = next(r for r in BIG if r.status == "read")
    fetched = await in_thread(
        client.conversations.v1.conversations(CONV)
        .messages(MSG_BIG)
        .delivery_receipts(ok.receipt_sid)
        .fetch
    )
    # Twilio's schema: an integer, 0 when there is no error (stored as NULL).
    assert fetched.error_code == 0
    queued = await in_thread(
        client.conversations.v1.conversations(CONV)
        .messages(MSG_BIG)
        .delivery_receipts(QUEUED.receipt_sid)
        .fetch
    )
    # Not yet sent: outside Twilio's status enum, served as null.
    assert queued.status is None and queued.error_code == 0


async def test_twilio_fetches_a_message_delivery_summary(client: Client) -> None:
    message = await in_thread(
        client.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch
    )
    # The example of docs/design.md, "Summary counts", verbatim.
    assert message.delivery == {
        "total": 5,
        "sent": "all",
        "delivered": "some",
        "read": "some",
        "failed": "none",
        "undelivered": "none",
    }
    assert message.sid == MSG_EXAMPLE
    assert message.body is None and message.author is None
    assert message.index == 0  # Twilio's default; the worker cannot know it (docs/api.md)
    assert message.links["delivery_receipts"].endswith(
        f"/v1/Conversations/{CONV}/Messages/{MSG_EXAMPLE}/Receipts"
    )
    big = await in_thread(client.conversations.v1.conversations(CONV).messages(MSG_BIG).fetch)
    c = counts(BIG)
    assert big.delivery == {"total": 120, **{s: word(c[s], 120) for s in STAGES}}
    empty = await in_thread(client.conversations.v1.conversations(CONV).messages(MSG_EMPTY).fetch)
    assert empty.delivery is None


async def test_twilio_service_scoped_paths(client: Client) -> None:
    scoped = client.conversations.v1.services(SERVICE).conversations(CONV).messages(MSG_BIG)
    got = await in_thread(lambda: scoped.delivery_receipts.list(page_size=50))
    assert len(got) == 120
    assert got[0].url.startswith(got[0].url.split("/v1/")[0] + f"/v1/Services/{SERVICE}/")
    one = await in_thread(scoped.delivery_receipts(BIG[5].receipt_sid).fetch)
    assert one.participant_sid == BIG[5].participant_sid
    message = await in_thread(
        client.conversations.v1.services(SERVICE).conversations(CONV).messages(MSG_EXAMPLE).fetch
    )
    assert message.delivery["total"] == 5
    other = client.conversations.v1.services(OTHER_SERVICE).conversations(CONV).messages(MSG_BIG)
    with pytest.raises(TwilioException) as info:
        await in_thread(lambda: other.delivery_receipts.list())
    assert twilio_error(info.value) == (404, 20404)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.conversations.v1.conversations(CONV).messages(UNKNOWN_MSG).fetch(),
        lambda c: c.conversations.v1.conversations(OTHER_CONV).messages(MSG_BIG).fetch(),
        lambda c: (
            c.conversations.v1.conversations(CONV).messages(UNKNOWN_MSG).delivery_receipts.list()
        ),
        lambda c: (
            c.conversations.v1.conversations(CONV)
            .messages(MSG_BIG)
            .delivery_receipts(sid("DY", 9999))
            .fetch()
        ),
        # A receipt of another message is not this message's receipt.
        lambda c: (
            c.conversations.v1.conversations(CONV)
            .messages(MSG_EXAMPLE)
            .delivery_receipts(BIG[0].receipt_sid)
            .fetch()
        ),
    ],
)
async def test_twilio_sees_404_for_unknown_sids(
    client: Client, call: Callable[[Client], Any]
) -> None:
    with pytest.raises(TwilioException) as info:
        await in_thread(lambda: call(client))
    assert twilio_error(info.value) == (404, 20404)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.conversations.v1.conversations("CH123").messages(MSG_BIG).fetch(),
        lambda c: c.conversations.v1.conversations(MSG_BIG).messages(MSG_BIG).fetch(),
        lambda c: (
            c.conversations.v1.conversations(CONV).messages(sid("MM", 1)).delivery_receipts.list()
        ),
        lambda c: (
            c.conversations.v1.conversations(CONV)
            .messages(MSG_BIG)
            .delivery_receipts(sid("dy", 1))
            .fetch()
        ),
        lambda c: (
            c.conversations.v1.services(sid("CH", 1)).conversations(CONV).messages(MSG_BIG).fetch()
        ),
    ],
)
async def test_twilio_sees_400_for_malformed_sids(
    client: Client, call: Callable[[Client], Any]
) -> None:
    with pytest.raises(TwilioException) as info:
        await in_thread(lambda: call(client))
    assert twilio_error(info.value) == (400, 20001)


async def test_auth_required(authed_api: str, http: Call) -> None:
    good = twilio_client(authed_api, AUTH)
    message = await in_thread(good.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch)
    assert message.delivery["total"] == 5
    # A wrong token, another account's token, an unknown account, an empty login.
    for creds in [(ACCOUNT, "wrong"), (ACCOUNT, TOKEN_B), (sid("AC", 3), TOKEN), ("", "")]:
        bad = twilio_client(authed_api, creds)
        with pytest.raises(TwilioRestException) as info:
            await in_thread(bad.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch)
        assert (info.value.status, info.value.code) == (401, 20003)
    status, body = await http(f"{authed_api}/v1/DeliveryStats", auth=None)
    assert (status, body["code"]) == (401, 20003)
    # Even a 404 path is not revealed without credentials.
    status, _ = await http(f"{authed_api}/v1/Nope", auth=None, documented=False)
    assert status == 401
    status, body = await http(f"{authed_api}/healthz", auth=None)
    assert (status, body) == (200, {"status": "ok"})
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{authed_api}/v1/DeliveryStats") as resp,
    ):
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")


async def test_open_api_accepts_any_or_no_credentials_and_sees_every_account(
    open_api: str, http: Call
) -> None:
    status, _ = await http(receipts_url(open_api), auth=None)
    assert status == 200
    status, _ = await http(receipts_url(open_api), auth=("x", "y"))
    assert status == 200
    status, body = await http(receipts_url(open_api, MSG_B, CONV_B), auth=None)
    assert status == 200 and len(body["delivery_receipts"]) == len(B_RECEIPTS)
    _, mixed = await http(receipts_url(open_api, MSG_MIXED), auth=None)
    assert len(mixed["delivery_receipts"]) == len(MIXED)


# -- accounts: each sees its own data only ------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.conversations.v1.conversations(CONV_B).messages(MSG_B).fetch(),
        lambda c: c.conversations.v1.conversations(CONV_B).messages(MSG_B).delivery_receipts.list(),
        lambda c: (
            c.conversations.v1.conversations(CONV_B)
            .messages(MSG_B)
            .delivery_receipts(B_RECEIPTS[0].receipt_sid)
            .fetch()
        ),
        lambda c: (
            c.conversations.v1.services(SERVICE)
            .conversations(CONV_B)
            .messages(MSG_B)
            .delivery_receipts(B_RECEIPTS[0].receipt_sid)
            .fetch()
        ),
        # B's receipt under a message SID that A also has.
        lambda c: (
            c.conversations.v1.conversations(CONV)
            .messages(MSG_MIXED)
            .delivery_receipts(MIXED[-1].receipt_sid)
            .fetch()
        ),
    ],
)
async def test_another_accounts_data_is_404(authed_api: str, call: Callable[[Client], Any]) -> None:
    client_a = twilio_client(authed_api, AUTH)
    with pytest.raises(TwilioException) as info:
        await in_thread(lambda: call(client_a))
    assert twilio_error(info.value) == (404, 20404)


async def test_each_account_lists_only_its_own(authed_api: str, http: Call) -> None:
    client_b = twilio_client(authed_api, AUTH_B)
    b_message = client_b.conversations.v1.conversations(CONV_B).messages(MSG_B)
    mine = await in_thread(lambda: b_message.delivery_receipts.list())
    assert sorted(r.sid for r in mine) == sorted(r.receipt_sid for r in B_RECEIPTS)
    assert {r.account_sid for r in mine} == {ACCOUNT_B}
    assert (await in_thread(b_message.fetch)).account_sid == ACCOUNT_B
    # Account A's data is as absent for B as B's is for A.
    with pytest.raises(TwilioException) as info:
        await in_thread(client_b.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch)
    assert twilio_error(info.value) == (404, 20404)
    # One message SID with rows of both accounts: each lists only its own rows.
    for auth, account in ((AUTH, ACCOUNT), (AUTH_B, ACCOUNT_B)):
        _, page = await http(receipts_url(authed_api, MSG_MIXED), auth=auth)
        want = sorted(r.receipt_sid for r in MIXED if r.account_sid == account)
        assert sorted(r["sid"] for r in page["delivery_receipts"]) == want
    # The history of B's receipt, through A's eyes.
    history = f"{receipts_url(authed_api, MSG_B, CONV_B)}/{B_RECEIPTS[0].receipt_sid}/History"
    assert (await http(history, auth=AUTH))[0] == 404
    assert (await http(history, auth=AUTH_B))[0] == 200
    # Stats count the caller's receipts only.
    _, stats_b = await http(f"{authed_api}/v1/DeliveryStats?Window=PT1H", auth=AUTH_B)
    assert stats_b["channels"] == [
        {
            "channel": "whatsapp",
            **counts(B_RECEIPTS),
            "delivered_ratio": pytest.approx(1 / 3),
            "read_ratio": 0.0,
        }
    ]


# -- raw HTTP: paging, history, stats, errors ------------------------------------------


async def test_meta_and_previous_page(authed_api: str, http: Call) -> None:
    url = receipts_url(authed_api)
    status, first = await http(url + "?PageSize=50")
    assert status == 200
    meta = first["meta"]
    assert meta["key"] == "delivery_receipts"
    assert (meta["page"], meta["page_size"], meta["previous_page_url"]) == (0, 50, None)
    assert meta["first_page_url"] == url + "?PageSize=50&Page=0"
    _, second = await http(meta["next_page_url"])
    assert second["meta"]["page"] == 1
    _, third = await http(second["meta"]["next_page_url"])
    assert third["meta"]["next_page_url"] is None and len(third["delivery_receipts"]) == 20
    _, back = await http(third["meta"]["previous_page_url"])
    assert back["delivery_receipts"] == second["delivery_receipts"]
    assert back["meta"]["page"] == 1
    _, back_again = await http(back["meta"]["previous_page_url"])
    assert back_again["delivery_receipts"] == first["delivery_receipts"]
    assert back_again["meta"]["previous_page_url"] is None
    _, default = await http(url)
    assert default["meta"]["page_size"] == 50
    _, clamped = await http(url + "?PageSize=500")
    assert clamped["meta"]["page_size"] == 50 and len(clamped["delivery_receipts"]) == 50


async def test_paging_is_stable_while_the_worker_writes(
    authed_api: str, http: Call, api_pool: asyncpg.Pool
) -> None:
    url = receipts_url(authed_api, MSG_STABLE)
    _, page = await http(url + "?PageSize=10")
    seen = [r["participant_sid"] for r in page["delivery_receipts"]]
    cursor = seen[-1]
    # Meanwhile: one new receipt sorts before the cursor, one after; all existing rows change.
    before = Receipt(MSG_STABLE, 3000 + 1, "sent", age=LONG_AGO)
    after = Receipt(MSG_STABLE, 3000 + 10 * 24 + 5, "sent", age=LONG_AGO)
    assert before.participant_sid < cursor < after.participant_sid
    async with api_pool.acquire() as conn:
        await insert_receipts(conn, [before, after])
        await conn.execute(
            "UPDATE delivery_receipts SET status = 'delivered', updated_at = now()"
            " WHERE message_sid = $1",
            MSG_STABLE,
        )
    next_url = page["meta"]["next_page_url"]
    while next_url:
        _, page = await http(next_url)
        seen += [r["participant_sid"] for r in page["delivery_receipts"]]
        next_url = page["meta"]["next_page_url"]
    original = [r.participant_sid for r in STABLE]
    assert sorted(seen) == seen
    assert len(seen) == len(set(seen))
    assert set(original) <= set(seen)
    assert after.participant_sid in seen and before.participant_sid not in seen


async def test_history_lists_every_status_change_in_order(authed_api: str, http: Call) -> None:
    r = HISTORY_RECEIPT
    url = f"{receipts_url(authed_api)}/{r.receipt_sid}/History"
    status, body = await http(url)
    assert status == 200
    assert [h["status"] for h in body["history"]] == [
        "queued",
        "sent",
        "undelivered",
        "delivered",
        "read",
    ]
    assert body["history"][0]["date_updated"] == (r.created + timedelta(microseconds=123)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    assert body["meta"]["key"] == "history"
    paged: list[dict[str, Any]] = []
    next_url: str | None = url + "?PageSize=2"
    while next_url:
        _, page = await http(next_url)
        assert len(page["history"]) <= 2
        paged += page["history"]
        next_url = page["meta"]["next_page_url"]
    assert paged == body["history"]
    _, none = await http(f"{receipts_url(authed_api)}/{BIG[1].receipt_sid}/History")
    assert none["history"] == []
    status, err = await http(f"{receipts_url(authed_api)}/{sid('DY', 9999)}/History")
    assert (status, err["code"]) == (404, 20404)
    scoped = f"{receipts_url(authed_api, service=SERVICE)}/{r.receipt_sid}/History"
    _, same = await http(scoped)
    assert same["history"] == body["history"]


async def test_delivery_stats_per_channel(authed_api: str, http: Call) -> None:
    status, hour = await http(f"{authed_api}/v1/DeliveryStats?Window=PT1H")
    assert status == 200
    assert hour["window"] == "PT1H"
    recent = BIG + SUMMARY_EXAMPLE
    for row in hour["channels"]:
        mine = [r for r in recent if r.channel == row["channel"]]
        c = counts(mine)
        assert {k: row[k] for k in ("total", *STAGES)} == c
        assert row["delivered_ratio"] == pytest.approx(c["delivered"] / c["total"])
        assert row["read_ratio"] == pytest.approx(c["read"] / c["total"])
    assert [r["channel"] for r in hour["channels"]] == ["sms", "whatsapp"]
    _, week = await http(f"{authed_api}/v1/DeliveryStats?Window=P7D")
    whatsapp = next(r for r in week["channels"] if r["channel"] == "whatsapp")
    assert whatsapp["total"] == len([r for r in recent + OLD if r.channel == "whatsapp"])
    _, default = await http(f"{authed_api}/v1/DeliveryStats")
    assert default["window"] == "PT1H"
    _, canonical = await http(f"{authed_api}/v1/DeliveryStats?Window=PT90M")
    assert canonical["window"] == "PT1H30M"


@pytest.mark.parametrize(
    "suffix",
    [
        "/v1/DeliveryStats?Window=P8D",
        "/v1/DeliveryStats?Window=1h",
        "/v1/DeliveryStats?Window=P1M",
        "/v1/DeliveryStats?Window=PT0S",
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts?PageSize=0",
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts?PageSize=abc",
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts?Page=-1",
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts?PageToken=garbage!",
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts?PageToken=eyJkIjoibiIsImsiOlsxXX0",
        f"/v1/Conversations/CHzz/Messages/{MSG_BIG}/Receipts",
        # A receipts-list token is not a history token, nor is a non-time key.
        f"{HISTORY_PATH}?PageToken={encode_token(Cursor(True, (sid('MB', 1),)))}",
        f"{HISTORY_PATH}?PageToken={encode_token(Cursor(True, ('yesterday', 1)))}",
        f"{HISTORY_PATH}?PageToken={encode_token(Cursor(True, ('2024-01-01T00:00:00', 1)))}",
    ],
)
async def test_bad_values_are_400_with_twilio_error_body(
    authed_api: str, http: Call, suffix: str
) -> None:
    status, body = await http(authed_api + suffix)
    assert status == 400
    assert body["code"] == 20001 and body["status"] == 400
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"


def forge(doc: Any) -> str:
    """A PageToken made by hand, in the API's encoding, holding anything."""
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


RECEIPTS_PATH = f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts"
_FORGED_TOKENS = [
    # Receipts sort by participant SID: anything else is not a position in that list.
    (RECEIPTS_PATH, forge({"d": "n", "k": ["MB\u0000"]})),
    (RECEIPTS_PATH, forge({"d": "n", "k": ["\ud800"]})),
    (RECEIPTS_PATH, forge({"d": "p", "k": ["' OR 1=1 --"]})),
    (RECEIPTS_PATH, forge({"d": "n", "k": [sid("DY", 1)]})),
    (RECEIPTS_PATH, forge({"d": "n", "k": [2**64]})),
    (RECEIPTS_PATH, forge({"d": "n", "k": [sid("MB", 1), 1]})),
    (RECEIPTS_PATH, forge({"d": "n", "k": None})),
    (RECEIPTS_PATH, forge({"d": "x", "k": [sid("MB", 1)]})),
    (RECEIPTS_PATH, forge([sid("MB", 1)])),
    (RECEIPTS_PATH, encode_token(Cursor(True, (sid("MB", 1),)))[:-3]),  # truncated
    (RECEIPTS_PATH, "%F0%9F%92%A9"),  # not base64 at all
    (RECEIPTS_PATH, "A" * 2000),
    # History sorts by (date_updated, id): exactly the form this API writes, a bigint id.
    (HISTORY_PATH, forge({"d": "n", "k": ["2024-01-01T00:00:00.000000Z", 2**63]})),
    (HISTORY_PATH, forge({"d": "n", "k": ["2024-01-01T00:00:00.000000Z", -1]})),
    (HISTORY_PATH, forge({"d": "n", "k": ["2024-02-30T00:00:00.000000Z", 1]})),
    (HISTORY_PATH, forge({"d": "n", "k": ["0001-01-01T00:00:00+01:00", 1]})),
    (HISTORY_PATH, forge({"d": "n", "k": ["2024-01-01T00:00:00.000000Z", "1"]})),
    (HISTORY_PATH, forge({"d": "p", "k": ["2024-01-01T00:00:00.000000Z\u0000", 1]})),
]


@pytest.mark.parametrize(("path", "token"), _FORGED_TOKENS)
async def test_forged_page_tokens_are_400_never_500(
    authed_api: str, http: Call, path: str, token: str
) -> None:
    status, body = await http(f"{authed_api}{path}?PageToken={token}")
    assert (status, body["code"], body["status"]) == (400, 20001, 400)
    assert body["message"].startswith("Invalid PageToken")


async def test_unknown_path_and_method(authed_api: str, http: Call) -> None:
    status, body = await http(f"{authed_api}/v1/Conversations", documented=False)
    assert (status, body["code"], body["status"]) == (404, 20404, 404)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            receipts_url(authed_api), headers={"Authorization": basic_auth(*AUTH)}
        ) as resp,
    ):
        assert resp.status == 405
        assert (await resp.json())["code"] == 20004


async def test_upper_case_sids_in_paths_find_the_stored_ones(authed_api: str) -> None:
    # Twilio's SID pattern allows either case of hex; the read model stores lower case.
    client = twilio_client(authed_api, (upper(ACCOUNT), TOKEN))
    want = BIG[7]
    message = client.conversations.v1.conversations(upper(CONV)).messages(upper(MSG_BIG))
    receipt = await in_thread(message.delivery_receipts(upper(want.receipt_sid)).fetch)
    assert (receipt.sid, receipt.participant_sid) == (want.receipt_sid, want.participant_sid)
    assert receipt.url.endswith(
        f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts/{want.receipt_sid}"
    )
    got = await in_thread(lambda: message.delivery_receipts.list(page_size=50))
    assert len(got) == len(BIG)
    summary = await in_thread(message.fetch)
    assert summary.sid == MSG_BIG and summary.delivery["total"] == len(BIG)
    scoped = client.conversations.v1.services(upper(SERVICE)).conversations(upper(CONV))
    one = await in_thread(scoped.messages(upper(MSG_EXAMPLE)).fetch)
    assert one.url.endswith(f"/v1/Services/{SERVICE}/Conversations/{CONV}/Messages/{MSG_EXAMPLE}")


def _twilio_fields(schema_name: str) -> set[str]:
    return set(twilio_document()["components"]["schemas"][schema_name]["properties"])


_RECEIPT_SCHEMA = "conversations.v1.conversation.conversation_message.conversation_message_receipt"
_SERVICE_RECEIPT_SCHEMA = (
    "conversations.v1.service.service_conversation.service_conversation_message"
    ".service_conversation_message_receipt"
)
_MESSAGE_SCHEMA = "conversations.v1.conversation.conversation_message"
_SERVICE_MESSAGE_SCHEMA = (
    "conversations.v1.service.service_conversation.service_conversation_message"
)


async def test_responses_carry_every_field_twilio_defines(authed_api: str, http: Call) -> None:
    message = f"{authed_api}/v1/Conversations/{CONV}/Messages/{MSG_BIG}"
    service_message = f"{authed_api}/v1/Services/{SERVICE}/Conversations/{CONV}/Messages/{MSG_BIG}"
    for url, schema in [
        (f"{message}/Receipts/{QUEUED.receipt_sid}", _RECEIPT_SCHEMA),
        (f"{service_message}/Receipts/{QUEUED.receipt_sid}", _SERVICE_RECEIPT_SCHEMA),
        (message, _MESSAGE_SCHEMA),
        (service_message, _SERVICE_MESSAGE_SCHEMA),
    ]:
        status, body = await http(url)
        assert status == 200
        missing = _twilio_fields(schema) - set(body)
        assert not missing, (url, missing)
    _, page = await http(f"{message}/Receipts")
    for receipt in page["delivery_receipts"]:
        assert _twilio_fields(_RECEIPT_SCHEMA) <= set(receipt)
        assert isinstance(receipt["error_code"], int)
        assert receipt["status"] in ("sent", "delivered", "read", "failed", "undelivered", None)
    assert {r["status"] for r in page["delivery_receipts"]} >= {None, "read"}


async def test_public_base_url_in_every_url(
    api_pool: asyncpg.Pool, credentials: Credentials, http: Call
) -> None:
    server = await _start(create_app(api_pool, base_url=PUBLIC_BASE + "/", credentials=credentials))
    try:
        local = str(server.make_url("")).rstrip("/")
        # Twilio's library follows next_page_url as served: to the public base URL, which
        # this client maps back to the local server (as a proxy in front would do).
        client = twilio_client(local, AUTH, aliases=(PUBLIC_BASE,))
        receipts_api = (
            client.conversations.v1.conversations(CONV).messages(MSG_BIG).delivery_receipts
        )

        def walk() -> tuple[list[Any], list[str | None]]:
            records, next_urls = [], []
            page = receipts_api.page(page_size=50)
            while page is not None:
                records += list(page)
                next_urls.append(page.next_page_url)
                page = page.next_page()
            return records, next_urls

        records, next_urls = await in_thread(walk)
        assert len(records) == len(BIG)
        assert next_urls[-1] is None
        assert all(
            u is not None and u.startswith(f"{PUBLIC_BASE}/v1/Conversations/")
            for u in next_urls[:-1]
        )
        assert all(r.url.startswith(f"{PUBLIC_BASE}/v1/") for r in records)
        message = await in_thread(
            client.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch
        )
        assert message.url == f"{PUBLIC_BASE}/v1/Conversations/{CONV}/Messages/{MSG_EXAMPLE}"
        assert message.links["delivery_receipts"] == message.url + "/Receipts"
        # The Host header a client sends changes nothing.
        _, body = await http(receipts_url(local), headers={"Host": "attacker.example"})
        meta = body["meta"]
        for key in ("url", "first_page_url", "next_page_url"):
            assert meta[key].startswith(f"{PUBLIC_BASE}/v1/"), key
        _, _, query = meta["next_page_url"].partition("?")
        _, second = await http(f"{receipts_url(local)}?{query}")
        assert second["meta"]["previous_page_url"].startswith(f"{PUBLIC_BASE}/v1/")
    finally:
        await server.close()


async def test_database_down_is_503() -> None:
    # Nothing listens there: the pool cannot connect, the API answers, retryably.
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0)
    server = await _start(create_app(pool, base_url=None, credentials=None))
    try:
        url = receipts_url(str(server.make_url("")).rstrip("/"))
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            raw = await resp.read()
            validate(url, resp.status, raw, resp.headers)
            assert resp.status == 503
    finally:
        await server.close()
        await pool.close()


def test_both_openapi_documents_load() -> None:
    twilio = twilio_document()
    assert twilio["info"]["title"] == "Twilio - Conversations" and twilio["openapi"] == "3.0.1"
    assert load_twilio_openapi() is not None and load_project_openapi() is not None


def test_openapi_documents_exactly_the_served_routes() -> None:
    import yaml

    documented = set(yaml.safe_load(PROJECT_OPENAPI_PATH.read_text())["paths"])
    app = create_app(None, base_url=None, credentials=None)  # type: ignore[arg-type]
    served = {
        r.resource.canonical
        for r in app.router.routes()
        if r.method == "GET" and r.resource is not None
    }
    assert served == documented


async def test_serve_api_serves_until_stopped(api_dsn: str, api_pool: asyncpg.Pool) -> None:
    """The entry point the CLI calls: own pool, real socket, clean exit when stop is set."""
    port = free_port()
    stop = asyncio.Event()
    credentials = Credentials(((ACCOUNT, TOKEN.encode()),))
    task = asyncio.create_task(serve_api(api_dsn, "127.0.0.1", port, credentials, stop))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"{base}/healthz") as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("serve_api never listened")
    client = twilio_client(base, AUTH)
    message = await in_thread(
        client.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch
    )
    assert message.delivery["total"] == 5
    stop.set()
    await asyncio.wait_for(task, timeout=15)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{base}/healthz")


# -- the CLI process: secure by default, open only when told, access log, /metrics ------------


def cli_env(**settings: str) -> dict[str, str]:
    """The environment of an `api` process: this one's without any API_* setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_")}
    return {**env, "LOG_LEVEL": "INFO", "API_HOST": "127.0.0.1", **settings}


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run `python -m worker ARGS` to its exit: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class ApiProcess:
    """`python -m worker api` serving on a free port until stop(); output goes to a file
    (a pipe nobody reads could fill up and block the server)."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = args
        self.env = {**env, "API_PORT": str(self.port)}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker",
                "api",
                *self.args,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                try:
                    async with session.get(f"{self.base}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                if self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        pytest.fail(f"the api process never listened:\n{self.output()}")

    async def stop(self) -> int:
        """SIGTERM, then the exit code (killed if it does not exit in time)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text()

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]


_NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


async def test_cli_refuses_to_start_without_credentials() -> None:
    code, out, err = await run_cli("api", env=cli_env(DATABASE_URL=_NO_DATABASE))
    assert code == 2, (out, err)
    for name in (
        "API_AUTH_ACCOUNT_SID",
        "API_AUTH_TOKEN",
        "API_CREDENTIALS_FILE",
        "API_AUTH_DISABLED",
        "--insecure-no-auth",
    ):
        assert name in err
    # Refused before anything listens or connects.
    assert "api listening" not in out


async def test_cli_refuses_a_bad_credentials_file_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(f"# ok so far\n{ACCOUNT}:{TOKEN}\nAC123:{TOKEN_B}\n")
    env = cli_env(DATABASE_URL=_NO_DATABASE, API_CREDENTIALS_FILE=str(path))
    code, out, err = await run_cli("api", env=env)
    assert code == 2
    assert f"API_CREDENTIALS_FILE {path} line 3:" in err
    assert TOKEN not in out + err and TOKEN_B not in out + err
    # Credentials and the open switch together are ambiguous: refused too.
    code, _, err = await run_cli("api", "--insecure-no-auth", env=env)
    assert code == 2 and "choose one" in err


async def test_cli_runs_open_only_when_told(api_dsn: str, tmp_path: Path) -> None:
    api = ApiProcess(tmp_path / "api.log", "--insecure-no-auth", env=cli_env(DATABASE_URL=api_dsn))
    try:
        await api.start()
        async with aiohttp.ClientSession() as session:
            # No credentials, and every account's data.
            for url in (receipts_url(api.base), receipts_url(api.base, MSG_B, CONV_B)):
                async with session.get(url) as resp:
                    assert resp.status == 200
    finally:
        assert await api.stop() == 0
    warnings = [line for line in api.log_lines() if line["level"] == "warning"]
    assert any("DISABLED" in line["message"] for line in warnings), api.output()


async def test_cli_serves_accounts_from_a_file_with_access_log_and_metrics(
    api_dsn: str, credentials_file: Path, tmp_path: Path
) -> None:
    env = cli_env(
        DATABASE_URL=api_dsn,
        API_CREDENTIALS_FILE=str(credentials_file),
        API_PUBLIC_BASE_URL=PUBLIC_BASE,
    )
    api = ApiProcess(tmp_path / "api.log", env=env)
    try:
        await api.start()
        client_a = twilio_client(api.base, AUTH, aliases=(PUBLIC_BASE,))
        client_b = twilio_client(api.base, AUTH_B, aliases=(PUBLIC_BASE,))
        receipts_api = client_a.conversations.v1.conversations(CONV).messages(MSG_BIG)
        got = await in_thread(lambda: receipts_api.delivery_receipts.list(page_size=50))
        assert len(got) == len(BIG) and got[0].url.startswith(f"{PUBLIC_BASE}/v1/")
        with pytest.raises(TwilioException) as info:
            await in_thread(client_b.conversations.v1.conversations(CONV).messages(MSG_BIG).fetch)
        assert twilio_error(info.value) == (404, 20404)
        wrong = twilio_client(api.base, (ACCOUNT, TOKEN_B))
        with pytest.raises(TwilioRestException) as refused:
            await in_thread(wrong.conversations.v1.conversations(CONV).messages(MSG_BIG).fetch)
        assert refused.value.status == 401
        async with aiohttp.ClientSession() as session, session.get(f"{api.base}/metrics") as resp:
            assert resp.status == 200
            metrics = await resp.text()
    finally:
        assert await api.stop() == 0

    receipts_route = "/v1/Conversations/{ConversationSid}/Messages/{MessageSid}/Receipts"
    message_route = "/v1/Conversations/{ConversationSid}/Messages/{MessageSid}"
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    pages = -(-len(BIG) // 50)
    assert (
        samples[f'delivery_api_requests_total{{route="{receipts_route}",status_class="2xx"}}']
        == pages
    )
    assert (
        samples[f'delivery_api_requests_total{{route="{message_route}",status_class="4xx"}}'] == 2
    )
    assert (
        samples[f'delivery_api_request_duration_seconds_count{{route="{receipts_route}"}}'] == pages
    )
    assert samples["delivery_api_auth_failures_total"] == 1
    assert not any(s.startswith("delivery_api_requests_created") for s in samples)
    # Bounded labels: no SID anywhere in the series.
    for value in (ACCOUNT, ACCOUNT_B, CONV, MSG_BIG):
        assert value not in metrics

    access = [line for line in api.log_lines() if line["logger"] == "worker.api.access"]
    lists = [a for a in access if a["route"] == receipts_route]
    assert len(lists) == pages
    first = lists[0]
    assert first["method"] == "GET" and first["status"] == 200
    assert first["path"] == f"/v1/Conversations/{CONV}/Messages/{MSG_BIG}/Receipts"
    assert first["account_sid"] == ACCOUNT and first["duration_ms"] >= 0
    assert {(a["status"], a["account_sid"]) for a in access if a["route"] == message_route} == {
        (404, ACCOUNT_B),
        (401, None),
    }
    # /healthz polls and the /metrics scrape are counted, not logged.
    assert not [a for a in access if a["path"] in ("/healthz", "/metrics")]
    output = api.output()
    for secret in (TOKEN, TOKEN_B, basic_auth(*AUTH), "Authorization", "PageToken"):
        assert secret not in output, secret
