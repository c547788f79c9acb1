"""Process lifecycle of `worker run`: start the parts, run until SIGTERM, drain, stop.

Shutdown follows one deadline (SHUTDOWN_GRACE_S): the batch in flight gets most of it to
commit; if it cannot, it is cancelled, which rolls its transaction back, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker import native
from worker.config import Settings
from worker.consumer import DeliveryConsumer
from worker.faults import CrashPoints
from worker.housekeeping import PendingStatusExpiry, maintain_history
from worker.http import DependencyCheck, Health, create_app, start_http
from worker.kafka import create_consumer, create_producer
from worker.metrics import WorkerMetrics
from worker.publisher import OutboxRelay, Publisher
from worker.retry import Backoff, is_transient
from worker.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

# Share of the grace period the batch in flight may use; the rest closes clients cleanly.
_DRAIN_SHARE = 0.6


# The worker allocates a few dozen objects per event and keeps a batch of them alive; with the
# default threshold (700) the cyclic collector ran many times per batch and rescanned the
# live batch each time: about a third of the parsing time (docs/benchmark.md). What the
# worker creates per event holds no reference cycles, so collecting rarely loses nothing.
_GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fewer cyclic collections for the long-running worker; start-up objects frozen out.

    Called by `worker run` before its event loop starts (a process-wide setting)."""
    gc.collect()
    gc.freeze()  # modules, settings, clients: never garbage, never rescanned
    gc.set_threshold(*_GC_THRESHOLDS)


class Stopped(Exception):
    """Shutdown was requested before start-up finished."""


async def run_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    handle_signals: bool = True,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then drain and stop within the grace period.

    Tests and embedders pass their own `stop` and `metrics`; the CLI passes neither.
    """
    stop = stop or asyncio.Event()
    if handle_signals:
        _install_signal_handlers(stop)
    metrics = metrics or WorkerMetrics()
    health = Health(metrics, liveness_timeout_s=settings.liveness_timeout_s)
    http = await start_http(create_app(metrics, health), settings.http_host, settings.http_port)
    log.info(
        "worker starting",
        extra={"settings": settings.safe(), "fast_paths": native.describe()},
    )
    store: Store | None = None
    producer: AIOKafkaProducer | None = None
    kafka: AIOKafkaConsumer | None = None
    try:
        store = await _until_up("postgres", lambda: _connected_store(settings), stop, health)
        producer = await _until_up(
            "kafka producer", lambda: _started_producer(settings), stop, health
        )
        publisher = Publisher(
            producer, summary_topic=settings.summary_topic, dlq_topic=settings.dlq_topic
        )
        crash_points = CrashPoints.from_env()  # test-only; off unless WORKER_CRASH_AT is set
        relay = OutboxRelay(
            store,
            publisher,
            metrics,
            batch_rows=settings.outbox_batch_rows,
            crash_points=crash_points,
        )
        kafka = create_consumer(settings)
        consumer = DeliveryConsumer(
            settings, kafka, store, publisher, relay, metrics, health, crash_points
        )
        kafka.subscribe([settings.input_topic], listener=consumer.rebalance_listener())
        await _until_up("kafka consumer", lambda: _start(kafka), stop, health)
        health.set_dependency_check(_dependency_check(store, kafka))
        health.set_ready(True)
        log.info("worker running", extra={"input_topic": settings.input_topic})
        await _run_with_upkeep(settings, store, metrics, consumer, relay, stop)
    except Stopped:
        log.info("stopped during start-up")
    finally:
        health.set_ready(False, "stopping")
        await _close(kafka, producer, store, settings.shutdown_grace_s * (1 - _DRAIN_SHARE))
        await http.cleanup()
        log.info("worker stopped")


async def _run_with_upkeep(
    settings: Settings,
    store: Store,
    metrics: WorkerMetrics,
    consumer: DeliveryConsumer,
    relay: OutboxRelay,
    stop: asyncio.Event,
) -> None:
    """The loops until stopped, with history maintenance beside them until they have ended."""
    expiry = PendingStatusExpiry(store, metrics, ttl_s=settings.pending_status_ttl_s)
    maintenance = asyncio.create_task(maintain_history(store, stop), name="history")
    try:
        await _run_until_stopped(consumer, relay, expiry, stop, settings.shutdown_grace_s)
    finally:
        maintenance.cancel()
        await asyncio.gather(maintenance, return_exceptions=True)


async def _run_until_stopped(
    consumer: DeliveryConsumer,
    relay: OutboxRelay,
    expiry: PendingStatusExpiry,
    stop: asyncio.Event,
    grace_s: float,
) -> None:
    loop_task = asyncio.create_task(consumer.run(stop), name="consumer-loop")
    relay_task = asyncio.create_task(relay.run(stop), name="outbox-relay")
    expiry_task = asyncio.create_task(expiry.run(stop), name="pending-status-expiry")
    stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
    tasks = {loop_task, relay_task, expiry_task}
    try:
        done, _ = await asyncio.wait({*tasks, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        for task in done & tasks:
            task.result()  # a loop that ended by itself failed: re-raise its error
        log.info("stop requested; finishing the batch in flight")
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=grace_s * _DRAIN_SHARE)
        if pending:
            log.warning("grace period over; abandoning uncommitted work")
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        stop_task.cancel()
        for task in tasks:
            task.cancel()


async def _until_up(
    what: str, connect: Callable[[], Awaitable[T]], stop: asyncio.Event, health: Health
) -> T:
    """Connect, retrying while the dependency is away, instead of crash-looping the pod."""
    backoff = Backoff(initial_s=0.5, max_s=5.0)
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return await connect()
        except Exception as exc:
            if not is_transient(exc):
                raise
            health.set_ready(False, f"{what}: {type(exc).__name__}")
            log.warning(
                "dependency unavailable; retrying", extra={"dependency": what, "error": repr(exc)}
            )
            await backoff.sleep()


def _dependency_check(store: Store, kafka: AIOKafkaConsumer) -> DependencyCheck:
    async def check() -> None:
        await store.ping()
        await kafka.topics()  # a metadata round trip to the cluster

    return check


async def _connected_store(settings: Settings) -> Store:
    return await Store.connect(
        settings.database_url, history_retention_days=settings.history_retention_days
    )


async def _started_producer(settings: Settings) -> AIOKafkaProducer:
    producer = create_producer(settings)
    await _start(producer)
    return producer


async def _start(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def _close(
    kafka: AIOKafkaConsumer | None,
    producer: AIOKafkaProducer | None,
    store: Store | None,
    timeout_s: float,
) -> None:
    async def close_all() -> None:
        if kafka is not None:
            await kafka.stop()  # leaves the group at once, so partitions move without waiting
        if producer is not None:
            await producer.stop()  # flushes what is in flight
        if store is not None:
            await store.close()

    try:
        await asyncio.wait_for(close_all(), max(timeout_s, 1.0))
    except TimeoutError:
        log.warning("clients did not close in time")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
