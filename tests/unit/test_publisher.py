"""The outbox relay's own partitioner is Kafka's default one (murmur2), key for key, with the
compiled hash (worker.native) and with the Python one."""

from __future__ import annotations

import random

import pytest

from worker import native


@pytest.mark.parametrize("compiled", [True, False])
def test_murmur2_is_kafkas(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from worker.publisher import murmur2 as fast_murmur2
    from worker.publisher import partition_for

    if compiled and native.murmur2 is None:
        pytest.skip("receipts_native is not built (bash scripts/setup.sh)")
    if not compiled:
        monkeypatch.setattr(native, "murmur2", None)
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
    keys += [f"IM{rng.getrandbits(128):032x}".encode() for _ in range(1000)]
    for key in keys:
        assert fast_murmur2(key) == murmur2(key), key
        if native.murmur2 is not None:
            assert native.murmur2(key) == murmur2(key), key
        parts = list(range(rng.randrange(1, 50)))
        assert partition_for(key, parts) == DefaultPartitioner()(key, parts, parts)
