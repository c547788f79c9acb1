"""The read API's paging (worker/api/paging.py): page tokens, page requests, slicing, meta URLs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.api.errors import ApiError
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
