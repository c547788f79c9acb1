"""The Messaging status forms: the classic status callback (form body or JSON) and Event
Streams' `com.twilio.messaging.message.*` CloudEvents, as StatusEvents (forms 5 and 6 of
docs/design.md, "Input forms").

They name only the channel message (SM/MM); worker/status_join.py joins them to receipts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from worker import sids
from worker.events import Status, StatusEvent
from worker.parsing import fields
from worker.parsing.fields import InvalidRecord

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


@dataclass(frozen=True, slots=True)
class _StatusFieldNames:
    account: str
    message: str
    error_code: str


_CALLBACK = _StatusFieldNames(account="AccountSid", message="MessageSid", error_code="ErrorCode")
_CAMEL = _StatusFieldNames(account="accountSid", message="messageSid", error_code="errorCode")


def is_status_callback(doc: Mapping[str, object]) -> bool:
    return "MessageStatus" in doc or "SmsStatus" in doc


def callback_status(doc: Mapping[str, object], timestamp_ms: int | None) -> StatusEvent | None:
    """The classic status callback; None for an inbound message's (skipped on purpose).

    It carries no time of its own: the Kafka record's timestamp stands in.
    """
    name = "MessageStatus" if fields.string(doc, "MessageStatus") is not None else "SmsStatus"
    status = _messaging_status(doc, name)
    if timestamp_ms is None:
        raise InvalidRecord("missing_field", "a status callback needs the record's timestamp")
    try:
        at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidRecord(
            "invalid_date", f"record timestamp {timestamp_ms} is out of range"
        ) from None
    return _status_event(doc, _CALLBACK, status, at)


def cloudevent_status(event_type: str, data: Mapping[str, object]) -> StatusEvent | None:
    """Event Streams' Messaging.MessageStatus (camelCase data, upper-case status); None for
    an inbound message's."""
    if fields.string(data, "messageStatus") is not None:
        status = _messaging_status(data, "messageStatus")
    else:
        suffix = {"messageStatus": event_type.removeprefix(MESSAGING_CLOUDEVENT_PREFIX)}
        status = _messaging_status(suffix, "messageStatus")
    # v7 and later carry the status update's own time; older versions only the event's.
    name = "dateUpdated" if fields.string(data, "dateUpdated") is not None else "timestamp"
    return _status_event(data, _CAMEL, status, fields.date(data, name))


def _status_event(
    doc: Mapping[str, object], names: _StatusFieldNames, status: Status | None, at: datetime
) -> StatusEvent | None:
    """Validate every field first, then the event, or None for an inbound one."""
    account_sid = fields.sid(doc, names.account, "AC")
    value = fields.string(doc, names.message)
    if value is None:
        raise InvalidRecord("missing_field", f"{names.message} is required")
    channel_message_sid = fields.check_sid(names.message, value, None)
    if channel_message_sid[:2] not in sids.CHANNEL_MESSAGE_PREFIXES:
        raise InvalidRecord(
            "invalid_sid", f"{names.message}: a Messaging status names an SM or MM message"
        )
    error_code = fields.error_code(doc, names.error_code)
    if status is None:
        return None
    return StatusEvent(account_sid, channel_message_sid, status, error_code, at)


def _messaging_status(doc: Mapping[str, object], name: str) -> Status | None:
    """The receipt status of a Messaging status, or None for an inbound one (skipped)."""
    value = fields.string(doc, name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    label = value.strip().lower()
    if label in INBOUND_STATUSES:
        return None
    status = MESSAGING_STATUSES.get(label)
    if status is None:
        raise InvalidRecord("unknown_status", f"{name}: unknown Messaging status {value!r:.40}")
    return status
