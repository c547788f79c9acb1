"""The parser's fast path gives exactly what the checked path gives.

`worker.parsing.fast.common_event` handles the shape nearly every event has in a few calls
and hands anything else to `worker.parsing.receipts._checked_event`; these tests parse the
same inputs with the fast path switched off and compare: same events, or the same reason
and message. (The compiled fast path is switched off here; test_parsing_compiled.py
compares it with these two.)
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from urllib.parse import urlencode

import orjson
import pytest

from tests.unit.test_parsing import GOOD  # the same valid webhook
from worker import native, parsing
from worker.loadgen import disorder, encode_mixed, generate_events
from worker.parsing import InvalidRecord, ParsedRecord, parse_record, receipts
from worker.parsing.fast import form_pairs

# Values on both sides of the fast path's edges, for every field.
ODD: dict[str, list[object]] = {
    "AccountSid": ["AC74BF20F876FFC474C0251908FCDCE4B3", "IS74bf20f876ffc474c0251908fcdce4b3",
                   "", None, 7, "AC74bf20f876ffc474c0251908fcdce4b", "AC\x0074bf"],
    "ChatServiceSid": [None, "", "is14f68d9dcbd7a085a368932ff2b2d409", ["IS"]],
    "ChannelMessageSid": [None, "", "WA0c251bec1d1bfadde07682d7d40ab83e",
                          "xy0c251bec1d1bfadde07682d7d40ab83e",
                          "MM0C251BEC1D1BFADDE07682D7D40AB83E"],
    "Status": ["", None, "DELIVERED", " read", "read", "queued", "lost", 3, ["read"]],
    "ErrorCode": [None, "", 0, "0", "0030003", "30003", "\uff13\uff10", "99999999999", 2**31, -1,
                  True, 1.5, "12345678901"],
    "DateCreated": ["2026-03-01T12:00:00.123456+05:00", "2026-03-01", "2026-03-01T12:00:00",
                    " 2026-03-01T12:00:00Z", "Sun, 01 Mar 2026 12:00:00 +0000",
                    "Sun, 01 Mar 0026 12:00:00 +0000", "Mon, 30 Feb 2026 12:00:00 +0000",
                    "Fri, 31 Dec 9999 23:59:59 -0100", "Sun, 01 Mar 2026 12:00:00 +2400",
                    "0001-01-01T00:00:00+01:00", None, "", "yesterday"],
    "DateUpdated": [None, "", "Sun, 01 Mar 2026 12:00:07 -0000", "2026-03-01T12:00:07"],
    "Channel": ["chat", "WhatsApp", "", None, "whatsapp", "sms", "messenger", " sms", "x" * 33,
                "-sms", 7],
    "channel": ["whatsapp", "chat", None, "", "Sms"],
}  # fmt: skip


def _outcome(value: bytes, headers: list[tuple[str, bytes]]) -> object:
    try:
        return parse_record(value, headers, max_bytes=65536)
    except InvalidRecord as exc:
        return (exc.reason, str(exc))


def _both(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[object, object]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "FAST_PARSER", None)  # the compiled path: test_parsing_compiled.py
        fast = _outcome(value, headers)
        patch.setattr(receipts, "common_event", lambda doc, names: None)
        checked = _outcome(value, headers)
    return fast, checked


def _variants() -> Iterator[dict[str, object]]:
    for field, values in ODD.items():
        for value in values:
            yield {**GOOD, field: value}
    rng = random.Random(5)
    for _ in range(300):  # two odd fields at once
        a, b = rng.sample(sorted(ODD), 2)
        yield {**GOOD, a: rng.choice(ODD[a]), b: rng.choice(ODD[b])}


def _as_form(doc: dict[str, object]) -> bytes:
    return urlencode({k: "" if v is None else str(v) for k, v in doc.items()}).encode()


@pytest.mark.parametrize("form", ["json", "form", "cloudevent"])
def test_fast_path_agrees_with_the_checked_path_at_the_edges(form: str) -> None:
    for doc in _variants():
        if form == "json":
            value, headers = orjson.dumps(doc), []
        elif form == "form":
            value, headers = _as_form(doc), [("content-type", b"application/x-www-form-urlencoded")]
        else:
            ce = {"specversion": "1.0", "type": parsing.CLOUDEVENT_TYPE, "data": doc}
            value, headers = orjson.dumps(ce), []
        fast, checked = _both(value, headers)
        assert fast == checked, doc


@pytest.mark.parametrize("whatsapp_prefix", ["WA", "SM"])  # SM: the channel is explicit
def test_fast_path_agrees_on_the_generated_stream(whatsapp_prefix: str) -> None:
    events = disorder(list(generate_events(300, seed=3, whatsapp_prefix=whatsapp_prefix)), seed=3)
    records = encode_mixed(events, seed=3, keying="mixed", array_rate=0.3)
    fast_events = 0
    for record in records:
        fast, checked = _both(record.value, record.headers)
        assert fast == checked
        assert isinstance(fast, ParsedRecord)
        fast_events += len(fast.events)
    assert fast_events == len(events)
    # And every generated event takes the fast path: the checked one is never called.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "FAST_PARSER", None)
        patch.setattr(receipts, "_checked_event", lambda doc, names: 1 / 0)
        for record in records:
            parse_record(record.value, record.headers, max_bytes=65536)


def test_form_pairs_is_parse_qsl() -> None:
    from urllib.parse import parse_qsl

    cases = ["a=1&b=2", "a=&b", "", "a=%41+b&c=%2B", "=x", "a=1&&b=2", "a=%ff", "a=%zz", "&"]
    cases += ["x=1&" * 201, "k%3D=v%26w"]
    for text in itertools.chain(cases):
        try:
            expected: object = parse_qsl(
                text, keep_blank_values=True, strict_parsing=True, errors="strict",
                max_num_fields=200,
            )  # fmt: skip
        except (ValueError, UnicodeDecodeError) as exc:
            expected = type(exc)
        try:
            got: object = form_pairs(text)
        except (ValueError, UnicodeDecodeError) as exc:
            got = type(exc)
        assert got == expected, text
