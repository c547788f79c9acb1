"""worker/sids.py: the one statement of SID syntax, normalisation and implied channel, and
the parser and the API agreeing on it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import sids
from worker.api.sids import is_sid, require_sid
from worker.parsing.fields import InvalidRecord, check_sid

HEX = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("value", "prefix", "stored"),
    [
        ("IM" + HEX, "IM", "IM" + HEX),
        ("IM" + HEX.upper(), "IM", "IM" + HEX),
        ("im" + HEX, "IM", None),  # a fixed prefix is written in upper case
        ("DY" + HEX, "IM", None),
        ("sm" + HEX.upper(), None, "SM" + HEX),  # a free prefix is upper-cased
        ("WA" + HEX, None, "WA" + HEX),
        ("IM" + HEX[:-1], "IM", None),
        ("IM" + HEX + "0", "IM", None),
        ("IM" + HEX[:-1] + "g", "IM", None),
        ("1M" + HEX, None, None),
        ("IM" + HEX[:-1] + "\uff10", "IM", None),  # a full-width digit is not hex
    ],
)
def test_normalise(value: str, prefix: str | None, stored: str | None) -> None:
    assert sids.normalise(value, prefix) == stored


def test_canonical_pattern_matches_the_stored_spelling_only() -> None:
    import re

    assert re.fullmatch(sids.canonical_pattern("IM"), "IM" + HEX)
    assert not re.fullmatch(sids.canonical_pattern("IM"), "IM" + HEX.upper())
    assert re.fullmatch(sids.canonical_pattern(None), "MM" + HEX)


def test_implied_channel() -> None:
    assert sids.implied_channel("WA" + HEX) == "whatsapp"
    assert sids.implied_channel("SM" + HEX) == sids.implied_channel("MM" + HEX) == "sms"
    assert sids.implied_channel("XY" + HEX) == sids.implied_channel(None) == "unknown"


_SIDISH = st.builds(
    str.__add__,
    st.sampled_from(["IM", "DY", "im", "iM", "CH"]),
    st.text(alphabet="0123456789abcdefABCDEFg", min_size=31, max_size=33),
)


@given(value=_SIDISH, prefix=st.sampled_from(["IM", "DY"]))
def test_the_parser_and_the_api_accept_and_store_the_same_sids(value: str, prefix: str) -> None:
    name = {"IM": "MessageSid", "DY": "Sid"}[prefix]
    try:
        parsed: str | None = check_sid(name, value, prefix)
    except InvalidRecord:
        parsed = None
    assert is_sid(value, prefix) == (parsed is not None)
    if parsed is not None:
        assert require_sid(name, value) == parsed
