"""The pure join of Messaging status events to receipts by channel message SID.

The rule is in docs/design.md ("Input forms", "Messaging status events join receipts").

A status event names only a channel message (SM/MM). Each channel message has one link
row: once its receipt is known, the link names it (and never changes again); before that,
the row is a placeholder holding the status events that arrived first. `fresh_links` says
what the batch writes where no row exists; `plan_links` decides, from the rows that
existed (read under lock) and the batch itself, which of those change, which status
events wait and which apply now. Nothing here does I/O, so the same decisions are
property-tested for any order and any duplication.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from worker.events import ReceiptEvent, StatusEvent
from worker.sids import CHANNEL_MESSAGE_PREFIXES

ReceiptKey = tuple[str, str]


class LinkRow(NamedTuple):
    """A stored link: the receipt of a channel message, or the status events waiting for it."""

    receipt: ReceiptKey | None
    pending: tuple[StatusEvent, ...] = ()


@dataclass(slots=True)
class LinkPlan:
    """What a batch does to the link rows that existed, and the status events it applies."""

    # Rows that existed and change: placeholders that get their receipt or more waiting events.
    updates: dict[str, LinkRow] = field(default_factory=dict)
    # Channel messages still without a receipt after this batch.
    waiting: set[str] = field(default_factory=set)
    # Status events to apply now (batch ones and ones that were waiting), with their receipt.
    apply: list[tuple[ReceiptKey, StatusEvent]] = field(default_factory=list)


def receipt_links(states: Mapping[ReceiptKey, ReceiptEvent]) -> dict[str, ReceiptKey]:
    """The channel message of each receipt that a status event can name, with the receipt.

    Only SMS/MMS channel messages get a link: a status event names nothing else (the parser
    refuses it), so a WhatsApp (`WA…`) channel message's link could never be read, and each
    link is one more entry in a random-keyed index (docs/benchmark.md, "Growth").
    """
    return {
        s.channel_message_sid: key
        for key, s in states.items()
        if s.channel_message_sid is not None
        and s.channel_message_sid[:2] in CHANNEL_MESSAGE_PREFIXES
    }


def fresh_links(
    receipt_links: Mapping[str, ReceiptKey], statuses: Iterable[StatusEvent]
) -> dict[str, LinkRow]:
    """The row the batch writes for each of its channel messages where none exists yet.

    A receipt in the batch makes the link; a status event with no receipt in the batch makes
    a placeholder holding it. The transaction inserts these first (which locks them) and
    hands the rows that already existed to `plan_links`.
    """
    waiting: dict[str, list[StatusEvent]] = {}
    for status in statuses:
        if status.channel_message_sid not in receipt_links:
            waiting.setdefault(status.channel_message_sid, []).append(status)
    rows = {sid: LinkRow(None, distinct_statuses(found)) for sid, found in waiting.items()}
    rows.update((sid, LinkRow(key)) for sid, key in receipt_links.items())
    return rows


def plan_links(
    existing: Mapping[str, LinkRow],
    receipt_links: Mapping[str, ReceiptKey],
    statuses: Iterable[StatusEvent],
) -> LinkPlan:
    """Join a batch's status events to receipts, once its `fresh_links` are inserted.

    `existing` holds the rows that were already stored (read under lock) for the batch's
    channel messages; every other one of them now holds its `fresh_links` row.
    `receipt_links` maps the channel message SID of each receipt in the batch to its key.
    A link, once stored, wins over a batch receipt that names the same channel message: a
    channel message has one receipt, and the first one seen keeps it.
    """
    by_channel: dict[str, list[StatusEvent]] = {}
    for status in statuses:
        by_channel.setdefault(status.channel_message_sid, []).append(status)
    plan = LinkPlan()
    for sid in sorted(by_channel.keys() | existing.keys()):
        arrived = by_channel.get(sid, ())
        row = existing.get(sid)
        if row is None:  # the batch's fresh row: a link to its receipt, or a placeholder
            receipt = receipt_links.get(sid)
            if receipt is None:
                plan.waiting.add(sid)
            else:
                plan.apply.extend((receipt, s) for s in arrived)
            continue
        receipt, waiting = row
        if receipt is None and sid in receipt_links:
            receipt = receipt_links[sid]
            plan.updates[sid] = LinkRow(receipt)
            plan.apply.extend((receipt, s) for s in waiting)
        if receipt is not None:
            plan.apply.extend((receipt, s) for s in arrived)
            continue
        plan.waiting.add(sid)
        merged = distinct_statuses([*waiting, *arrived])
        if merged != waiting:
            plan.updates[sid] = LinkRow(None, merged)
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
