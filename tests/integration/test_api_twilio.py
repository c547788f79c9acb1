"""The REST read API through Twilio's own helper library, used unchanged: only its HTTP client
is pointed at the local server, so these tests prove that code written for Twilio's
Conversations API reads this API. Every response is validated against Twilio's official OpenAPI
document and the project's docs/openapi.yaml (tests/integration/api_client.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from tests.integration.api_client import (
    in_thread,
    twilio_error,
)
from tests.integration.api_data import (
    ACCOUNT,
    BIG,
    CONV,
    MSG_BIG,
    MSG_EMPTY,
    MSG_EXAMPLE,
    OTHER_CONV,
    OTHER_SERVICE,
    QUEUED,
    SERVICE,
    STAGES,
    UNKNOWN_MSG,
    counts,
    sid,
    word,
)

pytestmark = pytest.mark.integration


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


async def test_twilio_fetches_a_message_delivery_summary(
    client: Client, design_example_delivery: dict[str, int | str]
) -> None:
    message = await in_thread(
        client.conversations.v1.conversations(CONV).messages(MSG_EXAMPLE).fetch
    )
    # The example of docs/design.md, "Summary counts", verbatim.
    assert message.delivery == design_example_delivery
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
