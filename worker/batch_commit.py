"""One batch's database transaction: offsets, receipts, history, summaries and outbox, or nothing.

This is the only writer of the read model. It is safe with any number of concurrent callers
(replicas) touching the same receipts and messages: receipts are locked before they are
read (new ones included, see `BatchTransaction.claim_receipts`), every lock is taken in one
order, and the summary deltas are computed from the locked state, so concurrent batches
add up to a direct recount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.events import ReceiptEvent, StatusEvent
from worker.faults import CrashPoints
from worker.reduction import (
    ReceiptChange,
    ReceiptKey,
    apply_batch,
    coalesce,
    distinct_history,
    merge,
)
from worker.status_join import (
    LinkPlan,
    as_receipt_event,
    fresh_links,
    plan_links,
    receipt_links,
)
from worker.store import BatchTransaction, ConcurrentWrite, Store
from worker.summaries import Summary, encode_summary_event


@dataclass(frozen=True, slots=True)
class BatchCommit:
    """What a committed batch changed: receipts (before and after) and new summaries, and
    what became of its Messaging status events."""

    changes: list[ReceiptChange]
    summaries: list[Summary]
    statuses_applied: int = 0
    statuses_pending: int = 0
    statuses_foreign: int = 0  # another account's status for this channel message: ignored


async def commit_batch(
    store: Store,
    *,
    group: str,
    topic: str,
    moves: Mapping[int, tuple[int, int]],
    events: Sequence[ReceiptEvent],
    statuses: Sequence[StatusEvent] = (),
    crash: CrashPoints | None = None,
) -> BatchCommit:
    """Apply `events` and `statuses` and move the stored offsets by `moves` in one transaction.

    `moves` maps a partition to (expected stored offset, new offset); if another consumer
    moved one meanwhile, `Fenced` is raised and nothing is written. Deadlocks, serialization
    failures and `ConcurrentWrite` also roll everything back; the caller retries.
    """
    states = coalesce(events)
    links = receipt_links(states)
    history = await store.prepare_history(distinct_history(events))
    if statuses:
        # The receipt events they become inside the transaction take their dates.
        await store.prepare_history(statuses)
    async with store.batch() as tx:
        if moves:
            await tx.advance_offsets(group, topic, moves)
        # Lock order everywhere: offsets, channel message links, receipts, summaries, outbox.
        plan = await _join_statuses(tx, links, statuses)
        # A status whose receipt has events in this batch joins before the receipts are
        # claimed, so a new receipt is inserted in its joined state (not inserted, then
        # updated); one whose receipt is only stored joins to the locked stored state.
        here = [(key, status) for key, status in plan.apply if key in states]
        there = [(key, status) for key, status in plan.apply if key not in states]
        joined, foreign = _joined_events(here, states)
        batch_states = _with_joined(states, joined)
        stored = await tx.claim_receipts(batch_states, also={key for key, _ in there})
        joined_there, foreign_there = _joined_events(there, stored)
        joined += joined_there
        foreign += foreign_there
        outcome = apply_batch(stored, _with_joined(batch_states, joined_there))
        # New receipts were inserted with their batch state: only stored ones are updated.
        await tx.update_receipts([c.after for c in outcome.changes if c.before is not None])
        if joined:
            kept, _ = store.history.select(joined)  # months prepared above, with the statuses
            history = distinct_history([*history, *kept])
        await tx.write_history(history)
        summaries = await tx.apply_deltas(outcome.deltas)
        await tx.write_outbox(
            [(s.message_sid, s.version, encode_summary_event(s)) for s in summaries]
        )
        if crash is not None:
            crash.reached("before_db_commit")
    return BatchCommit(
        outcome.changes,
        summaries,
        statuses_applied=len(joined),
        statuses_pending=sum(1 for s in statuses if s.channel_message_sid in plan.waiting),
        statuses_foreign=foreign,
    )


def _with_joined(
    states: Mapping[ReceiptKey, ReceiptEvent], joined: Sequence[ReceiptEvent]
) -> Mapping[ReceiptKey, ReceiptEvent]:
    """The batch's receipt states with the joined status events merged in (the batch's
    events are coalesced once; only the joined ones are merged on top)."""
    if not joined:
        return states
    incoming = dict(states)
    for event in joined:
        current = incoming.get(event.key)
        incoming[event.key] = event if current is None else merge(current, event)
    return incoming


async def _join_statuses(
    tx: BatchTransaction,
    links: Mapping[str, ReceiptKey],
    statuses: Sequence[StatusEvent],
) -> LinkPlan:
    """Claim the link rows of the batch's channel messages and decide the join."""
    if not statuses and not links:
        return LinkPlan()
    existing = await tx.claim_links(fresh_links(links, statuses))
    plan = plan_links(existing, links, statuses)
    await tx.update_links(plan.updates)
    return plan


def _joined_events(
    applied: Sequence[tuple[ReceiptKey, StatusEvent]],
    receipts: Mapping[ReceiptKey, ReceiptEvent],
) -> tuple[list[ReceiptEvent], int]:
    """The receipt events that status events stand for, given their receipts' states, and how
    many were foreign (another account's)."""
    joined: list[ReceiptEvent] = []
    foreign = 0
    for key, status in applied:
        receipt = receipts.get(key)
        if receipt is None:
            # A link names only a receipt that was committed or is in this batch.
            raise ConcurrentWrite(f"linked receipt {key} is missing")
        event = as_receipt_event(receipt, status)
        if event is None:
            foreign += 1
        else:
            joined.append(event)
    return joined, foreign
