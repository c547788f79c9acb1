"""What a SID is, the one spelling it is stored in, and the channel a channel message SID implies.

A SID is two letters naming the resource type and 32 hex digits (docs/design.md, "The
rules"). Hex case is not significant, so the read model stores every SID with lower-case
hex and an upper-case prefix; the input parser and the API's path parameters both go
through `normalise`, so what one writes the other finds.
"""

from __future__ import annotations

import re
from typing import Final

# The stored spelling, which nearly every SID arrives in.
CANONICAL: Final = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_ANY_CASE: Final = re.compile(r"[A-Za-z]{2}[0-9a-fA-F]{32}")
# A Messaging status event names an SMS/MMS channel message.
CHANNEL_MESSAGE_PREFIXES: Final = ("SM", "MM")


def canonical_pattern(prefix: str | None) -> str:
    """A regular expression for a SID with this prefix (None: any) in its stored spelling."""
    return f"{prefix or '[A-Z]{2}'}[0-9a-f]{{32}}"


def normalise(value: str, prefix: str | None) -> str | None:
    """`value` in its stored spelling if it is a SID with `prefix`, else None.

    A given prefix must match exactly, in upper case as Twilio writes it. Without one (a
    channel message SID, whose prefix Twilio gives as [a-zA-Z]{2}), any two letters are
    taken and upper-cased, so that `sm…` still names an SMS.
    """
    if CANONICAL.fullmatch(value) is not None:
        return value if prefix is None or value[:2] == prefix else None
    if _ANY_CASE.fullmatch(value) is None:
        return None
    head = value[:2]
    if prefix is not None and head != prefix:
        return None
    return head.upper() + value[2:].lower()


def implied_channel(channel_message_sid: str | None) -> str:
    """The channel a receipt is on when its event names none: from the channel message SID."""
    prefix = (channel_message_sid or "")[:2]
    if prefix == "WA":
        return "whatsapp"
    if prefix in CHANNEL_MESSAGE_PREFIXES:
        return "sms"
    return "unknown"
