"""The HTTP handlers and route table of the Twilio-shaped read API.

Each handler validates its path and query first (400 before any SQL), asks ``queries``
for the caller's account only and shapes the answer with ``serializers``; the same
handlers serve the unscoped ``/v1/Conversations/...`` and the service-scoped
``/v1/Services/{IS}/Conversations/...`` paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg
from aiohttp import web

from worker.api import queries, serializers
from worker.api.auth import caller_account
from worker.api.errors import ApiError, invalid_parameter, not_found
from worker.api.paging import (
    Cursor,
    Key,
    PageRequest,
    page_meta,
    parse_page_request,
    require_key_shape,
    slice_page,
)
from worker.api.sids import is_sid, require_sid
from worker.api.windows import DEFAULT_WINDOW, format_window, parse_window

POOL: Final = web.AppKey("pool", asyncpg.Pool)
BASE_URL: Final = web.AppKey("base_url", str)

_MESSAGE_PATH: Final = "/Conversations/{ConversationSid}/Messages/{MessageSid}"
_SCOPES: Final = ("/v1", "/v1/Services/{ChatServiceSid}")
# The form of serializers.iso8601_precise, which history page tokens carry.
_HISTORY_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True)
class MessageScope(queries.MessageKey):
    """The validated SIDs of a message path, the caller's account, and the URLs they make."""

    @property
    def message_path(self) -> str:
        service = f"/Services/{self.service_sid}" if self.service_sid else ""
        return f"/v1{service}/Conversations/{self.conversation_sid}/Messages/{self.message_sid}"

    @property
    def receipts_path(self) -> str:
        return f"{self.message_path}/Receipts"

    def receipt_path(self, receipt_sid: str) -> str:
        return f"{self.receipts_path}/{receipt_sid}"


def message_scope(match_info: Mapping[str, str], account_sid: str | None) -> MessageScope:
    """Validate the SIDs of a message path; raises a 400 naming the first bad one."""
    service = match_info.get("ChatServiceSid")
    return MessageScope(
        account_sid=account_sid,
        service_sid=require_sid("ChatServiceSid", service) if service is not None else None,
        conversation_sid=require_sid("ConversationSid", match_info["ConversationSid"]),
        message_sid=require_sid("MessageSid", match_info["MessageSid"]),
    )


def base_url(request: web.Request) -> str:
    """The configured public base URL, else the one the client used to reach us."""
    configured = request.app[BASE_URL]
    return configured or f"{request.scheme}://{request.host}"


def _receipt_key(row: queries.Row) -> Key:
    return (row["participant_sid"],)


def _history_key(row: queries.Row) -> Key:
    return (serializers.iso8601_precise(row["date_updated"]) or "", row["id"])


def _wrong_token() -> ApiError:
    return invalid_parameter("Invalid PageToken for this list", "PageToken")


def _receipt_position(cursor: Cursor | None) -> Cursor | None:
    """A receipts-list token must point at a participant SID, the key that list sorts by."""
    require_key_shape(cursor, str)
    if cursor is not None and not is_sid(str(cursor.key[0]), "MB"):
        raise _wrong_token()
    return cursor


def _history_position(cursor: Cursor | None) -> tuple[datetime, int] | None:
    """The (date_updated, id) a history token points at; a 400 if it is not one."""
    if cursor is None:
        return None
    require_key_shape(cursor, str, int)
    when, row_id = cursor.key
    try:
        # Exactly the form this API writes; anything else was not made here.
        parsed = datetime.strptime(str(when), _HISTORY_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise _wrong_token() from exc
    if not isinstance(row_id, int) or row_id < 0:
        raise _wrong_token()
    return parsed, row_id


def _scope(request: web.Request) -> MessageScope:
    return message_scope(request.match_info, caller_account(request))


async def get_message(request: web.Request) -> web.Response:
    scope = _scope(request)
    row = await queries.fetch_message(request.app[POOL], scope)
    if row is None:
        raise not_found(request.path)
    base = base_url(request)
    return web.json_response(
        serializers.message(row, base + scope.message_path, base + scope.receipts_path)
    )


async def list_receipts(request: web.Request) -> web.Response:
    scope = _scope(request)
    paging = parse_page_request(request.query)
    cursor = _receipt_position(paging.cursor)
    pool = request.app[POOL]
    rows = await queries.list_receipts(pool, scope, cursor=cursor, limit=paging.page_size + 1)
    # An empty first page is either a message without receipts or no message (of this
    # account) at all.
    if not rows and cursor is None and not await queries.message_exists(pool, scope):
        raise not_found(request.path)
    page = slice_page(rows, paging, _receipt_key)
    base = base_url(request)
    return web.json_response(
        {
            "delivery_receipts": [
                serializers.receipt(r, base + scope.receipt_path(r["receipt_sid"]))
                for r in page.items
            ],
            "meta": page_meta(base, scope.receipts_path, "delivery_receipts", paging, page),
        }
    )


async def _receipt_or_404(request: web.Request, scope: MessageScope) -> queries.Row:
    receipt_sid = require_sid("Sid", request.match_info["Sid"])
    row = await queries.fetch_receipt(request.app[POOL], scope, receipt_sid)
    if row is None:
        raise not_found(request.path)
    return row


async def get_receipt(request: web.Request) -> web.Response:
    scope = _scope(request)
    row = await _receipt_or_404(request, scope)
    url = base_url(request) + scope.receipt_path(row["receipt_sid"])
    return web.json_response(serializers.receipt(row, url))


async def list_history(request: web.Request) -> web.Response:
    scope = _scope(request)
    paging: PageRequest = parse_page_request(request.query)
    position = _history_position(paging.cursor)
    receipt = await _receipt_or_404(request, scope)
    rows = await queries.list_history(
        request.app[POOL],
        message_sid=receipt["message_sid"],
        participant_sid=receipt["participant_sid"],
        after=position,
        forward=paging.cursor is None or paging.cursor.forward,
        limit=paging.page_size + 1,
    )
    page = slice_page(rows, paging, _history_key)
    path = scope.receipt_path(receipt["receipt_sid"]) + "/History"
    return web.json_response(
        {
            "history": [serializers.history_entry(r, receipt) for r in page.items],
            "meta": page_meta(base_url(request), path, "history", paging, page),
        }
    )


async def get_delivery_stats(request: web.Request) -> web.Response:
    window = parse_window(request.query.get("Window", DEFAULT_WINDOW))
    end = datetime.now(UTC)
    start = end - window
    rows = await queries.delivery_stats(
        request.app[POOL], account_sid=caller_account(request), start=start, end=end
    )
    canonical = format_window(window)
    url = f"{base_url(request)}/v1/DeliveryStats?Window={canonical}"
    return web.json_response(serializers.delivery_stats(rows, canonical, start, end, url))


async def healthz(_: web.Request) -> web.Response:
    # Liveness only: a database outage is answered per request with 503s, not by restarts.
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    for scope in _SCOPES:
        message = scope + _MESSAGE_PATH
        app.router.add_get(message, get_message)
        app.router.add_get(message + "/Receipts", list_receipts)
        app.router.add_get(message + "/Receipts/{Sid}", get_receipt)
        app.router.add_get(message + "/Receipts/{Sid}/History", list_history)
    app.router.add_get("/v1/DeliveryStats", get_delivery_stats)
    app.router.add_get("/healthz", healthz)
