"""Benchmark runner: starts Kafka + PostgreSQL (devstack), runs the real worker, measures it.

    python -m bench.run --scenario all --json bench-results.json
    python -m bench.run --scenario mixed
    python -m bench.run --scenario growth --growth-max 400000

Scenarios (each on its own topics and database, all in one broker and one PostgreSQL):
throughput, mixed, messaging (the mixed stream with half its outcomes as Messaging status
events, beside the plain one), latency, rss, replay (bench/scenarios/drain.py, latency.py),
replicas (scenarios/replicas.py: 1 → 2 → 3 workers in one group) and growth
(scenarios/growth.py: the mixed stream's rate as the database grows). docs/benchmark.md
describes each one.

Everything started here is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bench.scenarios.drain import messaging, mixed, replay, rss, throughput
from bench.scenarios.growth import growth
from bench.scenarios.latency import latency
from bench.scenarios.replicas import replicas
from bench.stack import Stack, started_stack
from bench.util import loadavg, say

Scenario = Callable[[Stack, argparse.Namespace], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "throughput": throughput,
    "mixed": mixed,
    "messaging": messaging,
    "latency": latency,
    "rss": rss,
    "replay": replay,
    "replicas": replicas,
    "growth": growth,
}


def parse_env(values: Sequence[str], option: str = "--worker-env") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{option} wants NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def _counts(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the worker against a local Kafka + PostgreSQL it starts itself.",
    )
    a = p.add_argument
    a("--scenario", choices=(*SCENARIOS, "all"), default="all")
    a("--events", type=int, default=300_000, help="throughput: events")
    a("--partitions", type=int, default=6, help="input topic partitions")
    a("--mixed-messages", type=int, default=30_000, help="mixed: messages (≈ 7.5 events each)")
    a("--scatter-statuses", action="store_true",
      help="messaging: status events anywhere, not where their receipt events were")  # fmt: skip
    a("--latency-rate", type=float, default=5000, help="latency: offered events/s")
    a("--latency-seconds", type=float, default=30, help="latency: duration")
    a("--latency-linger-ms", type=int, default=5, help="latency: producer linger")
    a("--rss-events", type=int, default=2_000_000, help="rss: events")
    a("--rss-messages", type=int, default=500_000, help="rss: messages")
    a("--replay-events", type=int, default=1_000_000, help="replay: events")
    a("--replica-events", type=int, default=300_000, help="replicas: events")
    a("--replica-counts", type=_counts, default=[1, 2, 3], help="replicas: e.g. 1,2,3")
    a("--replica-partitions", type=int, default=6, help="replicas: input topic partitions")
    a("--replica-stream", choices=("mixed", "classic"), default="mixed", help="replicas: stream")
    a("--growth-max", type=int, default=2_000_000, help="growth: receipts at the last level")
    a("--growth-messages", type=int, default=20_000, help="growth: messages measured per level")
    a("--growth-replicas", type=int, default=1, help="growth: workers draining each level")
    a("--growth-drains", type=int, default=2, help="growth: streams drained at each level")
    a("--repeat", type=int, default=1, help="run each chosen scenario this many times")
    a("--seed", type=int, default=1)
    a("--worker-env", action="append", default=[], metavar="NAME=VALUE",
      help="extra worker environment, e.g. BATCH_MAX_RECORDS=5000 (repeatable)")  # fmt: skip
    a("--pg-no-fsync", action="store_true", help="run PostgreSQL with fsync off")
    a("--pg-settings", choices=("tuned", "default"), default="tuned",
      help="tuned: shared_buffers 512MB, max_wal_size 4GB…; default: PostgreSQL's own")  # fmt: skip
    a("--pg-set", action="append", default=[], metavar="NAME=VALUE",
      help="one more PostgreSQL server setting on top of --pg-settings, e.g."
           " wal_compression=lz4 (repeatable)")  # fmt: skip
    a("--py-spy", default=None, metavar="PATH",
      help="py-spy binary: profile each worker (collapsed stacks beside its log)")  # fmt: skip
    a("--json", type=Path, default=None, help="write the results here as JSON")
    return p


async def run_scenarios(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results: dict[str, Any] = {}
    for name in chosen:
        for run in range(args.repeat):
            key = name if args.repeat == 1 else f"{name}#{run + 1}"
            load_before = loadavg()
            say(f"=== {key} === load {load_before}")
            results[key] = await SCENARIOS[name](stack, args)
            results[key]["load_before"] = load_before
            results[key]["load_after"] = loadavg()
            say(f"{key}: {json.dumps(summary_line(name, results[key]))}")
    return results


def _drain_line(w: dict[str, Any]) -> dict[str, Any]:
    return {
        "events_per_s": w["events_per_s"],
        "cpu_us_per_event": w["cpu_us_per_event"],
        "cpu_cores_used": w["cpu_cores_used"],
    }


def summary_line(name: str, r: dict[str, Any]) -> dict[str, Any]:
    name = name.partition("#")[0]
    load = {"load": f"{r.get('load_before', '?')} -> {r.get('load_after', '?')}"}
    return {**_summary(name, r), **load}


def _summary(name: str, r: dict[str, Any]) -> dict[str, Any]:
    if name in ("throughput", "mixed"):
        keys = ("events", "records", "events_per_s", "bare_consumer_events_per_s", "ratio_to_bare")
        return {**{k: r.get(k) for k in keys}, **_drain_line(r["worker"])}
    if name in ("replay", "rss"):
        w = r["worker"]
        return {
            "events": r["events"],
            "messages": r["messages"],
            **_drain_line(w),
            "events_per_s_incl_startup": w["events_per_s_incl_startup"],
            "worker_rss_mib": w["worker_rss_mib"],
            "worker_peak_rss_mib": w["worker_peak_rss_mib"],
        }
    if name == "messaging":
        return {
            "plain": _summary("mixed", r["plain"]),
            "messaging_half": _summary("mixed", r["messaging_half"]),
            "ratio_to_plain": r["ratio_to_plain"],
        }
    if name == "latency":
        wanted: tuple[str, ...] = ("offered_events_per_s", "achieved_events_per_s", "matched")
        wanted += ("messages", "p50_ms", "p90_ms", "p99_ms", "max_ms", "worker_rss_mib_max")
        return {k: r.get(k) for k in wanted}
    if name == "replicas":
        return {
            "stream": r["stream"],
            **{f"x{n}": _drain_line(w) for n, w in r["runs"].items()},
            "speedup": r["speedup"],
        }
    if name == "growth":
        return {
            **{
                f"level_{level}": [_drain_line(w) | {"stored": w["stored_receipts"]} for w in ws]
                for level, ws in r["runs"].items()
            },
            "ratio_to_empty": r["ratio_to_empty"],
            "ratio_to_empty_first_drain": r["ratio_to_empty_first_drain"],
        }
    return r


def _runner() -> Any:
    """uvloop when installed, as the worker's CLI does, so the bare consumer is like for like."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.worker_env = parse_env(args.worker_env)
    args.pg_set = parse_env(args.pg_set, "--pg-set")
    started = time.monotonic()
    header = {
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": loadavg(),
        "worker_env": args.worker_env,
        "pg_fsync": not args.pg_no_fsync,
        "pg_settings": args.pg_settings,
        "pg_set": args.pg_set,
    }
    say(f"parameters: {json.dumps(header)}")
    with started_stack(args) as stack:
        results = _runner()(run_scenarios(stack, args))
    report = {**header, "seconds": round(time.monotonic() - started, 1), "results": results}
    print(f"\n=== results (load before {header['load_before']}) ===", flush=True)
    for name, r in results.items():
        print(f"{name:>10}: {json.dumps(summary_line(name, r))}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
