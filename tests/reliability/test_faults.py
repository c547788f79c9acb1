"""Nothing lost, nothing applied twice: crashes, restarts, rebalances, outages, SIGTERM.

Every test runs the worker as real subprocesses (`delivery-receipts-worker run`) against the
session's real Kafka broker and PostgreSQL, injects one kind of fault, and then checks the end
state exactly (tests/reliability/checks.py `verify_final`):

- receipts in PostgreSQL equal `worker.reduction.coalesce` of the input, summary counts equal
  a recount, history has one row per distinct event (counts move by deltas, so an event
  applied twice or lost would show);
- the summary topic holds every committed version of every message (1..version, duplicates
  allowed and byte-identical) and its latest equals the database;
- every poison record reached the DLQ; stored offsets equal the topic's end offsets; the
  outbox is empty.

Sizes come from environment variables with CI defaults; `bash scripts/soak.sh` runs the
long version. See docs/reliability.md for the fault matrix and measured figures.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import asyncpg
import pytest

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.progress import lag, stored_offsets, wait_caught_up, wait_for, wait_outbox_empty
from devstack.streams import Feeder, make_stream, produce
from devstack.topics import create_topics
from devstack.workers import Fleet, WorkerProcess
from tests.reliability.checks import assert_state_matches_stored_offsets, outbox_rows, verify_final
from tests.reliability.harness import (
    SESSION_TIMEOUT_S,
    BackgroundSampler,
    OffsetWatch,
    SettingsFactory,
    applied_records,
    env_int,
    report,
    seed_for,
)
from worker.config import Settings
from worker.faults import POINTS

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


async def test_kill9_at_random_instants_under_load(
    fresh_settings: SettingsFactory, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(1) Two replicas, one SIGKILLed at a random instant per cycle while input keeps coming."""
    cycles = env_int("RELIABILITY_KILL_CYCLES", 20)
    n_events = env_int("RELIABILITY_KILL_EVENTS", 50_000)
    seed = seed_for(101)
    rng = random.Random(seed)
    s = await fresh_settings(partitions=4)
    stream = make_stream(n_events, seed=seed)
    started = time.monotonic()
    replicas = [fleet.start(s), fleet.start(s)]
    under_load = 0
    # Records arrive throughout (500 every 0.2 s), so every kill lands while records are coming
    # in; the stream cycles if the kills outlast it, and what is left goes out after them.
    async with Feeder(s, stream.records, piece=500, interval_s=0.2) as feeder:
        for _ in range(cycles):
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            victim = rng.randrange(len(replicas))
            under_load += await lag(s) > 0
            assert replicas[victim].kill() == -signal.SIGKILL
            for r in replicas:
                assert r is replicas[victim] or r.alive, f"{r.name} died\n{r.log_tail()}"
            replicas[victim] = fleet.start(s)
        sent_during_kills = feeder.sent
        await feeder.finish()
    result = await verify_final(s, stream, timeout_s=240)
    elapsed = time.monotonic() - started
    assert all(r.alive for r in replicas), fleet.logs()
    assert under_load >= 1
    report(
        capsys,
        f"kill -9: {cycles} cycles ({under_load} with lag > 0), 2 replicas, "
        f"{result['events']} events in {result['records']} records ({sent_during_kills} of "
        f"{len(stream.records)} distinct ones sent during the kills), {elapsed:.1f}s; {result}",
    )


@pytest.mark.parametrize("point", POINTS)
async def test_crash_at_each_commit_point(
    point: str, fresh_settings: SettingsFactory, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(2) SIGKILL exactly at a named step of the 3rd batch/drain, then a clean restart."""
    s = await fresh_settings(partitions=3)
    stream = make_stream(
        env_int("RELIABILITY_CRASH_EVENTS", 4000), seed=seed_for(200 + POINTS.index(point))
    )
    await produce(s.kafka_bootstrap_servers, s.input_topic, stream.records)
    crashing = fleet.start(s, WORKER_CRASH_AT=point, WORKER_CRASH_AFTER="3")
    assert await crashing.wait_exit(120) == -signal.SIGKILL, crashing.log_tail()

    # Atomicity: whatever the instant, state and stored offsets were committed together.
    prefix = await assert_state_matches_stored_offsets(s)
    backlog = await outbox_rows(s.database_url)
    if point in ("before_db_commit", "after_db_commit", "before_kafka_commit"):
        assert 0 < prefix < len(stream.records)  # it died mid-stream, after some batches

    restarted = fleet.start(s)
    result = await verify_final(s, stream)
    m = await restarted.metrics()
    # Nothing is applied twice: the restart resumed exactly at the stored offsets.
    assert applied_records(m) == len(stream.records) - prefix
    if point == "after_publish":
        assert result["summary_duplicates"] >= 1  # published, not yet deleted: sent again
    assert restarted.alive
    report(
        capsys,
        f"crash at {point}: {prefix}/{len(stream.records)} records committed at the crash, "
        f"outbox {backlog} rows; after restart {result}",
    )


async def test_rebalance_churn_and_a_fenced_zombie(
    fresh_settings: SettingsFactory, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(3) Three replicas leave and join under load; a paused zombie comes back and is fenced."""
    cycles = env_int("RELIABILITY_CHURN_CYCLES", 10)
    attempts = env_int("RELIABILITY_ZOMBIE_ATTEMPTS", 8)
    seed = seed_for(301)
    rng = random.Random(seed)
    s = await fresh_settings(partitions=6)
    stream = make_stream(env_int("RELIABILITY_CHURN_EVENTS", 30_000), seed=seed)
    churn_part = len(stream.records) * 2 // 5
    churn_records, zombie_records = stream.records[:churn_part], stream.records[churn_part:]
    replicas = [fleet.start(s) for _ in range(3)]
    fenced = 0.0
    pauses = 0
    async with OffsetWatch(s) as watch:
        for cycle in range(cycles):
            chunk = len(churn_records) // cycles
            await produce(
                s.kafka_bootstrap_servers,
                s.input_topic,
                churn_records[cycle * chunk : None if cycle == cycles - 1 else (cycle + 1) * chunk],
            )
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            victim = rng.randrange(3)
            leaving = replicas[victim]
            leaving.send(signal.SIGTERM)  # leaves the group
            assert await leaving.wait_exit(25) == 0, leaving.log_tail()
            replicas[victim] = fleet.start(s)  # joins it
        # The zombie: paused past its session timeout, at a random instant of a steady load,
        # while the others take its partitions over and commit past its positions. Resumed
        # with records in hand, its compare-and-set fails and its batch rolls back (or, if it
        # was paused inside its transaction, the new owner's batch is the stale one).
        async with Feeder(s, zombie_records, piece=300, interval_s=0.2) as feeder:
            for _ in range(attempts):
                await feeder.next_piece()
                await asyncio.sleep(rng.uniform(0, 0.2))
                zombie = replicas[rng.randrange(3)]
                zombie.pause()
                pauses += 1
                await asyncio.sleep(SESSION_TIMEOUT_S + 2)
                zombie.resume()
                await asyncio.sleep(2)
                assert zombie.alive, zombie.log_tail()
                fenced = sum(
                    [
                        (await r.metrics()).get("delivery_worker_fenced_batches_total")
                        for r in replicas
                    ]
                )
                if fenced >= 1:
                    break
            await feeder.finish()
        result = await verify_final(s, stream)
    assert fenced >= 1, "no stale batch was fenced\n" + fleet.logs()
    assert watch.regressions == [], "stored offsets went backwards"
    assert all(r.alive for r in replicas), fleet.logs()
    report(
        capsys,
        f"churn: {cycles} leave/join cycles with 3 replicas, zombie pauses {pauses}, "
        f"fenced batches {fenced:.0f}, offset samples {watch.samples}, regressions 0; {result}",
    )


class ReadinessProbe(BackgroundSampler):
    """Polls /readyz like a kubelet and checks the process never exits (no crash loop)."""

    def __init__(self, replica: WorkerProcess, interval_s: float = 0.25) -> None:
        self.replica = replica
        self.interval_s = interval_s
        self.log: list[tuple[float, int | None]] = []
        self.exited: int | None = None

    async def _run(self) -> None:
        while True:
            if not self.replica.alive:
                self.exited = self.replica.returncode
                return
            answer = await self.replica.http("/readyz")
            self.log.append((time.monotonic(), None if answer is None else answer[0]))
            await asyncio.sleep(self.interval_s)

    def last(self) -> int | None:
        return self.log[-1][1] if self.log else None

    async def wait_status(self, status: int, *, since: float, timeout_s: float) -> float:
        """Seconds from `since` until /readyz answered `status`."""

        async def seen() -> bool:
            assert self.exited is None, f"worker exited ({self.exited})\n{self.replica.log_tail()}"
            return any(t >= since and code == status for t, code in self.log)

        await wait_for(seen, timeout_s=timeout_s, what=f"/readyz {status}")
        return min(t for t, code in self.log if t >= since and code == status) - since


async def _progress_after(s: Settings, baseline: dict[int, int], *, since: float) -> float:
    """Seconds from `since` until some stored offset moved past `baseline`."""

    async def moved() -> bool:
        try:
            now = await stored_offsets(s.database_url, s.consumer_group, s.input_topic)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return any(now.get(p, 0) > o for p, o in baseline.items())

    await wait_for(moved, timeout_s=RECOVERY_LIMIT_S, what="progress after recovery")
    return time.monotonic() - since


RECOVERY_LIMIT_S = 60.0


async def test_postgres_and_kafka_restart_mid_stream(
    fresh_settings: SettingsFactory,
    fleet: Fleet,
    kafka_broker: KafkaBroker,
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(4) PostgreSQL crash-restarted, then the broker restarted; one process rides both out."""
    s = await fresh_settings(partitions=3)
    stream = make_stream(env_int("RELIABILITY_OUTAGE_EVENTS", 15_000), seed=seed_for(401))
    first, second, third = stream.chunks(3)
    outage_s = env_int("RELIABILITY_OUTAGE_SECONDS", 5)
    crash_broker = env_int("RELIABILITY_BROKER_KILL", 0) == 1  # SIGKILL instead of SIGTERM
    worker = fleet.start(s)
    figures: dict[str, float] = {}
    try:
        async with ReadinessProbe(worker) as probe, OffsetWatch(s) as watch:
            async with Feeder(s, first + second, piece=300, interval_s=0.2) as feeder:
                await probe.wait_status(200, since=0, timeout_s=60)
                await wait_for(lambda: _some_progress(s), timeout_s=60, what="first batches")

                # PostgreSQL: an immediate stop (a crash: sessions die mid-transaction), then
                # start; records keep arriving meanwhile.
                await feeder.next_piece()
                baseline = await stored_offsets(s.database_url, s.consumer_group, s.input_topic)
                down = time.monotonic()
                await asyncio.to_thread(postgres_server.stop, "immediate")
                await probe.wait_status(503, since=down, timeout_s=30)
                await asyncio.sleep(outage_s)
                await asyncio.to_thread(postgres_server.start)
                back = time.monotonic()
                figures["postgres_ready_s"] = await probe.wait_status(
                    200, since=back, timeout_s=RECOVERY_LIMIT_S
                )
                figures["postgres_progress_s"] = await _progress_after(s, baseline, since=back)
                await feeder.finish()

            # Kafka: the broker stopped (or killed) and started again, same port and data; half
            # of the last part of the stream goes before, half after.
            half = len(third) // 2
            await produce(s.kafka_bootstrap_servers, s.input_topic, third[:half])
            down = time.monotonic()
            await asyncio.to_thread(kafka_broker.kill if crash_broker else kafka_broker.stop)
            await probe.wait_status(503, since=down, timeout_s=30)
            await asyncio.sleep(outage_s)
            baseline = await stored_offsets(s.database_url, s.consumer_group, s.input_topic)
            await asyncio.to_thread(kafka_broker.start)
            back = time.monotonic()
            await produce(s.kafka_bootstrap_servers, s.input_topic, third[half:])
            figures["kafka_ready_s"] = await probe.wait_status(
                200, since=back, timeout_s=RECOVERY_LIMIT_S
            )
            figures["kafka_progress_s"] = await _progress_after(s, baseline, since=back)

            result = await verify_final(s, stream)
            assert probe.exited is None and worker.alive, worker.log_tail()
    finally:
        # The servers are the session's: whatever happened, leave them running.
        await asyncio.to_thread(postgres_server.start)
        await asyncio.to_thread(kafka_broker.start)
    assert fleet.replicas == [worker]  # one process throughout: it never exited
    assert watch.regressions == []
    for name, seconds in figures.items():
        assert seconds <= RECOVERY_LIMIT_S, name
    report(
        capsys,
        "restarts: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in figures.items())
        + f" (outages {outage_s}s + restart, broker {'killed' if crash_broker else 'stopped'});"
        + f" {result}",
    )


async def _some_progress(s: Settings) -> bool:
    stored = await stored_offsets(s.database_url, s.consumer_group, s.input_topic)
    return sum(stored.values()) > 0


async def test_summary_topic_unavailable_then_created(
    fresh_settings: SettingsFactory, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(5) The summary topic does not exist (no auto-create): the outbox grows, then drains."""
    s = await fresh_settings(partitions=3, create_summary_topic=False)
    stream = make_stream(env_int("RELIABILITY_OUTBOX_EVENTS", 6000), seed=seed_for(501))
    await produce(s.kafka_bootstrap_servers, s.input_topic, stream.records)
    worker = fleet.start(s)
    # Consumption goes on without the summary output: every change waits in the outbox.
    await wait_caught_up(s)
    rows = await outbox_rows(s.database_url)
    [[committed]] = await _fetch_values(s.database_url, "SELECT sum(version) FROM message_delivery")
    assert rows == committed > 0  # one row per committed summary version, none published

    async def gauge_shows(value: int) -> bool:
        m = await worker.metrics()
        return m.get("delivery_worker_outbox_backlog_rows") == value

    await wait_for(lambda: gauge_shows(rows), timeout_s=30, what="the backlog gauge to show it")
    await create_topics(s.kafka_bootstrap_servers, [s.summary_topic], partitions=2)
    created = time.monotonic()
    await wait_outbox_empty(s.database_url, timeout_s=120)
    drained_s = time.monotonic() - created
    await wait_for(lambda: gauge_shows(0), timeout_s=30, what="the backlog gauge to reach 0")
    result = await verify_final(s, stream)
    assert worker.alive, worker.log_tail()
    report(
        capsys,
        f"summary topic away: outbox grew to {rows} rows, drained {drained_s:.1f}s after the "
        f"topic was created; {result}",
    )


async def _fetch_values(dsn: str, query: str) -> list[list[Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [list(r.values()) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def test_sigterm_under_load(
    fresh_settings: SettingsFactory, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(6) SIGTERM mid-stream: exit 0 within 25 s with what it applied committed; no replay."""
    rounds = env_int("RELIABILITY_SIGTERM_ROUNDS", 2)
    s = await fresh_settings(partitions=3)
    stream = make_stream(env_int("RELIABILITY_SIGTERM_EVENTS", 20_000), seed=seed_for(601))
    exits: list[float] = []
    lags: list[int] = []
    committed = 0
    async with Feeder(s, stream.records, piece=400, interval_s=0.2) as feeder:
        for _ in range(rounds):
            worker = fleet.start(s, SHUTDOWN_GRACE_S="20")  # the default grace period
            await wait_for(
                lambda c=committed: _progress_beyond(s, c),  # type: ignore[misc]
                timeout_s=60,
                what="progress under load",
            )
            await feeder.next_piece()  # fresh records to work on: SIGTERM lands under load
            worker.send(signal.SIGTERM)
            asked = time.monotonic()
            assert await worker.wait_exit(25) == 0, worker.log_tail()
            exits.append(time.monotonic() - asked)
            lags.append(await lag(s))
            # Exactly what it applied is committed, with the offsets that produced it.
            prefix = await assert_state_matches_stored_offsets(s)
            assert prefix > committed
            committed = prefix
        await feeder.finish()
    assert all(n > 0 for n in lags), lags  # each stop left work for the next owner
    last = fleet.start(s)
    result = await verify_final(s, stream)
    assert applied_records(await last.metrics()) == result["records"] - committed  # no replay
    report(
        capsys,
        f"SIGTERM x{rounds}: exited in {', '.join(f'{x:.1f}s' for x in exits)}, lag left "
        f"{lags}; {committed} records committed before the last restart; {result}",
    )


async def _progress_beyond(s: Settings, committed: int) -> bool:
    stored = await stored_offsets(s.database_url, s.consumer_group, s.input_topic)
    return sum(stored.values()) > committed


async def test_sigterm_while_postgres_is_down(
    fresh_settings: SettingsFactory,
    fleet: Fleet,
    postgres_server: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(6) SIGTERM while the batch in flight cannot commit: abandoned, exit 0 within 25 s."""
    s = await fresh_settings(partitions=3)
    stream = make_stream(env_int("RELIABILITY_SIGTERM_EVENTS", 20_000) // 2, seed=seed_for(701))
    worker = fleet.start(s, SHUTDOWN_GRACE_S="20")
    async with Feeder(s, stream.records, piece=400, interval_s=0.2) as feeder:
        await wait_for(lambda: _progress_beyond(s, 0), timeout_s=60, what="progress under load")
        await feeder.next_piece()
        try:
            await asyncio.to_thread(postgres_server.stop, "immediate")
            await asyncio.sleep(1)  # the batch in flight fails and is being retried
            worker.send(signal.SIGTERM)
            asked = time.monotonic()
            assert await worker.wait_exit(25) == 0, worker.log_tail()
            exit_s = time.monotonic() - asked
        finally:
            await asyncio.to_thread(postgres_server.start)
        await feeder.finish()
    prefix = await assert_state_matches_stored_offsets(s)
    last = fleet.start(s)
    result = await verify_final(s, stream)
    assert applied_records(await last.metrics()) == result["records"] - prefix
    report(
        capsys,
        f"SIGTERM with PostgreSQL down: exited in {exit_s:.1f}s (grace 20s), {prefix} records "
        f"committed before; {result}",
    )
