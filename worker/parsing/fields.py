"""One check per kind of value, each with the exact reason of a refusal.

Every input form reads its values through these, so a SID, a date, an error code, a status
or a channel means the same whichever form it came in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from worker import sids
from worker.events import Status
from worker.parsing.fast import MAX_ERROR_CODE

# Reasons are metric label values and DLQ header values: a small fixed set.
REASONS: Final = frozenset(
    {
        "empty_value",
        "too_large",
        "not_utf8",
        "malformed",
        "unknown_form",
        "missing_field",
        "wrong_type",
        "invalid_sid",
        "unknown_status",
        "invalid_date",
        "invalid_error_code",
        "invalid_channel",
    }
)

_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class InvalidRecord(Exception):
    """The record cannot be applied; `reason` is one of REASONS, the message says exactly why."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


def string(doc: Mapping[str, object], name: str) -> str | None:
    """The field as a string; None when absent, null or empty."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{name}: expected a string, got {type(value).__name__}")
    return value or None


def check_sid(name: str, value: str, prefix: str | None) -> str:
    """`value` in its stored spelling (worker/sids.py), or InvalidRecord naming the field."""
    stored = sids.normalise(value, prefix)
    if stored is None:
        expected = prefix or "two uppercase letters"
        raise InvalidRecord(
            "invalid_sid",
            f"{name}: expected {expected} followed by 32 hex digits, got {value!r:.60}",
        )
    return stored


def sid(doc: Mapping[str, object], name: str, prefix: str) -> str:
    value = string(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    return check_sid(name, value, prefix)


def optional_sid(doc: Mapping[str, object], name: str, prefix: str | None) -> str | None:
    value = string(doc, name)
    return None if value is None else check_sid(name, value, prefix)


def channel(doc: Mapping[str, object], channel_message_sid: str | None) -> str:
    """The explicit channel (`Channel` or `channel`), else the one the SID implies."""
    for name in ("Channel", "channel"):
        explicit = string(doc, name)
        if explicit is not None:
            value = explicit.strip().lower()
            if not _CHANNEL.fullmatch(value):
                raise InvalidRecord("invalid_channel", f"{name}: {explicit!r:.60} is not a channel")
            return value
    return sids.implied_channel(channel_message_sid)


def status(doc: Mapping[str, object], name: str) -> Status:
    # Twilio: an empty status means the receipt was created and is still within Twilio.
    value = string(doc, name)
    if value is None:
        return Status.QUEUED
    try:
        return Status.from_label(value.strip().lower())
    except KeyError:
        raise InvalidRecord("unknown_status", f"{name}: unknown status {value!r:.40}") from None


def error_code(doc: Mapping[str, object], name: str) -> int | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidRecord(
            "wrong_type", f"{name}: expected an integer, got {type(value).__name__}"
        )
    if isinstance(value, str):
        # A form body carries every value as a string.
        if not value.isascii() or not value.isdigit():
            raise InvalidRecord("invalid_error_code", f"{name}: {value!r:.40} is not an integer")
        if len(value.lstrip("0")) > 10:
            # int() refuses strings over 4300 digits (ValueError) and is slow well before that.
            raise InvalidRecord("invalid_error_code", f"{name}: {value!r:.40} is out of range")
        value = int(value.lstrip("0") or "0")
    if value < 0 or value > MAX_ERROR_CODE:
        raise InvalidRecord("invalid_error_code", f"{name}: {value} is out of range")
    return value or None


def date(doc: Mapping[str, object], name: str) -> datetime:
    value = optional_date(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    return value


def optional_date(doc: Mapping[str, object], name: str) -> datetime | None:
    value = string(doc, name)
    return None if value is None else parse_timestamp(name, value)


def parse_timestamp(name: str, value: str) -> datetime:
    """ISO 8601 / RFC 3339 (fractions, Z or offset) or RFC 2822; always timezone-aware.

    A timestamp without an offset is taken as UTC, which is what Twilio means by its dates.
    """
    text = value.strip()
    parsed: datetime | None = None
    if text[:4].isdigit():
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
    if parsed is None:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            raise InvalidRecord(
                "invalid_date", f"{name}: {value!r:.60} is not an ISO 8601 or RFC 2822 date"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRecord("invalid_date", f"{name}: {value!r:.60} is out of range") from None
