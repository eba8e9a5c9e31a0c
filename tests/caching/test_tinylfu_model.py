"""TinyLFUCache against a slow, plain transcription of W-TinyLFU (a Hypothesis state machine).

The model keeps each segment as a list (oldest first) and recomputes what
the cache keeps incrementally. It shares only the frequency sketch
(`FrequencySketch` has its own tests) and a seeded RNG with the cache.
The hill climber and the shadow LRU and FIFO act once per sample of at least
10,000 requests, which a 60-step run never reaches: their unit tests are in
`test_tinylfu.py`; here their state must stay untouched.
"""

from __future__ import annotations

import random
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from scalekit.caching import TinyLFUCache
from scalekit.caching._sketch import FrequencySketch

KEYS = st.integers(0, 11)
SEED = 11


class ModelTinyLFU:
    """W-TinyLFU with ghosts and the admission margin, unit sizes, in lists."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.window: list[list[Any]] = []  # [key, value], oldest first
        self.probation: list[list[Any]] = []
        self.protected: list[list[Any]] = []
        self.window_max = maxsize - int(0.99 * maxsize)
        self.protected_max = int(0.80 * (maxsize - self.window_max))
        self.span = self.window_max + self.protected_max
        self.margin = 0
        self.rejected: list[Any] = []  # oldest first
        self.evicted: list[Any] = []
        self.sketch = FrequencySketch(min(16, maxsize))
        self.rng = random.Random(SEED)
        self.hits = self.misses = self.evictions = 0

    # -- lookups -------------------------------------------------------------------

    def segments(self) -> list[list[list[Any]]]:
        return [self.window, self.probation, self.protected]

    def find(self, key: Any) -> tuple[list[list[Any]], int] | None:
        for segment in self.segments():
            for i, item in enumerate(segment):
                if item[0] == key:
                    return segment, i
        return None

    def size(self) -> int:
        return sum(len(segment) for segment in self.segments())

    def access(self, key: Any) -> Any:
        """A hit: count it in the sketch; promote from probation, else make most recent."""
        segment, i = self.find(key)  # type: ignore[misc]
        self.sketch.increment(key)
        item = segment.pop(i)
        if segment is self.probation and self.protected_max >= 1:
            self.protected.append(item)
        else:
            segment.append(item)  # a short run never orders the window as a FIFO
        return item[1]

    def get(self, key: Any) -> Any:
        if self.find(key) is None:
            self.misses += 1
            return None
        self.hits += 1
        return self.access(key)

    # -- writes --------------------------------------------------------------------

    def set(self, key: Any, value: Any) -> None:
        found = self.find(key)
        if found is not None:
            segment, i = found
            segment[i][1] = value
            self.access(key)
        else:
            self.window.append([key, value])
            if self.sketch.entries < self.maxsize and self.size() > self.sketch.entries:
                self.sketch.ensure_capacity(min(2 * self.size(), self.maxsize))
            self.sketch.increment(key)
            if key in self.rejected:
                self.rejected.remove(key)
                if self.margin > 0:
                    self.margin -= 1
                else:
                    self.grow_window(1)
            elif key in self.evicted:
                self.evicted.remove(key)
                if self.window_max > 1:
                    self.shrink_window(1)
                elif self.margin < 2:
                    self.margin += 1
        self.evict()
        self.demote()

    def evict(self) -> None:
        candidates = []
        while len(self.window) > self.window_max:
            item = self.window.pop(0)
            self.probation.append(item)
            candidates.append(item[0])
        while self.size() > self.maxsize:
            candidate = candidates.pop() if candidates else None
            if candidate is None and self.window:
                candidate = self.window[-1][0]
            heads = [
                segment[0][0]
                for segment in (self.probation, self.protected, self.window)
                if segment
            ]
            victim = heads[0]
            if candidate is None or candidate == victim:
                self.remove(victim)
            elif self.admit(candidate, victim):
                self.remove(victim)
                self.remember(self.evicted, victim)
            else:
                self.remove(candidate)
                self.remember(self.rejected, candidate)
            self.evictions += 1

    def admit(self, candidate: Any, victim: Any) -> bool:
        candidate_freq = self.sketch.frequency(candidate)
        victim_freq = self.sketch.frequency(victim)
        if candidate_freq > victim_freq + self.margin:
            return True
        return candidate_freq >= 6 and self.rng.getrandbits(7) == 0

    def remember(self, ghost: list[Any], key: Any) -> None:
        ghost.append(key)
        if len(ghost) > max(1, self.size() // 20):
            ghost.pop(0)

    def set_window(self, window_max: int) -> None:
        self.window_max = window_max
        self.protected_max = max(0, self.span - window_max)

    def grow_window(self, amount: int) -> None:
        quota = min(amount, self.maxsize - 1 - self.window_max)
        if quota <= 0:
            return
        self.set_window(self.window_max + quota)
        self.demote()
        while quota > 0 and (self.probation or self.protected):
            source = self.probation if self.probation else self.protected
            self.window.append(source.pop(0))
            quota -= 1
        self.set_window(self.window_max - quota)

    def shrink_window(self, amount: int) -> None:
        quota = min(amount, self.window_max - 1)
        if quota <= 0:
            return
        self.set_window(self.window_max - quota)
        while quota > 0 and self.window:
            self.probation.append(self.window.pop(0))
            quota -= 1
        self.set_window(self.window_max + quota)

    def demote(self) -> None:
        while len(self.protected) > self.protected_max:
            self.probation.append(self.protected.pop(0))

    # -- removals ------------------------------------------------------------------

    def remove(self, key: Any) -> Any:
        segment, i = self.find(key)  # type: ignore[misc]
        return segment.pop(i)[1]

    def popitem(self) -> tuple[Any, Any]:
        for segment in (self.probation, self.protected, self.window):
            if segment:
                key, value = segment.pop(0)
                return key, value
        raise KeyError("empty")


class TinyLFUMachine(RuleBasedStateMachine):
    cache: TinyLFUCache[int, Any]
    model: ModelTinyLFU

    @initialize(maxsize=st.sampled_from([1, 2, 3, 5, 8, 21, 40]))
    def start(self, maxsize: int) -> None:
        self.cache = TinyLFUCache(maxsize, rng=random.Random(SEED))
        self.model = ModelTinyLFU(maxsize)

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        assert self.cache.get(key) == self.model.get(key)

    @rule(key=KEYS)
    def getitem(self, key: int) -> None:
        if self.model.find(key) is None:
            self.model.misses += 1
            try:
                self.cache[key]
            except KeyError:
                return
            raise AssertionError(f"{key} is not cached, [] returned")
        self.model.hits += 1
        assert self.cache[key] == self.model.access(key)

    def _lookup_or_insert(self, key: int) -> None:
        value = self.cache.get(key)
        assert value == self.model.get(key)
        if value is None:
            self.cache[key] = key
            self.model.set(key, key)

    @rule(start=st.integers(0, 100), length=st.integers(1, 30))
    def scan(self, start: int, length: int) -> None:
        # A run of keys, most of them new: fills the cache and makes it evict.
        for key in range(start, start + length):
            self._lookup_or_insert(key)

    @rule(key=KEYS, times=st.integers(1, 12))
    def hot(self, key: int, times: int) -> None:
        # A key used again and again: warm enough to win duels (and the jitter).
        for _ in range(times):
            self._lookup_or_insert(key)

    @rule(key=KEYS, value=st.integers())
    def set(self, key: int, value: int) -> None:
        self.cache[key] = value
        self.model.set(key, value)

    @rule(key=KEYS)
    def contains_and_peek(self, key: int) -> None:
        found = self.model.find(key)
        assert (key in self.cache) == (found is not None)
        expected = None if found is None else found[0][found[1]][1]
        assert self.cache.peek(key) == expected

    @rule(key=KEYS)
    def pop(self, key: int) -> None:
        expected = self.model.remove(key) if self.model.find(key) is not None else "absent"
        assert self.cache.pop(key, "absent") == expected

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        if self.model.find(key) is None:
            try:
                del self.cache[key]
            except KeyError:
                return
            raise AssertionError(f"del of absent {key} did not raise")
        self.model.remove(key)
        del self.cache[key]

    @rule(key=KEYS, value=st.integers())
    def setdefault(self, key: int, value: int) -> None:
        if self.model.find(key) is not None:
            self.model.hits += 1
            expected = self.model.access(key)
        else:
            self.model.set(key, value)
            expected = value
        assert self.cache.setdefault(key, value) == expected

    @rule()
    def popitem(self) -> None:
        if self.model.size() == 0:
            try:
                self.cache.popitem()
            except KeyError:
                return
            raise AssertionError("popitem() of an empty cache did not raise")
        assert self.cache.popitem() == self.model.popitem()

    @invariant()
    def same_state(self) -> None:
        cache, model = self.cache, self.model
        assert list(cache._window.items()) == [tuple(i) for i in model.window]
        assert list(cache._probation.items()) == [tuple(i) for i in model.probation]
        assert list(cache._protected.items()) == [tuple(i) for i in model.protected]
        assert (cache.window_maxsize, cache._protected_max) == (
            model.window_max,
            model.protected_max,
        )
        assert cache._margin == model.margin
        assert list(cache._rejected) == model.rejected
        assert list(cache._evicted) == model.evicted
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (
            model.hits,
            model.misses,
            model.evictions,
        )
        assert len(cache) == cache.currsize == model.size() <= cache.maxsize
        # The climber and the shadow LRU have not reached their first sample
        # (so the window keeps its LRU order).
        assert cache._step == 0.0625 * cache.maxsize and cache._previous_hit_rate == 0.0
        assert not cache._window_fifo


TestTinyLFUMachine = TinyLFUMachine.TestCase
TestTinyLFUMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
