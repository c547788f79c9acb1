"""The domain vocabulary: delivery statuses and the typed receipt event every input form becomes."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import NamedTuple


class Status(IntEnum):
    """Delivery status; the integer order is the merge order of SPEC §3.

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
