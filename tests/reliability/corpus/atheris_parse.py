"""Coverage-guided fuzzing of parse_record with atheris (libFuzzer), when it is installed.

    PYTHONPATH=. python tests/reliability/corpus/atheris_parse.py -max_total_time=600 [CORPUS_DIR]

Crashes on anything but InvalidRecord with a known reason, or an accepted event that breaks
the parser's guarantees. tests/unit/test_parsing_fuzz.py runs it briefly. Kept free of heavy
imports so that only the parser (and what it uses) is instrumented.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta

import atheris

with atheris.instrument_imports():
    from worker import parsing
    from worker.events import Status

_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_HEADERS = ("content-type", "Content-Type", "ce_type", "x-trace")
_VALUES = (
    b"application/json",
    b"application/cloudevents-batch+json",
    b"application/x-www-form-urlencoded",
    parsing.CLOUDEVENT_TYPE.encode(),
    b"\xff\xfe",
    b"",
)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers: list[tuple[str, bytes]] = []
    for _ in range(fdp.ConsumeIntInRange(0, 2)):
        headers.append(
            (
                _HEADERS[fdp.ConsumeIntInRange(0, len(_HEADERS) - 1)],
                _VALUES[fdp.ConsumeIntInRange(0, len(_VALUES) - 1)],
            )
        )
    value = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        parsed = parsing.parse_record(value, headers, max_bytes=65536)
    except parsing.InvalidRecord as exc:
        if exc.reason not in parsing.REASONS:
            raise AssertionError(f"unknown reason {exc.reason}") from None
        return
    for e in parsed.events:
        sids = (e.account_sid, e.conversation_sid, e.message_sid, e.receipt_sid, e.participant_sid)
        if not all(_SID.fullmatch(s) for s in sids):
            raise AssertionError(f"bad SID accepted: {e}")
        if not isinstance(e.status, Status) or not _CHANNEL.fullmatch(e.channel):
            raise AssertionError(f"bad status or channel accepted: {e}")
        if e.error_code is not None and not 0 < e.error_code < 2**31:
            raise AssertionError(f"bad error code accepted: {e}")
        for when in (e.date_created, e.date_updated):
            if when.utcoffset() != timedelta(0):
                raise AssertionError(f"date not in UTC: {e}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
