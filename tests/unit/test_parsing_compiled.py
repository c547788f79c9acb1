"""The compiled fast path (native/, `worker.native.FAST_PARSER`) agrees with the Python parser.

It answers only for records whose events (receipts, Messaging statuses) all have the common shape,
and returns None for anything else; where it answers, the Python parser (with the compiled
path switched off) must give exactly the same events and nothing else. These tests compare
the two on the generated streams of every form and key scheme, on the edge values of every
field, on JSON that orjson reads differently from a lenient reader, and on random mutations
of real records; and they check that it does answer for the common records, so that the
comparison is not vacuous.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.streams import build_stream
from tests.unit.test_parsing import GOOD
from tests.unit.test_parsing_fast_path import _variants
from worker import native, parsing
from worker.events import ReceiptEvent, StatusEvent
from worker.parsing import InvalidRecord, ParsedRecord, parse_record

pytestmark = pytest.mark.skipif(
    native.FAST_PARSER is None, reason="receipts_native is not built (bash scripts/setup.sh)"
)
FORM_HEADERS = [("content-type", b"application/x-www-form-urlencoded")]


def _python(
    value: bytes, headers: Sequence[tuple[str, bytes]], timestamp_ms: int | None = 1
) -> object:
    """The Python parser's result, or (reason, message) of its refusal."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "FAST_PARSER", None)
        try:
            return parse_record(value, headers, max_bytes=65536, timestamp_ms=timestamp_ms)
        except InvalidRecord as exc:
            return (exc.reason, str(exc))


def _compiled(
    value: bytes, headers: Sequence[tuple[str, bytes]]
) -> tuple[list[ReceiptEvent], list[StatusEvent]] | None:
    """What the compiled path answers for this record, called where parse_record calls it."""
    assert native.FAST_PARSER is not None
    is_form = dict(headers).get("content-type") == FORM_HEADERS[0][1]
    if is_form or value.lstrip()[:1] not in (b"{", b"["):
        return native.FAST_PARSER.form_events(value, 1)
    return native.FAST_PARSER.json_events(value, 1)


def _agree(value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> bool:
    """Asserts the two agree; True if the compiled path answered."""
    compiled = _compiled(value, headers)
    if compiled is None:
        return False
    python = _python(value, headers)
    assert isinstance(python, ParsedRecord), (value, python)
    assert (python.events, python.statuses, python.skipped) == (*compiled, []), value
    pairs = [*zip(compiled[0], python.events, strict=True)]
    pairs += zip(compiled[1], python.statuses, strict=True)
    for mine, theirs in pairs:
        assert type(mine) is type(theirs)
        assert mine.status is theirs.status  # the worker's own Status members
        assert [type(v) for v in mine] == [type(v) for v in theirs]
        assert mine.date_updated.tzinfo is theirs.date_updated.tzinfo
    return True


@pytest.mark.parametrize("keying", ["message", "conversation", "random", "none", "mixed"])
def test_agrees_on_generated_streams_and_answers_for_their_receipts(keying: str) -> None:
    stream = build_stream(
        3000, seed=11, keying=keying, array_rate=0.3, poison_rate=0.02, messaging_share=0.3
    )
    answered = sum(_agree(r.value, r.headers) for r in stream.records if r.value)
    readable = [
        r
        for r in stream.records
        if r.value
        and isinstance(p := _python(r.value, r.headers), ParsedRecord)
        and (p.events or p.statuses)
        and not p.skipped
    ]
    # Every event generated here has the common shape: each such record must be answered.
    assert answered == len(readable) > 500


@pytest.mark.parametrize("form", ["json", "form", "cloudevent", "array", "resource"])
def test_agrees_at_the_edges_of_every_field(form: str) -> None:
    answered = 0
    for doc in _variants():
        if form == "json":
            answered += _agree(orjson.dumps(doc))
        elif form == "form":
            body = urlencode({k: "" if v is None else str(v) for k, v in doc.items()})
            answered += _agree(body.encode(), FORM_HEADERS)
        elif form == "resource":
            snake = {_SNAKE.get(k, k): v for k, v in doc.items() if k != "EventType"}
            answered += _agree(orjson.dumps(snake))
        else:
            ce = {"specversion": "1.0", "type": parsing.CLOUDEVENT_TYPE, "data": doc}
            answered += _agree(orjson.dumps([ce, ce] if form == "array" else ce))
    assert answered > 50


_SNAKE = {
    "AccountSid": "account_sid",
    "ChatServiceSid": "chat_service_sid",
    "ConversationSid": "conversation_sid",
    "MessageSid": "message_sid",
    "DeliveryReceiptSid": "sid",
    "ChannelMessageSid": "channel_message_sid",
    "ParticipantSid": "participant_sid",
    "Status": "status",
    "ErrorCode": "error_code",
    "DateCreated": "date_created",
    "DateUpdated": "date_updated",
}
_GOOD_JSON = orjson.dumps(GOOD).decode()
_GOOD_BODY = urlencode({k: str(v) for k, v in GOOD.items()})


@pytest.mark.parametrize(
    "text",
    [
        _GOOD_JSON,
        # What orjson refuses anywhere in a document, a lenient reader might skip over.
        _GOOD_JSON[:-1] + ', "x": "\\ud800"}',
        _GOOD_JSON[:-1] + ', "x": 1e400}',
        _GOOD_JSON[:-1] + ', "x": [1, {"y": -1e999}]}',
        _GOOD_JSON[:-1] + ', "data": 1e400}',
        _GOOD_JSON[:-1] + ', "x": 100000000000000000000000000}',
        _GOOD_JSON[:-1] + ', "x": "\\u0000\\ud83d\\ude00"}',
        _GOOD_JSON[:-1] + ', "x": "tab\there"}',
        _GOOD_JSON[:-1] + "\x0c",
        "\ufeff" + _GOOD_JSON,
        " \n\t" + _GOOD_JSON + "\r\n",
        _GOOD_JSON[:-1] + ', "x": ' + "[" * 200 + "]" * 200 + "}",
        # Keys: repeated (orjson keeps the last), escaped, unknown.
        _GOOD_JSON[:-1] + ', "Status": "read"}',
        _GOOD_JSON[:-1] + ', "x": 1, "x": 2}',
        _GOOD_JSON.replace('"AccountSid"', '"\\u0041ccountSid"'),
        _GOOD_JSON.replace('"onDeliveryUpdated"', '"on\\u0044eliveryUpdated"'),
        _GOOD_JSON.replace('"undelivered"', '"undeliver\\u0065d"'),
        _GOOD_JSON[:-1] + ', "Channel": "sms", "channel": "sms"}',
        _GOOD_JSON[:-1] + ', "specversion": "1.0"}',
        _GOOD_JSON[:-1] + ', "sid": "x", "message_sid": "y"}',
        # Numbers and dates at their limits.
        _GOOD_JSON.replace("30003", "2147483647"),
        _GOOD_JSON.replace("30003", "2147483648"),
        _GOOD_JSON.replace("30003", "-0"),
        _GOOD_JSON.replace("30003", "30003.0"),
        _GOOD_JSON.replace("30003", '"0000030003"'),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2026-12-31T23:30:00-01:00"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "0001-01-01T00:30:00+01:00"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "9999-12-31T23:30:00-01:00"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2024-02-29T00:00:00.1234567Z"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2023-02-29T00:00:00Z"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2026-03-01t12:00:00z"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2026-03-01T12:00:00+0100"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "2026-03-01T12:00:60Z"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "Sun, 1 Mar 2026 12:00:00 +0099"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "Xyz, 01 Mar 2026 12:00:00 +0000"),
        _GOOD_JSON.replace("2026-03-01T12:00:00Z", "Sun, 01 Mar 2026 12:00:00 GMT"),
        "[" + _GOOD_JSON + "]",
        "[]",
        '{"specversion": "1.0", "type": "' + parsing.CLOUDEVENT_TYPE + '", "data": []}',
    ],
)
def test_agrees_where_json_readers_differ(text: str) -> None:
    _agree(text.encode())
    _agree(text.encode(), [("content-type", b"text/plain")])


@pytest.mark.parametrize(
    "body",
    [
        _GOOD_BODY,
        _GOOD_BODY + "&EventType=x",
        _GOOD_BODY + "&Extra=1&Extra=2",
        _GOOD_BODY + "&&a=1",
        _GOOD_BODY + "&noequals",
        " " + _GOOD_BODY,
        _GOOD_BODY + "\n",
        _GOOD_BODY + "\x1f",
        _GOOD_BODY + "&x=%ff",
        _GOOD_BODY + "&x=%C3%A9&y=%zz&z=%",
        _GOOD_BODY + "&x=caf\u00e9",
        _GOOD_BODY + "&x=1" * 190,
        _GOOD_BODY.replace("Status=", "St%61tus="),
        _GOOD_BODY.replace("Status=undelivered", "Status=undelivered+"),
        _GOOD_BODY.replace("2026-03-01T12%3A00%3A00Z", quote("Sun, 01 Mar 2026 12:00:00 -0130")),
        _GOOD_BODY.replace("2026-03-01T12%3A00%3A00Z", "Sun%2C+01+Mar+2026+12%3A00%3A00+%2B0000"),
        _GOOD_BODY.replace("30003", ""),
        _GOOD_BODY.replace("30003", "%EF%BC%93"),
        _GOOD_BODY.replace("MessageSid=IM", "MessageSid=im"),
        "MessageStatus=delivered&MessageSid=SM0c251bec1d1bfadde07682d7d40ab83e",
        "",
    ],
)
def test_agrees_on_form_bodies(body: str) -> None:
    _agree(body.encode("utf-8", "surrogatepass"), FORM_HEADERS)
    _agree(body.encode("utf-8", "surrogatepass"))


def test_answers_for_the_common_spellings() -> None:
    """Not vacuous: the shapes the world sends nearly always are read by the compiled path."""
    assert _agree(_GOOD_JSON.encode())
    assert _agree(_GOOD_BODY.encode(), FORM_HEADERS)
    ce = {"specversion": "1.0", "type": parsing.CLOUDEVENT_TYPE, "data": GOOD}
    assert _agree(orjson.dumps([ce, ce, ce]))


_STREAM = build_stream(400, seed=5, keying="mixed", array_rate=0.4, messaging_share=0.2)
_SAMPLES = [r for r in _STREAM.records if r.value][:200]
_BYTES = b'"\\u{}[],:0123456789eE.+-%&= \x00\x0c\xff\xc3\xa9aAzZ'


@settings(max_examples=600, deadline=None)
@given(
    index=st.integers(0, len(_SAMPLES) - 1),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["set", "insert", "delete"]),
                  st.sampled_from(list(_BYTES))),
        min_size=1, max_size=3,
    ),
)  # fmt: skip
def test_agrees_on_mutated_records(index: int, edits: list[tuple[int, str, int]]) -> None:
    record = _SAMPLES[index]
    value = bytearray(record.value or b"")
    for position, edit, byte in edits:
        at = position % (len(value) + 1)
        if edit == "insert":
            value.insert(at, byte)
        elif at < len(value):
            if edit == "set":
                value[at] = byte
            else:
                del value[at]
    _agree(bytes(value), record.headers)


def test_random_edits_of_values_keep_agreeing() -> None:
    """Field values swapped between records and forms: a wider net than the edge list."""
    rng = random.Random(7)
    docs = [GOOD, *_variants()]
    for _ in range(400):
        doc = dict(rng.choice(docs))
        for key in rng.sample(sorted(doc), 2):
            doc[key] = rng.choice(docs).get(key)
        _agree(orjson.dumps(doc))
        _agree(urlencode({k: "" if v is None else str(v) for k, v in doc.items()}).encode(),
               FORM_HEADERS)  # fmt: skip


_CALLBACK = {
    "MessageSid": "SM0c251bec1d1bfadde07682d7d40ab83e",
    "AccountSid": "AC74bf20f876ffc474c0251908fcdce4b3",
    "MessageStatus": "delivered",
    "SmsStatus": "delivered",
    "ErrorCode": "30003",
}
_STATUS_DATA = {
    "messageSid": "SM0c251bec1d1bfadde07682d7d40ab83e",
    "accountSid": "AC74bf20f876ffc474c0251908fcdce4b3",
    "messageStatus": "DELIVERED",
    "errorCode": None,
    "timestamp": "2026-03-01T12:00:00.123Z",
    "dateUpdated": "2026-03-01T12:00:00.123Z",
}
_STATUS_ODD: dict[str, list[object]] = {
    "status": ["delivered", "DELIVERED", "Delivered", " delivered", "received", "receiving",
               "partially_delivered", "canceled", "lost", "", None, 7],
    "sid": ["MM0c251bec1d1bfadde07682d7d40ab83e", "WA0c251bec1d1bfadde07682d7d40ab83e",
            "sm0c251bec1d1bfadde07682d7d40ab83e", "SM0C251BEC1D1BFADDE07682D7D40AB83E", "", None],
    "account": ["ac74bf20f876ffc474c0251908fcdce4b3", "AC74bf", None, 3],
    "error": ["", "0", 0, "30003", 30003, "0000000000030003", -1, 2**31, True, None],
    "date": [None, "", "2026-03-01T12:00:00+05:00", "Sun, 01 Mar 2026 12:00:00 +0000",
             " 2026-03-01T12:00:00Z", "yesterday", 5],
}  # fmt: skip


def _status_variants() -> list[tuple[dict[str, object], dict[str, object]]]:
    """(callback fields, Event Streams data) with one odd value each, or two at random."""
    names = {
        "status": ("MessageStatus", "messageStatus"),
        "sid": ("MessageSid", "messageSid"),
        "account": ("AccountSid", "accountSid"),
        "error": ("ErrorCode", "errorCode"),
        "date": (None, "dateUpdated"),
    }
    picks = [[(kind, value)] for kind, values in _STATUS_ODD.items() for value in values]
    rng = random.Random(9)
    picks += [
        [(a, rng.choice(_STATUS_ODD[a])), (b, rng.choice(_STATUS_ODD[b]))]
        for a, b in (rng.sample(sorted(_STATUS_ODD), 2) for _ in range(200))
    ]
    variants = []
    for pick in picks:
        callback, data = dict(_CALLBACK), dict(_STATUS_DATA)
        for kind, value in pick:
            callback_name, data_name = names[kind]
            if callback_name:
                callback[callback_name] = value
            data[data_name] = value
        variants.append((callback, data))
    return variants


def test_agrees_on_status_events_at_their_edges() -> None:
    answered = 0
    for callback, data in _status_variants():
        answered += _agree(orjson.dumps(callback))
        body = urlencode({k: "" if v is None else str(v) for k, v in callback.items()})
        answered += _agree(body.encode(), FORM_HEADERS)
        ce = {"specversion": "1.0", "type": parsing.MESSAGING_CLOUDEVENT_PREFIX + "delivered"}
        answered += _agree(orjson.dumps({**ce, "data": data}))
        receipt = {"specversion": "1.0", "type": parsing.CLOUDEVENT_TYPE, "data": GOOD}
        answered += _agree(orjson.dumps([receipt, {**ce, "data": data}, receipt]))
    assert answered > 100


def test_a_callback_without_the_record_timestamp_is_left_to_python() -> None:
    assert native.FAST_PARSER is not None
    assert native.FAST_PARSER.json_events(orjson.dumps(_CALLBACK), None) is None
    refused = _python(orjson.dumps(_CALLBACK), [], None)
    assert isinstance(refused, tuple) and "timestamp" in refused[1]
    for ms in (0, 1772366400123, 4_000_000_000_000):
        (_, [event]) = native.FAST_PARSER.json_events(orjson.dumps(_CALLBACK), ms) or ([], [])
        python = _python(orjson.dumps(_CALLBACK), [], ms)
        assert isinstance(python, ParsedRecord) and [event] == python.statuses
    assert native.FAST_PARSER.json_events(orjson.dumps(_CALLBACK), -1) is None
