"""The read API's authentication and account scoping: credentials required by default, open only
when told, and each of two accounts (from a credentials file) sees its own data only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from tests.integration.api_client import (
    in_thread,
    twilio_client,
    twilio_error,
)
from tests.integration.api_data import (
    ACCOUNT,
    ACCOUNT_B,
    AUTH,
    AUTH_B,
    B_RECEIPTS,
    CONV,
    CONV_B,
    MIXED,
    MSG_B,
    MSG_EXAMPLE,
    MSG_MIXED,
    SERVICE,
    TOKEN,
    TOKEN_B,
    Call,
    counts,
    receipts_url,
    sid,
)

pytestmark = pytest.mark.integration


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
