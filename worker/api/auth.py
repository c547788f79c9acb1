"""Optional HTTP Basic authentication with an account SID and auth token, as Twilio does.

Only ``/healthz`` is open when credentials are configured: probes must not need secrets,
and it reveals nothing about the data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from worker.api.errors import AUTHENTICATE, ApiError

OPEN_PATHS: Final = frozenset({"/healthz"})
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


def credentials_match(given: tuple[str, str] | None, expected: tuple[str, str]) -> bool:
    """Constant-time comparison of both parts, so timing reveals neither."""
    if given is None:
        # Still compare, so a missing header costs the same as a wrong one.
        given = ("", "")
    user_ok = hmac.compare_digest(given[0].encode(), expected[0].encode())
    token_ok = hmac.compare_digest(given[1].encode(), expected[1].encode())
    # Both comparisons always run: `and` would short-circuit on the first.
    return user_ok & token_ok


def unauthorized() -> ApiError:
    return ApiError(
        401,
        AUTHENTICATE,
        "Authentication Error - invalid username or password",
        headers=dict(_CHALLENGE),
    )


def auth_middleware(expected: tuple[str, str]) -> Middleware:
    """Middleware refusing every request but the open paths without these credentials."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not credentials_match(
            parse_basic(request.headers.get("Authorization")), expected
        ):
            raise unauthorized()
        return await handler(request)

    return middleware
