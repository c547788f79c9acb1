"""The read API's path SIDs (worker/api/sids.py): Twilio's pattern, either case of hex, 400
otherwise."""

from __future__ import annotations

import pytest

from worker.api.errors import ApiError
from worker.api.sids import is_sid, require_sid

HEX = "0123456789abcdef" * 2


def sid(prefix: str, n: int = 1) -> str:
    return f"{prefix}{n:032x}"


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
