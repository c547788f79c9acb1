"""The outbox relay's own partitioner is Kafka's default one (murmur2), key for key."""

from __future__ import annotations

import random


def test_murmur2_is_kafkas() -> None:
    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from worker.publisher import murmur2 as fast_murmur2
    from worker.publisher import partition_for

    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
    keys += [f"IM{rng.getrandbits(128):032x}".encode() for _ in range(1000)]
    for key in keys:
        assert fast_murmur2(key) == murmur2(key), key
        parts = list(range(rng.randrange(1, 50)))
        assert partition_for(key, parts) == DefaultPartitioner()(key, parts, parts)
