"""Readiness comes back by itself once a failed dependency answers again (no services needed).

Regression: a failed Kafka fetch marked the worker unready, and only a batch that committed
marked it ready again, so on a quiet input topic /readyz stayed 503 after the broker was back
(a rolling update waiting on the pod's readiness would hang).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaConnectionError

from worker.config import Settings
from worker.consumer import DeliveryConsumer
from worker.http import Health
from worker.metrics import WorkerMetrics


class _FlakyKafka:
    """getmany fails once (broker away), then returns nothing: a quiet topic."""

    def __init__(self, stop: asyncio.Event, *, calls_before_stop: int = 3) -> None:
        self.calls = 0
        self._stop = stop
        self._calls_before_stop = calls_before_stop

    async def getmany(self, **_: Any) -> dict[Any, Any]:
        self.calls += 1
        if self.calls == 1:
            raise KafkaConnectionError("broker away")
        if self.calls >= self._calls_before_stop:
            self._stop.set()
        return {}

    def assignment(self) -> set[Any]:
        return set()

    def highwater(self, _: Any) -> int | None:
        return None


async def test_ready_again_after_a_failed_fetch_on_a_quiet_topic() -> None:
    metrics = WorkerMetrics()
    health = Health(metrics, liveness_timeout_s=60)
    health.set_ready(True)
    stop = asyncio.Event()
    kafka = _FlakyKafka(stop)
    consumer = DeliveryConsumer(
        Settings(batch_timeout_ms=10),
        kafka,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]  # no records: never touched
        publisher=None,  # type: ignore[arg-type]
        relay=None,  # type: ignore[arg-type]
        metrics=metrics,
        health=health,
    )
    await asyncio.wait_for(consumer.run(stop), 10)
    assert kafka.calls >= 3
    ready, reason = await health.readiness()  # no dependency check set: the worker's flag
    assert ready, reason
    assert metrics.registry.get_sample_value("delivery_worker_ready") == 1
