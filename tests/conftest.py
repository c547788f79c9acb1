"""Fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def samples() -> Path:
    """The four input forms, one example each (copied from the spec's shared samples)."""
    return SAMPLES
