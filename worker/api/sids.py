"""Validates the SIDs that appear in request paths before any of them reaches SQL.

A SID is two uppercase letters and 32 hex digits of either case (worker/sids.py, the one
statement of the rule); the prefix names the resource type, so a receipt SID in a message
position is as wrong as a malformed one.
"""

from __future__ import annotations

from typing import Final

from worker import sids
from worker.api.errors import invalid_parameter

# Path parameter name (as Twilio's API reference spells it) -> required prefix.
PREFIXES: Final[dict[str, str]] = {
    "ChatServiceSid": "IS",
    "ConversationSid": "CH",
    "MessageSid": "IM",
    "Sid": "DY",
}


def is_sid(value: str, prefix: str) -> bool:
    """True when ``value`` is a well-formed SID with exactly this two-letter prefix."""
    return sids.normalise(value, prefix) is not None


def require_sid(name: str, value: str) -> str:
    """``value`` in stored form if it is a valid SID for path parameter ``name``, else a 400.

    The read model stores hex digits in lower case, so ``CHABC...`` finds ``CHabc...``.
    """
    prefix = PREFIXES[name]
    stored = sids.normalise(value, prefix)
    if stored is None:
        raise invalid_parameter(
            f"Invalid {name}: expected '{prefix}' followed by 32 hex digits", name
        )
    return stored
