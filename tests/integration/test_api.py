"""The REST read API against a real PostgreSQL, driven by Twilio's own helper library.

The library is used unchanged; only its HTTP client is pointed at the local server, so
these tests prove that code written for Twilio's Conversations API reads this API.
Every raw response is also validated against docs/openapi.yaml.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from devstack._util import free_port
from devstack.postgres import PostgresServer
from worker.api import create_app, serve_api
from worker.api.paging import Cursor, encode_token
from worker.migrate import apply_migrations

pytestmark = pytest.mark.integration

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
TWILIO_ORIGIN = "https://conversations.twilio.com"
# Any valid-looking credentials: they are checked only by the auth-enabled server.
AUTH = ("AC" + "a" * 32, "s3cret-token")


def sid(prefix: str, n: int) -> str:
    return f"{prefix}{n:032x}"


ACCOUNT = sid("AC", 1)
SERVICE = sid("IS", 1)
OTHER_SERVICE = sid("IS", 2)
CONV = sid("CH", 1)
OTHER_CONV = sid("CH", 2)
MSG_BIG = sid("IM", 1)  # 120 receipts
MSG_SPEC = sid("IM", 2)  # SPEC §4's example: 5 receipts
MSG_OLD = sid("IM", 3)  # one receipt created two days ago
MSG_STABLE = sid("IM", 4)  # written to while a client pages
MSG_EMPTY = sid("IM", 5)  # a summary without non-chat receipts
UNKNOWN_MSG = sid("IM", 999)


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
            ACCOUNT,
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
SPEC_EXAMPLE = [
    Receipt(MSG_SPEC, 1000 + i, s)
    for i, s in enumerate(["read", "read", "delivered", "sent", "sent"])
]
OLD = [Receipt(MSG_OLD, 2000, "delivered", "whatsapp", age=timedelta(days=2))]
LONG_AGO = timedelta(days=30)  # outside every stats window
STABLE = [Receipt(MSG_STABLE, 3000 + 10 * i, "sent", age=LONG_AGO) for i in range(25)]
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
    conn: asyncpg.Connection, message_sid: str, receipts: list[Receipt]
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
        CONV,
        ACCOUNT,
        SERVICE,
        c["total"],
        *(c[s] for s in STAGES),
    )


async def seed(conn: asyncpg.Connection) -> None:
    Clock.now = datetime.now(UTC).replace(microsecond=0)
    for message_sid, receipts in (
        (MSG_BIG, BIG),
        (MSG_SPEC, SPEC_EXAMPLE),
        (MSG_OLD, OLD),
        (MSG_STABLE, STABLE),
    ):
        await insert_receipts(conn, receipts)
        await upsert_summary(conn, message_sid, receipts)
    await upsert_summary(conn, MSG_EMPTY, [])
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


@pytest_asyncio.fixture(scope="module")
async def open_api(api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Base URL of an API without authentication."""
    server = await _start(create_app(api_pool, base_url=None, auth=None))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest_asyncio.fixture(scope="module")
async def authed_api(api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Base URL of an API that requires AUTH."""
    server = await _start(create_app(api_pool, base_url=None, auth=AUTH))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(OPENAPI_PATH))


class LocalHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, sending what it meant for Twilio to the local server."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_ORIGIN):
            url = self.base_url + url[len(TWILIO_ORIGIN) :]
        return super().request(method, url, *args, **kwargs)


def twilio_client(base_url: str, auth: tuple[str, str] = AUTH) -> Client:
    return Client(auth[0], auth[1], http_client=LocalHttpClient(base_url))


@pytest.fixture
def client(open_api: str) -> Client:
    return twilio_client(open_api)


Call = Callable[..., Awaitable[Any]]


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def twilio_error(exc: TwilioException) -> tuple[int, int]:
    """(HTTP status, Twilio code) of what the library raised.

    Fetches raise TwilioRestException; list pages raise a bare TwilioException carrying the
    response (the library's own behaviour against Twilio too).
    """
    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code
    response = exc.args[1]
    return response.status_code, json.loads(response.text)["code"]


async def in_thread(fn: Callable[[], Any]) -> Any:
    """The twilio client is synchronous; the server runs on this test's loop."""
    return await asyncio.to_thread(fn)


@pytest_asyncio.fixture
async def http(openapi: OpenAPI) -> AsyncIterator[Call]:
    """GET a URL, validate the response against the OpenAPI document, return (status, body)."""
    async with aiohttp.ClientSession() as session:

        async def get(
            url: str, auth: tuple[str, str] | None = None, *, documented: bool = True
        ) -> tuple[int, Any]:
            headers = {"Authorization": basic_auth(*auth)} if auth else {}
            async with session.get(url, headers=headers) as resp:
                raw = await resp.read()
                if documented:
                    validate(openapi, url, resp.status, raw, dict(resp.headers))
                return resp.status, await resp.json()

        yield get


def validate(openapi: OpenAPI, url: str, status: int, body: bytes, headers: dict[str, str]) -> None:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    # The documented server; openapi-core routes by it, the real host does not matter.
    request = MockRequest("http://localhost:8000", "get", parts.path, args=query)
    response = MockResponse(body, status_code=status, headers=headers)
    openapi.validate_response(request, response)


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
    assert fetched.error_code is None


async def test_twilio_fetches_a_message_delivery_summary(client: Client) -> None:
    message = await in_thread(client.conversations.v1.conversations(CONV).messages(MSG_SPEC).fetch)
    # SPEC §4's example, verbatim.
    assert message.delivery == {
        "total": 5,
        "sent": "all",
        "delivered": "some",
        "read": "some",
        "failed": "none",
        "undelivered": "none",
    }
    assert message.sid == MSG_SPEC
    assert message.body is None and message.author is None and message.index is None
    assert message.links["delivery_receipts"].endswith(
        f"/v1/Conversations/{CONV}/Messages/{MSG_SPEC}/Receipts"
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
        client.conversations.v1.services(SERVICE).conversations(CONV).messages(MSG_SPEC).fetch
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
            .messages(MSG_SPEC)
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


async def test_auth_required_when_configured(authed_api: str, http: Call) -> None:
    good = twilio_client(authed_api, AUTH)
    message = await in_thread(good.conversations.v1.conversations(CONV).messages(MSG_SPEC).fetch)
    assert message.delivery["total"] == 5
    for creds in [(AUTH[0], "wrong"), (sid("AC", 2), AUTH[1])]:
        bad = twilio_client(authed_api, creds)
        with pytest.raises(TwilioRestException) as info:
            await in_thread(bad.conversations.v1.conversations(CONV).messages(MSG_SPEC).fetch)
        assert (info.value.status, info.value.code) == (401, 20003)
    status, body = await http(f"{authed_api}/v1/DeliveryStats")
    assert (status, body["code"]) == (401, 20003)
    # Even a 404 path is not revealed without credentials.
    status, _ = await http(f"{authed_api}/v1/Nope", documented=False)
    assert status == 401
    status, body = await http(f"{authed_api}/healthz")
    assert (status, body) == (200, {"status": "ok"})
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{authed_api}/v1/DeliveryStats") as resp,
    ):
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")


async def test_auth_off_accepts_any_or_no_credentials(open_api: str, http: Call) -> None:
    status, _ = await http(receipts_url(open_api))
    assert status == 200
    status, _ = await http(receipts_url(open_api), auth=("x", "y"))
    assert status == 200


# -- raw HTTP: paging, history, stats, errors (validated against docs/openapi.yaml) -----


async def test_meta_and_previous_page(open_api: str, http: Call) -> None:
    url = receipts_url(open_api)
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
    open_api: str, http: Call, api_pool: asyncpg.Pool
) -> None:
    url = receipts_url(open_api, MSG_STABLE)
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


async def test_history_lists_every_status_change_in_order(open_api: str, http: Call) -> None:
    r = HISTORY_RECEIPT
    url = f"{receipts_url(open_api)}/{r.receipt_sid}/History"
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
    _, none = await http(f"{receipts_url(open_api)}/{BIG[1].receipt_sid}/History")
    assert none["history"] == []
    status, err = await http(f"{receipts_url(open_api)}/{sid('DY', 9999)}/History")
    assert (status, err["code"]) == (404, 20404)
    scoped = f"{receipts_url(open_api, service=SERVICE)}/{r.receipt_sid}/History"
    _, same = await http(scoped)
    assert same["history"] == body["history"]


async def test_delivery_stats_per_channel(open_api: str, http: Call) -> None:
    status, hour = await http(f"{open_api}/v1/DeliveryStats?Window=PT1H")
    assert status == 200
    assert hour["window"] == "PT1H"
    recent = BIG + SPEC_EXAMPLE
    for row in hour["channels"]:
        mine = [r for r in recent if r.channel == row["channel"]]
        c = counts(mine)
        assert {k: row[k] for k in ("total", *STAGES)} == c
        assert row["delivered_ratio"] == pytest.approx(c["delivered"] / c["total"])
        assert row["read_ratio"] == pytest.approx(c["read"] / c["total"])
    assert [r["channel"] for r in hour["channels"]] == ["sms", "whatsapp"]
    _, week = await http(f"{open_api}/v1/DeliveryStats?Window=P7D")
    whatsapp = next(r for r in week["channels"] if r["channel"] == "whatsapp")
    assert whatsapp["total"] == len([r for r in recent + OLD if r.channel == "whatsapp"])
    _, default = await http(f"{open_api}/v1/DeliveryStats")
    assert default["window"] == "PT1H"
    _, canonical = await http(f"{open_api}/v1/DeliveryStats?Window=PT90M")
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
    open_api: str, http: Call, suffix: str
) -> None:
    status, body = await http(open_api + suffix)
    assert status == 400
    assert body["code"] == 20001 and body["status"] == 400
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"


async def test_unknown_path_and_method(open_api: str, http: Call) -> None:
    status, body = await http(f"{open_api}/v1/Conversations", documented=False)
    assert (status, body["code"], body["status"]) == (404, 20404, 404)
    async with aiohttp.ClientSession() as session, session.post(receipts_url(open_api)) as resp:
        assert resp.status == 405
        assert (await resp.json())["code"] == 20004


async def test_configured_base_url_prefixes_every_url(api_pool: asyncpg.Pool) -> None:
    server = await _start(
        create_app(api_pool, base_url="https://receipts.example.test/", auth=None)
    )
    try:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as session, session.get(receipts_url(base)) as resp:
            body = await resp.json()
    finally:
        await server.close()
    assert body["delivery_receipts"][0]["url"].startswith("https://receipts.example.test/v1/")
    assert body["meta"]["next_page_url"].startswith("https://receipts.example.test/v1/")


async def test_database_down_is_503(openapi: OpenAPI) -> None:
    # Nothing listens there: the pool cannot connect, the API answers, retryably.
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0)
    server = await _start(create_app(pool, base_url=None, auth=None))
    try:
        url = receipts_url(str(server.make_url("")).rstrip("/"))
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            raw = await resp.read()
            validate(openapi, url, resp.status, raw, dict(resp.headers))
            assert resp.status == 503
    finally:
        await server.close()
        await pool.close()


def test_openapi_documents_exactly_the_served_routes(openapi: OpenAPI) -> None:
    import yaml

    documented = set(yaml.safe_load(OPENAPI_PATH.read_text())["paths"])
    app = create_app(None, base_url=None, auth=None)  # type: ignore[arg-type]
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
    task = asyncio.create_task(serve_api(api_dsn, "127.0.0.1", port, AUTH, stop))
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
    message = await in_thread(client.conversations.v1.conversations(CONV).messages(MSG_SPEC).fetch)
    assert message.delivery["total"] == 5
    stop.set()
    await asyncio.wait_for(task, timeout=15)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{base}/healthz")
