"""The pure join of Messaging status events to receipts by channel message SID.

The rule is in docs/design.md ("Input forms", "Messaging status events join receipts").

A status event names only a channel message (SM/MM). Each channel message has one link
row: once its receipt is known, the link names it (and never changes again); before that,
the row is a placeholder holding the status events that arrived first. `plan_links` decides,
from the link rows of a batch's channel messages (read under lock) and the batch itself,
which links to write, which status events wait and which apply now. Nothing here does I/O,
so the same decisions are property-tested for any order and any duplication.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from worker.events import ReceiptEvent, StatusEvent

ReceiptKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A stored link: the receipt of a channel message, or the status events waiting for it."""

    receipt: ReceiptKey | None
    pending: tuple[StatusEvent, ...] = ()


@dataclass(slots=True)
class LinkPlan:
    """What a batch does to the link rows it locked, and the status events it applies."""

    # Channel messages whose receipt this batch makes known.
    link: dict[str, ReceiptKey] = field(default_factory=dict)
    # Channel messages still without a receipt, with every status event waiting for it.
    pending: dict[str, tuple[StatusEvent, ...]] = field(default_factory=dict)
    # Status events to apply now (batch ones and ones that were waiting), with their receipt.
    apply: list[tuple[ReceiptKey, StatusEvent]] = field(default_factory=list)


def plan_links(
    rows: Mapping[str, LinkRow],
    receipt_links: Mapping[str, ReceiptKey],
    statuses: Iterable[StatusEvent],
) -> LinkPlan:
    """Join a batch's status events to receipts.

    `rows` holds the stored link rows of the batch's channel messages (absent: no row yet);
    `receipt_links` maps the channel message SID of each receipt in the batch to its key.
    A link, once stored, wins over a batch receipt that names the same channel message: a
    channel message has one receipt, and the first one seen keeps it.
    """
    by_channel: dict[str, list[StatusEvent]] = {}
    for status in statuses:
        by_channel.setdefault(status.channel_message_sid, []).append(status)
    plan = LinkPlan()
    for sid in sorted(by_channel.keys() | receipt_links.keys()):
        row = rows.get(sid)
        receipt = row.receipt if row is not None else None
        waiting: Sequence[StatusEvent] = row.pending if row is not None else ()
        if receipt is None and sid in receipt_links:
            receipt = plan.link[sid] = receipt_links[sid]
            plan.apply.extend((receipt, s) for s in waiting)
            waiting = ()
        arrived = by_channel.get(sid, ())
        if receipt is not None:
            plan.apply.extend((receipt, s) for s in arrived)
        elif arrived:
            plan.pending[sid] = distinct_statuses([*waiting, *arrived])
    return plan


def distinct_statuses(statuses: Iterable[StatusEvent]) -> tuple[StatusEvent, ...]:
    """Status events without duplicates, in one canonical order (so rows compare equal)."""
    return tuple(sorted(set(statuses), key=_status_order))


def _status_order(s: StatusEvent) -> tuple[object, ...]:
    return (s.date_updated, s.status, -1 if s.error_code is None else s.error_code, s.account_sid)


def as_receipt_event(receipt: ReceiptEvent, status: StatusEvent) -> ReceiptEvent | None:
    """The receipt event a status event stands for: the receipt with its status, error, time.

    None when the accounts differ: a channel message SID is unique across Twilio, so such
    an event is not this receipt's, and one account's events never change another's data.
    """
    if status.account_sid != receipt.account_sid:
        return None
    return receipt._replace(
        status=status.status, error_code=status.error_code, date_updated=status.date_updated
    )
