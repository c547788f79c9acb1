"""The pure core: merge receipt events into receipt state and derive message summaries.

Nothing here does I/O. The merge is a join-semilattice (commutative, associative,
idempotent), so any arrival order and any number of duplicates give the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import NamedTuple

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


def _outranks(a: ReceiptEvent, b: ReceiptEvent) -> bool:
    """`_rank(a) >= _rank(b)`, without building the tuples when status or date decide (they
    nearly always do: the merge runs for every event that meets its receipt in a batch)."""
    if a.status != b.status:
        return a.status > b.status
    if a.date_updated != b.date_updated:
        return a.date_updated > b.date_updated
    return _rank(a) >= _rank(b)


def merge(a: ReceiptEvent, b: ReceiptEvent) -> ReceiptEvent:
    """The receipt state after seeing both `a` and `b` (events or states of one receipt)."""
    winner = a if _outranks(a, b) else b
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


# How a message's counts move when one receipt goes from one status (None: new) to another,
# as Counts' fields in order; None where they do not move. Summed as plain ints per message
# in `apply_batch`, which builds one Counts per message instead of one per receipt.
_MOVES: Mapping[tuple[Status | None, Status], tuple[int, ...] | None] = {
    (before, after): (
        None
        if contribution(after) == contribution(before)
        else astuple(contribution(after) - contribution(before))
    )
    for before in (None, *Status)
    for after in Status
}


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


class ReceiptChange(NamedTuple):
    """A receipt whose stored state changes in this batch; `before` is None for a new one.

    A NamedTuple: one is made per changed receipt, and a frozen dataclass costs an
    `object.__setattr__` per field."""

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
    # Per message: its first changed receipt (the summary row's other columns) and the sum.
    sums: dict[str, tuple[ReceiptEvent, list[int]]] = {}
    for key, event in incoming.items():
        before = stored.get(key)
        after = event if before is None else merge(before, event)
        if after == before:
            continue
        changes.append(ReceiptChange(before, after))
        moved = _MOVES[(None if before is None else before.status, after.status)]
        if moved is None:
            continue
        entry = sums.get(after.message_sid)
        if entry is None:
            sums[after.message_sid] = (after, list(moved))
        else:
            entry[1][:] = [a + b for a, b in zip(entry[1], moved, strict=True)]
    deltas = [
        MessageDelta(
            first.message_sid,
            first.conversation_sid,
            first.account_sid,
            first.chat_service_sid,
            Counts(*total),
        )
        for first, total in sums.values()
        if any(total)
    ]
    return BatchOutcome(changes, deltas)
