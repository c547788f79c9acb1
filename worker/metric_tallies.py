"""What one batch counts into the worker's Prometheus metrics (defined in worker/metrics.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from worker.events import STAGES_REACHED, Status
from worker.metrics import WorkerMetrics, channel_label, error_code_label

if TYPE_CHECKING:
    from worker.batch_commit import BatchCommit
    from worker.reduction import ReceiptChange


def count_fetched(m: WorkerMetrics, records: int) -> None:
    m.records_consumed.inc(records)
    m.batch_size.observe(records)


def count_stale(m: WorkerMetrics, dropped: int) -> None:
    if dropped:
        m.stale_records.inc(dropped)


def count_committed(
    m: WorkerMetrics,
    committed: BatchCommit,
    *,
    events: int,
    skipped: Iterable[str],
    dead_letters: Iterable[str],
) -> None:
    """A committed batch: `skipped` and `dead_letters` are one reason per event or record."""
    m.events_applied.inc(events)
    m.summaries_changed.inc(len(committed.summaries))
    for outcome, n in (
        ("applied", committed.statuses_applied),
        ("pending", committed.statuses_pending),
        ("foreign", committed.statuses_foreign),
    ):
        if n:
            m.status_events.labels(outcome=outcome).inc(n)
    for reason in skipped:
        m.events_skipped.labels(reason=reason).inc()
    for reason in dead_letters:
        m.dead_letters.labels(reason=reason).inc()
    count_transitions(m, committed.changes)


# The stages a receipt reaches by going from one status (None: new) to another.
_NEWLY_REACHED: dict[tuple[Status | None, Status], frozenset[str]] = {
    (before, after): STAGES_REACHED[after] - STAGES_REACHED.get(before, frozenset())
    for before in (None, *Status)
    for after in Status
}


def count_transitions(m: WorkerMetrics, changes: Iterable[ReceiptChange]) -> None:
    """Per-channel receipt metrics of a batch: tallied first, then one inc per label set."""
    created: Counter[str] = Counter()
    reached_by: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    to_delivered: defaultdict[str, list[float]] = defaultdict(list)
    to_read: defaultdict[str, list[float]] = defaultdict(list)
    labels: dict[str, str] = {}
    for change in changes:
        after = change.after
        before_status = None if change.before is None else change.before.status
        channel = labels.get(after.channel)
        if channel is None:
            channel = labels[after.channel] = channel_label(after.channel)
        if change.before is None:
            created[channel] += 1
        if before_status == after.status:
            continue
        reached = _NEWLY_REACHED[(before_status, after.status)]
        for stage in reached:
            reached_by[(channel, stage)] += 1
        if after.status in (Status.FAILED, Status.UNDELIVERED):
            errors[(channel, error_code_label(after.error_code))] += 1
        delay_s = max(0.0, (after.date_updated - after.date_created).total_seconds())
        if after.status is Status.DELIVERED and "delivered" in reached:
            to_delivered[channel].append(delay_s)
        elif after.status is Status.READ and "read" in reached:
            to_read[channel].append(delay_s)
    for channel, n in created.items():
        m.receipts_created.labels(channel=channel).inc(n)
    for (channel, stage), n in reached_by.items():
        m.stage_reached.labels(channel=channel, stage=stage).inc(n)
    for (channel, code), n in errors.items():
        m.receipt_errors.labels(channel=channel, error_code=code).inc(n)
    for histogram, observed in ((m.time_to_delivered, to_delivered), (m.time_to_read, to_read)):
        for channel, delays in observed.items():
            child = histogram.labels(channel=channel)
            for delay_s in delays:
                child.observe(delay_s)
