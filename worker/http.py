"""The worker's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for Kubernetes."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.metrics import WorkerMetrics


class Health:
    """Liveness is progress of the consumer loop; readiness is reachability of Kafka and Postgres.

    Liveness deliberately ignores the dependencies: restarting the pod does not bring a
    database back, it only adds a crash loop on top of the outage.
    """

    def __init__(self, metrics: WorkerMetrics, *, liveness_timeout_s: float) -> None:
        self._metrics = metrics
        self._liveness_timeout_s = liveness_timeout_s
        self._last_progress = time.monotonic()
        self._ready = False
        self._reason = "starting"

    def progress(self) -> None:
        self._last_progress = time.monotonic()
        self._metrics.last_progress.set(time.time())

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self._ready = ready
        self._reason = reason
        self._metrics.ready.set(1 if ready else 0)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def reason(self) -> str:
        return self._reason

    def live(self) -> bool:
        return time.monotonic() - self._last_progress < self._liveness_timeout_s


def create_app(metrics: WorkerMetrics, health: Health) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if health.live():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stalled"}, status=503)

    async def readyz(_: web.Request) -> web.Response:
        if health.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": health.reason}, status=503)

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
