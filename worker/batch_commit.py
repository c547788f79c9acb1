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

from worker.events import ReceiptEvent
from worker.faults import CrashPoints
from worker.reduction import ReceiptChange, apply_batch, coalesce, distinct_history
from worker.store import Store
from worker.summaries import Summary, encode_summary_event


@dataclass(frozen=True, slots=True)
class BatchCommit:
    """What a committed batch changed: receipts (before and after) and new summaries."""

    changes: list[ReceiptChange]
    summaries: list[Summary]


async def commit_batch(
    store: Store,
    *,
    group: str,
    topic: str,
    moves: Mapping[int, tuple[int, int]],
    events: Sequence[ReceiptEvent],
    crash: CrashPoints | None = None,
) -> BatchCommit:
    """Apply `events` and move the stored offsets by `moves` in one transaction.

    `moves` maps a partition to (expected stored offset, new offset); if another consumer
    moved one meanwhile, `Fenced` is raised and nothing is written. Deadlocks, serialization
    failures and `ConcurrentWrite` also roll everything back; the caller retries.
    """
    states = coalesce(events)
    history = await store.prepare_history(distinct_history(events))
    async with store.batch() as tx:
        if moves:
            await tx.advance_offsets(group, topic, moves)
        stored = await tx.claim_receipts(states)
        outcome = apply_batch(stored, states)
        await tx.update_receipts([c.after for c in outcome.changes if c.before is not None])
        await tx.write_history(history)
        summaries = await tx.apply_deltas(outcome.deltas)
        await tx.write_outbox(
            [(s.message_sid, s.version, encode_summary_event(s)) for s in summaries]
        )
        if crash is not None:
            crash.reached("before_db_commit")
    return BatchCommit(outcome.changes, summaries)
