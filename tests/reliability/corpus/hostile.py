"""A corpus of hostile Kafka records: every way a producer can get a record wrong.

Each bad entry names the dead-letter reason the worker must give it under the default
MAX_RECORD_BYTES (64 KiB) and under a large limit (BIG_LIMIT), where records that would
otherwise be rejected for size alone reach the parser. `GOOD_TRICKY` builds records that
look odd (binary headers, deep nesting in ignored fields, shouting statuses, ...) but are
valid and must be applied.

Shared by tests/unit/test_parsing_fuzz.py (parser only) and tests/reliability/test_hostile*.py
(the real worker on the real broker and database).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from worker.events import ReceiptEvent
from worker.loadgen import Record, pascal_fields
from worker.parsing import CLOUDEVENT_TYPE, WEBHOOK_EVENT_TYPE

DEFAULT_LIMIT = 64 * 1024
# Under the DLQ producer's 4 MiB request limit, with room for the record's own headers.
BIG_LIMIT = 2 * 1024 * 1024
MIB = 1024 * 1024

Headers = list[tuple[str, bytes | None]]

_RNG = random.Random(20260301)


def _sid(prefix: str) -> str:
    return prefix + f"{_RNG.getrandbits(128):032x}"


# SIDs no good event uses: if any part of a bad record were applied, the final state would show it.
BAD_ACCOUNT = _sid("AC")
BAD_CONVERSATION = _sid("CH")


def bad_webhook(**changes: object) -> dict[str, object]:
    """A valid webhook of a receipt that must never be applied, with `changes` (... drops)."""
    doc: dict[str, object] = {
        "EventType": WEBHOOK_EVENT_TYPE,
        "AccountSid": BAD_ACCOUNT,
        "ConversationSid": BAD_CONVERSATION,
        "MessageSid": _sid("IM"),
        "DeliveryReceiptSid": _sid("DY"),
        "ChannelMessageSid": _sid("SM"),
        "ParticipantSid": _sid("MB"),
        "Status": "delivered",
        "ErrorCode": None,
        "DateCreated": "2026-03-01T12:00:00Z",
        "DateUpdated": "2026-03-01T12:00:07.250Z",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def wj(**changes: object) -> bytes:
    return orjson.dumps(bad_webhook(**changes))


def _form(doc: dict[str, object]) -> bytes:
    from urllib.parse import urlencode

    return urlencode({k: "" if v is None else str(v) for k, v in doc.items()}).encode()


def _cloudevent(data: object, event_type: object = CLOUDEVENT_TYPE) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": "/v1/Conversations",
        "id": _sid("EZ"),
        "data": data,
    }


@dataclass(frozen=True)
class Hostile:
    name: str
    value: bytes | None
    reason: str  # under DEFAULT_LIMIT
    big_reason: str = ""  # under BIG_LIMIT; empty: same as `reason`
    headers: Headers = field(default_factory=list)

    @property
    def key(self) -> bytes:
        return b"bad-" + self.name.encode()

    def reason_at(self, limit: int) -> str:
        return self.big_reason if limit > DEFAULT_LIMIT and self.big_reason else self.reason


def _batch_10000_last_bad() -> bytes:
    other = orjson.dumps({"specversion": "1.0", "type": "com.twilio.conversations.other"})
    bad = orjson.dumps(_cloudevent(bad_webhook(MessageSid="IMnot-a-sid")))
    return b"[" + b",".join([other] * 9_999 + [bad]) + b"]"


def _batch_2000_delivery_one_bad() -> bytes:
    items = [_cloudevent(bad_webhook()) for _ in range(2_000)]
    items[1_000] = _cloudevent(bad_webhook(Status="exploded"))
    return orjson.dumps(items)


def _huge(n: int) -> str:
    return "x" * n


def build_corpus() -> list[Hostile]:
    good_json = wj()
    good_form = _form(bad_webhook())
    ct_json: Headers = [("content-type", b"application/json")]
    ct_form: Headers = [("content-type", b"application/x-www-form-urlencoded")]
    entries = [
        # -- syntax ---------------------------------------------------------------------------
        Hostile("truncated_json", good_json[: len(good_json) // 2], "malformed"),
        Hostile("truncated_one_brace", b"{", "malformed"),
        Hostile("trailing_comma", good_json[:-1] + b",}", "malformed"),
        Hostile("json_with_comment", b"// a comment\n" + good_json, "malformed"),
        Hostile("nan_literal", good_json[:-1] + b',"ErrorCode":NaN}', "malformed"),
        Hostile("infinite_number", good_json[:-1] + b',"ErrorCode":1e400}', "malformed"),
        Hostile("lone_surrogate", good_json.replace(b'"delivered"', b'"\\ud800"'), "malformed"),
        Hostile("utf8_bom", b"\xef\xbb\xbf" + good_json, "malformed"),
        Hostile("json_null", b"null", "unknown_form", headers=ct_json),
        Hostile("json_string", b'"onDeliveryUpdated"', "unknown_form", headers=ct_json),
        Hostile("json_number_bare", b"12345", "malformed"),
        Hostile("unknown_object", b'{"hello": "world"}', "unknown_form"),
        Hostile("empty_object", b"{}", "unknown_form"),
        Hostile("nul_in_json_key", b'{"EventType\\u0000": "onDeliveryUpdated"}', "unknown_form"),
        # -- wrong types ----------------------------------------------------------------------
        Hostile("status_int", wj(Status=5), "wrong_type"),
        Hostile("sid_list", wj(MessageSid=[_sid("IM")]), "wrong_type"),
        Hostile("sid_object", wj(ParticipantSid={"sid": _sid("MB")}), "wrong_type"),
        Hostile("sid_bool", wj(AccountSid=True), "wrong_type"),
        Hostile("error_code_float", wj(ErrorCode=30003.5), "wrong_type"),
        Hostile("error_code_bool", wj(ErrorCode=True), "wrong_type"),
        Hostile("error_code_list", wj(ErrorCode=[30003]), "wrong_type"),
        Hostile(
            "error_code_bigint",
            good_json[:-1] + b',"ErrorCode":123456789012345678901234567890}',
            "wrong_type",
        ),
        Hostile("error_code_negative", wj(ErrorCode=-1), "invalid_error_code"),
        Hostile("error_code_over_int32", wj(ErrorCode=2**31), "invalid_error_code"),
        Hostile("error_code_5000_digits", wj(ErrorCode="9" * 5000), "invalid_error_code"),
        Hostile("error_code_unicode_digit", wj(ErrorCode="\u0663"), "invalid_error_code"),
        Hostile("error_code_hex", _form(bad_webhook(ErrorCode="0x753B")), "invalid_error_code"),
        Hostile("date_number", wj(DateCreated=1_772_366_400), "wrong_type"),
        Hostile("cloudevent_data_string", orjson.dumps(_cloudevent("{}")), "missing_field"),
        Hostile("cloudevent_data_null", orjson.dumps(_cloudevent(None)), "missing_field"),
        Hostile("cloudevent_type_number", orjson.dumps(_cloudevent({}, 5)), "missing_field"),
        Hostile("batch_item_number", b"[1]", "unknown_form"),
        Hostile("batch_item_webhook", orjson.dumps([bad_webhook()]), "unknown_form"),
        # -- NUL bytes ------------------------------------------------------------------------
        Hostile("nul_bytes_only", b"\x00" * 1000, "malformed"),
        Hostile("nul_in_status", wj(Status="read\x00"), "unknown_status"),
        Hostile("nul_in_sid", wj(MessageSid="IM" + "\x00" * 32), "invalid_sid"),
        Hostile(
            "nul_in_form_sid", good_form.replace(b"MessageSid=IM", b"MessageSid=%00"), "invalid_sid"
        ),
        Hostile("nul_in_channel", wj(Channel="sms\x00"), "invalid_channel"),
        # -- huge -----------------------------------------------------------------------------
        Hostile("huge_status_60k", wj(Status=_huge(60_000)), "unknown_status"),
        Hostile("huge_date_60k", wj(DateUpdated="2" * 60_000), "invalid_date"),
        Hostile("record_1mib_status", wj(Status=_huge(MIB)), "too_large", "unknown_status"),
        Hostile("record_3mib", b"x" * (3 * MIB), "too_large"),
        Hostile("record_1mib_nul", b"\x00" * MIB, "too_large", "malformed"),
        Hostile("record_1mib_not_utf8", b"\xff" * MIB, "too_large", "not_utf8"),
        Hostile(
            "limit_plus_one",
            wj(Body=_huge(DEFAULT_LIMIT))[: DEFAULT_LIMIT + 1],
            "too_large",
            "malformed",
        ),
        # -- deep nesting ---------------------------------------------------------------------
        Hostile("deep_array_30000", b"[" * 30_000 + b"]" * 30_000, "malformed"),
        Hostile(
            "deep_object_in_data",
            orjson.dumps(_cloudevent({}))[:-1].replace(
                b'"data":{}', b'"data":' + b'{"a":' * 2_000 + b"1" + b"}" * 2_000
            )
            + b"}",
            "malformed",
        ),
        Hostile("deep_array_1mib", b"[" * (MIB // 2) + b"]" * (MIB // 2), "too_large", "malformed"),
        # -- arrays ---------------------------------------------------------------------------
        Hostile(
            "array_10000_empty_objects", b"[" + b",".join([b"{}"] * 10_000) + b"]", "unknown_form"
        ),
        Hostile("array_10000_nulls", b"[" + b",".join([b"null"] * 10_000) + b"]", "unknown_form"),
        Hostile("array_10000_events_last_bad", _batch_10000_last_bad(), "too_large", "invalid_sid"),
        Hostile(
            "array_2000_deliveries_one_bad",
            _batch_2000_delivery_one_bad(),
            "too_large",
            "unknown_status",
        ),
        Hostile(
            "array_one_bad_item",
            orjson.dumps(
                [_cloudevent(bad_webhook()), _cloudevent(bad_webhook(DateUpdated="never"))]
            ),
            "invalid_date",
        ),
        # -- SIDs -----------------------------------------------------------------------------
        Hostile("sid_wrong_prefix", wj(MessageSid="MB" + "a" * 32), "invalid_sid"),
        Hostile("sid_short", wj(MessageSid="IM" + "a" * 31), "invalid_sid"),
        Hostile("sid_long", wj(MessageSid="IM" + "a" * 33), "invalid_sid"),
        Hostile("sid_non_hex", wj(ParticipantSid="MB" + "g" * 32), "invalid_sid"),
        Hostile("sid_fullwidth_digits", wj(MessageSid="IM" + "\uff10" * 32), "invalid_sid"),
        Hostile("sid_lowercase_prefix", wj(MessageSid="im" + "a" * 32), "invalid_sid"),
        Hostile("sid_trailing_newline", wj(MessageSid="IM" + "a" * 32 + "\n"), "invalid_sid"),
        Hostile("channel_message_sid_bad", wj(ChannelMessageSid="S" * 34), "invalid_sid"),
        Hostile("chat_service_sid_bad", wj(ChatServiceSid="IS123"), "invalid_sid"),
        Hostile("missing_participant", wj(ParticipantSid=...), "missing_field"),
        Hostile("null_message_sid", wj(MessageSid=None), "missing_field"),
        Hostile("empty_receipt_sid", wj(DeliveryReceiptSid=""), "missing_field"),
        # -- statuses -------------------------------------------------------------------------
        Hostile("unknown_status", wj(Status="exploded"), "unknown_status"),
        Hostile("status_dotted_capital_i", wj(Status="READ\u0130"), "unknown_status"),
        Hostile("status_in_form_unknown", _form(bad_webhook(Status="seen")), "unknown_status"),
        # -- dates ----------------------------------------------------------------------------
        Hostile("date_year_10000", wj(DateCreated="10000-01-01T00:00:00Z"), "invalid_date"),
        Hostile("date_year_0", wj(DateCreated="0000-01-01T00:00:00Z"), "invalid_date"),
        Hostile(
            "date_underflow_by_offset", wj(DateCreated="0001-01-01T00:00:00+05:00"), "invalid_date"
        ),
        Hostile(
            "date_overflow_by_offset", wj(DateUpdated="9999-12-31T23:59:59-05:00"), "invalid_date"
        ),
        Hostile("date_feb_30", wj(DateUpdated="2026-02-30T00:00:00Z"), "invalid_date"),
        Hostile("date_words", wj(DateUpdated="yesterday"), "invalid_date"),
        Hostile(
            "date_rfc2822_bad_zone",
            wj(DateUpdated="Sun, 1 Mar 2026 00:00:00 +9999"),
            "invalid_date",
        ),
        Hostile(
            "date_arabic_digits",
            wj(DateCreated="\u0662\u0660\u0662\u0666-03-01T00:00:00Z"),
            "invalid_date",
        ),
        Hostile("date_empty", wj(DateCreated=""), "missing_field"),
        Hostile("date_missing", wj(DateCreated=...), "missing_field"),
        # A chat event is skipped only once it is valid (docs/design.md, "Input forms").
        Hostile("chat_unknown_status", wj(Channel="chat", Status="seen"), "unknown_status"),
        Hostile("chat_missing_message", wj(Channel="chat", MessageSid=...), "missing_field"),
        # -- encodings ------------------------------------------------------------------------
        Hostile("not_utf8_json", b'{"EventType": "onDelivery\xffUpdated"}', "not_utf8"),
        Hostile("not_utf8_form", b"EventType=onDelivery\xffUpdated", "not_utf8"),
        Hostile("utf16_json", good_json.decode().encode("utf-16"), "not_utf8"),
        Hostile(
            "latin1_json",
            '{"EventType": "onDeliveryUpdated", "Body": "caf\xe9"}'.encode("latin-1"),
            "not_utf8",
        ),
        Hostile("overlong_utf8", b'{"EventType": "\xc0\xaf"}', "not_utf8"),
        Hostile("form_percent_not_utf8", b"EventType=onDeliveryUpdated&Status=%FF", "malformed"),
        # -- empty and null -------------------------------------------------------------------
        Hostile("tombstone", None, "empty_value"),
        Hostile("empty_value", b"", "empty_value"),
        Hostile("whitespace_only", b" \t\r\n ", "unknown_form"),
        Hostile("form_only_event_type", b"EventType=onDeliveryUpdated", "missing_field"),
        Hostile(
            "form_all_empty",
            _form({k: "" for k in bad_webhook()} | {"EventType": WEBHOOK_EVENT_TYPE}),
            "missing_field",
        ),
        # -- form bodies ----------------------------------------------------------------------
        Hostile("form_duplicate_field", good_form + b"&Status=read", "malformed"),
        Hostile(
            "form_too_many_fields",
            good_form + b"".join(b"&f%d=1" % i for i in range(250)),
            "malformed",
        ),
        Hostile("form_no_event_type", b"Status=read&MessageSid=IM", "unknown_form"),
        Hostile("form_bare_word", b"hello", "malformed"),
        # -- channels -------------------------------------------------------------------------
        Hostile("channel_punctuation", wj(Channel="SMS!!"), "invalid_channel"),
        Hostile("channel_number", wj(Channel=7), "wrong_type"),
        Hostile("channel_too_long", wj(Channel="a" * 40), "invalid_channel"),
        # -- headers --------------------------------------------------------------------------
        Hostile("lying_content_type_form_on_json", good_json, "malformed", headers=ct_form),
        Hostile("lying_content_type_json_on_form", good_form, "malformed", headers=ct_json),
        Hostile(
            "duplicate_content_type_last_lies",
            good_json,
            "malformed",
            headers=[*ct_json, *ct_form],
        ),
        Hostile(
            "binary_header_values",
            b'{"hello": 1}',
            "unknown_form",
            headers=[("content-type", b"\xff\xfe\x00"), ("x-bin", bytes(range(256)))],
        ),
        Hostile("null_header_value", b'{"hello": 1}', "unknown_form", headers=[("x-null", None)]),
        Hostile(
            "five_hundred_headers",
            b"[1]",
            "unknown_form",
            headers=[(f"h{i}", b"v" * 20) for i in range(500)],
        ),
        Hostile(
            "binary_mode_bad_data",
            b"{}",
            "missing_field",
            headers=[("ce_type", CLOUDEVENT_TYPE.encode()), ("ce_specversion", b"1.0")],
        ),
        Hostile(
            "fake_dlq_headers",
            b"garbage=",
            "unknown_form",
            headers=[("dlq.reason", b"none"), ("dlq.source.offset", b"-1")],
        ),
    ]
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return entries


CORPUS: list[Hostile] = build_corpus()


# -- valid records that look hostile ---------------------------------------------------------


def pascal(e: ReceiptEvent) -> dict[str, object]:
    """The event's exact fields, PascalCase (microseconds kept)."""
    return pascal_fields(e, datetime.isoformat)


def _webhook(e: ReceiptEvent, **extra: object) -> dict[str, object]:
    return {"EventType": WEBHOOK_EVENT_TYPE, **pascal(e), **extra}


def _deep(depth: int) -> bytes:
    # orjson writes at most 254 levels; its reader (and so the parser) takes 1024.
    return b"[" * depth + b"1" + b"]" * depth


_Tricky = Callable[[ReceiptEvent], Record]

GOOD_TRICKY: dict[str, _Tricky] = {
    "binary_content_type_header": lambda e: Record(
        e.message_sid.encode(), orjson.dumps(_webhook(e)), [("content-type", b"\xff\xfe\x00")]
    ),
    "duplicate_content_type_last_true": lambda e: Record(
        e.message_sid.encode(),
        orjson.dumps(_webhook(e)),
        [
            ("content-type", b"application/x-www-form-urlencoded"),
            ("content-type", b"application/json"),
        ],
    ),
    "deep_nesting_in_ignored_field": lambda e: Record(
        e.message_sid.encode(),
        orjson.dumps(_webhook(e))[:-1] + b',"Extra":' + _deep(500) + b"}",
        [],
    ),
    "nul_and_30k_in_ignored_fields": lambda e: Record(
        e.message_sid.encode(), orjson.dumps(_webhook(e, Body="\x00" * 10 + "y" * 30_000)), []
    ),
    "shouting_status_and_hex": lambda e: Record(
        e.message_sid.encode(),
        orjson.dumps(
            _webhook(
                e,
                Status=f"  {e.status.label.upper()}\n",
                MessageSid=e.message_sid[:2] + e.message_sid[2:].upper(),
            )
        ),
        [],
    ),
    "null_header_value": lambda e: Record(
        e.message_sid.encode(),
        orjson.dumps(_webhook(e)),
        [("x-null", None)],  # type: ignore[list-item]
    ),
    "binary_mode_cloudevent": lambda e: Record(
        e.message_sid.encode(),
        orjson.dumps(pascal(e)),
        [("ce_type", CLOUDEVENT_TYPE.encode()), ("ce_specversion", b"1.0")],
    ),
    "leading_whitespace_json": lambda e: Record(
        e.message_sid.encode(), b"\n\t  " + orjson.dumps(_webhook(e)), []
    ),
}

# Valid but not applied: skipped on purpose and counted, never dead-lettered.
SKIPPED_TRICKY: list[Record] = [
    Record(b"skip-empty-batch", b"[]", [("content-type", b"application/cloudevents-batch+json")]),
    Record(b"skip-other-type", orjson.dumps(_cloudevent({}, "com.twilio.conversations.x")), []),
    Record(b"skip-chat", orjson.dumps(bad_webhook(Channel="chat")), []),
]
