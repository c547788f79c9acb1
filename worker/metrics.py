"""Prometheus metrics of the worker: domain counters per channel and the worker's own health.

Every label takes values from a small fixed set (channel, stage, reason, error-code class),
never a SID, so the number of series stays bounded whatever the input.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.events import STAGES

__all__ = ["STAGES", "STATUS_OUTCOMES", "WorkerMetrics"]

# Channels outside this set are reported as "other" so a producer cannot create series at will.
CHANNEL_LABELS = frozenset({"sms", "whatsapp", "unknown"})

# Twilio error codes with a meaning worth a series of their own (docs/error-codes.md);
# every other code is counted as "other".
KNOWN_ERROR_CODES = frozenset(
    {
        "21610",  # recipient unsubscribed (STOP)
        "21614",  # not a mobile number
        "30001",  # queue overflow
        "30002",  # account suspended
        "30003",  # unreachable destination handset
        "30004",  # message blocked
        "30005",  # unknown destination handset
        "30006",  # landline or unreachable carrier
        "30007",  # carrier filtering (spam)
        "30008",  # unknown error
        "30009",  # missing segment
        "30010",  # message price exceeds max price
        "30034",  # unregistered 10DLC number
        "63003",  # WhatsApp: channel could not find the destination
        "63016",  # WhatsApp: outside the 24-hour session window, template required
        "63018",  # WhatsApp: rate limit exceeded
        "63024",  # WhatsApp: invalid message recipient
        "63032",  # WhatsApp: user's number is part of an experiment
    }
)

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Time to deliver/read spans seconds (SMS) to days (a WhatsApp read the next morning).
_STAGE_DELAY_BUCKETS_S = (1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 86400)


def channel_label(channel: str) -> str:
    return channel if channel in CHANNEL_LABELS else "other"


def error_code_label(error_code: int | None) -> str:
    if error_code is None:
        return "none"
    code = str(error_code)
    return code if code in KNOWN_ERROR_CODES else "other"


# What became of a Messaging status event (the `outcome` label of status_events).
STATUS_OUTCOMES = ("applied", "pending", "expired", "foreign")


class WorkerMetrics:
    """All metrics of one worker process, on a registry of its own (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # The order of registration is the order of /metrics.
        self._add_receipt_metrics()
        self._add_record_metrics()
        self._add_batch_metrics()
        self._add_state_gauges()

    def _counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, registry=self.registry)

    def _histogram(
        self, name: str, documentation: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def _add_receipt_metrics(self) -> None:
        # The domain. The delivered ratio per channel is
        #   sum by (channel) (rate(delivery_receipt_stage_reached_total{stage="delivered"}[w]))
        # / sum by (channel) (rate(delivery_receipts_created_total[w]))
        # which adds up correctly over replicas (see monitoring/rules.yml).
        self.receipts_created = self._counter(
            "delivery_receipts_created",
            "Receipts (message x participant) seen for the first time, by channel.",
            ("channel",),
        )
        self.stage_reached = self._counter(
            "delivery_receipt_stage_reached",
            "Receipts reaching a delivery stage for the first time (cumulative stages: read "
            "also counts delivered and sent), by channel.",
            ("channel", "stage"),
        )
        self.receipt_errors = self._counter(
            "delivery_receipt_errors",
            "Receipts whose stored status became failed or undelivered, by channel and Twilio "
            "error code (known codes, else 'other').",
            ("channel", "error_code"),
        )
        self.time_to_delivered = self._histogram(
            "delivery_receipt_time_to_delivered_seconds",
            "From the receipt's date_created to the date_updated of its delivered event.",
            _STAGE_DELAY_BUCKETS_S,
            ("channel",),
        )
        self.time_to_read = self._histogram(
            "delivery_receipt_time_to_read_seconds",
            "From the receipt's date_created to the date_updated of its read event.",
            _STAGE_DELAY_BUCKETS_S,
            ("channel",),
        )

    def _add_record_metrics(self) -> None:
        # The worker's own health from here on: what became of the records and events.
        self.records_consumed = self._counter(
            "delivery_worker_records_consumed", "Kafka records consumed from the input topic."
        )
        self.stale_records = self._counter(
            "delivery_worker_stale_records",
            "Fetched records dropped because their offset was already committed (refetched "
            "after a seek or rebalance) or their partition is no longer owned.",
        )
        self.events_applied = self._counter(
            "delivery_worker_events_applied", "Receipt events applied to PostgreSQL (committed)."
        )
        self.events_skipped = self._counter(
            "delivery_worker_events_skipped",
            "Events or records not applied on purpose, by reason.",
            ("reason",),
        )
        self.status_events = self._counter(
            "delivery_worker_status_events",
            "Messaging status events by outcome: applied to their receipt, pending (receipt "
            "not seen yet), expired (receipt never came), foreign (account differs).",
            ("outcome",),
        )
        self.pending_status_links = self._gauge(
            "delivery_worker_pending_status_channel_messages",
            "Channel messages with Messaging status events waiting for their receipt.",
        )
        self.dead_letters = self._counter(
            "delivery_worker_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ("reason",),
        )
        self.summaries_changed = self._counter(
            "delivery_worker_summaries_changed", "Message summaries changed (outbox rows written)."
        )
        self.summaries_published = self._counter(
            "delivery_worker_summaries_published",
            "Summary-changed events acknowledged by the broker.",
        )

    def _add_batch_metrics(self) -> None:
        self.batch_size = self._histogram(
            "delivery_worker_batch_size_records",
            "Records per processed batch.",
            _BATCH_SIZE_BUCKETS,
        )
        self.batch_duration = self._histogram(
            "delivery_worker_batch_duration_seconds",
            "Time from a batch being fetched to its transaction committing.",
            _LATENCY_BUCKETS_S,
        )
        self.batch_retries = self._counter(
            "delivery_worker_batch_retries",
            "Batches retried after a transient failure, by reason.",
            ("reason",),
        )
        self.fenced = self._counter(
            "delivery_worker_fenced_batches",
            "Batches rolled back because another consumer had advanced the stored offsets.",
        )

    def _add_state_gauges(self) -> None:
        self.consumer_lag = self._gauge(
            "delivery_worker_consumer_lag_records",
            "Records behind the high watermark, summed over this worker's partitions.",
        )
        self.outbox_backlog = self._gauge(
            "delivery_worker_outbox_backlog_rows",
            "Summary events written but not yet acknowledged by the broker.",
        )
        self.last_progress = self._gauge(
            "delivery_worker_last_progress_timestamp_seconds",
            "Unix time the consumer loop last completed an iteration.",
        )
        self.ready = self._gauge(
            "delivery_worker_ready", "1 when Kafka and PostgreSQL are reachable."
        )
