"""The read API as the CLI serves it: `serve_api` (the entry point), and the `api` process,
secure by default, open only when told, with its access log and /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from devstack._util import free_port
from devstack.workers import WorkerProcess, run_to_exit
from tests.integration.api_client import (
    basic_auth,
    in_thread,
    twilio_client,
    twilio_error,
)
from tests.integration.api_data import (
    ACCOUNT,
    ACCOUNT_B,
    AUTH,
    AUTH_B,
    BIG,
    CONV,
    CONV_B,
    MSG_B,
    MSG_BIG,
    MSG_EXAMPLE,
    PUBLIC_BASE,
    TOKEN,
    TOKEN_B,
    receipts_url,
)
from worker.api import Credentials, serve_api

pytestmark = pytest.mark.integration


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
    done = await run_to_exit([sys.executable, "-m", "worker", *args], env, timeout_s=60)
    return done.code, done.out, done.err


class ApiProcess:
    """`python -m worker api` serving on a free port until stop(); output goes to a file
    (a pipe nobody reads could fill up and block the server)."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = args
        self.env = {**env, "API_PORT": str(self.port)}
        self.process: WorkerProcess | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "worker", "api", *self.args]
        self.process = WorkerProcess("api", self.env, self.log_path, self.port, command=command)
        try:
            await self.process.wait_serving(20, status=200)
        except AssertionError:
            pytest.fail(f"the api process never listened:\n{self.output()}")

    async def stop(self) -> int:
        """SIGTERM, then the exit code (killed if it does not exit in time)."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.stop, 20)

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
