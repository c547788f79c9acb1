"""The conversation receipt forms: one event's fields, in PascalCase or snake_case, as a
ReceiptEvent (forms 1 to 4 of docs/design.md, "Input forms").

Nearly every event has one shape, which worker/parsing/fast.py builds in a few calls; any
other goes field by field here, so a bad one is refused with its exact reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from worker.events import ReceiptEvent
from worker.parsing import fields
from worker.parsing.fast import common_event

CLOUDEVENT_TYPE: Final = "com.twilio.conversations.delivery.updated"
WEBHOOK_EVENT_TYPE: Final = "onDeliveryUpdated"


@dataclass(frozen=True, slots=True)
class FieldNames:
    """Where a form keeps each field of a receipt event."""

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


# The webhook and the CloudEvent's data.
PASCAL: Final = FieldNames(
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
# The REST resource (DeliveryReceipt).
SNAKE: Final = FieldNames(
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


def receipt_event(doc: Mapping[str, object], names: FieldNames) -> ReceiptEvent | None:
    """The event, or None for a chat participant's (validated, then skipped on purpose)."""
    event = common_event(doc, names)
    return _checked_event(doc, names) if event is None else event


def _checked_event(doc: Mapping[str, object], names: FieldNames) -> ReceiptEvent | None:
    """Every field checked one by one, with the exact reason of the first bad one."""
    channel_message_sid = fields.optional_sid(doc, names.channel_message, None)
    date_created = fields.date(doc, names.date_created)
    event = ReceiptEvent(
        account_sid=fields.sid(doc, names.account, "AC"),
        chat_service_sid=fields.optional_sid(doc, names.chat_service, "IS"),
        conversation_sid=fields.sid(doc, names.conversation, "CH"),
        message_sid=fields.sid(doc, names.message, "IM"),
        receipt_sid=fields.sid(doc, names.receipt, "DY"),
        channel_message_sid=channel_message_sid,
        participant_sid=fields.sid(doc, names.participant, "MB"),
        channel=fields.channel(doc, channel_message_sid),
        status=fields.status(doc, names.status),
        error_code=fields.error_code(doc, names.error_code),
        date_created=date_created,
        # Twilio: date_updated is "null if not updated", i.e. still as created.
        date_updated=fields.optional_date(doc, names.date_updated) or date_created,
    )
    # Chat participants get no receipts upstream; such an event is not part of any summary.
    # It is validated all the same, so a bad one is a dead letter, not a skip.
    return None if event.channel == "chat" else event
