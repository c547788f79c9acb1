"""Periodic upkeep beside the consumer loop: history partitions created ahead and dropped by
retention, and Messaging status events that never met their receipt expired (with the pending
gauge kept current)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from worker.history import MAINTENANCE_INTERVAL_S
from worker.metrics import WorkerMetrics
from worker.store import Store

log = logging.getLogger(__name__)


class PendingStatusExpiry:
    """Drops placeholders older than the TTL; every replica runs it, and the DELETE is
    idempotent, so they need no coordination."""

    # Often enough that expiry lags the TTL by seconds, rarely enough to cost nothing: the
    # DELETE and the count read only placeholders, through a partial index.
    INTERVAL_S = 30.0

    def __init__(self, store: Store, metrics: WorkerMetrics, *, ttl_s: float) -> None:
        self._store = store
        self._metrics = metrics
        self._ttl_s = ttl_s

    async def run_once(self) -> int:
        expired = await self._store.expire_pending_statuses(self._ttl_s)
        if expired:
            self._metrics.status_events.labels(outcome="expired").inc(expired)
            log.info("pending status events expired", extra={"statuses": expired})
        self._metrics.pending_status_links.set(await self._store.pending_status_links())
        return expired

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # upkeep must never stop the worker; it runs again soon
                log.info("pending status expiry skipped", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.INTERVAL_S)


async def maintain_history(store: Store, stop: asyncio.Event) -> None:
    """History partitions created ahead and dropped by retention: at start, then hourly."""
    while not stop.is_set():
        try:
            await store.maintain_history()
        except Exception as exc:  # a missed pass is made up by the next one
            log.warning("history maintenance failed", extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MAINTENANCE_INTERVAL_S)
