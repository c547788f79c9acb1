"""The pure core: merge receipt events into receipt state and derive message summaries.

Nothing here does I/O. The merge is a join-semilattice (commutative, associative,
idempotent), so any arrival order and any number of duplicates give the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from worker.events import STAGES_REACHED, ReceiptEvent, Status

ReceiptKey = tuple[str, str]


def _rank(event: ReceiptEvent) -> tuple[object, ...]:
    """Total order on everything except date_created (which merges by minimum instead).

    Status decides first (docs/design.md, "Merge order"), then the latest date_updated, then
    the larger error code;
    the remaining fields only break ties between otherwise-equal events deterministically.
    """
    return (
        event.status,
        event.date_updated,
        -1 if event.error_code is None else event.error_code,
        event.receipt_sid,
        event.channel_message_sid or "",
        event.channel,
        event.account_sid,
        event.conversation_sid,
        event.chat_service_sid or "",
    )


def merge(a: ReceiptEvent, b: ReceiptEvent) -> ReceiptEvent:
    """The receipt state after seeing both `a` and `b` (events or states of one receipt)."""
    winner = a if _rank(a) >= _rank(b) else b
    earliest = min(a.date_created, b.date_created)
    if winner.date_created == earliest:
        return winner
    return ReceiptEvent(
        account_sid=winner.account_sid,
        chat_service_sid=winner.chat_service_sid,
        conversation_sid=winner.conversation_sid,
        message_sid=winner.message_sid,
        receipt_sid=winner.receipt_sid,
        channel_message_sid=winner.channel_message_sid,
        participant_sid=winner.participant_sid,
        channel=winner.channel,
        status=winner.status,
        error_code=winner.error_code,
        date_created=earliest,
        date_updated=winner.date_updated,
    )


def coalesce(events: Iterable[ReceiptEvent]) -> dict[ReceiptKey, ReceiptEvent]:
    """Fold a batch into one state per receipt, so the database sees each receipt once."""
    states: dict[ReceiptKey, ReceiptEvent] = {}
    for event in events:
        key = event.key
        current = states.get(key)
        states[key] = event if current is None else merge(current, event)
    return states


HistoryKey = tuple[str, str, Status, datetime, int | None]


def distinct_history(events: Iterable[ReceiptEvent]) -> list[ReceiptEvent]:
    """Events with exact duplicates (same receipt, status, date_updated, error_code) dropped."""
    seen: dict[HistoryKey, ReceiptEvent] = {}
    for e in events:
        seen.setdefault(
            (e.message_sid, e.participant_sid, e.status, e.date_updated, e.error_code), e
        )
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class Counts:
    """A message's summary counts: total receipts and how many reached each stage."""

    total: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    undelivered: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.total + other.total,
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.read + other.read,
            self.failed + other.failed,
            self.undelivered + other.undelivered,
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.total - other.total,
            self.sent - other.sent,
            self.delivered - other.delivered,
            self.read - other.read,
            self.failed - other.failed,
            self.undelivered - other.undelivered,
        )

    def is_zero(self) -> bool:
        return self == _ZERO

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "sent": self.sent,
            "delivered": self.delivered,
            "read": self.read,
            "failed": self.failed,
            "undelivered": self.undelivered,
        }


_ZERO = Counts()

# One receipt's contribution to its message's counts: total, and each stage it has reached.
_CONTRIBUTION: Mapping[Status, Counts] = {
    status: Counts(total=1, **dict.fromkeys(reached, 1))
    for status, reached in STAGES_REACHED.items()
}


def contribution(status: Status | None) -> Counts:
    return _ZERO if status is None else _CONTRIBUTION[status]


def recount(statuses: Iterable[Status]) -> Counts:
    """Counts of a message computed directly from its receipts' statuses."""
    total = _ZERO
    for status in statuses:
        total = total + _CONTRIBUTION[status]
    return total


def delivery_word(stage_count: int, total: int) -> str:
    """Twilio's rendering of a stage count: none, all or some."""
    if stage_count == 0:
        return "none"
    return "all" if stage_count == total else "some"


def delivery_object(counts: Counts) -> dict[str, int | str]:
    """The Twilio-shaped `delivery` object of a message resource."""
    return {
        "total": counts.total,
        "sent": delivery_word(counts.sent, counts.total),
        "delivered": delivery_word(counts.delivered, counts.total),
        "read": delivery_word(counts.read, counts.total),
        "failed": delivery_word(counts.failed, counts.total),
        "undelivered": delivery_word(counts.undelivered, counts.total),
    }


@dataclass(frozen=True, slots=True)
class ReceiptChange:
    """A receipt whose stored state changes in this batch; `before` is None for a new one."""

    before: ReceiptEvent | None
    after: ReceiptEvent


@dataclass(frozen=True, slots=True)
class MessageDelta:
    """How one message's counts move in this batch, with what a new summary row needs."""

    message_sid: str
    conversation_sid: str
    account_sid: str
    chat_service_sid: str | None
    delta: Counts


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    changes: list[ReceiptChange]
    deltas: list[MessageDelta]


def apply_batch(
    stored: Mapping[ReceiptKey, ReceiptEvent], incoming: Mapping[ReceiptKey, ReceiptEvent]
) -> BatchOutcome:
    """Merge a coalesced batch into the stored states of its receipts.

    Returns only what changes: receipts whose state differs after the merge, and per message
    the count delta from each changed receipt's old and new status (no recount needed).
    """
    changes: list[ReceiptChange] = []
    deltas: dict[str, MessageDelta] = {}
    for key, event in incoming.items():
        before = stored.get(key)
        after = event if before is None else merge(before, event)
        if after == before:
            continue
        changes.append(ReceiptChange(before, after))
        moved = contribution(after.status) - contribution(None if before is None else before.status)
        if moved.is_zero():
            continue
        current = deltas.get(after.message_sid)
        if current is None:
            deltas[after.message_sid] = MessageDelta(
                after.message_sid,
                after.conversation_sid,
                after.account_sid,
                after.chat_service_sid,
                moved,
            )
        else:
            deltas[after.message_sid] = MessageDelta(
                current.message_sid,
                current.conversation_sid,
                current.account_sid,
                current.chat_service_sid,
                current.delta + moved,
            )
    return BatchOutcome(changes, [d for d in deltas.values() if not d.delta.is_zero()])
