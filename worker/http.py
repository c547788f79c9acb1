"""The worker's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for Kubernetes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.metrics import WorkerMetrics

# Raises when a dependency cannot be reached.
DependencyCheck = Callable[[], Awaitable[None]]


class Health:
    """Liveness is progress of the consumer loop; readiness is reachability of Kafka and Postgres.

    Liveness deliberately ignores the dependencies: restarting the pod does not bring a
    database back, it only adds a crash loop on top of the outage.
    """

    # A probe answer is reused this long, so frequent scrapes do not hammer the dependencies.
    CHECK_CACHE_S = 1.0
    # Well under a kubelet probe's default 1 s timeout is not possible for a broker round trip;
    # the chart's readiness probe allows 3 s.
    CHECK_TIMEOUT_S = 2.0

    def __init__(self, metrics: WorkerMetrics, *, liveness_timeout_s: float) -> None:
        self._metrics = metrics
        self._liveness_timeout_s = liveness_timeout_s
        self._last_progress = time.monotonic()
        self._ready = False
        self._reason = "starting"
        self._check: DependencyCheck | None = None
        self._checked: tuple[float, bool, str] = (0.0, False, "")

    def set_dependency_check(self, check: DependencyCheck | None) -> None:
        self._check = check

    def progress(self) -> None:
        self._last_progress = time.monotonic()
        self._metrics.last_progress.set(time.time())

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self._ready = ready
        self._reason = reason
        self._metrics.ready.set(1 if ready else 0)

    @property
    def reason(self) -> str:
        return self._reason

    def live(self) -> bool:
        return time.monotonic() - self._last_progress < self._liveness_timeout_s

    async def readiness(self) -> tuple[bool, str]:
        """Ready if the worker says so and, when idle too, both dependencies answer now."""
        if not self._ready or self._check is None:
            return self._ready, self._reason
        checked_at, ok, reason = self._checked
        if time.monotonic() - checked_at >= self.CHECK_CACHE_S:
            try:
                await asyncio.wait_for(self._check(), self.CHECK_TIMEOUT_S)
                ok, reason = True, ""
            except Exception as exc:  # the probe's answer, not an error of the worker
                ok, reason = False, f"dependency check failed: {type(exc).__name__}"
            self._checked = (time.monotonic(), ok, reason)
            self._metrics.ready.set(1 if ok else 0)
        return ok, reason


def create_app(metrics: WorkerMetrics, health: Health) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if health.live():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stalled"}, status=503)

    async def readyz(_: web.Request) -> web.Response:
        ready, reason = await health.readiness()
        if ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
