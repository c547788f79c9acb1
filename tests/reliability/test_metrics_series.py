"""The number of metric series stays bounded whatever the input.

The real worker is fed 10,000 distinct participants, arbitrary Twilio error codes, arbitrary
explicit Channel values and every kind of bad input; /metrics is scraped before and after.
Every label value must come from a fixed set, so the series count has a bound computed from
the metric definitions alone, not from the input.
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack._util import free_port
from devstack.progress import wait_caught_up
from devstack.streams import produce
from devstack.workers import running_worker
from tests.reliability.corpus.hostile import CORPUS, SKIPPED_TRICKY
from worker.config import Settings
from worker.loadgen import Record, encode_mixed, generate_events
from worker.metrics import CHANNEL_LABELS, KNOWN_ERROR_CODES, STAGES, STATUS_OUTCOMES, WorkerMetrics
from worker.parsing import REASONS

pytestmark = pytest.mark.integration

SKIP_REASONS = frozenset({"other_event_type", "chat_channel", "empty_batch", "inbound_status"})
RETRY_REASONS = frozenset({"kafka", "postgres", "conflict"})
ALLOWED: dict[str, frozenset[str]] = {
    "channel": CHANNEL_LABELS | {"other"},
    "stage": frozenset(STAGES),
    "error_code": KNOWN_ERROR_CODES | {"none", "other"},
    "reason": REASONS | SKIP_REASONS | RETRY_REASONS,
    "outcome": frozenset(STATUS_OUTCOMES),
}
PARTICIPANTS = 10_000

Series = dict[str, dict[tuple[tuple[str, str], ...], int]]
# Samples per series when a family has none yet: _total of a counter; the buckets, +Inf, _count
# and _sum of a histogram (worker/metrics.py has <= 13 buckets). The text format exposes each
# series' _created timestamp as a gauge family of its own.
_PER_SERIES = {"counter": 1, "gauge": 1, "histogram": 16}


def _series(text: str) -> tuple[set[str], Series, dict[str, str]]:
    """Every sample as 'name{labels}'; per family: label set (without le) -> samples; types."""
    samples: set[str] = set()
    families: Series = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        groups = families.setdefault(family.name, {})
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.add(f"{sample.name}{dict(labels)}")
            key = tuple((k, v) for k, v in labels if k != "le")
            groups[key] = groups.get(key, 0) + 1
    return samples, families, types


def _bound(families: Series, types: dict[str, str], label_names: dict[str, set[str]]) -> int:
    """Most samples the registry can ever expose: label sets are products of fixed sets."""
    total = 0
    for name, groups in families.items():
        per_series = max([_PER_SERIES[types[name]], *groups.values()])
        combos = 1
        for label in label_names.get(name, label_names.get(name.removesuffix("_created"))) or ():
            combos *= len(ALLOWED[label])
        total += combos * per_series
    return total


def _hostile_stream(rng: random.Random) -> tuple[list[Record], set[str], set[int]]:
    """10,000 receipts, each its own participant, with made-up channels and error codes."""
    account = "AC" + f"{rng.getrandbits(128):032x}"
    start = datetime(2026, 3, 1, tzinfo=UTC)
    records: list[Record] = []
    channels: set[str] = set()
    codes: set[int] = set()
    for n in range(PARTICIPANTS):
        message = "IM" + f"{n // 10:032x}"
        status = rng.choice(["sent", "delivered", "read", "failed", "undelivered", "queued"])
        doc: dict[str, object] = {
            "EventType": "onDeliveryUpdated",
            "AccountSid": account,
            "ConversationSid": "CH" + f"{n // 100:032x}",
            "MessageSid": message,
            "DeliveryReceiptSid": "DY" + f"{n:032x}",
            "ParticipantSid": "MB" + f"{rng.getrandbits(128):032x}",
            "ChannelMessageSid": rng.choice(["SM", "WA", "MM", "XY"]) + f"{n:032x}",
            "Status": status,
            "DateCreated": start.isoformat(),
            "DateUpdated": (start + timedelta(seconds=rng.randint(1, 10**6))).isoformat(),
        }
        if rng.random() < 0.7:
            channel = rng.choice("abcdefghijklmnopqrstuvwxyz") + f"{rng.getrandbits(60):x}"
            doc["Channel"] = channel.upper() if n % 3 == 0 else channel
            channels.add(channel)
        if status in ("failed", "undelivered") or rng.random() < 0.2:
            code = rng.randint(1, 2**31 - 1)
            doc["ErrorCode"] = str(code) if n % 2 else code
            codes.add(code)
        records.append(Record(message.encode(), orjson.dumps(doc), []))
    return records, channels, codes


def _label_names(metrics: WorkerMetrics) -> dict[str, set[str]]:
    """Label names of each family, from the definitions (families without samples too)."""
    names: dict[str, set[str]] = {}
    for attr in vars(metrics).values():
        labelnames = getattr(attr, "_labelnames", None)
        if labelnames is not None:
            names[attr._name] = set(labelnames)
    return names


async def _scrape(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_series_count_is_bounded_whatever_the_input(worker_settings: Settings) -> None:
    s = dataclasses.replace(worker_settings, http_port=free_port(), batch_max_records=2000)
    base = f"http://127.0.0.1:{s.http_port}"
    warmup = encode_mixed(list(generate_events(40, seed=8)), seed=8)
    await produce(s.kafka_bootstrap_servers, s.input_topic, warmup)

    async with running_worker(s) as metrics, aiohttp.ClientSession() as http:
        await wait_caught_up(s)
        before, _, _ = _series(await _scrape(http, base))

        records, channels, codes = _hostile_stream(random.Random(42))
        bad = [Record(e.key, e.value, e.headers) for e in CORPUS]  # type: ignore[arg-type]
        await produce(s.kafka_bootstrap_servers, s.input_topic, [*records, *bad, *SKIPPED_TRICKY])
        await wait_caught_up(s)
        body = await _scrape(http, base)
    after, families, types = _series(body)

    # The input really was wide...
    assert len(channels) > 5000 and len(codes) > 3000
    # ...and no label value came from it.
    for family, groups in families.items():
        for key in groups:
            for label, value in key:
                assert value in ALLOWED[label], (family, label, value)
    assert not any(f'{c}"' in body for c in list(channels)[:500])
    assert re.search(r"[A-Z]{2}[0-9a-fA-F]{32}", body) is None, "a SID in a label"
    bound = _bound(families, types, _label_names(metrics))
    assert bound < 1500, bound  # a property of the metric definitions, not of the input
    print(f"\n[metrics] series before={len(before)} after={len(after)} bound={bound}")
    assert len(before) <= len(after) <= bound
    # Growth from 40 messages to 10,000 participants is new label combinations, not new SIDs.
    assert len(after - before) <= bound - len(before)
