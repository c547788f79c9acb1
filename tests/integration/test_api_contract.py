"""The read API's contract: every field Twilio's OpenAPI document defines is served, both OpenAPI
documents load, docs/openapi.yaml documents exactly the served routes, and errors (bad values,
unknown paths and methods, a database away) have Twilio's error body and status."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from devstack._util import free_port
from tests.integration.api_client import (
    PROJECT_OPENAPI_PATH,
    basic_auth,
    load_project_openapi,
    load_twilio_openapi,
    twilio_document,
    validate,
)
from tests.integration.api_data import (
    AUTH,
    CONV,
    HISTORY_PATH,
    MSG_BIG,
    QUEUED,
    SERVICE,
    Call,
    receipts_url,
    sid,
    start_server,
)
from worker.api import create_app
from worker.api.paging import Cursor, encode_token

pytestmark = pytest.mark.integration


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


async def test_database_down_is_503() -> None:
    # Nothing listens there: the pool cannot connect, the API answers, retryably.
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0)
    server = await start_server(create_app(pool, base_url=None, credentials=None))
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
