"""W-TinyLFU's parts: the sketch, the admission duel, the segments and the hill climber."""

from __future__ import annotations

import random

from scalekit.caching import LRUCache, S3FIFOCache, TinyLFUCache
from scalekit.caching._sketch import FrequencySketch


def test_sketch_counts_saturate_and_the_doorkeeper_absorbs_first_sightings() -> None:
    sketch = FrequencySketch(1000)
    assert sketch.frequency("a") == 0
    sketch.increment("a")
    assert sketch.frequency("a") == 1 and sketch.size == 0  # doorkeeper only
    for expected in range(2, 17):
        sketch.increment("a")
        assert sketch.frequency("a") == expected
    for _ in range(10):
        sketch.increment("a")
    assert sketch.frequency("a") == 16  # 15 in the counters + the doorkeeper
    assert sketch.frequency("never seen") <= 1


def test_sketch_reset_halves_counts_and_clears_the_doorkeeper() -> None:
    sketch = FrequencySketch(100)
    for _ in range(9):
        sketch.increment("hot")
    assert sketch.frequency("hot") == 9
    sketch.reset()
    assert sketch.frequency("hot") == 4  # (9 - 1) // 2 in the counters, doorkeeper cleared


def test_sketch_ages_itself_every_sample() -> None:
    sketch = FrequencySketch(10, doorkeeper=False)
    assert sketch.sample_size == 100
    for _ in range(15):
        sketch.increment("hot")
    for i in range(200):
        sketch.increment(i)
    assert sketch.frequency("hot") <= 7  # halved at least once


def test_a_hot_entry_survives_a_scan_that_flushes_lru() -> None:
    tiny = TinyLFUCache(100, rng=random.Random(1))
    lru: LRUCache[int, bool] = LRUCache(100)
    hot = list(range(50))
    for cache in (tiny, lru):
        for _ in range(20):
            for key in hot:
                if cache.get(key) is None:
                    cache[key] = True
        for key in range(1000, 3000):  # a one-pass scan
            if cache.get(key) is None:
                cache[key] = True
    assert sum(key in tiny for key in hot) >= 45
    assert sum(key in lru for key in hot) == 0


def test_new_entries_land_in_the_window_and_hits_promote_to_protected() -> None:
    cache = TinyLFUCache(100, rng=random.Random(1))
    for key in range(100):
        cache[key] = key
    assert cache._window_max == 1 and len(cache._window) == 1
    probation = next(iter(cache._probation))
    assert cache.get(probation) == probation
    assert probation in cache._protected and probation not in cache._probation


def _replay(cache: TinyLFUCache[int, bool], keys: list[int]) -> None:
    for key in keys:
        if cache.get(key) is None:
            cache[key] = True


def test_the_climber_grows_the_window_for_recency_heavy_traffic() -> None:
    # A working set that keeps moving: recent keys are the ones that come back.
    rng = random.Random(3)
    keys = [base + rng.randrange(80) for base in range(0, 40_000, 4) for _ in range(8)]
    cache = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, keys)
    assert cache.window_maxsize >= 20


def test_the_climber_stays_frequency_biased_for_a_loop() -> None:
    keys = list(range(300)) * 200  # a loop larger than the cache: frequency wins
    cache = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, keys)
    assert cache.window_maxsize < 50  # most of the cache stays behind the filter
    assert cache.stats().hit_ratio > 0.25  # LRU gets 0 here


def test_s3fifo_keeps_one_hit_wonders_out_of_main_and_ghost_hits_go_to_main() -> None:
    cache = S3FIFOCache(20)
    for key in range(20):
        cache[key] = key  # before the first eviction the small queue overflows into main
    assert len(cache._small) == 2 and len(cache._main) == 18
    cache[100] = 100  # evicts from small: key 0 was never hit, so it goes to the ghost
    assert 0 not in cache and 0 in cache._ghost
    cache[0] = 0  # remembered by the ghost: straight into main
    assert 0 in cache._main and 0 not in cache._ghost
