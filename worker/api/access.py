"""Records every request: one JSON access-log line and the request metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from worker.api.auth import caller_account
from worker.api.metrics import UNMATCHED_ROUTE, ApiMetrics

log = logging.getLogger("worker.api.access")

# Probes and scrapes arrive every few seconds from every kubelet and Prometheus: counted in
# the metrics, left out of the log, where they would drown the requests that matter.
_UNLOGGED_PATHS: Final = frozenset({"/healthz", "/metrics"})
CLIENT_CLOSED: Final = 499


def route_template(request: web.Request) -> str:
    """The matched route's template (``/v1/Conversations/{ConversationSid}/...``): a bounded
    label, unlike the path, which carries SIDs."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


def access_middleware(metrics: ApiMetrics) -> Middleware:
    """Outermost middleware: it sees the final status of every answer, errors included."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # The client went away before the answer (nginx's 499): not a server error.
            status = CLIENT_CLOSED
            raise
        finally:
            duration_s = time.perf_counter() - started
            route = route_template(request)
            metrics.observe(route, status, duration_s)
            if request.path not in _UNLOGGED_PATHS:
                # The path only: the query string is the client's, and the Authorization
                # header (like every other header) is never logged.
                log.info(
                    "request",
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(duration_s * 1000, 3),
                        "account_sid": caller_account(request),
                        "remote": request.remote,
                    },
                )

    return middleware
