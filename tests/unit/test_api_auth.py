"""HTTP Basic credentials as the read API parses them (worker/api/auth.py)."""

from __future__ import annotations

import base64

from worker.api.auth import parse_basic


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_parse_basic() -> None:
    assert parse_basic(_basic(b"AC1:tok:en")) == ("AC1", "tok:en")
    assert parse_basic("basic " + base64.b64encode(b"a:").decode()) == ("a", "")
    for bad in (None, "", "Bearer x", "Basic", "Basic !!!", _basic(b"nocolon"), _basic(b"\xff:x")):
        assert parse_basic(bad) is None
