"""The join of Messaging status events to receipts (worker/status_join.py), property-tested.

A model of the batch transaction's decisions (links stored per channel message, receipts
merged) is fed the same events in any order, any duplication and any batching; it must end
at the reduction of the receipt events the status events stand for, as if they had come as
receipt events. The real transaction is tested the same way on PostgreSQL in
tests/integration/test_concurrent_store.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.events import ReceiptEvent, Status, StatusEvent
from worker.loadgen import generate_events, messaging_outcomes, plain_sms_statuses
from worker.reduction import coalesce, distinct_history, merge
from worker.status_join import (
    LinkRow,
    as_receipt_event,
    distinct_statuses,
    fresh_links,
    plan_links,
    receipt_links,
)

Item = ReceiptEvent | StatusEvent


class Model:
    """What PostgreSQL holds after each batch, kept in dicts."""

    def __init__(self) -> None:
        self.links: dict[str, LinkRow] = {}
        self.receipts: dict[tuple[str, str], ReceiptEvent] = {}
        self.history: set[tuple[object, ...]] = set()

    def apply(self, batch: list[Item]) -> None:
        events = [i for i in batch if isinstance(i, ReceiptEvent)]
        statuses = [i for i in batch if isinstance(i, StatusEvent)]
        states = coalesce(events)
        links = receipt_links(states)
        # As the transaction does: insert the fresh rows where none exists, plan with the rest.
        fresh = fresh_links(links, statuses)
        existing = {c: self.links[c] for c in fresh if c in self.links}
        self.links.update((c, row) for c, row in fresh.items() if c not in existing)
        plan = plan_links(existing, links, statuses)
        assert plan.updates.keys() <= existing.keys()
        self.links.update(plan.updates)
        joined = []
        for key, status in plan.apply:
            receipt = states.get(key) or self.receipts[key]
            event = as_receipt_event(receipt, status)
            assert event is not None
            joined.append(event)
        for e in [*events, *joined]:
            current = self.receipts.get(e.key)
            self.receipts[e.key] = e if current is None else merge(current, e)
        self.history |= {
            (e.key, e.status, e.date_updated, e.error_code)
            for e in distinct_history(joined + events)
        }


def stream(seed: int, share: float) -> tuple[list[Item], list[ReceiptEvent], list[StatusEvent]]:
    events = list(generate_events(8, seed=seed, max_receipts=4, whatsapp_prefix="SM"))
    kept, moved = messaging_outcomes(events, seed=seed, share=share)
    plain = plain_sms_statuses(3, seed=seed + 7919, account_sid=events[0].account_sid)
    items: list[Item] = [*kept, *(s for _, s in moved), *plain]
    return items, [*kept, *(e for e, _ in moved)], plain


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    share=st.sampled_from([0.3, 0.7, 1.0]),
    rnd=st.randoms(use_true_random=False),
    duplicates=st.floats(0, 0.5),
    max_batch=st.integers(1, 12),
)
def test_any_order_duplication_and_batching_give_the_receipt_reduction(
    seed: int, share: float, rnd: random.Random, duplicates: float, max_batch: int
) -> None:
    items, reference, plain = stream(seed, share)
    delivered = [i for i in items for _ in range(2 if rnd.random() < duplicates else 1)]
    rnd.shuffle(delivered)
    model = Model()
    while delivered:
        size = rnd.randint(1, max_batch)
        model.apply(delivered[:size])
        delivered = delivered[size:]

    assert model.receipts == coalesce(reference)
    assert model.history == {
        (e.key, e.status, e.date_updated, e.error_code) for e in distinct_history(reference)
    }
    # Plain SMS status events made no receipt; they wait (until they expire), deduplicated.
    waiting = {c: row for c, row in model.links.items() if row.receipt is None}
    assert waiting == {s.channel_message_sid: LinkRow(None, (s,)) for s in plain}


def test_only_channel_messages_a_status_can_name_get_a_link() -> None:
    events = list(generate_events(40, seed=5))
    states = coalesce(events)
    by_prefix: dict[str | None, int] = {}
    for state in states.values():
        prefix = state.channel_message_sid[:2] if state.channel_message_sid else None
        by_prefix[prefix] = by_prefix.get(prefix, 0) + 1
    assert by_prefix.keys() >= {"SM", "MM", "WA"}
    links = receipt_links(states)
    assert {sid[:2] for sid in links} == {"SM", "MM"}
    assert len(links) == by_prefix["SM"] + by_prefix["MM"]
    assert all(states[key].channel_message_sid == sid for sid, key in links.items())
    no_channel_message = states[next(iter(states))]._replace(channel_message_sid=None)
    assert receipt_links({no_channel_message.key: no_channel_message}) == {}


def test_a_status_before_its_receipt_waits_then_applies_with_it() -> None:
    [receipt] = list(generate_events(1, seed=3, max_receipts=1, whatsapp_prefix="SM"))[:1]
    status = StatusEvent(
        receipt.account_sid,
        receipt.channel_message_sid or "",
        Status.UNDELIVERED,
        30003,
        datetime(2026, 3, 1, 1, tzinfo=UTC),
    )
    assert fresh_links({}, [status]) == {status.channel_message_sid: LinkRow(None, (status,))}
    first = plan_links({}, {}, [status])
    assert first.waiting == {status.channel_message_sid} and not first.apply
    assert not first.updates  # the fresh placeholder already holds it
    second = plan_links(
        {status.channel_message_sid: LinkRow(None, (status,))},
        {status.channel_message_sid: receipt.key},
        [],
    )
    assert second.updates == {status.channel_message_sid: LinkRow(receipt.key)}
    assert second.apply == [(receipt.key, status)] and not second.waiting
    # A duplicate of a waiting status changes nothing.
    third = plan_links({status.channel_message_sid: LinkRow(None, (status,))}, {}, [status])
    assert not third.updates and third.waiting == {status.channel_message_sid}


def test_a_stored_link_wins_over_another_receipt_naming_the_same_channel_message() -> None:
    status = plain_sms_statuses(1, seed=1)[0]
    sid = status.channel_message_sid
    plan = plan_links({sid: LinkRow(("IMa", "MBa"))}, {sid: ("IMb", "MBb")}, [status])
    assert not plan.updates and plan.apply == [(("IMa", "MBa"), status)]


def test_another_accounts_status_is_not_applied() -> None:
    [receipt] = list(generate_events(1, seed=4, max_receipts=1))[:1]
    foreign = StatusEvent(
        "AC" + "0" * 32, receipt.channel_message_sid or "", Status.READ, None, receipt.date_updated
    )
    assert as_receipt_event(receipt, foreign) is None


def test_waiting_statuses_are_kept_once_in_one_order() -> None:
    a, b = plain_sms_statuses(2, seed=9)
    assert distinct_statuses([b, a, b, a]) == distinct_statuses([a, b])
