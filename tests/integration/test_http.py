"""The worker's HTTP endpoint while it runs against the real broker and Postgres."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from devstack._util import free_port
from devstack.progress import wait_caught_up
from devstack.streams import produce
from devstack.workers import running_worker
from worker.config import Settings
from worker.loadgen import encode_mixed, generate_events

pytestmark = pytest.mark.integration


async def test_metrics_health_and_readiness(worker_settings: Settings) -> None:
    settings = dataclasses.replace(worker_settings, http_port=free_port())
    base = f"http://127.0.0.1:{settings.http_port}"
    events = list(generate_events(50, seed=3))
    await produce(settings.kafka_bootstrap_servers, settings.input_topic, encode_mixed(events))
    async with running_worker(settings), aiohttp.ClientSession() as http:
        await wait_caught_up(settings)
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ready"
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = await resp.text()
    samples = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["delivery_worker_events_applied_total"] == len(events)
    assert samples["delivery_worker_ready"] == 1.0
    assert samples["delivery_worker_last_progress_timestamp_seconds"] > 0
    assert any(k.startswith("delivery_receipt_stage_reached_total{") for k in samples)
    # Bounded labels: no SID ever appears in a series name.
    assert not any(sid in body for e in events for sid in (e.message_sid, e.participant_sid))
