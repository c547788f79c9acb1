"""The read API's resources against a real PostgreSQL: receipt history, delivery stats per
channel, SIDs of either case in paths, and the public base URL in every URL it serves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.api_client import (
    in_thread,
    twilio_client,
)
from tests.integration.api_data import (
    ACCOUNT,
    AUTH,
    BIG,
    CONV,
    HISTORY_RECEIPT,
    MSG_BIG,
    MSG_EXAMPLE,
    OLD,
    PUBLIC_BASE,
    SERVICE,
    STAGES,
    SUMMARY_EXAMPLE,
    TOKEN,
    Call,
    counts,
    receipts_url,
    sid,
    start_server,
    upper,
)
from worker.api import Credentials, create_app

pytestmark = pytest.mark.integration


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


async def test_public_base_url_in_every_url(
    api_pool: asyncpg.Pool, credentials: Credentials, http: Call
) -> None:
    server = await start_server(
        create_app(api_pool, base_url=PUBLIC_BASE + "/", credentials=credentials)
    )
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
