"""HTTP Basic authentication with an account SID and auth token, as Twilio does.

The account a request authenticates as is kept on it (``ACCOUNT``) and scopes every query.
``/healthz`` and ``/metrics`` are open: probes and scrapers must not need an account's
secret, and neither reveals any account's data.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from worker.api.credentials import Credentials
from worker.api.errors import AUTHENTICATE, ApiError

OPEN_PATHS: Final = frozenset({"/healthz", "/metrics"})
# The account SID the request authenticated as; absent when the API runs open.
ACCOUNT: Final = web.RequestKey("account_sid", str)
_CHALLENGE: Final = {"WWW-Authenticate": 'Basic realm="Delivery Receipts API"'}


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """Username and password from an ``Authorization: Basic ...`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def unauthorized() -> ApiError:
    return ApiError(
        401,
        AUTHENTICATE,
        "Authentication Error - invalid username or password",
        headers=dict(_CHALLENGE),
    )


def caller_account(request: web.Request) -> str | None:
    """The account whose data this request may see; None (every account) when running open."""
    return request.get(ACCOUNT)


def auth_middleware(credentials: Credentials) -> Middleware:
    """Middleware refusing every request but the open paths without valid credentials."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        # A missing header is checked as an empty login, so it costs what a wrong one costs.
        username, password = parse_basic(request.headers.get("Authorization")) or ("", "")
        account = credentials.authenticate(username, password)
        if account is None:
            raise unauthorized()
        request[ACCOUNT] = account
        return await handler(request)

    return middleware
