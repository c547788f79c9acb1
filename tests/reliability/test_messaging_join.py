"""Messaging status events joined to conversation receipts, end to end
(docs/design.md, "Input forms").

Conversation receipts say only `sent`; their outcomes (delivered, read for WhatsApp,
undelivered 30003, failed 30008…) come only as Messaging status events, in both forms
(status callback as form body or JSON, Event Streams CloudEvents single or batched), keyed
at random, a third of them on the topic before any receipt, some duplicated, plus status
events of plain SMS that no receipt will ever claim. Two worker processes share the topic.
Every receipt must end in its joined outcome, exactly as if the outcomes had come as receipt
events; plain-SMS events create nothing and wait; nothing valid is dead-lettered.

Twice: with WhatsApp channel messages on SM SIDs (every receipt joins by status events), and
with Conversations' WA SIDs, which Messaging never reports: those receipts keep their
outcomes as receipt events and get no link row, beside SMS receipts that join.
"""

from __future__ import annotations

import random
import time

import asyncpg
import pytest

from devstack.streams import Stream, produce
from devstack.workers import Fleet
from tests.reliability.checks import verify_final
from tests.reliability.harness import SettingsFactory, env_int, seed_for
from worker.events import Status
from worker.loadgen import (
    encode_mixed,
    generate_events,
    messaging_outcomes,
    plain_sms_statuses,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.mark.parametrize("whatsapp_prefix", ["SM", "WA"])
async def test_outcomes_only_as_messaging_events_join_their_receipts(
    fresh_settings: SettingsFactory,
    fleet: Fleet,
    capsys: pytest.CaptureFixture[str],
    whatsapp_prefix: str,
) -> None:
    seed = seed_for(1100)
    rng = random.Random(seed)
    messages = env_int("RELIABILITY_MESSAGING_MESSAGES", 1200)
    events = list(generate_events(messages, seed=seed, whatsapp_prefix=whatsapp_prefix))
    kept, moved = messaging_outcomes(events, seed=seed, share=1.0)
    whatsapp = {e.key for e in events if (e.channel_message_sid or "")[:2] == "WA"}
    assert (len(whatsapp) > 0) == (whatsapp_prefix == "WA")
    assert all(e.status <= Status.SENT for e in kept if e.key not in whatsapp)
    assert not any(e.key in whatsapp for e, _ in moved)
    plain = plain_sms_statuses(200, seed=seed + 7919)
    statuses = [s for _, s in moved]
    statuses += rng.sample(statuses, len(statuses) // 10)  # Twilio retries: duplicates

    receipt_records = encode_mixed(kept, seed=seed, keying="random", array_rate=0.1)
    status_records = encode_mixed([*statuses, *plain], seed=seed, keying="random")
    rng.shuffle(status_records)
    early, late = (
        status_records[: len(status_records) // 3],
        status_records[len(status_records) // 3 :],
    )
    rest = receipt_records + late
    rng.shuffle(rest)
    records = early + rest

    s = await fresh_settings(partitions=4)
    await produce(s.kafka_bootstrap_servers, s.input_topic, records)
    started = time.monotonic()
    replicas = [fleet.start(s), fleet.start(s)]
    reference = [*kept, *(e for e, _ in moved)]
    result = await verify_final(s, Stream(reference, records, set()))
    assert all(r.alive for r in replicas), fleet.logs()

    conn = await asyncpg.connect(s.database_url)
    try:
        waiting = {
            r["channel_message_sid"]
            for r in await conn.fetch(
                "SELECT channel_message_sid FROM channel_message_links WHERE message_sid IS NULL"
            )
        }
        outcomes = dict(
            await conn.fetch("SELECT status, count(*) FROM delivery_receipts GROUP BY status")
        )
        unreadable_links = await conn.fetchval(
            "SELECT count(*) FROM channel_message_links"
            " WHERE left(channel_message_sid, 2) NOT IN ('SM', 'MM')"
        )
    finally:
        await conn.close()
    assert waiting == {p.channel_message_sid for p in plain}, "plain SMS: no receipt, waiting"
    assert unreadable_links == 0, "a WA channel message got a link row"
    assert {"delivered", "read", "undelivered", "failed"} <= outcomes.keys()
    metrics = [await r.metrics() for r in replicas]
    applied = sum(m.get("delivery_worker_status_events_total", outcome="applied") for m in metrics)
    assert applied >= len(moved)
    with capsys.disabled():
        print(
            f"\n[messaging, WhatsApp on {whatsapp_prefix}] {messages} messages,"
            f" {len(whatsapp)} WA receipts, {len(moved)} outcomes as Messaging events "
            f"({len(statuses)} with duplicates, {len(early)} records before any receipt), "
            f"{len(plain)} plain SMS waiting; receipts by status {outcomes}; {result}; "
            f"{time.monotonic() - started:.1f}s"
        )
