"""Fuzzing the parser: whatever the bytes and headers, parse_record either returns valid
events or raises InvalidRecord with a known reason. Never anything else.

Hypothesis drives the structured and mutation fuzzing here; when atheris is installed, a
short coverage-guided run (tests/reliability/corpus/atheris_parse.py, which can also be run
by hand for longer) happens in a subprocess.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.reliability.corpus.hostile import BIG_LIMIT, CORPUS, DEFAULT_LIMIT, Hostile
from worker.events import STATUS_LABELS, ReceiptEvent, Status
from worker.loadgen import FORMS, Record, encode, generate_events
from worker.parsing import REASONS, InvalidRecord, ParsedRecord, parse_record

LIMIT = DEFAULT_LIMIT
ROOT = Path(__file__).resolve().parents[2]
_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PASCAL_FIELDS = (
    "AccountSid",
    "ChatServiceSid",
    "ConversationSid",
    "MessageSid",
    "DeliveryReceiptSid",
    "ChannelMessageSid",
    "ParticipantSid",
    "Status",
    "ErrorCode",
    "DateCreated",
    "DateUpdated",
    "Channel",
)
SNAKE_FIELDS = (
    "sid",
    "account_sid",
    "chat_service_sid",
    "conversation_sid",
    "message_sid",
    "channel_message_sid",
    "participant_sid",
    "status",
    "error_code",
    "date_created",
    "date_updated",
    "channel",
)
HEADER_NAMES = ("content-type", "Content-Type", "ce_type", "ce_specversion", "x-trace")
CONTENT_TYPES = (
    b"application/json",
    b"application/cloudevents+json",
    b"application/cloudevents-batch+json; charset=utf-8",
    b"application/x-www-form-urlencoded",
    b"text/plain",
    b"\xff\xfe",
    b"",
)


def check_event(e: ReceiptEvent) -> None:
    """What every accepted event must satisfy, whatever the input looked like."""
    for name, prefix in (
        ("account_sid", "AC"),
        ("conversation_sid", "CH"),
        ("message_sid", "IM"),
        ("receipt_sid", "DY"),
        ("participant_sid", "MB"),
    ):
        value = getattr(e, name)
        assert _SID.fullmatch(value) and value.startswith(prefix), (name, value)
    assert e.chat_service_sid is None or (
        _SID.fullmatch(e.chat_service_sid) and e.chat_service_sid.startswith("IS")
    )
    assert e.channel_message_sid is None or _SID.fullmatch(e.channel_message_sid)
    assert isinstance(e.status, Status) and e.status.label in STATUS_LABELS
    assert e.error_code is None or (isinstance(e.error_code, int) and 0 < e.error_code < 2**31)
    assert _CHANNEL.fullmatch(e.channel) and e.channel != "chat", e.channel
    for when in (e.date_created, e.date_updated):
        assert when.tzinfo is not None and when.utcoffset() == timedelta(0)


def parse_checked(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]], limit: int = LIMIT
) -> ParsedRecord | InvalidRecord:
    """The fuzz oracle: only InvalidRecord may escape, and only with a known reason."""
    try:
        parsed = parse_record(value, headers, max_bytes=limit)  # type: ignore[arg-type]
    except InvalidRecord as exc:
        assert exc.reason in REASONS, exc.reason
        assert str(exc)
        return exc
    for event in parsed.events:
        check_event(event)
    assert all(isinstance(reason, str) for reason in parsed.skipped)
    return parsed


# -- the hostile corpus, parser only ---------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.name)
def test_hostile_corpus_reasons(entry: Hostile) -> None:
    for limit in (DEFAULT_LIMIT, BIG_LIMIT):
        result = parse_checked(entry.value, entry.headers, limit)
        assert isinstance(result, InvalidRecord), f"{entry.name} accepted at {limit}"
        assert result.reason == entry.reason_at(limit), (entry.name, limit, str(result))


def test_corpus_covers_every_reason_and_thirty_kinds() -> None:
    assert len(CORPUS) >= 30
    assert {e.reason for e in CORPUS} | {e.big_reason for e in CORPUS if e.big_reason} == REASONS


def test_huge_error_code_string_is_a_reason_not_a_crash() -> None:
    # Regression: int() of a 5000-digit string raised ValueError, which killed the consumer loop.
    for form in (
        b"EventType=onDeliveryUpdated&ErrorCode=" + b"7" * 5000,
        orjson.dumps({"EventType": "onDeliveryUpdated", "ErrorCode": "7" * 5000}),
    ):
        result = parse_checked(form, [])
        assert isinstance(result, InvalidRecord)
        assert result.reason in ("invalid_error_code", "missing_field")
    doc = orjson.loads(next(e for e in CORPUS if e.name == "error_code_5000_digits").value or b"")
    doc["ErrorCode"] = "0" * 5000 + "30003"
    parsed = parse_checked(orjson.dumps(doc), [])
    assert isinstance(parsed, ParsedRecord) and parsed.events[0].error_code == 30003


def test_ten_thousand_events_in_one_array() -> None:
    events = list(generate_events(4000, seed=5))[:10_000]
    rng = random.Random(5)
    items = [orjson.loads(encode(e, "cloudevent", rng).value) for e in events]
    value = orjson.dumps(items)
    parsed = parse_checked(value, [], limit=16 * 1024 * 1024)
    assert isinstance(parsed, ParsedRecord) and parsed.events == events
    items[-1]["data"]["Status"] = "exploded"
    spoiled = parse_checked(orjson.dumps(items), [], limit=16 * 1024 * 1024)
    assert isinstance(spoiled, InvalidRecord) and spoiled.reason == "unknown_status"


# -- round trip ------------------------------------------------------------------------------


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), form=st.sampled_from(FORMS))
def test_loadgen_records_parse_back_equal(seed: int, form: str) -> None:
    rng = random.Random(seed)
    events = list(generate_events(3, seed=seed))
    for event in events:
        record = encode(event, form, rng)
        parsed = parse_checked(record.value, record.headers)
        assert isinstance(parsed, ParsedRecord), parsed
        assert parsed.events == [event]


# -- structured fuzzing ----------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(
        [
            "",
            "0",
            "30003",
            "read",
            "DELIVERED",
            "sms",
            "chat",
            "AC" + "a" * 32,
            "IM" + "F" * 32,
            "2026-03-01T00:00:00Z",
            "Sun, 01 Mar 2026 00:00:00 +0000",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "9" * 5000,
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _valid_pascal(rng: random.Random) -> dict[str, Any]:
    event = next(generate_events(1, seed=rng.randrange(2**32)))
    return orjson.loads(encode(event, "webhook_json", rng).value)  # type: ignore[no-any-return]


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    changes=st.dictionaries(st.sampled_from(PASCAL_FIELDS), json_values, max_size=4),
    drops=st.sets(st.sampled_from(PASCAL_FIELDS), max_size=3),
    wrapper=st.sampled_from(["webhook", "cloudevent", "batch", "binary", "form"]),
)
def test_field_level_fuzz_of_every_form(
    seed: int, changes: dict[str, Any], drops: set[str], wrapper: str
) -> None:
    doc = _valid_pascal(random.Random(seed))
    doc.update(changes)
    for name in drops:
        doc.pop(name, None)
    headers: list[tuple[str, bytes | None]] = []
    if wrapper == "webhook":
        value = orjson.dumps(doc)
    elif wrapper in ("cloudevent", "batch", "binary"):
        data = {k: v for k, v in doc.items() if k != "EventType"}
        ce = {"specversion": "1.0", "type": "com.twilio.conversations.delivery.updated"}
        if wrapper == "binary":
            value = orjson.dumps(data)
            headers = [("ce_type", ce["type"].encode())]
        else:
            body: object = {**ce, "data": data}
            value = orjson.dumps([body, body] if wrapper == "batch" else body)
    else:
        from urllib.parse import urlencode

        value = urlencode({k: "" if v is None else str(v) for k, v in doc.items()}).encode()
    parse_checked(value, headers)


@FUZZ
@given(
    doc=st.dictionaries(st.sampled_from(SNAKE_FIELDS), json_values, max_size=12),
)
def test_receipt_resource_fuzz(doc: dict[str, Any]) -> None:
    doc.setdefault("sid", "DY" + "0" * 32)
    doc.setdefault("message_sid", "IM" + "0" * 32)
    parse_checked(orjson.dumps(doc), [])


headers_strategy = st.lists(
    st.tuples(
        st.sampled_from(HEADER_NAMES) | st.text(max_size=8),
        st.sampled_from(CONTENT_TYPES) | st.binary(max_size=16) | st.none(),
    ),
    max_size=4,
)


@FUZZ
@given(value=st.binary(max_size=2048) | st.none(), headers=headers_strategy)
def test_arbitrary_bytes(value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
    parse_checked(value, headers)


@FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from('{}[]",:0123456789.eE+-tfnaulrsx \\\u0000\u00e9&=%'),
        max_size=300,
    ),
    headers=headers_strategy,
)
def test_json_and_form_shaped_text(text: str, headers: list[tuple[str, bytes | None]]) -> None:
    parse_checked(text.encode(), headers)


# -- mutation fuzzing ------------------------------------------------------------------------


def mutate(value: bytes, rng: random.Random, rounds: int) -> bytes:
    data = bytearray(value)
    interesting = [b"\x00", b"\xff", b'"', b"{", b"[", b"]", b"}", b"&", b"=", b"%", b"\\u0000"]
    for _ in range(rounds):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.choice(interesting)
        elif op == 2 and data:
            del data[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            del data[pos:]
        elif op == 4 and data:
            start = rng.randrange(len(data))
            data[pos:pos] = data[start : start + rng.randint(1, 64)]
        else:
            data[pos:pos] = bytes([rng.randrange(256)])
    return bytes(data)


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    form=st.sampled_from(FORMS),
    rounds=st.integers(1, 12),
    keep_headers=st.booleans(),
)
def test_mutated_valid_records_never_crash(
    seed: int, form: str, rounds: int, keep_headers: bool
) -> None:
    rng = random.Random(seed)
    record = encode(next(generate_events(1, seed=seed)), form, rng)
    value = mutate(record.value, rng, rounds)
    assume(value != record.value)
    parse_checked(value, record.headers if keep_headers else [])


def test_many_random_mutations_quickly() -> None:
    # A plain loop covers far more mutants per second than Hypothesis' shrinking machinery.
    rng = random.Random(1234)
    events = list(generate_events(40, seed=1234))
    seeds = [encode(e, form, rng) for e in events for form in FORMS]
    seeds += [
        Record(b"", e.value, [(k, v or b"") for k, v in e.headers])
        for e in CORPUS
        if e.value is not None and len(e.value) < 4096
    ]
    outcomes: dict[str, int] = {}
    for n in range(20_000):
        record = seeds[n % len(seeds)]
        value = mutate(record.value, rng, rng.randint(1, 10))
        result = parse_checked(value, record.headers if n % 2 else [])
        key = result.reason if isinstance(result, InvalidRecord) else "accepted"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert outcomes.get("accepted", 0) > 0 and len(outcomes) >= 8, outcomes


# -- atheris (coverage-guided), if installed ---------------------------------------------------


def test_atheris_short_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    seeds = tmp_path / "corpus"
    seeds.mkdir()
    rng = random.Random(9)
    for n, event in enumerate(generate_events(5, seed=9)):
        for form in FORMS:
            (seeds / f"{form}-{n}").write_bytes(encode(event, form, rng).value)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "reliability" / "corpus" / "atheris_parse.py"),
            "-atheris_runs=60000",
            "-max_total_time=20",
            f"-artifact_prefix={tmp_path}/",
            str(seeds),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
