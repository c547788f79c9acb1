"""Turns one Kafka record (any input form of docs/design.md, "Input forms") into typed events.

Pure: bytes and headers in, events out, or an InvalidRecord naming why. Nothing here
trusts the producer: every value is type-checked and normalised, whatever the form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import orjson

from worker.events import ReceiptEvent, Status, StatusEvent
from worker.parsing_fast import MAX_ERROR_CODE
from worker.parsing_fast import common_event as _common_event
from worker.parsing_fast import form_pairs as _form_pairs

CLOUDEVENT_TYPE: Final = "com.twilio.conversations.delivery.updated"
WEBHOOK_EVENT_TYPE: Final = "onDeliveryUpdated"
# Event Streams' Messaging status types are this prefix plus the status (schema
# Messaging.MessageStatus), e.g. com.twilio.messaging.message.delivered.
MESSAGING_CLOUDEVENT_PREFIX: Final = "com.twilio.messaging.message."

# Messaging statuses (Twilio's Message resource) as receipt statuses (docs/design.md). Inbound ones
# say nothing about delivery and are skipped. `partially_delivered` is not in the spec: some
# of a message's parts reached the handset, which confirms no more than `sent`.
MESSAGING_STATUSES: Final = {
    "accepted": Status.QUEUED,
    "scheduled": Status.QUEUED,
    "queued": Status.QUEUED,
    "sending": Status.QUEUED,
    "sent": Status.SENT,
    "partially_delivered": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "failed": Status.FAILED,
    "undelivered": Status.UNDELIVERED,
    "canceled": Status.FAILED,
}
INBOUND_STATUSES: Final = frozenset({"receiving", "received"})
_CHANNEL_MESSAGE_PREFIXES: Final = ("SM", "MM")

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

_SID_BODY = re.compile(r"[0-9a-fA-F]{32}")
# Twilio's pattern for a channel message SID's prefix is [a-zA-Z]{2}.
_ANY_PREFIX = re.compile(r"[a-zA-Z]{2}")
# The spelling nearly every SID arrives in (lower-case hex): accepted as is in one match.
_CANONICAL_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_ERROR_CODE = MAX_ERROR_CODE


class InvalidRecord(Exception):
    """The record cannot be applied; `reason` is one of REASONS, the message says exactly why."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class ParsedRecord:
    """What one record yielded: events to apply, and reasons for items skipped on purpose."""

    events: list[ReceiptEvent] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _FieldNames:
    account: str
    chat_service: str
    conversation: str
    message: str
    receipt: str
    channel_message: str
    participant: str
    status: str
    error_code: str
    date_created: str
    date_updated: str


_PASCAL = _FieldNames(
    account="AccountSid",
    chat_service="ChatServiceSid",
    conversation="ConversationSid",
    message="MessageSid",
    receipt="DeliveryReceiptSid",
    channel_message="ChannelMessageSid",
    participant="ParticipantSid",
    status="Status",
    error_code="ErrorCode",
    date_created="DateCreated",
    date_updated="DateUpdated",
)
_SNAKE = _FieldNames(
    account="account_sid",
    chat_service="chat_service_sid",
    conversation="conversation_sid",
    message="message_sid",
    receipt="sid",
    channel_message="channel_message_sid",
    participant="participant_sid",
    status="status",
    error_code="error_code",
    date_created="date_created",
    date_updated="date_updated",
)

_JSON_TYPES = frozenset(
    {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
)
_FORM_TYPE = "application/x-www-form-urlencoded"


def parse_record(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    *,
    max_bytes: int,
    timestamp_ms: int | None = None,
) -> ParsedRecord:
    """Parse one record. A record is atomic: if any part of it is bad, none of it is applied.

    `timestamp_ms` is the Kafka record's timestamp: the time of a Messaging status callback,
    which carries none of its own.
    """
    if not value:
        raise InvalidRecord("empty_value", "record has no value (tombstone or empty)")
    if len(value) > max_bytes:
        raise InvalidRecord("too_large", f"record is {len(value)} bytes, limit is {max_bytes}")

    header_map = _headers(headers)
    content_type = header_map.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == _FORM_TYPE:
        return _parse_form(value, timestamp_ms)
    if content_type in _JSON_TYPES or value.lstrip()[:1] in (b"{", b"["):
        return _parse_json(value, header_map, timestamp_ms)
    return _parse_form(value, timestamp_ms)


def _headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, raw in headers:
        if raw is None:
            continue
        try:
            result[key.lower()] = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a header we cannot read is a header we do not use
    return result


def _parse_json(
    value: bytes, header_map: Mapping[str, str], timestamp_ms: int | None
) -> ParsedRecord:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord("not_utf8", "record value is not valid UTF-8") from None
        raise InvalidRecord("malformed", f"invalid JSON: {exc}") from None

    parsed = ParsedRecord()
    if isinstance(doc, list):
        if not doc:
            parsed.skipped.append("empty_batch")
        for index, item in enumerate(doc):
            if not isinstance(item, dict) or "specversion" not in item:
                raise InvalidRecord(
                    "unknown_form", f"batch item {index}: expected a CloudEvent object"
                )
            try:
                _add_cloudevent(item, parsed)
            except InvalidRecord as exc:
                raise InvalidRecord(exc.reason, f"batch item {index}: {exc}") from None
        return parsed
    if not isinstance(doc, dict):
        raise InvalidRecord("unknown_form", f"JSON {type(doc).__name__} is not an input form")

    if "specversion" in doc:
        _add_cloudevent(doc, parsed)
    elif "EventType" in doc:
        _add_webhook(doc, parsed)
    elif "sid" in doc and "message_sid" in doc:
        _add_event(doc, _SNAKE, parsed)
    elif "MessageStatus" in doc or "SmsStatus" in doc:
        _add_status_callback(doc, timestamp_ms, parsed)
    elif "ce_type" in header_map:
        # CloudEvents Kafka binding, binary mode: attributes in headers, data is the value.
        _add_cloudevent_data(header_map["ce_type"], doc, parsed)
    else:
        raise InvalidRecord(
            "unknown_form",
            "JSON object is none of: CloudEvent (specversion), webhook (EventType), "
            "receipt resource (sid, message_sid), status callback (MessageStatus)",
        )
    return parsed


def _add_cloudevent(doc: Mapping[str, object], parsed: ParsedRecord) -> None:
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        raise InvalidRecord("missing_field", "CloudEvent has no string 'type'")
    if event_type != CLOUDEVENT_TYPE and not event_type.startswith(MESSAGING_CLOUDEVENT_PREFIX):
        parsed.skipped.append("other_event_type")
        return
    data = doc.get("data")
    if not isinstance(data, dict):
        raise InvalidRecord("missing_field", "CloudEvent 'data' must be an object")
    _add_cloudevent_data(event_type, data, parsed)


def _add_cloudevent_data(event_type: str, data: Mapping[str, object], parsed: ParsedRecord) -> None:
    if event_type == CLOUDEVENT_TYPE:
        _add_event(data, _PASCAL, parsed)
    elif event_type.startswith(MESSAGING_CLOUDEVENT_PREFIX):
        _add_messaging_cloudevent(event_type, data, parsed)
    else:
        parsed.skipped.append("other_event_type")


def _add_webhook(doc: Mapping[str, object], parsed: ParsedRecord) -> None:
    if doc.get("EventType") != WEBHOOK_EVENT_TYPE:
        parsed.skipped.append("other_event_type")
        return
    _add_event(doc, _PASCAL, parsed)


def _parse_form(value: bytes, timestamp_ms: int | None) -> ParsedRecord:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord("not_utf8", "record value is not valid UTF-8") from None
    try:
        pairs = _form_pairs(text.strip())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRecord("malformed", f"invalid form body: {exc}") from None
    doc: dict[str, object] = {}
    for key, val in pairs:
        if key in doc:
            raise InvalidRecord("malformed", f"form field {key!r} appears more than once")
        doc[key] = val
    parsed = ParsedRecord()
    if "EventType" in doc:
        _add_webhook(doc, parsed)
    elif "MessageStatus" in doc or "SmsStatus" in doc:
        _add_status_callback(doc, timestamp_ms, parsed)
    else:
        raise InvalidRecord("unknown_form", "form body has neither EventType nor MessageStatus")
    return parsed


def _add_event(doc: Mapping[str, object], names: _FieldNames, parsed: ParsedRecord) -> None:
    event = _common_event(doc, names)
    if event is None:
        _add_event_checked(doc, names, parsed)
    else:
        parsed.events.append(event)


def _add_event_checked(doc: Mapping[str, object], names: _FieldNames, parsed: ParsedRecord) -> None:
    """Every field checked one by one, with the exact reason of the first bad one."""
    channel_message_sid = _optional_sid(doc, names.channel_message, None)
    date_created = _date(doc, names.date_created)
    event = ReceiptEvent(
        account_sid=_sid(doc, names.account, "AC"),
        chat_service_sid=_optional_sid(doc, names.chat_service, "IS"),
        conversation_sid=_sid(doc, names.conversation, "CH"),
        message_sid=_sid(doc, names.message, "IM"),
        receipt_sid=_sid(doc, names.receipt, "DY"),
        channel_message_sid=channel_message_sid,
        participant_sid=_sid(doc, names.participant, "MB"),
        channel=_channel(doc, channel_message_sid),
        status=_status(doc, names.status),
        error_code=_error_code(doc, names.error_code),
        date_created=date_created,
        # Twilio: date_updated is "null if not updated", i.e. still as created.
        date_updated=_optional_date(doc, names.date_updated) or date_created,
    )
    if event.channel == "chat":
        # Chat participants get no receipts upstream; such an event is not part of any
        # summary. It is validated all the same, so a bad one is a dead letter, not a skip.
        parsed.skipped.append("chat_channel")
        return
    parsed.events.append(event)


def _add_status_callback(
    doc: Mapping[str, object], timestamp_ms: int | None, parsed: ParsedRecord
) -> None:
    """The classic Messaging status callback (form body, or the same fields as JSON)."""
    name = "MessageStatus" if _string(doc, "MessageStatus") is not None else "SmsStatus"
    status = _messaging_status(doc, name)
    if timestamp_ms is None:
        raise InvalidRecord("missing_field", "a status callback needs the record's timestamp")
    try:
        at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidRecord(
            "invalid_date", f"record timestamp {timestamp_ms} is out of range"
        ) from None
    _add_status(doc, _CALLBACK, status, at, parsed)


def _add_messaging_cloudevent(
    event_type: str, data: Mapping[str, object], parsed: ParsedRecord
) -> None:
    """Event Streams' Messaging.MessageStatus: camelCase data, upper-case status."""
    if _string(data, "messageStatus") is not None:
        status = _messaging_status(data, "messageStatus")
    else:
        suffix = {"messageStatus": event_type.removeprefix(MESSAGING_CLOUDEVENT_PREFIX)}
        status = _messaging_status(suffix, "messageStatus")
    # v7 and later carry the status update's own time; older versions only the event's.
    name = "dateUpdated" if _string(data, "dateUpdated") is not None else "timestamp"
    _add_status(data, _CAMEL, status, _date(data, name), parsed)


@dataclass(frozen=True, slots=True)
class _StatusFieldNames:
    account: str
    message: str
    error_code: str


_CALLBACK = _StatusFieldNames(account="AccountSid", message="MessageSid", error_code="ErrorCode")
_CAMEL = _StatusFieldNames(account="accountSid", message="messageSid", error_code="errorCode")


def _add_status(
    doc: Mapping[str, object],
    names: _StatusFieldNames,
    status: Status | None,
    at: datetime,
    parsed: ParsedRecord,
) -> None:
    """Validate every field first, then keep the event, or skip an inbound one."""
    account_sid = _sid(doc, names.account, "AC")
    value = _string(doc, names.message)
    if value is None:
        raise InvalidRecord("missing_field", f"{names.message} is required")
    channel_message_sid = _check_sid(names.message, value, None)
    if channel_message_sid[:2] not in _CHANNEL_MESSAGE_PREFIXES:
        raise InvalidRecord(
            "invalid_sid", f"{names.message}: a Messaging status names an SM or MM message"
        )
    error_code = _error_code(doc, names.error_code)
    if status is None:
        parsed.skipped.append("inbound_status")
        return
    parsed.statuses.append(StatusEvent(account_sid, channel_message_sid, status, error_code, at))


def _messaging_status(doc: Mapping[str, object], name: str) -> Status | None:
    """The receipt status of a Messaging status, or None for an inbound one (skipped)."""
    value = _string(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    label = value.strip().lower()
    if label in INBOUND_STATUSES:
        return None
    status = MESSAGING_STATUSES.get(label)
    if status is None:
        raise InvalidRecord("unknown_status", f"{name}: unknown Messaging status {value!r:.40}")
    return status


def _string(doc: Mapping[str, object], name: str) -> str | None:
    """The field as a string; None when absent, null or empty."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{name}: expected a string, got {type(value).__name__}")
    return value or None


def _check_sid(name: str, value: str, prefix: str | None) -> str:
    if _CANONICAL_SID.fullmatch(value) is not None and (prefix is None or value[:2] == prefix):
        return value  # the hot path: already valid and normalised
    head, body = value[:2], value[2:]
    ok = len(value) == 34 and _SID_BODY.fullmatch(body) is not None
    ok = ok and (head == prefix if prefix else _ANY_PREFIX.fullmatch(head) is not None)
    if not ok:
        expected = prefix or "two uppercase letters"
        raise InvalidRecord(
            "invalid_sid",
            f"{name}: expected {expected} followed by 32 hex digits, got {value!r:.60}",
        )
    # Hex case is not significant; one spelling keeps one key per receipt. A free prefix
    # (channel message SIDs) is upper-cased so that `sm…` still names an SMS.
    return head.upper() + body.lower()


def _sid(doc: Mapping[str, object], name: str, prefix: str) -> str:
    value = _string(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    return _check_sid(name, value, prefix)


def _optional_sid(doc: Mapping[str, object], name: str, prefix: str | None) -> str | None:
    value = _string(doc, name)
    return None if value is None else _check_sid(name, value, prefix)


def _channel(doc: Mapping[str, object], channel_message_sid: str | None) -> str:
    for name in ("Channel", "channel"):
        explicit = _string(doc, name)
        if explicit is not None:
            channel = explicit.strip().lower()
            if not _CHANNEL.fullmatch(channel):
                raise InvalidRecord("invalid_channel", f"{name}: {explicit!r:.60} is not a channel")
            return channel
    prefix = channel_message_sid[:2] if channel_message_sid else ""
    if prefix == "WA":
        return "whatsapp"
    if prefix in ("SM", "MM"):
        return "sms"
    return "unknown"


def _status(doc: Mapping[str, object], name: str) -> Status:
    # Twilio: an empty status means the receipt was created and is still within Twilio.
    value = _string(doc, name)
    if value is None:
        return Status.QUEUED
    try:
        return Status.from_label(value.strip().lower())
    except KeyError:
        raise InvalidRecord("unknown_status", f"{name}: unknown status {value!r:.40}") from None


def _error_code(doc: Mapping[str, object], name: str) -> int | None:
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
    if value < 0 or value > _MAX_ERROR_CODE:
        raise InvalidRecord("invalid_error_code", f"{name}: {value} is out of range")
    return value or None


def _date(doc: Mapping[str, object], name: str) -> datetime:
    value = _optional_date(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    return value


def _optional_date(doc: Mapping[str, object], name: str) -> datetime | None:
    value = _string(doc, name)
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
