"""Status events whose receipt never comes expire (docs/design.md, "Input forms"), on the real
PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from devstack.workers import metric_value
from worker.batch_commit import commit_batch
from worker.housekeeping import PendingStatusExpiry
from worker.loadgen import generate_events, messaging_outcomes, plain_sms_statuses
from worker.metrics import WorkerMetrics
from worker.migrate import apply_migrations
from worker.store import Store

pytestmark = pytest.mark.integration


async def test_plain_sms_statuses_wait_then_expire_and_joined_ones_stay(
    postgres_server: PostgresServer,
) -> None:
    dsn = postgres_server.create_database("pending_expiry")
    await apply_migrations(dsn)
    plain = plain_sms_statuses(4, seed=1)
    events = list(generate_events(3, seed=2, max_receipts=1, whatsapp_prefix="SM"))
    kept, moved = messaging_outcomes(events, seed=2)
    store = await Store.connect(dsn)
    try:
        await commit_batch(
            store, group="g", topic="t", moves={}, events=kept, statuses=[s for _, s in moved]
        )
        await commit_batch(store, group="g", topic="t", moves={}, events=[], statuses=plain)
        metrics = WorkerMetrics()
        expiry = PendingStatusExpiry(store, metrics, ttl_s=0.5)
        assert await expiry.run_once() == 0  # not old enough yet
        assert metric_value(metrics, "delivery_worker_pending_status_channel_messages") == 4

        await asyncio.sleep(0.6)
        assert await expiry.run_once() == 4
        assert metric_value(metrics, "delivery_worker_status_events_total", outcome="expired") == 4
        assert metric_value(metrics, "delivery_worker_pending_status_channel_messages") == 0
    finally:
        await store.close()

    conn = await asyncpg.connect(dsn)
    try:
        links = await conn.fetchval("SELECT count(*) FROM channel_message_links")
        receipts = await conn.fetchval("SELECT count(*) FROM delivery_receipts")
    finally:
        await conn.close()
    # Links of real receipts never expire; plain SMS made no receipt.
    assert links == receipts == len({e.key for e in kept})
