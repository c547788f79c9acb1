"""Unit tests of the read API's pure parts: SIDs, paging tokens, windows, serializers, auth."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.api import serializers
from worker.api.auth import parse_basic
from worker.api.errors import ApiError, error_body
from worker.api.paging import (
    Cursor,
    PageRequest,
    decode_token,
    encode_token,
    page_meta,
    parse_page_request,
    require_key_shape,
    slice_page,
)
from worker.api.sids import is_sid, require_sid
from worker.api.windows import format_window, parse_window

HEX = "0123456789abcdef" * 2


def sid(prefix: str, n: int = 1) -> str:
    return f"{prefix}{n:032x}"


# -- SIDs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ConversationSid", "CH" + HEX),
        ("ConversationSid", "CH" + HEX.upper()),
        ("MessageSid", "IM" + HEX),
        ("Sid", "DY" + HEX),
        ("ChatServiceSid", "IS" + HEX),
    ],
)
def test_valid_sids(name: str, value: str) -> None:
    # Stored SIDs have lower-case hex: upper-case hex in a path finds them.
    assert require_sid(name, value) == value[:2] + value[2:].lower()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ConversationSid", "IM" + HEX),  # right shape, wrong prefix
        ("ConversationSid", "ch" + HEX),
        ("ConversationSid", "CH" + HEX[:-1]),
        ("ConversationSid", "CH" + HEX + "0"),
        ("ConversationSid", "CH" + HEX[:-1] + "g"),
        ("MessageSid", ""),
        ("Sid", "DY" + "\u0660" * 32),  # Arabic-Indic zeros are digits, not hex
        ("ChatServiceSid", "CH" + HEX),
    ],
)
def test_invalid_sids_are_400(name: str, value: str) -> None:
    with pytest.raises(ApiError) as info:
        require_sid(name, value)
    assert (info.value.status, info.value.code) == (400, 20001)
    assert name in info.value.message


def test_is_sid_checks_prefix() -> None:
    assert is_sid("DY" + HEX, "DY")
    assert not is_sid("DY" + HEX, "IM")


# -- paging ------------------------------------------------------------------------------

keys = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=64),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


@given(forward=st.booleans(), key=keys)
def test_token_round_trip(forward: bool, key: tuple[Any, ...]) -> None:
    cursor = Cursor(forward, key)
    token = encode_token(cursor)
    assert token.isascii() and "=" not in token and "+" not in token and "/" not in token
    assert decode_token(token) == cursor


def _raw_token(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!",
        "x" * 1100,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _raw_token([1, 2]),
        _raw_token({"d": "x", "k": ["a"]}),
        _raw_token({"d": "n", "k": []}),
        _raw_token({"d": "n", "k": [True]}),
        _raw_token({"d": "n", "k": [1.5]}),
        _raw_token({"d": "n", "k": ["a" * 65]}),
        _raw_token({"d": "n", "k": ["a"], "extra": 1}),
        _raw_token({"d": "n", "k": [1, 2, 3, 4, 5]}),
    ],
)
def test_bad_tokens_are_400(token: str) -> None:
    with pytest.raises(ApiError) as info:
        decode_token(token)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "doc",
    [
        {"d": "n", "k": ["MB\u0000"]},  # NUL: PostgreSQL text cannot hold it
        {"d": "n", "k": ["\ud800"]},  # a lone surrogate: not encodable as UTF-8
        {"d": "n", "k": ["é"]},
        {"d": "n", "k": [2**63]},  # beyond bigint
        {"d": "n", "k": [-(2**63) - 1]},
        {"d": "n", "k": [None]},
        {"d": "n", "k": [["nested"]]},
        {"d": "n", "k": [{"a": 1}]},
        {"d": ["n"], "k": ["a"]},
        {"d": "n", "k": "MB1"},
    ],
)
def test_forged_token_contents_are_400(doc: Any) -> None:
    with pytest.raises(ApiError) as info:
        decode_token(_raw_token(doc))
    assert (info.value.status, info.value.code) == (400, 20001)


def test_tokens_with_non_ascii_or_deep_nesting_are_400() -> None:
    nested = json.loads("[" * 100 + "]" * 100)
    for token in ("é" * 10, _raw_token({"d": "n", "k": [nested]}), "[" * 1000):
        with pytest.raises(ApiError):
            decode_token(token)


@given(st.text(max_size=1100))
def test_any_text_as_token_is_a_cursor_or_a_400(token: str) -> None:
    try:
        cursor = decode_token(token)
    except ApiError as exc:
        assert exc.status == 400
    else:
        assert isinstance(cursor, Cursor)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=12,
    )
)
def test_any_json_in_a_token_is_a_cursor_or_a_400(doc: Any) -> None:
    token = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    try:
        cursor = decode_token(token)
    except ApiError as exc:
        assert exc.status == 400
        return
    for part in cursor.key:
        assert isinstance(part, str | int) and not isinstance(part, bool)
        if isinstance(part, int):
            assert -(2**63) <= part < 2**63
        else:
            assert part.isascii() and part.isprintable()


def test_require_key_shape() -> None:
    assert require_key_shape(None, str) is None
    ok = Cursor(True, ("MB1",))
    assert require_key_shape(ok, str) is ok
    for bad in (Cursor(True, (1,)), Cursor(True, ("a", "b"))):
        with pytest.raises(ApiError):
            require_key_shape(bad, str)
    with pytest.raises(ApiError):
        require_key_shape(Cursor(True, ("2024-01-01T00:00:00Z", True)), str, int)


def test_parse_page_request_defaults_and_clamping() -> None:
    assert parse_page_request({}) == PageRequest(50, 0, None)
    assert parse_page_request({"PageSize": "10", "Page": "3"}) == PageRequest(10, 3, None)
    assert parse_page_request({"PageSize": "1000"}).page_size == 50
    token = encode_token(Cursor(True, ("MB1",)))
    assert parse_page_request({"PageToken": token}).cursor == Cursor(True, ("MB1",))


@pytest.mark.parametrize(
    "query",
    [
        {"PageSize": "0"},
        {"PageSize": "-1"},
        {"PageSize": "1.5"},
        {"PageSize": "²"},
        {"PageSize": "9" * 20},
        {"Page": "-1"},
        {"Page": "x"},
        {"Page": "10000001"},
    ],
)
def test_bad_paging_values_are_400(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as info:
        parse_page_request(query)
    assert info.value.status == 400


def _key(n: int) -> tuple[int]:
    return (n,)


def test_slice_first_page() -> None:
    page = slice_page([1, 2, 3], PageRequest(2, 0, None), _key)
    assert page.items == [1, 2]
    assert page.next_cursor == Cursor(True, (2,))
    assert page.previous_cursor is None


def test_slice_last_forward_page() -> None:
    page = slice_page([3, 4], PageRequest(2, 1, Cursor(True, (2,))), _key)
    assert page.items == [3, 4]
    assert page.next_cursor is None
    assert page.previous_cursor == Cursor(False, (3,))


def test_slice_backward_page_restores_ascending_order() -> None:
    # Rows come newest-first when travelling backwards; one extra means more before.
    page = slice_page([4, 3, 2], PageRequest(2, 1, Cursor(False, (5,))), _key)
    assert page.items == [3, 4]
    assert page.previous_cursor == Cursor(False, (3,))
    assert page.next_cursor == Cursor(True, (4,))
    first = slice_page([2, 1], PageRequest(2, 0, Cursor(False, (3,))), _key)
    assert first.items == [1, 2] and first.previous_cursor is None


def test_slice_empty() -> None:
    page = slice_page([], PageRequest(50, 0, None), _key)
    assert (page.items, page.next_cursor, page.previous_cursor) == ([], None, None)


def test_page_meta_urls() -> None:
    request = PageRequest(2, 0, None)
    page = slice_page([1, 2, 3], request, _key)
    meta = page_meta("http://h", "/v1/X", "things", request, page)
    assert meta["first_page_url"] == "http://h/v1/X?PageSize=2&Page=0"
    assert meta["url"] == "http://h/v1/X?PageSize=2&Page=0"
    assert meta["previous_page_url"] is None
    token = encode_token(Cursor(True, (2,)))
    assert meta["next_page_url"] == f"http://h/v1/X?PageSize=2&Page=1&PageToken={token}"
    assert (meta["page"], meta["page_size"], meta["key"]) == (0, 2, "things")


# -- windows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("PT1H", timedelta(hours=1), "PT1H"),
        ("PT90M", timedelta(minutes=90), "PT1H30M"),
        ("P1D", timedelta(days=1), "P1D"),
        ("P1DT12H", timedelta(days=1, hours=12), "P1DT12H"),
        ("PT1S", timedelta(seconds=1), "PT1S"),
        ("P7D", timedelta(days=7), "P7D"),
        ("PT168H", timedelta(days=7), "P7D"),
    ],
)
def test_windows(text: str, expected: timedelta, canonical: str) -> None:
    assert parse_window(text) == expected
    assert format_window(expected) == canonical


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1H", "pt1h", "P1M", "P1Y", "P1W", "PT0S", "P8D", "PT1.5H", "P1DT"]
)
def test_bad_windows_are_400(text: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_window(text)
    assert info.value.status == 400


# -- serializers -------------------------------------------------------------------------


def test_iso8601_is_utc_whole_seconds_z() -> None:
    when = datetime(2024, 3, 1, 12, 0, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert serializers.iso8601(when) == "2024-03-01T10:00:05Z"
    assert serializers.iso8601_precise(when) == "2024-03-01T10:00:05.999999Z"
    assert serializers.iso8601(None) is None


def _receipt_row(**over: Any) -> dict[str, Any]:
    row = {
        "receipt_sid": sid("DY"),
        "account_sid": sid("AC"),
        "chat_service_sid": None,
        "conversation_sid": sid("CH"),
        "message_sid": sid("IM"),
        "participant_sid": sid("MB"),
        "channel_message_sid": sid("SM"),
        "channel": "sms",
        "status": "delivered",
        "error_code": None,
        "date_created": datetime(2024, 1, 1, tzinfo=UTC),
        "date_updated": datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
    }
    row.update(over)
    return row


def test_receipt_shape() -> None:
    out = serializers.receipt(_receipt_row(), "http://h/r")
    assert out == {
        "account_sid": sid("AC"),
        "chat_service_sid": None,
        "conversation_sid": sid("CH"),
        "message_sid": sid("IM"),
        "sid": sid("DY"),
        "channel_message_sid": sid("SM"),
        "participant_sid": sid("MB"),
        "status": "delivered",
        "error_code": 0,
        "date_created": "2024-01-01T00:00:00Z",
        "date_updated": "2024-01-01T00:01:00Z",
        "url": "http://h/r",
        "channel": "sms",
    }
    assert serializers.receipt(_receipt_row(error_code=30008), "u")["error_code"] == 30008


@pytest.mark.parametrize(
    ("stored", "served"),
    [(s, s) for s in ("sent", "delivered", "read", "failed", "undelivered")] + [("queued", None)],
)
def test_receipt_status_is_twilio_enum_or_null(stored: str, served: str | None) -> None:
    assert serializers.receipt(_receipt_row(status=stored), "u")["status"] == served


def _summary_row(total: int, **counts: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "message_sid": sid("IM"),
        "conversation_sid": sid("CH"),
        "account_sid": sid("AC"),
        "chat_service_sid": sid("IS"),
        "total": total,
        "version": 3,
        "updated_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    for stage in serializers.STAGES:
        n = counts.get(stage, 0)
        row[f"{stage}_count"] = n
        row[stage] = "none" if n == 0 else "all" if n == total else "some"
    return row


def test_message_shape_with_spec_example() -> None:
    row = _summary_row(5, sent=5, delivered=3, read=2)
    out = serializers.message(row, "http://h/m", "http://h/m/Receipts")
    assert out["delivery"] == {
        "total": 5,
        "sent": "all",
        "delivered": "some",
        "read": "some",
        "failed": "none",
        "undelivered": "none",
    }
    assert out["delivery_counts"] == {
        "total": 5,
        "sent": 5,
        "delivered": 3,
        "read": 2,
        "failed": 0,
        "undelivered": 0,
    }
    assert out["links"] == {"delivery_receipts": "http://h/m/Receipts"}
    assert out["sid"] == sid("IM") and out["url"] == "http://h/m"
    for unknown in ("body", "author", "media", "attributes", "participant_sid", "content_sid"):
        assert out[unknown] is None
    # Twilio's schema has a non-null integer index; the worker cannot know it (docs/api.md).
    assert out["index"] == 0
    assert out["delivery_version"] == 3


def test_message_without_receipts_has_null_delivery() -> None:
    assert serializers.message(_summary_row(0), "u", "r")["delivery"] is None


def test_channel_stats_ratios() -> None:
    row = {"channel": "sms", "total": 4, "sent": 4, "delivered": 3, "read": 1}
    row |= {"failed": 0, "undelivered": 1}
    out = serializers.channel_stats(row)
    assert (out["delivered_ratio"], out["read_ratio"]) == (0.75, 0.25)
    assert serializers.ratio(1, 0) is None


def test_history_entry() -> None:
    row = {
        "id": 7,
        "message_sid": sid("IM"),
        "participant_sid": sid("MB"),
        "receipt_sid": sid("DY"),
        "channel": "sms",
        "status": "sent",
        "error_code": None,
        "date_updated": datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
        "recorded_at": datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
    }
    out = serializers.history_entry(row, _receipt_row())
    assert out["date_updated"] == "2024-01-01T00:00:00.000005Z"
    assert out["date_recorded"] == "2024-01-01T00:00:01.000000Z"
    assert "id" not in out
    assert out["error_code"] == 0
    # The history is where the queued step shows: it keeps the worker's own status.
    assert serializers.history_entry({**row, "status": "queued"}, _receipt_row())["status"] == (
        "queued"
    )


def test_error_body() -> None:
    assert error_body(404, 20404, "gone") == {
        "code": 20404,
        "message": "gone",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


# -- auth --------------------------------------------------------------------------------


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_parse_basic() -> None:
    assert parse_basic(_basic(b"AC1:tok:en")) == ("AC1", "tok:en")
    assert parse_basic("basic " + base64.b64encode(b"a:").decode()) == ("a", "")
    for bad in (None, "", "Bearer x", "Basic", "Basic !!!", _basic(b"nocolon"), _basic(b"\xff:x")):
        assert parse_basic(bad) is None
