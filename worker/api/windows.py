"""Parses the ``Window`` of ``/v1/DeliveryStats``: a bounded ISO 8601 duration.

Only days, hours, minutes and seconds with integer values are accepted (``P1D``, ``PT1H``,
``PT90M``, ``P1DT12H``): years and months have no fixed length, and a bounded window is
what keeps the aggregate query cheap.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from worker.api.errors import invalid_parameter

DEFAULT_WINDOW: Final = "PT1H"
MAX_WINDOW: Final = timedelta(days=7)
_DURATION: Final = re.compile(
    r"P(?:(?P<d>\d{1,6})D)?(?:T(?:(?P<h>\d{1,6})H)?(?:(?P<m>\d{1,7})M)?(?:(?P<s>\d{1,9})S)?)?"
)


def parse_window(text: str) -> timedelta:
    """The duration ``text`` denotes, between one second and ``MAX_WINDOW`` (else a 400)."""
    match = _DURATION.fullmatch(text) if text.isascii() else None
    # "P" and "PT" match the pattern with every part absent; they denote nothing.
    if match is None or not any(match.groupdict().values()) or text.endswith("T"):
        raise invalid_parameter(
            "Invalid Window: expected an ISO 8601 duration such as PT1H, PT30M or P1D",
            "Window",
        )
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    window = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if window < timedelta(seconds=1) or window > MAX_WINDOW:
        raise invalid_parameter("Invalid Window: must be between PT1S and P7D", "Window")
    return window


def format_window(window: timedelta) -> str:
    """Canonical ISO 8601 form of a window (``PT90M`` comes back as ``PT1H30M``)."""
    total = int(window.total_seconds())
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    return out + ("T" + time if time else "")
