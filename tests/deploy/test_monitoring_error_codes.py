"""docs/error-codes.md matches the error_code label's known values (worker/metrics.py
`KNOWN_ERROR_CODES`), and the label stays bounded."""

from __future__ import annotations

import re

import pytest

from worker.metrics import KNOWN_ERROR_CODES

from .conftest import ROOT


def test_error_codes_documented() -> None:
    text = (ROOT / "docs" / "error-codes.md").read_text()
    documented = set(re.findall(r"^\|\s*`?(\d{5})`?\s*\|", text, flags=re.MULTILINE))
    assert documented == set(KNOWN_ERROR_CODES), (
        f"missing: {sorted(set(KNOWN_ERROR_CODES) - documented)}, "
        f"not in worker.metrics: {sorted(documented - set(KNOWN_ERROR_CODES))}"
    )
    assert '"other"' in text or "`other`" in text


@pytest.mark.parametrize("code", sorted(KNOWN_ERROR_CODES))
def test_error_code_label_is_bounded(code: str) -> None:
    from worker.metrics import error_code_label

    assert error_code_label(int(code)) == code
    assert error_code_label(99999) == "other"
