"""The staleness checker of the Redis-tier soak, on hand-made histories."""

from __future__ import annotations

import pytest

from benchmarks.rediscache.history import Read, Write, check

BOUNDS = {"redis": 0.0, "near": 0.5}


def test_a_clean_history_has_no_violations() -> None:
    writes = [Write("k", 1, 1.0), Write("k", 2, 2.0), Write("j", 1, 1.5)]
    reads = [
        Read("k", "redis", None, 0.5, 0.6),  # a miss is never stale
        Read("k", "redis", 1, 1.9, 2.1),  # overlaps the write of 2: either is fine
        Read("k", "redis", 2, 2.0001, 2.1),
        Read("k", "near", 1, 2.4, 2.41),  # within the near bound of the write of 2
        Read("k", "near", 2, 9.0, 9.1),
        Read("j", "near", 1, 1.6, 1.7),
    ]
    assert check(writes, reads, BOUNDS) == []


def test_a_stale_redis_read_is_caught() -> None:
    writes = [Write("k", 1, 1.0), Write("k", 2, 2.0)]
    stale = Read("k", "redis", 1, 2.01, 2.02)
    [violation] = check(writes, [stale], BOUNDS)
    assert violation.read == stale and violation.newer == Write("k", 2, 2.0)
    assert violation.late_by == pytest.approx(0.01)
    assert "version 2 was acknowledged" in str(violation)


def test_the_near_layer_gets_exactly_its_bound() -> None:
    writes = [Write("k", 1, 1.0), Write("k", 2, 2.0)]
    inside = Read("k", "near", 1, 2.499, 2.5)
    outside = Read("k", "near", 1, 2.501, 2.51)
    assert check(writes, [inside, outside], BOUNDS) == [check(writes, [outside], BOUNDS)[0]]


def test_an_older_version_after_a_newer_acknowledgement_is_stale() -> None:
    """Acknowledgements out of version order: the newest version acknowledged counts."""
    writes = [Write("k", 3, 1.0), Write("k", 2, 1.5)]
    assert check(writes, [Read("k", "redis", 2, 2.0, 2.1)], BOUNDS)[0].newer.version == 3


def test_keys_are_independent_and_unknown_layers_are_refused() -> None:
    writes = [Write("a", 5, 1.0)]
    assert check(writes, [Read("b", "redis", 1, 9.0, 9.1)], BOUNDS) == []
    with pytest.raises(KeyError):
        check(writes, [Read("a", "disk", 5, 9.0, 9.1)], BOUNDS)
