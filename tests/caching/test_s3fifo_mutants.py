"""S3-FIFO against a slow transcription of libCacheSim's `S3FIFO.c`, over every option.

`test_state_machines.py` checks unit-size caches with the default ratios,
where small queue and ghost are a handful of keys. Each case here found a
mutant of `s3fifo.py` that passed the suite: other `small_ratio` and
`ghost_ratio` values (a ghost of zero or one key, a small queue of half
the cache), weighted entries (the queues' shares are in units of
`getsizeof`) and a cleared cache. Fast: fixed seeds, no Hypothesis, no trace.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import S3FIFOCache


class SizedS3FIFO:
    """S3-FIFO (Yang et al., SOSP 2023) with lists, any ratios and sizes, as `Cache` writes.

    A write of a new key first consults the ghost (libCacheSim does so on the
    lookup), then evicts until the value fits; the key goes to the main FIFO
    if the ghost had it, if its size is not below the small queue's share,
    or if the small queue is full before the first eviction; else to the
    small FIFO. Every hit or update adds one to its frequency (capped at 3).
    To evict: while main holds more than its share or small is empty, main's
    oldest goes back to main's tail with frequency - 1 if its frequency is
    positive, else it is the victim; otherwise small's oldest moves to main
    (frequency 0) if it was hit at least twice, else it is the victim and
    enters the ghost (oldest ghost key forgotten when full).
    """

    def __init__(
        self,
        maxsize: int,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
        sizeof: Callable[[Any], int] = lambda v: 1,
    ) -> None:
        self.maxsize = maxsize
        self.small_cap = int(maxsize * small_ratio)
        self.main_cap = maxsize - self.small_cap
        self.ghost_cap = int(maxsize * ghost_ratio)
        self.sizeof = sizeof
        self.small: list[Any] = []
        self.main: list[Any] = []
        self.ghost: list[Any] = []
        self.entries: dict[Any, list[Any]] = {}  # key -> [value, frequency, size]
        self.has_evicted = False
        self.hits = self.misses = self.evictions = 0

    def used(self, queue: list[Any]) -> int:
        return sum(self.entries[key][2] for key in queue)

    def currsize(self) -> int:
        return self.used(self.small) + self.used(self.main)

    def read(self, key: Any) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        entry[1] = min(entry[1] + 1, 3)
        return entry[0]

    def write(self, key: Any, value: Any) -> None:
        size = self.sizeof(value)
        ghost_hit = False
        if key not in self.entries and key in self.ghost:
            self.ghost.remove(key)
            ghost_hit = True
        if size > self.maxsize:
            raise ValueError("value too large")
        present = key in self.entries
        grow = size - self.entries[key][2] if present else size
        while self.currsize() + grow > self.maxsize and self.entries:
            self.popitem()
            self.evictions += 1
            if key not in self.entries:
                grow = size
        entry = self.entries.get(key)
        if entry is not None:
            entry[0], entry[2] = value, size
            entry[1] = min(entry[1] + 1, 3)
            return
        full = not self.has_evicted and self.used(self.small) >= self.small_cap
        (self.main if ghost_hit or size >= self.small_cap or full else self.small).append(key)
        self.entries[key] = [value, 0, size]

    def delete(self, key: Any) -> Any:
        value = self.entries.pop(key)[0]
        (self.small if key in self.small else self.main).remove(key)
        return value

    def victim(self) -> Any:
        self.has_evicted = True
        while True:
            if self.used(self.main) > self.main_cap or not self.small:
                while True:
                    key = self.main[0]
                    if self.entries[key][1] < 1:
                        return key
                    self.main.append(self.main.pop(0))
                    self.entries[key][1] -= 1
            while self.small:
                key = self.small[0]
                if self.entries[key][1] >= 2:
                    self.main.append(self.small.pop(0))
                    self.entries[key][1] = 0
                    continue
                if self.ghost_cap > 0 and key not in self.ghost:
                    if len(self.ghost) >= self.ghost_cap:
                        self.ghost.pop(0)
                    self.ghost.append(key)
                return key

    def popitem(self) -> tuple[Any, Any]:
        key = self.victim()
        return key, self.delete(key)


def _drive(cache: S3FIFOCache[int, int], model: SizedS3FIFO, seed: int, steps: int = 600) -> None:
    """Random reads, writes, removals and evictions; cache and model must agree at every step."""
    rng = random.Random(seed)
    for step in range(steps):
        key = int(3 * cache.maxsize * rng.random() ** 2)  # skewed: hot keys return
        op = rng.random()
        if op < 0.4:
            assert cache.get(key) == model.read(key), step
        elif op < 0.5:
            if key in model.entries:
                assert cache[key] == model.read(key), step
            else:
                with pytest.raises(KeyError):
                    cache[key]
                model.misses += 1
        elif op < 0.55:
            value = rng.randrange(1, 7)
            if key in model.entries:
                assert cache.setdefault(key, value) == model.read(key), step
            else:
                model.write(key, value)
                assert cache.setdefault(key, value) == value, step
        elif op < 0.6 and model.entries:
            assert cache.pop(key, None) == (model.delete(key) if key in model.entries else None)
        elif op < 0.62 and model.entries:
            assert cache.popitem() == model.popitem(), step
        else:
            value = rng.randrange(1, 7)
            model.write(key, value)
            cache[key] = value
        assert sorted(cache) == sorted(model.entries), step
        assert cache.currsize == model.currsize() <= cache.maxsize, step
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (
            model.hits,
            model.misses,
            model.evictions,
        ), step


@pytest.mark.parametrize(
    ("maxsize", "small_ratio", "ghost_ratio"),
    [
        (20, 0.1, 0.9),
        (30, 0.5, 0.9),  # a small queue of half the cache
        (24, 0.25, 0.0),  # no ghost: every key evicted from small is forgotten
        (20, 0.1, 0.05),  # a ghost of one key
        (16, 0.125, 2.0),  # a ghost longer than the cache
    ],
)
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
def test_s3fifo_follows_the_reference_for_any_ratios(
    maxsize: int, small_ratio: float, ghost_ratio: float, weighted: bool
) -> None:
    sizeof: Callable[[Any], int] = (lambda v: v) if weighted else (lambda v: 1)
    for seed in range(3):
        cache: S3FIFOCache[int, int] = S3FIFOCache(
            maxsize,
            getsizeof=sizeof if weighted else None,
            small_ratio=small_ratio,
            ghost_ratio=ghost_ratio,
        )
        _drive(cache, SizedS3FIFO(maxsize, small_ratio, ghost_ratio, sizeof), seed)


def test_a_ghost_of_one_key_sends_the_last_evicted_key_to_main() -> None:
    # maxsize 20, ghost_ratio 0.05: the ghost holds one key, the small queue 2.
    cache: S3FIFOCache[int, int] = S3FIFOCache(20, ghost_ratio=0.05)
    model = SizedS3FIFO(20, ghost_ratio=0.05)
    for key in range(21):  # 0, 1 in small, 2..19 in main; 20 evicts 0 from small
        cache[key] = key
        model.write(key, key)
    assert model.ghost == [0] and 0 not in cache
    # A ghost hit: making room evicts small's 1 (now the ghost's one key), and
    # 0 goes to main, which is then over its share: the next victim is main's
    # oldest. Forgotten, 0 would go to small and 20 would be next.
    cache[0] = 0
    model.write(0, 0)
    assert model.ghost == [1] and 1 not in cache
    assert cache.popitem() == model.popitem() == (2, 2)


def test_without_a_ghost_small_evictions_still_work() -> None:
    cache: S3FIFOCache[int, int] = S3FIFOCache(20, ghost_ratio=0)
    for key in range(100):
        cache[key] = key
    assert len(cache) == 20 and cache.stats().evictions == 80


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
def test_a_cleared_s3fifo_fills_its_small_queue_as_a_new_one(weighted: bool) -> None:
    # maxsize 30: a small queue of 3 units, which a new cache fills before
    # sending keys to main; a cleared one must too (and forget it evicted).
    sizeof: Callable[[Any], int] = (lambda v: v) if weighted else (lambda v: 1)
    cache: S3FIFOCache[int, int] = S3FIFOCache(30, getsizeof=sizeof if weighted else None)
    _drive(cache, SizedS3FIFO(30, sizeof=sizeof), seed=7, steps=200)
    cache.clear()
    assert (len(cache), cache.currsize) == (0, 0)
    model = SizedS3FIFO(30, sizeof=sizeof)
    model.hits, model.misses, model.evictions = (
        cache.stats().hits,
        cache.stats().misses,
        cache.stats().evictions,
    )
    _drive(cache, model, seed=8)


def test_a_value_written_back_by_its_del_during_clear_is_a_whole_entry() -> None:
    # clear() keeps the old entries alive until every queue is empty: a value
    # whose __del__ writes to the cache then finds an empty, consistent cache.
    cache: S3FIFOCache[str, Any] = S3FIFOCache(20)

    class WritesBack:
        def __del__(self) -> None:
            cache["back"] = 1

    cache["a"] = WritesBack()
    cache.clear()
    assert list(cache) == ["back"] and len(cache) == cache.currsize == 1
    assert cache.popitem() == ("back", 1)
    assert len(cache) == 0


@pytest.mark.parametrize("size", [21, -1], ids=["too_large", "negative_size"])
def test_a_refused_write_keeps_the_keys_ghost_entry(size: int) -> None:
    # A write that raises (a value larger than maxsize, or a getsizeof result
    # that is no size) changes nothing: the key stays in the ghost, and the
    # next write of it is still a ghost hit that goes to main.
    sizeof: Callable[[Any], int] = lambda v: v  # noqa: E731
    cache: S3FIFOCache[int, int] = S3FIFOCache(20, getsizeof=sizeof)
    model = SizedS3FIFO(20, sizeof=sizeof)
    for key in range(25):
        cache[key] = 1
        model.write(key, 1)
    assert 0 in model.ghost and 0 not in cache
    with pytest.raises(ValueError):
        cache[0] = size
    assert (sorted(cache), cache.currsize, cache.stats().evictions) == (
        sorted(model.entries),
        model.currsize(),
        model.evictions,
    )
    cache[0] = 1
    model.write(0, 1)
    assert 0 not in model.ghost and 0 in model.main
    assert (sorted(cache), cache.currsize) == (sorted(model.entries), model.currsize())
    for _ in range(20):
        assert cache.popitem() == model.popitem()
