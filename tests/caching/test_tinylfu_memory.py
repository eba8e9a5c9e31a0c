"""TinyLFU's memory follows the entries it holds, not `maxsize` in weight units."""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import LRUCache, TinyLFUCache
from scalekit.caching._sketch import FrequencySketch

MiB = 1 << 20


def _allocated(build: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        return built, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_an_empty_cache_of_ten_million_entries_takes_under_a_mebibyte() -> None:
    _, size = _allocated(lambda: TinyLFUCache(10**7))
    assert size < MiB


def test_a_byte_budget_does_not_allocate_a_sketch_per_byte() -> None:
    _, size = _allocated(lambda: TinyLFUCache(2**24, getsizeof=len))
    assert size < MiB


def test_a_capacity_of_ten_to_the_thirty_works() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(10**30)
    for key in range(1000):
        cache[key] = key
    assert len(cache) == 1000 and cache.get(500) == 500 and cache.currsize == 1000
    assert cache._sketch.entries <= 2048  # sized by what it holds


@pytest.mark.parametrize("read", [3, 1], ids=["a third read", "every entry read"])
def test_bytes_per_entry_at_1e5_entries_are_at_most_twice_lru(read: int) -> None:
    # Reading every entry once promotes them all: the worst state, in which the
    # probation queue, once the largest, has emptied into the protected one.
    n = 100_000
    keys = list(range(n))

    def fill(cache: Any) -> Any:
        for key in keys:
            cache[key] = key
        for key in keys[: n // read]:
            cache.get(key)  # TinyLFU: promotions, so two segments have grown
        return cache

    _, lru = _allocated(lambda: fill(LRUCache(n)))
    tiny_cache, tiny = _allocated(lambda: fill(TinyLFUCache(n, rng=random.Random(1))))
    assert len(tiny_cache) == n
    assert tiny <= 2 * lru, (tiny / n, lru / n)


@pytest.mark.parametrize("maxsize", [10**6, 10**7], ids=["1e6", "1e7"])
def test_1e5_entries_in_a_larger_cache_cost_at_most_twice_lru_per_entry(maxsize: int) -> None:
    # A cache sized for a peak holds fewer entries: its sketch follows them (under
    # 1e6, 90,000 of them were promoted out of probation). About 3 s: tracemalloc.
    n = 100_000
    keys = list(range(n))

    def fill(cache: Any) -> Any:
        for key in keys:
            cache[key] = key
        for key in keys:
            cache.get(key)
        return cache

    _, lru = _allocated(lambda: fill(LRUCache(maxsize)))
    tiny_cache, tiny = _allocated(lambda: fill(TinyLFUCache(maxsize, rng=random.Random(1))))
    assert len(tiny_cache) == n
    assert tiny_cache._sketch.entries <= n  # never more than TinyLFUCache(n) has
    assert tiny <= 2 * lru, (tiny / n, lru / n)


def test_a_filling_cache_does_not_keep_a_window_table_for_the_keys_that_passed() -> None:
    # 30,000 entries under maxsize 1e6: 20,000 of them went through the window of
    # 10,000, each leaving a deleted slot; a dict frees those only when it resizes,
    # to a table for 3x the keys it holds, twice what they need.
    cache: TinyLFUCache[int, int] = TinyLFUCache(10**6)
    for key in range(30_000):
        cache[key] = key
    assert len(cache._window) == cache.window_maxsize == 10_000
    rebuilt = OrderedDict(cache._window)
    assert sys.getsizeof(cache._window) <= sys.getsizeof(rebuilt) * 5 // 4
    assert list(cache._window) == list(rebuilt)


def test_growing_the_sketch_keeps_every_estimate() -> None:
    sketch = FrequencySketch(16)
    counts = {key: key % 7 for key in range(40)}
    for key, count in counts.items():
        for _ in range(count):
            sketch.increment(key)
    before = {key: sketch.frequency(key) for key in counts}
    sketch.ensure_capacity(5000)
    assert sketch.entries == 5000 and sketch.sample_size == 50_000
    assert {key: sketch.frequency(key) for key in counts} == before
    sketch.ensure_capacity(100)  # never shrinks
    assert sketch.entries == 5000


def test_the_sketch_grows_as_the_cache_fills() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(10**6)
    assert cache._sketch.entries == 16
    for key in range(1000):
        cache[key] = key
    assert 1000 <= cache._sketch.entries <= 2000
    assert cache._sketch.sample_size == 10 * cache._sketch.entries


def _weighted_run(requests: int) -> TinyLFUCache[int, bytes]:
    # 4,096 entries of 4 KiB in a 16 MiB budget, under a skewed key stream.
    cache: TinyLFUCache[int, bytes] = TinyLFUCache(2**24, getsizeof=len, rng=random.Random(1))
    rng = random.Random(5)
    value = b"x" * 4096
    for _ in range(requests):
        key = int(20_000 * rng.random() ** 2)
        if cache.get(key) is None:
            cache[key] = value
    return cache


def test_a_weighted_cache_ages_climbs_and_keeps_short_ghosts() -> None:
    cache = _weighted_run(150_000)
    entries = len(cache)
    assert entries == 4096
    sketch = cache._sketch
    # Sized for at most twice the entries held; ages every 10 x that many events.
    assert entries <= sketch.entries <= 2 * entries
    assert sketch.sample_size == 10 * sketch.entries
    assert sketch.size < sketch.sample_size  # it reset: 150,000 requests > one sample
    assert len(cache._rejected) <= entries // 20 and len(cache._evicted) <= entries // 20
    # The climber's sample is max(10 x entries, 10,000) requests: it has moved the window.
    assert cache.window_maxsize != 2**24 - int(0.99 * 2**24)


def test_weighted_writes_that_evict_several_entries_keep_the_cache_consistent() -> None:
    # A large value can push several candidates out of the window at once, and
    # the duels then evict several entries: a candidate evicted as a victim
    # earlier in the same write must not be dueled again (it raised KeyError).
    for seed in range(6):
        rng = random.Random(seed)
        cache: TinyLFUCache[int, int] = TinyLFUCache(
            50, getsizeof=lambda v: v, rng=random.Random(seed)
        )
        for _ in range(3000):
            key = rng.randrange(80)
            if rng.random() < 0.5:
                cache.get(key)
            else:
                cache[key] = rng.randrange(1, 30)
            assert cache.currsize == sum(cache.getsizeof(v) for v in cache.values()) <= 50
