"""The read API's own Prometheus metrics: requests by route template and status class."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

# The route label of requests no route matched (unknown paths, wrong methods): one value,
# whatever the path, so a scanner cannot create series.
UNMATCHED_ROUTE: Final = "unmatched"
# Primary-key lookups and one LIMIT 51 keyset scan: milliseconds normally; the top buckets
# catch the 5 s statement timeout.
_LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiMetrics:
    """Request counters and latency, in a registry of their own (one per application)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The API runs in its own process: its process, GC and platform series belong here.
        for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter(
            "delivery_api_requests",
            "Requests answered by the read API, by route template and status class (2xx, 4xx…).",
            ["route", "status_class"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "delivery_api_request_duration_seconds",
            "Time to answer a read API request, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "delivery_api_auth_failures",
            "Requests refused for missing or wrong credentials (also in the 4xx requests).",
            registry=self.registry,
        )

    def observe(self, route: str, status: int, duration_s: float) -> None:
        self.requests.labels(route, f"{status // 100}xx").inc()
        self.duration.labels(route).observe(duration_s)
        if status == 401:
            self.auth_failures.inc()

    async def handler(self, _: web.Request) -> web.Response:
        """``GET /metrics``, Prometheus' text format."""
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
