"""The read API's paging: Twilio's meta block and page URLs both ways, stable pages while the
worker writes, and forged page tokens refused as 400, never 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import asyncpg
import pytest

from tests.integration.api_data import (
    CONV,
    HISTORY_PATH,
    LONG_AGO,
    MSG_BIG,
    MSG_STABLE,
    STABLE,
    Call,
    Receipt,
    insert_receipts,
    receipts_url,
    sid,
)
from worker.api.paging import Cursor, encode_token

pytestmark = pytest.mark.integration


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
