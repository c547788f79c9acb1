"""Parses Twilio's paging parameters and builds keyset page tokens and the ``meta`` object.

Twilio pages with an opaque ``PageToken``; here the token is the sort key of the last (or
first) row of the current page, so a page is "rows after this key". That stays correct
while the worker inserts and updates rows concurrently: an offset would skip or repeat
rows whenever one is inserted before it, a key never does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlencode

from worker.api.errors import invalid_parameter

DEFAULT_PAGE_SIZE: Final = 50
# Twilio's Conversations API serves at most 50 records per page.
MAX_PAGE_SIZE: Final = 50
# Page is only echoed back (Twilio: "simply for client state"), but it is bounded so a
# crafted value cannot produce absurd URLs.
MAX_PAGE_NUMBER: Final = 10_000_000
_MAX_TOKEN_CHARS: Final = 1024
_MAX_KEY_PARTS: Final = 4
_MAX_KEY_STR: Final = 64
# Key parts go to PostgreSQL as text and bigint: anything a key of ours cannot be (a NUL,
# a lone surrogate, an integer beyond bigint) would make the query fail with a 500 instead.
_MIN_KEY_INT: Final = -(2**63)
_MAX_KEY_INT: Final = 2**63 - 1

KeyPart = str | int
Key = tuple[KeyPart, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position between two rows: ``forward`` means rows after ``key``, else before it."""

    forward: bool
    key: Key


@dataclass(frozen=True, slots=True)
class PageRequest:
    page_size: int
    page: int
    cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class PageSlice(Generic[T]):
    """One page of rows in ascending key order, with cursors to its neighbours (if any)."""

    items: list[T]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None


def encode_token(cursor: Cursor) -> str:
    """Opaque, URL-safe token for ``cursor`` (base64url of compact JSON, unpadded)."""
    raw = json.dumps(
        {"d": "n" if cursor.forward else "p", "k": list(cursor.key)},
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> Cursor:
    """Inverse of ``encode_token``; any token this API did not make is a 400."""
    bad = invalid_parameter("Invalid PageToken", "PageToken")
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        # ValueError covers a non-ASCII token, bad JSON and bad UTF-8 inside it.
        raise bad from exc
    if not isinstance(doc, dict) or set(doc) != {"d", "k"} or doc["d"] not in ("n", "p"):
        raise bad
    key = doc["k"]
    if not isinstance(key, list) or not 1 <= len(key) <= _MAX_KEY_PARTS:
        raise bad
    if not all(_is_key_part(part) for part in key):
        raise bad
    return Cursor(forward=doc["d"] == "n", key=tuple(key))


def _is_key_part(part: object) -> bool:
    # bool is an int subclass; JSON true/false is never a key part this API writes.
    if isinstance(part, bool):
        return False
    if isinstance(part, int):
        return _MIN_KEY_INT <= part <= _MAX_KEY_INT
    if isinstance(part, str):
        # Keys are SIDs and timestamps: printable ASCII.
        return len(part) <= _MAX_KEY_STR and all(" " <= c <= "~" for c in part)
    return False


def require_key_shape(cursor: Cursor | None, *types: type) -> Cursor | None:
    """Reject a token whose key does not have the shape this list sorts by (a 400)."""
    if cursor is None:
        return None
    if len(cursor.key) != len(types) or not all(
        isinstance(part, t) and not isinstance(part, bool)
        for part, t in zip(cursor.key, types, strict=True)
    ):
        raise invalid_parameter("Invalid PageToken for this list", "PageToken")
    return cursor


def _non_negative_int(name: str, value: str) -> int:
    # str.isdigit accepts non-ASCII digits such as '²'; paging values are plain ASCII.
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise invalid_parameter(f"Invalid {name}: expected a non-negative integer", name)
    return int(value)


def parse_page_request(query: Mapping[str, str]) -> PageRequest:
    """Read ``PageSize``, ``Page`` and ``PageToken`` from a query string.

    ``PageSize`` above the maximum is clamped rather than refused, as the effective size is
    reported in ``meta.page_size`` and Twilio's helper library asks for ``PageSize=limit``
    when a caller passes only ``limit``.
    """
    page_size = DEFAULT_PAGE_SIZE
    if "PageSize" in query:
        page_size = _non_negative_int("PageSize", query["PageSize"])
        if page_size < 1:
            raise invalid_parameter("Invalid PageSize: must be at least 1", "PageSize")
        page_size = min(page_size, MAX_PAGE_SIZE)
    page = 0
    if "Page" in query:
        page = _non_negative_int("Page", query["Page"])
        if page > MAX_PAGE_NUMBER:
            raise invalid_parameter(f"Invalid Page: at most {MAX_PAGE_NUMBER}", "Page")
    cursor = decode_token(query["PageToken"]) if "PageToken" in query else None
    return PageRequest(page_size=page_size, page=page, cursor=cursor)


def slice_page(rows: Sequence[T], request: PageRequest, key_of: Callable[[T], Key]) -> PageSlice[T]:
    """Cut the ``page_size + 1`` rows a query returned into a page and neighbour cursors.

    Rows come in the direction of travel: ascending for a forward (or first) page,
    descending for a backward one. The one extra row only tells whether more exist.
    """
    n = request.page_size
    cursor = request.cursor
    more = len(rows) > n
    if cursor is None or cursor.forward:
        items = list(rows[:n])
        next_cursor = Cursor(True, key_of(items[-1])) if more and items else None
        # A forward page with a token always has at least the token's row before it.
        previous_cursor = Cursor(False, key_of(items[0])) if cursor is not None and items else None
    else:
        items = list(reversed(rows[:n]))
        previous_cursor = Cursor(False, key_of(items[0])) if more and items else None
        next_cursor = Cursor(True, key_of(items[-1])) if items else None
    return PageSlice(items=items, next_cursor=next_cursor, previous_cursor=previous_cursor)


def page_url(
    base_url: str, path: str, page_size: int, page: int, cursor: Cursor | None = None
) -> str:
    """Absolute URL of one page, with parameters in Twilio's order."""
    params: dict[str, Any] = {"PageSize": page_size, "Page": page}
    if cursor is not None:
        params["PageToken"] = encode_token(cursor)
    return f"{base_url}{path}?{urlencode(params)}"


def page_meta(
    base_url: str, path: str, key: str, request: PageRequest, page: PageSlice[Any]
) -> dict[str, Any]:
    """Twilio's ``meta`` object for a list response."""
    size = request.page_size
    return {
        "page": request.page,
        "page_size": size,
        "first_page_url": page_url(base_url, path, size, 0),
        "previous_page_url": (
            page_url(base_url, path, size, max(request.page - 1, 0), page.previous_cursor)
            if page.previous_cursor is not None
            else None
        ),
        "url": page_url(base_url, path, size, request.page, request.cursor),
        "next_page_url": (
            page_url(base_url, path, size, request.page + 1, page.next_cursor)
            if page.next_cursor is not None
            else None
        ),
        "key": key,
    }
