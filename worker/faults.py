"""Crash points for fault-injection tests: the process dies, as by kill -9, at a named step.

Off unless WORKER_CRASH_AT names a point; then the WORKER_CRASH_AFTER-th time (default 1) the
worker reaches that point it sends itself SIGKILL, so no finally block or flush runs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

POINTS = (
    "before_db_commit",  # the batch's statements ran; its transaction has not committed
    "after_db_commit",  # state and offsets committed; outbox not yet published
    "before_publish",  # outbox rows claimed; nothing sent to the summary topic yet
    "after_publish",  # summary events acknowledged; outbox rows not yet deleted
    "before_kafka_commit",  # Postgres committed; Kafka's informational offsets not yet
    "after_kafka_commit",  # everything of the batch done
)


class CrashPoints:
    def __init__(self, point: str | None = None, after: int = 1) -> None:
        if point is not None and point not in POINTS:
            raise ValueError(f"WORKER_CRASH_AT must be one of {', '.join(POINTS)}, got {point!r}")
        self._point = point
        self._after = after
        self._hits = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CrashPoints:
        source = os.environ if env is None else env
        point = source.get("WORKER_CRASH_AT") or None
        return cls(point, int(source.get("WORKER_CRASH_AFTER", "1")))

    def reached(self, point: str) -> None:
        if point != self._point:
            return
        self._hits += 1
        if self._hits >= self._after:
            os.kill(os.getpid(), signal.SIGKILL)
