"""Unit tests of the API's access log and request metrics, on a real socket without a database."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from worker.api import create_app
from worker.api.credentials import Credentials
from worker.logs import JsonFormatter

A = "AC" + "a" * 32
TOKEN = "unit-test-token-8f2b"
CH = "CH" + "1" * 32
IM = "IM" + "2" * 32


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest_asyncio.fixture
async def base() -> AsyncIterator[str]:
    # No handler below reaches the pool: every request is refused, unmatched or open first.
    app = create_app(None, base_url=None, credentials=Credentials(((A, TOKEN.encode()),)))  # type: ignore[arg-type]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r)) for r in caplog.records if r.name == "worker.api.access"
    ]


async def test_access_log_and_metrics(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.api.access")
    message = f"/v1/Conversations/{CH}/Messages/{IM}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}{message}?PageToken=abc", headers=basic(A, "wrong")) as r:
            assert r.status == 401
        async with http.get(f"{base}/v1/Nowhere/{CH}", headers=basic(A, TOKEN)) as r:
            assert r.status == 404
        async with http.post(f"{base}{message}", headers=basic(A, TOKEN)) as r:
            assert r.status == 405
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            metrics = await r.text()

    lines = access_lines(caplog)
    # One line per request but the probe and the scrape.
    assert [(line["method"], line["status"]) for line in lines] == [
        ("GET", 401),
        ("GET", 404),
        ("POST", 405),
    ]
    refused, unknown, _ = lines
    assert refused["path"] == message  # without the query string
    assert refused["route"] == "/v1/Conversations/{ConversationSid}/Messages/{MessageSid}"
    assert refused["account_sid"] is None
    assert unknown["account_sid"] == A and unknown["route"] == "unmatched"
    for line in lines:
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["message"] == "request" and line["logger"] == "worker.api.access"
    text = "\n".join(json.dumps(line) for line in lines)
    assert TOKEN not in text and "wrong" not in text
    assert "Authorization" not in text and "Basic" not in text and "PageToken" not in text

    route = "/v1/Conversations/{ConversationSid}/Messages/{MessageSid}"
    assert f'delivery_api_requests_total{{route="{route}",status_class="4xx"}} 1.0' in metrics
    # Unknown paths and refused methods share one label value, whatever the path.
    assert 'delivery_api_requests_total{route="unmatched",status_class="4xx"} 2.0' in metrics
    assert 'delivery_api_requests_total{route="/healthz",status_class="2xx"} 1.0' in metrics
    assert f'delivery_api_request_duration_seconds_count{{route="{route}"}} 1.0' in metrics
    assert "delivery_api_auth_failures_total 1.0" in metrics
    # Bounded labels: the SIDs of the paths are nowhere in the series.
    assert CH not in metrics and IM not in metrics and A not in metrics


async def test_healthz_and_metrics_need_no_credentials(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/metrics"):
            async with http.get(base + path) as r:
                assert r.status == 200
        async with http.get(base + "/v1/DeliveryStats") as r:
            assert r.status == 401
            assert (await r.json())["code"] == 20003
