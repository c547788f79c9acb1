"""The domain vocabulary: delivery statuses and the typed receipt event every input form becomes."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import NamedTuple


class Status(IntEnum):
    """Delivery status; the integer order is the merge order (docs/design.md, "Merge order").

    delivered and read are confirmations that happened, so nothing overrides them; undelivered
    overrides sent (the source document says so); a late sent never overrides a failure.
    """

    QUEUED = 0
    SENT = 1
    FAILED = 2
    UNDELIVERED = 3
    DELIVERED = 4
    READ = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Status:
        return _BY_LABEL[label]


_BY_LABEL = {s.name.lower(): s for s in Status}
STATUS_LABELS = frozenset(_BY_LABEL)

# The stages of a message's `delivery` summary, in Twilio's order.
STAGES = ("sent", "delivered", "read", "failed", "undelivered")

# Cumulative reach (docs/design.md, "Summary counts"): the stages a receipt in each status
# has reached. A later stage counts the earlier ones; queued has reached none. This is the one
# statement of the rule: summary counts, stage metrics and the API's stats derive from it.
STAGES_REACHED: dict[Status, frozenset[str]] = {
    Status.QUEUED: frozenset(),
    Status.SENT: frozenset({"sent"}),
    Status.FAILED: frozenset({"failed"}),
    Status.UNDELIVERED: frozenset({"sent", "undelivered"}),
    Status.DELIVERED: frozenset({"sent", "delivered"}),
    Status.READ: frozenset({"sent", "delivered", "read"}),
}

# Per stage, the status labels that have reached it (for SQL: `status = ANY(...)`).
STATUSES_REACHING: dict[str, list[str]] = {
    stage: [s.label for s in Status if stage in STAGES_REACHED[s]] for stage in STAGES
}


class ReceiptEvent(NamedTuple):
    """One delivery-receipt observation, typed and validated, whatever form it arrived in.

    Immutable. A NamedTuple rather than a frozen dataclass: the parser builds one per event,
    and a frozen dataclass's __init__ (one object.__setattr__ per field) cost three times as
    much (docs/benchmark.md). It also lets the batch's column arrays be built by zip().
    """

    account_sid: str
    chat_service_sid: str | None
    conversation_sid: str
    message_sid: str
    receipt_sid: str
    channel_message_sid: str | None
    participant_sid: str
    channel: str
    status: Status
    error_code: int | None
    date_created: datetime
    date_updated: datetime

    @property
    def key(self) -> tuple[str, str]:
        """A receipt is one message to one participant."""
        return (self.message_sid, self.participant_sid)


class StatusEvent(NamedTuple):
    """A Messaging status event: what happened to one channel message (SMS/MMS).

    Input forms 5 and 6 of docs/design.md, "Input forms".

    It names no conversation, message or participant; it applies to the receipt whose
    `channel_message_sid` it names, as a receipt event with this status, error and time.
    """

    account_sid: str
    channel_message_sid: str
    status: Status
    error_code: int | None
    date_updated: datetime
