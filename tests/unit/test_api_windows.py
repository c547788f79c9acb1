"""The stats window of the read API (worker/api/windows.py): ISO 8601 durations, canonical
form, 400 otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worker.api.errors import ApiError
from worker.api.windows import format_window, parse_window


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
