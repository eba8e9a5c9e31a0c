"""A write refused for its size changes nothing, in every weighted cache.

`"value too large"` (a size above `maxsize`) and a `getsizeof` result that
is no size raise before anything is stored, evicted or forgotten: the
cache then behaves exactly as a copy taken before the write (the same keys,
`currsize`, answers and evictions through a further run of writes and
reads). A ghost entry, a frequency or a queue position consumed by the
refused write would show there. Fast: fixed seeds, about a second.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

import scalekit.caching as caching


def _make(name: str, maxsize: int = 20, sizeof: Any = lambda v: v) -> Any:
    if name == "TTLCache":
        return caching.TTLCache(maxsize, ttl=100, timer=lambda: 0, getsizeof=sizeof)
    if name == "TLRUCache":
        return caching.TLRUCache(
            maxsize, ttu=lambda key, value, now: now + 100, timer=lambda: 0, getsizeof=sizeof
        )
    if name == "RRCache":
        return caching.RRCache(maxsize, choice=random.Random(1).choice, getsizeof=sizeof)
    return getattr(caching, name)(maxsize, getsizeof=sizeof)


NAMES = [
    "LRUCache",
    "LFUCache",
    "FIFOCache",
    "RRCache",
    "SIEVECache",
    "S3FIFOCache",
    "TinyLFUCache",
    "TTLCache",
    "TLRUCache",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_refused_write_changes_nothing(name: str) -> None:
    rng = random.Random(5)
    cache = _make(name)
    for _ in range(120):
        cache[int(40 * rng.random() ** 2)] = rng.randrange(1, 4)
        cache.get(int(40 * rng.random() ** 2))
    # Every key of the key space that is not held (evicted ones sit in the
    # ghosts of S3-FIFO and TinyLFU), and one that is.
    targets = [key for key in range(40) if key not in cache] + [next(iter(cache))]
    for key in targets:
        for bad in (21, -1):
            twin = copy.deepcopy(cache)
            trial = copy.deepcopy(cache)
            with pytest.raises(ValueError) as refused:
                trial[key] = bad
            if bad > 0:  # cachetools' message, which callers match
                assert str(refused.value) == "value too large"
            assert (sorted(trial), trial.currsize) == (sorted(twin), twin.currsize), (key, bad)
            ops = random.Random(key)
            for step in range(60):
                write = int(40 * ops.random() ** 2)
                value = ops.randrange(1, 4)
                trial[write] = value
                twin[write] = value
                read = int(40 * ops.random() ** 2)
                assert trial.get(read) == twin.get(read), (key, bad, step)
                assert sorted(trial) == sorted(twin), (key, bad, step)
            assert trial.stats() == twin.stats(), (key, bad)


@pytest.mark.parametrize("name", NAMES)
def test_a_cache_of_maxsize_0_refuses_every_write_and_stays_empty(name: str) -> None:
    cache = _make(name, maxsize=0, sizeof=None)  # unit sizes: the unweighted write path
    with pytest.raises(ValueError) as refused:
        cache["a"] = 1
    assert str(refused.value) == "value too large"
    assert (len(cache), cache.currsize) == (0, 0)
