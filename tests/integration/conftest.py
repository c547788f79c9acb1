"""Fixtures of the integration tests beyond tests/conftest.py's servers and `worker_settings`:
the read API over a seeded database of the test module's own (tests/integration/api_data.py),
served with two accounts' credentials or open, Twilio's client and a validating HTTP getter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from twilio.rest import Client

from devstack.postgres import PostgresServer
from tests.integration.api_client import (
    basic_auth,
    twilio_client,
    validate,
)
from tests.integration.api_data import (
    ACCOUNT,
    ACCOUNT_B,
    AUTH,
    TOKEN,
    TOKEN_B,
    Call,
    seed,
    start_server,
    upper,
)
from worker.api import Credentials, create_app
from worker.api.credentials import load_credentials
from worker.config import Settings
from worker.migrate import apply_migrations


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
    server = await start_server(create_app(api_pool, base_url=None, credentials=credentials))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest_asyncio.fixture(scope="module")
async def open_api(api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Base URL of an API explicitly run without authentication (sees every account)."""
    server = await start_server(create_app(api_pool, base_url=None, credentials=None))
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def client(authed_api: str) -> Client:
    """Twilio's client, logged in as ACCOUNT, which owns the seeded data (but account B's)."""
    return twilio_client(authed_api, AUTH)


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
