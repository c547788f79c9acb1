"""Exact under any partitioning: every key scheme, hot messages, several replicas, kill -9.

Producers key records by message, by conversation, at random or not at all, and a CloudEvents
array carries events of many messages, so the events of one receipt and the receipts of one
message sit in different partitions and are applied by different replicas at the same
moment. Each test feeds such a stream to several worker processes on the real broker and
PostgreSQL and checks the end state exactly against a direct recount (`verify_final`: the
reference reduction, summaries recounted, history, every summary version on the topic and
the last record of each key its latest version), and the long one also against a
single-replica run over the same records.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from typing import Any

import asyncpg
import pytest

from devstack.postgres import PostgresServer
from devstack.progress import lag
from devstack.runs import sibling_run
from devstack.streams import Feeder, make_stream, produce
from devstack.workers import Fleet
from tests.reliability import harness
from tests.reliability.checks import verify_final
from tests.reliability.harness import SettingsFactory, env_int, seed_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

# Group conversations with 50 participants each: their events are in flight at once on
# several partitions, so replicas contend for the same receipts and summary rows.
HOT_MESSAGES = 6
ARRAY_RATE = 0.15


report = functools.partial(harness.report, tag="partitioning")


@pytest.mark.parametrize("keying", ["conversation", "random", "none", "mixed"])
async def test_any_keying_with_racing_replicas_gives_the_recount(
    keying: str,
    fresh_settings: SettingsFactory,
    fleet: Fleet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three replicas start together on a stream already on the topic and race through it."""
    seed = seed_for(900 + len(keying))
    s = await fresh_settings(partitions=6)
    stream = make_stream(
        env_int("RELIABILITY_KEYING_EVENTS", 8000),
        seed=seed,
        keying=keying,
        array_rate=ARRAY_RATE,
        hot_messages=HOT_MESSAGES,
    )
    await produce(s.kafka_bootstrap_servers, s.input_topic, stream.records)
    started = time.monotonic()
    replicas = [fleet.start(s) for _ in range(3)]
    result = await verify_final(s, stream)
    assert all(r.alive for r in replicas), fleet.logs()
    metrics = [await r.metrics() for r in replicas]
    retries = {
        reason: sum(m.get("delivery_worker_batch_retries_total", reason=reason) for m in metrics)
        for reason in ("conflict", "postgres", "kafka")
    }
    # One lock order everywhere: replicas wait for each other, they never deadlock.
    assert retries["conflict"] == 0, (retries, fleet.logs())
    report(
        capsys,
        f"keying={keying}: 3 replicas, 6 partitions, {result}, batch retries {retries}, "
        f"{time.monotonic() - started:.1f}s",
    )


async def snapshot(dsn: str) -> dict[str, Any]:
    """The read model without what legitimately differs between runs (versions, times, ids)."""
    conn = await asyncpg.connect(dsn)
    try:
        receipts = await conn.fetch("SELECT * FROM delivery_receipts")
        history = await conn.fetch(
            "SELECT message_sid, participant_sid, receipt_sid, channel, status, error_code,"
            " date_updated FROM delivery_receipt_history"
        )
        summaries = await conn.fetch(
            "SELECT message_sid, conversation_sid, account_sid, total, sent_count,"
            " delivered_count, read_count, failed_count, undelivered_count, sent, delivered,"
            " read, failed, undelivered FROM message_delivery"
        )
    finally:
        await conn.close()
    return {
        "receipts": {
            (r["message_sid"], r["participant_sid"]): {
                k: v for k, v in dict(r).items() if k != "updated_at"
            }
            for r in receipts
        },
        "history": sorted(tuple(r) for r in history),
        "summaries": {r["message_sid"]: tuple(r) for r in summaries},
    }


async def test_four_replicas_killed_and_rebalanced_equal_one_replica(
    fresh_settings: SettingsFactory,
    fleet: Fleet,
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Mixed keys, hot messages, 4 replicas under kill -9 and leave/join; then one replica."""
    cycles = env_int("RELIABILITY_PARTITION_CYCLES", 12)
    seed = seed_for(950)
    rng = random.Random(seed)
    s = await fresh_settings(partitions=6)
    stream = make_stream(
        env_int("RELIABILITY_PARTITION_EVENTS", 30_000),
        seed=seed,
        keying="mixed",
        array_rate=ARRAY_RATE,
        hot_messages=HOT_MESSAGES,
    )
    started = time.monotonic()
    replicas = [fleet.start(s) for _ in range(4)]
    kills = leaves = 0
    async with Feeder(s, stream.records, piece=400, interval_s=0.2) as feeder:
        for cycle in range(cycles):
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            victim = rng.randrange(len(replicas))
            if cycle % 3 == 2:
                replicas[victim].send(signal.SIGTERM)  # leaves the group cleanly
                assert await replicas[victim].wait_exit(25) == 0, replicas[victim].log_tail()
                leaves += 1
            else:
                assert replicas[victim].kill() == -signal.SIGKILL
                kills += 1
            replicas[victim] = fleet.start(s)
        assert await lag(s) >= 0
        await feeder.finish()
    result = await verify_final(s, stream, timeout_s=240)
    assert all(r.alive for r in replicas), fleet.logs()
    many = time.monotonic() - started

    single = await sibling_run(s, postgres_server, "single", own_outputs=True, summary_partitions=2)
    alone = fleet.start(single)
    single_result = await verify_final(single, stream, timeout_s=240)
    assert alone.alive, alone.log_tail()
    assert await snapshot(s.database_url) == await snapshot(single.database_url)
    report(
        capsys,
        f"4 replicas, mixed keys, {HOT_MESSAGES} hot messages x 50 participants, "
        f"{kills} kill -9 and {leaves} leave/join: {result} in {many:.1f}s; "
        f"same state as 1 replica ({single_result['receipts']} receipts)",
    )
