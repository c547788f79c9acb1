"""What only the fault tests need on top of the shared harness (devstack/): their worker tuning,
their sizes and seeds, and background samplers that watch a run while faults are injected.

Worker processes, runs, streams and the paced producer are devstack's (devstack/workers.py,
devstack/runs.py, devstack/streams.py); the exact end-state checks are tests/reliability/checks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Self

import asyncpg
import pytest

from devstack.progress import stored_offsets_on
from devstack.workers import Metrics
from worker.config import Settings

# Test tuning: a short session timeout so a killed or paused replica loses its partitions in
# seconds (the session broker allows it, see tests/conftest.py), and small batches so there
# are many commit points to crash between.
DEFAULT_WORKER_ENV = {
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BATCH_MAX_RECORDS": "500",
    "SHUTDOWN_GRACE_S": "10",
    "LOG_LEVEL": "INFO",
}
SESSION_TIMEOUT_S = 3.0

# `fresh_settings(partitions=4, create_summary_topic=True)` (tests/reliability/conftest.py).
SettingsFactory = Callable[..., Awaitable[Settings]]


def env_int(name: str, default: int) -> int:
    """A size knob of the tests: CI defaults here, `scripts/soak.sh` sets the full sizes."""
    return int(os.environ.get(name, default))


def seed_for(base: int) -> int:
    """A test's stream seed; RELIABILITY_SEED shifts every test's (the soak varies it)."""
    return base + env_int("RELIABILITY_SEED", 0)


def report(capsys: pytest.CaptureFixture[str], line: str, *, tag: str = "reliability") -> None:
    """A figure of the run, printed even when pytest captures output."""
    with capsys.disabled():
        print(f"\n[{tag}] {line}")


def applied_records(m: Metrics) -> float:
    """Records a worker applied: consumed minus those dropped as already applied (stale)."""
    return m.get("delivery_worker_records_consumed_total") - m.get(
        "delivery_worker_stale_records_total"
    )


class BackgroundSampler:
    """Runs `_run` as a task for the duration of an `async with` block."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class OffsetWatch(BackgroundSampler):
    """Samples the stored offsets in the background: a stale writer would move one backwards.

    Offsets move by compare-and-set, so every partition's stored offset must only ever go up,
    whatever is killed, paused or rebalanced. `regressions` lists any that did not.
    """

    def __init__(self, settings: Settings, interval_s: float = 0.1) -> None:
        self._settings = settings
        self._interval_s = interval_s
        self.samples = 0
        self.regressions: list[tuple[int, int, int]] = []  # (partition, before, after)
        self._conn: asyncpg.Connection | None = None

    async def _run(self) -> None:
        last: dict[int, int] = {}
        try:
            while True:
                rows = await self._read()
                for p, offset in rows:
                    if offset < last.get(p, 0):
                        self.regressions.append((p, last[p], offset))
                    last[p] = max(offset, last.get(p, 0))
                self.samples += bool(rows)
                await asyncio.sleep(self._interval_s)
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()

    async def _read(self) -> list[tuple[int, int]]:
        s = self._settings
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(s.database_url)
            stored = await stored_offsets_on(self._conn, s.consumer_group, s.input_topic)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._conn = None  # PostgreSQL is away on purpose in some tests
            return []
        return list(stored.items())
