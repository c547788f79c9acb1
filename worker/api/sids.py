"""Validates the SIDs that appear in request paths before any of them reaches SQL.

A SID is two uppercase letters and 32 hex digits of either case (docs/design.md, "Input
forms"); the prefix names the resource type, so a receipt SID in a message position is as
wrong as a malformed one.
"""

from __future__ import annotations

import re
from typing import Final

from worker.api.errors import invalid_parameter

_SID: Final = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")

# Path parameter name (as Twilio's API reference spells it) -> required prefix.
PREFIXES: Final[dict[str, str]] = {
    "ChatServiceSid": "IS",
    "ConversationSid": "CH",
    "MessageSid": "IM",
    "Sid": "DY",
}


def is_sid(value: str, prefix: str) -> bool:
    """True when ``value`` is a well-formed SID with exactly this two-letter prefix."""
    return _SID.fullmatch(value) is not None and value.startswith(prefix)


def require_sid(name: str, value: str) -> str:
    """``value`` in stored form if it is a valid SID for path parameter ``name``, else a 400.

    The read model stores hex digits in lower case, so ``CHABC...`` finds ``CHabc...``.
    """
    prefix = PREFIXES[name]
    if not is_sid(value, prefix):
        raise invalid_parameter(
            f"Invalid {name}: expected '{prefix}' followed by 32 hex digits", name
        )
    return prefix + value[2:].lower()
