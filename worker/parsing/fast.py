"""The parser's fast path: an event in the shape nearly every event has, in few calls.

`common_event` recognises that shape (all seven SIDs canonical, a channel implied or in
its canonical spelling, a lower-case status, an integer or empty error code, ISO or plain
RFC 2822 dates) and builds the event exactly as the field-by-field path of
worker/parsing/receipts.py would; for anything else it returns None and that path decides,
with its exact reasons. Tests compare both paths (tests/unit/test_parsing_fast_path.py).
`form_pairs` is `parse_qsl` as the parser calls it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from urllib.parse import unquote

from worker import sids
from worker.events import ReceiptEvent, Status

MAX_FORM_FIELDS: Final = 200
MAX_ERROR_CODE: Final = 2**31 - 1  # stored as a Postgres integer
_NOT_COMMON: Final = object()


class FieldNames(Protocol):
    """Where a form keeps each field (worker.parsing.receipts.FieldNames)."""

    @property
    def account(self) -> str: ...
    @property
    def chat_service(self) -> str: ...
    @property
    def conversation(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def receipt(self) -> str: ...
    @property
    def channel_message(self) -> str: ...
    @property
    def participant(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def error_code(self) -> str: ...
    @property
    def date_created(self) -> str: ...
    @property
    def date_updated(self) -> str: ...


def form_pairs(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
    max_num_fields=MAX_FORM_FIELDS)`, with the same results and errors, in fewer calls."""
    items = text.split("&") if text else []
    if len(items) > MAX_FORM_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"bad query field: {item!r}")
        if "%" in name or "+" in name:
            name = unquote(name.replace("+", " "), errors="strict")
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "), errors="strict")
        pairs.append((name, value))
    return pairs


# The shape nearly every event has, checked at once: all seven SIDs present, canonical and
# with their prefixes (one match over them joined by NUL, which no valid SID contains).
_COMMON_SIDS = re.compile(
    "\x00".join(
        sids.canonical_pattern(prefix) for prefix in ("AC", "IS", "CH", "IM", "DY", None, "MB")
    )
)
_COMMON_STATUS: Final = {None: Status.QUEUED, "": Status.QUEUED} | {s.label: s for s in Status}


def common_event(doc: Mapping[str, object], names: FieldNames) -> ReceiptEvent | None:
    """The event if it has the common shape, else None (then the checked path decides).

    Gives exactly what the checked path gives for such an event, with far fewer calls: all
    SIDs canonical, a channel implied or canonical, a lower-case status, an integer or empty
    error code and ISO dates. Anything else (a bad value, another spelling) goes the checked way.
    """
    get = doc.get
    values = (
        get(names.account),
        get(names.chat_service),
        get(names.conversation),
        get(names.message),
        get(names.receipt),
        get(names.channel_message),
        get(names.participant),
    )
    try:
        if _COMMON_SIDS.fullmatch("\x00".join(values)) is None:  # type: ignore[arg-type]
            return None
    except TypeError:  # an absent, null or non-string SID
        return None
    channel = _common_channel(doc, channel_message=values[5])
    if channel is None:
        return None
    label = get(names.status)
    status = _COMMON_STATUS.get(label) if label is None or type(label) is str else None
    error_code = _common_error_code(get(names.error_code))
    if error_code is _NOT_COMMON:
        return None
    date_created = common_date(get(names.date_created))
    updated = get(names.date_updated)
    date_updated = date_created if updated is None or updated == "" else common_date(updated)
    if status is None or date_created is None or date_updated is None:
        return None
    account, chat_service, conversation, message, receipt, channel_message, participant = values
    return ReceiptEvent(
        account,  # type: ignore[arg-type]
        chat_service,  # type: ignore[arg-type]
        conversation,  # type: ignore[arg-type]
        message,  # type: ignore[arg-type]
        receipt,  # type: ignore[arg-type]
        channel_message,  # type: ignore[arg-type]
        participant,  # type: ignore[arg-type]
        channel,
        status,
        error_code,  # type: ignore[arg-type]
        date_created,
        date_updated,
    )


_COMMON_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _common_channel(doc: Mapping[str, object], channel_message: object) -> str | None:
    """The channel: implied by the channel message SID's prefix, or given in its canonical
    spelling under one name (not `chat`, whose events are skipped), else None."""
    explicit = doc.get("Channel", _NOT_COMMON)
    if explicit is _NOT_COMMON:
        explicit = doc.get("channel", _NOT_COMMON)
    elif "channel" in doc:
        return None
    if explicit is _NOT_COMMON:
        return sids.implied_channel(channel_message)  # type: ignore[arg-type]
    if type(explicit) is not str or explicit == "chat" or not _COMMON_CHANNEL.fullmatch(explicit):
        return None
    return explicit


# RFC 2822 as form bodies carry it: "Sun, 01 Mar 2026 00:00:12 +0000".
_RFC2822 = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9]\d{3}) "
    r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def common_date(value: object) -> datetime | None:
    """An RFC 3339 or common RFC 2822 date as `parse_timestamp` reads it, else None."""
    if type(value) is not str:
        return None
    if not value[:4].isdigit():
        return _rfc2822_date(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def _common_error_code(value: object) -> int | object | None:
    """The error code as `_error_code` reads it (0 and empty are none), else _NOT_COMMON."""
    if value is None or value == "":
        return None
    if type(value) is str and len(value) <= 10 and value.isascii() and value.isdigit():
        value = int(value)  # a form body's
    if type(value) is not int or not 0 <= value <= MAX_ERROR_CODE:
        return _NOT_COMMON
    return value or None


def _rfc2822_date(value: str) -> datetime | None:
    match = _RFC2822.fullmatch(value)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    if offset >= timedelta(hours=24):
        return None
    try:
        local = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
        return (local - offset if sign == "+" else local + offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None
