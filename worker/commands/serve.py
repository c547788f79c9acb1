"""The service commands: `migrate`, `run` and `api`."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from worker.commands import event_loop_runner
from worker.config import Settings

if TYPE_CHECKING:
    # worker.api imports aiohttp and asyncpg; only the api command needs them at run time.
    from worker.api.credentials import Credentials

log = logging.getLogger("worker")


def migrate(settings: Settings) -> None:
    from worker.migrate import apply_migrations

    applied = event_loop_runner()(apply_migrations(settings.database_url))
    log.info("migrations done", extra={"applied": applied})


def run(settings: Settings) -> None:
    from worker.service import run_worker, tune_gc

    tune_gc()
    event_loop_runner()(run_worker(settings))


def api(settings: Settings, credentials: Credentials | None) -> None:
    event_loop_runner()(_serve_api(settings, credentials))


async def _serve_api(settings: Settings, credentials: Credentials | None) -> None:
    from worker.api import serve_api

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve_api(
        settings.database_url,
        settings.api_host,
        settings.api_port,
        credentials,
        stop,
        base_url=settings.api_public_base_url,
    )
