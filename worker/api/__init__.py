"""The Twilio-shaped REST read API over the PostgreSQL read model (``python -m worker api``).

It answers the Conversations v1 requests the official Twilio helper libraries make for
messages and delivery receipts, plus a receipt's status history and per-channel delivery
stats. See docs/api.md and docs/openapi.yaml.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from worker.api.access import access_middleware
from worker.api.auth import auth_middleware
from worker.api.credentials import Credentials
from worker.api.errors import error_middleware
from worker.api.metrics import ApiMetrics
from worker.api.routes import BASE_URL, POOL, add_routes

__all__ = ["Credentials", "create_app", "serve_api"]

log = logging.getLogger(__name__)

# A read replica of the worker's database is fine; these keep one slow query from holding
# a connection (and the pool) for long, and make an accidental write impossible.
_SERVER_SETTINGS = {
    "application_name": "delivery-receipts-api",
    "default_transaction_read_only": "on",
    "statement_timeout": "5000",
}


def create_app(
    pool: asyncpg.Pool, *, base_url: str | None, credentials: Credentials | None
) -> web.Application:
    """The aiohttp application.

    ``base_url`` (e.g. ``https://receipts.example.com``) prefixes every URL in responses,
    else the scheme and Host of each request do. ``credentials`` None serves every account
    to anyone: only ``serve_api``'s caller may decide that (the CLI asks for it explicitly).
    """
    metrics = ApiMetrics()
    # Outermost first: the access log sees the final answer of the error middleware, which
    # in turn turns the auth middleware's refusals into Twilio error bodies.
    middlewares: list[Middleware] = [access_middleware(metrics), error_middleware]
    if credentials is not None:
        middlewares.append(auth_middleware(credentials))
    app = web.Application(middlewares=middlewares)
    app[POOL] = pool
    app[BASE_URL] = base_url.rstrip("/") if base_url else ""
    add_routes(app)
    app.router.add_get("/metrics", metrics.handler)
    return app


async def serve_api(
    database_url: str,
    host: str,
    port: int,
    credentials: Credentials | None,
    stop: asyncio.Event,
    *,
    base_url: str | None = None,
) -> None:
    """Serve the API on ``host:port`` until ``stop`` is set, then close cleanly."""
    if credentials is None:
        log.warning(
            "api authentication is DISABLED (API_AUTH_DISABLED / --insecure-no-auth): "
            "anyone who reaches this port reads every account's receipts"
        )
    if not base_url:
        log.info("API_PUBLIC_BASE_URL is not set: URLs in responses follow each request's Host")
    # min_size=0: the API starts (and answers 503) while the database is still down.
    pool = await asyncpg.create_pool(
        database_url, min_size=0, max_size=10, server_settings=_SERVER_SETTINGS
    )
    runner = web.AppRunner(
        create_app(pool, base_url=base_url, credentials=credentials),
        access_log=None,  # worker.api.access writes a JSON line per request instead
        shutdown_timeout=10.0,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info(
            "api listening",
            extra={
                "host": host,
                "port": port,
                "auth": credentials is not None,
                "accounts": len(credentials.accounts) if credentials is not None else 0,
                "base_url": base_url,
            },
        )
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.close()
