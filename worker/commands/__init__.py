"""The work of the CLI's commands; worker/cli.py parses the command line and dispatches here.

- serve.py: migrate, run, api (the long-running service commands)
- topics.py: create-topics, produce, tail (trying the worker out against a Kafka cluster)
- ops.py: offsets and dlq (the operator commands: a report on stdout and an exit code)

Heavy imports (aiokafka, asyncpg, aiohttp) stay inside the functions, so `--help` and a
configuration error cost none of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def event_loop_runner() -> Callable[[Coroutine[Any, Any, T]], T]:
    """uvloop when installed (the `fast` extra): the event loop is a large share of the hot path."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
