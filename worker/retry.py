"""Which failures are worth retrying, and how long to wait between tries."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka.errors import KafkaError

# Connection trouble and lock conflicts go away by themselves; anything else is a bug or a
# bad deployment and should stop the process loudly rather than spin.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


class Backoff:
    """Exponential delay from `initial_s` to `max_s`; reset after a success."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 5.0) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._next_s = initial_s

    def reset(self) -> None:
        self._next_s = self._initial_s

    async def sleep(self) -> None:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        await asyncio.sleep(delay)
