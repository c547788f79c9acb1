"""The benchmark runs end to end at tiny sizes and reports sane figures (no timing thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import build_parser, run_scenarios, summary_line
from bench.scenarios.growth import EMPTY_AGAIN
from bench.stack import Stack
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer

pytestmark = pytest.mark.integration


async def test_bench_runs_every_scenario_at_tiny_sizes(
    kafka_broker: KafkaBroker, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    args = build_parser().parse_args(
        [
            "--scenario=all",
            "--events=3000",
            "--partitions=3",
            "--mixed-messages=400",
            "--latency-rate=500",
            "--latency-seconds=3",
            "--rss-events=3000",
            "--rss-messages=800",
            "--replay-events=2000",
            "--replica-events=2000",
            "--replica-counts=1,2",
            "--growth-max=2000",
            "--growth-messages=200",
        ]
    )
    stack = Stack(kafka_broker, postgres_server, tmp_path, {"BATCH_MAX_RECORDS": "500"}, None)
    results = await run_scenarios(stack, args)

    throughput = results["throughput"]
    assert throughput["events"] >= 2500
    assert throughput["events_per_s"] > 0
    assert throughput["bare_consumer_records_per_s"] > 0
    assert throughput["ratio_to_bare"] > 0
    worker = throughput["worker"]
    assert worker["records"] == throughput["events"]  # one event per record
    assert worker["rows"]["receipts"] > 0 and worker["rows"]["messages"] > 0
    assert 0 < worker["worker_rss_mib"][0] < 1024
    work = worker["pg_work_per_event"]  # what PostgreSQL did per event during the drain
    assert work["wal_bytes"] > 0 and work["blocks_read"] >= 0 and work["checkpoints"] >= 0
    shares = work["hot_update_share"]  # every batch moves the stored offsets: one UPDATE
    assert "consumer_offsets" in shares and all(0 <= v <= 1 for v in shares.values())
    assert work["statement_us"] == {}  # pg_stat_statements is not loaded on this server

    mixed = results["mixed"]
    assert mixed["messages"] == mixed["worker"]["rows"]["messages"] == 400
    assert mixed["records"] < mixed["events"]  # CloudEvents arrays hold several events
    assert mixed["poison_records"] >= 0 and mixed["ratio_to_bare"] > 0

    messaging = results["messaging"]
    plain, joined = messaging["plain"], messaging["messaging_half"]
    # Same messages, same receipts: the Messaging events joined exactly as receipt events.
    assert joined["worker"]["rows"]["receipts"] == plain["worker"]["rows"]["receipts"]
    assert joined["worker"]["rows"]["messages"] == plain["worker"]["rows"]["messages"] == 400
    assert messaging["ratio_to_plain"] > 0

    latency = results["latency"]
    assert latency["matched"] == latency["messages"] > 0  # every message's final summary seen
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]

    rss = results["rss"]
    assert rss["messages"] == 800
    assert rss["worker"]["rows"]["messages"] == 800
    assert results["replay"]["worker"]["events_per_s"] > 0

    replicas = results["replicas"]
    assert replicas["runs"]["1"]["rows"] == replicas["runs"]["2"]["rows"]  # same state
    assert replicas["speedup"]["2"] > 0

    growth = results["growth"]
    *levels, again = growth["runs"].values()
    stored = [r["stored_receipts"] for drains in levels for r in drains]
    assert stored[0] == 0 and stored == sorted(stored) and stored[-1] >= 2000
    assert all(len(drains) == 2 for drains in growth["runs"].values())  # --growth-drains
    assert again[0]["stored_receipts"] == 0  # the empty database once more, measured last
    assert set(growth["ratio_to_empty"]) == set(growth["runs"]) - {EMPTY_AGAIN}
    assert all(r["events_per_s"] > 0 for drains in growth["runs"].values() for r in drains)

    for name, result in results.items():
        json.dumps(summary_line(name, result))  # printable as the runner prints it
