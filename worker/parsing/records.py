"""Which input form a record is, and its envelope: JSON or form body, single or batched
CloudEvents, the CloudEvents Kafka binding. The forms' fields are read by receipts.py and
statuses.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from worker import native
from worker.events import ReceiptEvent, StatusEvent
from worker.parsing import receipts, statuses
from worker.parsing.fast import form_pairs
from worker.parsing.fields import InvalidRecord
from worker.parsing.receipts import CLOUDEVENT_TYPE, WEBHOOK_EVENT_TYPE
from worker.parsing.statuses import MESSAGING_CLOUDEVENT_PREFIX

_JSON_TYPES = frozenset(
    {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
)
_FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(slots=True)
class ParsedRecord:
    """What one record yielded: events to apply, and reasons for items skipped on purpose."""

    events: list[ReceiptEvent] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add_event(self, event: ReceiptEvent | None) -> None:
        if event is None:
            self.skipped.append("chat_channel")
        else:
            self.events.append(event)

    def add_status(self, status: StatusEvent | None) -> None:
        if status is None:
            self.skipped.append("inbound_status")
        else:
            self.statuses.append(status)


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

    content_type = _content_type(headers)
    if content_type == _FORM_TYPE:
        return _parse_form(value, timestamp_ms)
    if content_type in _JSON_TYPES or value.lstrip()[:1] in (b"{", b"["):
        return _parse_json(value, headers, timestamp_ms)
    return _parse_form(value, timestamp_ms)


def _content_type(headers: Sequence[tuple[str, bytes]]) -> str:
    """The media type of the record's content-type header, as `_headers` reads it (the last
    readable one), in lower case; "" if none. Every record needs it, and only it."""
    found = ""
    for key, raw in headers:
        if raw is not None and key.lower() == "content-type":
            try:
                found = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
    return found.split(";", 1)[0].strip().lower()


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
    value: bytes, headers: Sequence[tuple[str, bytes]], timestamp_ms: int | None
) -> ParsedRecord:
    if native.FAST_PARSER is not None:
        # Nearly every record: read without building its dicts, or None (then read below).
        compiled = native.FAST_PARSER.json_events(value, timestamp_ms)
        if compiled is not None:
            return ParsedRecord(*compiled)
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
        parsed.add_event(receipts.receipt_event(doc, receipts.SNAKE))
    elif statuses.is_status_callback(doc):
        parsed.add_status(statuses.callback_status(doc, timestamp_ms))
    elif "ce_type" in (header_map := _headers(headers)):
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
        parsed.add_event(receipts.receipt_event(data, receipts.PASCAL))
    elif event_type.startswith(MESSAGING_CLOUDEVENT_PREFIX):
        parsed.add_status(statuses.cloudevent_status(event_type, data))
    else:
        parsed.skipped.append("other_event_type")


def _add_webhook(doc: Mapping[str, object], parsed: ParsedRecord) -> None:
    if doc.get("EventType") != WEBHOOK_EVENT_TYPE:
        parsed.skipped.append("other_event_type")
        return
    parsed.add_event(receipts.receipt_event(doc, receipts.PASCAL))


def _parse_form(value: bytes, timestamp_ms: int | None) -> ParsedRecord:
    if native.FAST_PARSER is not None:
        compiled = native.FAST_PARSER.form_events(value, timestamp_ms)
        if compiled is not None:
            return ParsedRecord(*compiled)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord("not_utf8", "record value is not valid UTF-8") from None
    try:
        pairs = form_pairs(text.strip())
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
    elif statuses.is_status_callback(doc):
        parsed.add_status(statuses.callback_status(doc, timestamp_ms))
    else:
        raise InvalidRecord("unknown_form", "form body has neither EventType nor MessageStatus")
    return parsed
