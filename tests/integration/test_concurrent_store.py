"""The batch transaction under real concurrency: several connections, same receipts, one result.

Model-based: the events of a stream (hot group messages, duplicates, disorder) are dealt out
at random to several writers, each applying its share in random small batches through
`commit_batch` on its own connection, all at once, the way replicas reading different
partitions do. Whatever the interleaving, PostgreSQL must end exactly at the reference
reduction (receipts, history, and summary counts equal to a direct recount), every message's
outbox rows must carry versions 1..N in id order (the order the relay publishes them), and
no lock conflict may need a retry: one lock order everywhere means no deadlock.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import asyncpg
import orjson
import pytest
from asyncpg.exceptions import DeadlockDetectedError, SerializationError

from devstack.postgres import PostgresServer
from tests.reliability.checks import assert_state_is_reduction_of
from tests.reliability.harness import env_int, seed_for
from worker.batch_commit import commit_batch
from worker.events import ReceiptEvent, StatusEvent
from worker.loadgen import disorder, generate_events, messaging_outcomes, plain_sms_statuses
from worker.migrate import apply_migrations
from worker.store import ConcurrentWrite, Store

pytestmark = pytest.mark.integration

WRITERS = 4


Item = ReceiptEvent | StatusEvent


def deal(events: list[Item], rng: random.Random) -> list[list[list[Item]]]:
    """Each writer's share of the events, cut into batches of 1..40 events."""
    shares: list[list[Item]] = [[] for _ in range(WRITERS)]
    for event in events:
        shares[rng.randrange(WRITERS)].append(event)
    batched = []
    for share in shares:
        batches, i = [], 0
        while i < len(share):
            size = rng.randint(1, 40)
            batches.append(share[i : i + size])
            i += size
        batched.append(batches)
    return batched


async def write_share(dsn: str, batches: list[list[Item]], conflicts: list[str]) -> None:
    store = await Store.connect(dsn, max_size=1)
    try:
        for batch in batches:
            while True:
                try:
                    await commit_batch(
                        store,
                        group="g",
                        topic="t",
                        moves={},
                        events=[e for e in batch if isinstance(e, ReceiptEvent)],
                        statuses=[e for e in batch if isinstance(e, StatusEvent)],
                    )
                    break
                except (DeadlockDetectedError, SerializationError, ConcurrentWrite) as exc:
                    conflicts.append(repr(exc))  # the batch rolled back; apply it again
            await asyncio.sleep(0)
    finally:
        await store.close()


async def outbox_versions(dsn: str) -> dict[str, list[tuple[int, dict[str, int]]]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT message_sid, version, payload FROM summary_outbox ORDER BY id"
        )
        summaries = await conn.fetch("SELECT message_sid, version FROM message_delivery")
    finally:
        await conn.close()
    by_message: dict[str, list[tuple[int, dict[str, int]]]] = defaultdict(list)
    for r in rows:
        by_message[r["message_sid"]].append((r["version"], orjson.loads(r["payload"])["counts"]))
    assert by_message.keys() == {s["message_sid"] for s in summaries}
    for s in summaries:
        versions = [v for v, _ in by_message[s["message_sid"]]]
        assert versions == list(range(1, s["version"] + 1)), (s["message_sid"], versions)
    return by_message


async def pending_links(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT channel_message_sid, jsonb_array_length(pending) AS n"
            " FROM channel_message_links WHERE message_sid IS NULL"
        )
    finally:
        await conn.close()
    return {r["channel_message_sid"]: r["n"] for r in rows}


@pytest.mark.parametrize("messaging_share", [0.0, 0.6], ids=["receipts", "with-messaging"])
@pytest.mark.parametrize("seed", [seed_for(n) for n in range(env_int("CONCURRENT_STORE_SEEDS", 8))])
async def test_concurrent_writers_end_at_the_reference(
    postgres_server: PostgresServer, seed: int, messaging_share: float
) -> None:
    rng = random.Random(seed)
    # Few messages, two of them group messages with 50 participants: most batches of the
    # four writers touch the same receipts and the same summary rows at the same time. With
    # messaging, that share of the receipts' outcomes come only as Messaging status events
    # (docs/design.md, "Input forms"), racing their receipts, and plain-SMS statuses that never
    # meet one.
    events = list(
        generate_events(12, seed=seed, max_receipts=6, hot_messages=2, whatsapp_prefix="SM")
    )
    kept, moved = messaging_outcomes(events, seed=seed, share=messaging_share)
    plain = plain_sms_statuses(5 if messaging_share else 0, seed=seed + 7919)
    reference = [*kept, *(e for e, _ in moved)]
    items: list[Item] = [*kept, *(s for _, s in moved), *plain]
    items = disorder(items, seed=seed, duplicate_rate=0.3, window=len(items))
    dsn = postgres_server.create_database(f"concurrent_store_{seed}_{int(messaging_share * 10)}")
    await apply_migrations(dsn)

    conflicts: list[str] = []
    await asyncio.gather(*(write_share(dsn, share, conflicts) for share in deal(items, rng)))

    assert conflicts == [], f"one lock order everywhere, yet: {conflicts[:3]}"
    receipts = await assert_state_is_reduction_of(dsn, reference)
    assert receipts >= 100
    versions = await outbox_versions(dsn)
    assert max(len(v) for v in versions.values()) > 1
    # Plain-SMS statuses created no receipt and wait, each stored once.
    assert await pending_links(dsn) == {s.channel_message_sid: 1 for s in plain}
    if messaging_share:
        assert len(moved) >= 50
