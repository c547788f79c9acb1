"""Drain scenarios: a preloaded topic drained by one worker into an empty database.

- throughput: the classic stream (one event per record, keyed by message), `--events`.
- mixed: the stream real users send (bench.loadgen.MIXED: mixed keys, CloudEvents arrays,
  ≈ 2.5 events per receipt, 0.2 % poison) over `--mixed-messages` messages.
- rss: a large stream (2M events over 500k messages); worker VmRSS at the end.
- replay: a 1M-event topic from offset 0, start-up included in its second figure.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.loadgen import MIXED
from bench.measure import bare_consumer_rate, drain, generate_stream, preload
from bench.stack import Stack, drop_database, new_target
from bench.util import say


async def scenario_drain(
    stack: Stack,
    name: str,
    args: argparse.Namespace,
    events: int,
    *,
    with_bare: bool = True,
    **stream_options: Any,
) -> dict[str, Any]:
    stream = generate_stream(events, args.seed, **stream_options)
    target = await new_target(stack, name, args.partitions)
    produced = await preload(stack, target, stream, name)
    result: dict[str, Any] = {
        "events": stream.event_count,
        "records": len(stream.records),
        "poison_records": stream.poison,
        "messages": stream.messages,
        "partitions": args.partitions,
        "produce": produced,
    }
    if with_bare:
        bare = await bare_consumer_rate(stack.bootstrap, target.input_topic)
        say(f"{name}: bare aiokafka consumer {bare['records_per_s']:,.0f} records/s")
        result["bare_consumer_records_per_s"] = round(bare["records_per_s"], 1)
        # Records/s of the bare consumer as events/s of this stream (arrays hold several).
        result["bare_consumer_events_per_s"] = round(
            bare["records_per_s"] * stream.event_count / max(1, len(stream.records)), 1
        )
    worker = await drain(stack, target, 1, stream.event_count, label=name, compact=True)
    drop_database(stack, target)
    result["worker"] = worker
    result["events_per_s"] = worker["events_per_s"]
    if with_bare:
        result["ratio_to_bare"] = round(
            worker["events_per_s"] / result["bare_consumer_events_per_s"], 3
        )
    return result


async def throughput(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    return await scenario_drain(stack, "throughput", args, args.events)


async def mixed(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    # ≈ 7.5 events a message (1 to 5 receipts, ≈ 2.5 events each): the event count follows.
    return await scenario_drain(
        stack, "mixed", args, args.mixed_messages * 8, messages=args.mixed_messages, **MIXED
    )


async def messaging(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The mixed stream twice in one sitting: as is, then with half of the receipts'
    outcomes as Messaging status events joined by channel message SID (docs/design.md,
    "Input forms"), each where its receipt event was (`--scatter-statuses`: anywhere)."""
    options = {**MIXED, "messages": args.mixed_messages}
    plain = await scenario_drain(stack, "mixed", args, args.mixed_messages * 8, **options)
    joined = await scenario_drain(
        stack,
        "messaging",
        args,
        args.mixed_messages * 8,
        messaging_share=0.5,
        scatter_statuses=args.scatter_statuses,
        **options,
    )
    return {
        "plain": plain,
        "messaging_half": joined,
        "events_per_s": joined["events_per_s"],
        "ratio_to_plain": round(joined["events_per_s"] / plain["events_per_s"], 3),
    }


async def replay(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    return await scenario_drain(stack, "replay", args, args.replay_events, with_bare=False)


async def rss(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    # 2M events over 500k messages is 4 events a message: up to 3 receipts each.
    return await scenario_drain(
        stack,
        "rss",
        args,
        args.rss_events,
        messages=args.rss_messages,
        max_receipts=3,
        with_bare=False,
    )
