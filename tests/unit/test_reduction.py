from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import reduce
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.events import ReceiptEvent, Status
from worker.reduction import (
    Counts,
    apply_batch,
    coalesce,
    delivery_object,
    distinct_history,
    merge,
    recount,
)

BASE = datetime(2026, 3, 1, tzinfo=UTC)
MESSAGES = ["IM" + f"{i:032x}" for i in range(3)]
PARTICIPANTS = ["MB" + f"{i:032x}" for i in range(3)]


@st.composite
def events(
    draw: st.DrawFn, message: str | None = None, participant: str | None = None
) -> ReceiptEvent:
    return ReceiptEvent(
        account_sid="AC" + "a" * 32,
        chat_service_sid=draw(st.sampled_from([None, "IS" + "b" * 32])),
        conversation_sid="CH" + draw(st.sampled_from(["c", "d"])) * 32,
        message_sid=message or draw(st.sampled_from(MESSAGES)),
        receipt_sid="DY" + draw(st.sampled_from(["e", "f"])) * 32,
        channel_message_sid=draw(st.sampled_from([None, "SM" + "1" * 32, "WA" + "2" * 32])),
        participant_sid=participant or draw(st.sampled_from(PARTICIPANTS)),
        channel=draw(st.sampled_from(["sms", "whatsapp"])),
        status=draw(st.sampled_from(list(Status))),
        error_code=draw(st.sampled_from([None, 30003, 30007])),
        date_created=BASE + timedelta(seconds=draw(st.integers(0, 5))),
        date_updated=BASE + timedelta(seconds=draw(st.integers(0, 5))),
    )


one_receipt = st.lists(events("IM" + "0" * 32, "MB" + "0" * 32), min_size=1, max_size=12)
many_receipts = st.lists(events(), min_size=1, max_size=40)


def fold(items: list[ReceiptEvent]) -> ReceiptEvent:
    return reduce(merge, items)


@given(one_receipt, st.randoms(use_true_random=False))
def test_any_order_same_state(items: list[ReceiptEvent], rnd: random.Random) -> None:
    shuffled = items[:]
    rnd.shuffle(shuffled)
    assert fold(shuffled) == fold(items)


@given(one_receipt, st.randoms(use_true_random=False))
def test_any_duplicates_same_state(items: list[ReceiptEvent], rnd: random.Random) -> None:
    duplicated = items + [rnd.choice(items) for _ in range(rnd.randint(1, 10))]
    rnd.shuffle(duplicated)
    assert fold(duplicated) == fold(items)


@given(one_receipt, one_receipt, one_receipt)
def test_merge_is_a_semilattice(
    a: list[ReceiptEvent], b: list[ReceiptEvent], c: list[ReceiptEvent]
) -> None:
    x, y, z = fold(a), fold(b), fold(c)
    assert merge(x, y) == merge(y, x)
    assert merge(merge(x, y), z) == merge(x, merge(y, z))
    assert merge(x, x) == x


@given(one_receipt)
def test_state_follows_the_spec_rules(items: list[ReceiptEvent]) -> None:
    state = fold(items)
    top = max(e.status for e in items)
    assert state.status == top
    winners = [e for e in items if e.status == top]
    latest = max(e.date_updated for e in winners)
    assert state.date_updated == latest
    codes = [e.error_code or -1 for e in winners if e.date_updated == latest]
    assert (state.error_code or -1) == max(codes)
    assert state.date_created == min(e.date_created for e in items)


def test_status_order_matches_the_spec() -> None:
    order = ["queued", "sent", "failed", "undelivered", "delivered", "read"]
    assert sorted(Status, key=int) == [Status.from_label(s) for s in order]


def test_late_sent_never_overrides_a_failure() -> None:
    failed = _event(Status.UNDELIVERED, 10, 30003)
    late_sent = _event(Status.SENT, 20, None)
    assert merge(failed, late_sent).status is Status.UNDELIVERED
    assert merge(failed, late_sent).error_code == 30003


def _event(status: Status, at_s: int, code: int | None) -> ReceiptEvent:
    return ReceiptEvent(
        "AC" + "a" * 32,
        None,
        "CH" + "c" * 32,
        MESSAGES[0],
        "DY" + "e" * 32,
        None,
        PARTICIPANTS[0],
        "sms",
        status,
        code,
        BASE,
        BASE + timedelta(seconds=at_s),
    )


def _apply_in_batches(items: list[ReceiptEvent], cuts: list[int]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """Run the batch path (coalesce, apply_batch with count deltas) over consecutive batches."""
    stored: dict = {}  # type: ignore[type-arg]
    counts: dict[str, Counts] = defaultdict(Counts)
    bounds = [0, *sorted(c % (len(items) + 1) for c in cuts), len(items)]
    for lo, hi in pairwise(bounds):
        outcome = apply_batch(stored, coalesce(items[lo:hi]))
        for change in outcome.changes:
            stored[change.after.key] = change.after
        for d in outcome.deltas:
            counts[d.message_sid] = counts[d.message_sid] + d.delta
    return stored, dict(counts)


@settings(max_examples=200)
@given(many_receipts, st.lists(st.integers(0, 100), max_size=5), st.randoms(use_true_random=False))
def test_batches_in_any_order_give_the_same_state_and_counts(
    items: list[ReceiptEvent], cuts: list[int], rnd: random.Random
) -> None:
    shuffled = items + items[: rnd.randint(0, len(items))]
    rnd.shuffle(shuffled)
    stored_a, counts_a = _apply_in_batches(items, [])
    stored_b, counts_b = _apply_in_batches(shuffled, cuts)
    assert stored_a == stored_b
    assert {k: v for k, v in counts_a.items() if not v.is_zero()} == {
        k: v for k, v in counts_b.items() if not v.is_zero()
    }
    # The incrementally maintained summary always equals a direct recount.
    for message, counts in counts_b.items():
        assert counts == recount(s.status for s in stored_b.values() if s.message_sid == message)


def test_spec_example_summary(design_example_delivery: dict[str, int | str]) -> None:
    statuses = [Status.READ, Status.DELIVERED, Status.SENT, Status.SENT, Status.READ]
    assert delivery_object(recount(statuses)) == design_example_delivery


def test_queued_counts_in_total_only() -> None:
    assert recount([Status.QUEUED]) == Counts(total=1)
    assert delivery_object(recount([Status.QUEUED]))["sent"] == "none"


def test_cumulative_stages() -> None:
    assert recount([Status.UNDELIVERED]) == Counts(total=1, sent=1, undelivered=1)
    assert recount([Status.FAILED]) == Counts(total=1, failed=1)


@given(many_receipts)
def test_history_drops_exact_duplicates_only(items: list[ReceiptEvent]) -> None:
    history = distinct_history(items + items)
    keys = {
        (e.message_sid, e.participant_sid, e.status, e.date_updated, e.error_code) for e in items
    }
    assert len(history) == len(keys)
