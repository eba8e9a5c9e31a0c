"""Hypothesis state machines: each policy against a trivially correct list/dict model.

Every machine drives the cache through `get`, `[]`, `in`, `peek`, `pop`,
`setdefault`, `popitem`, `del` and writes, and checks each answer, the
statistics and the set of keys against the model after every step.
Bounded by SETTINGS: about 15 s for the eight machines on one core.
"""

from __future__ import annotations

import random
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from scalekit.caching import (
    FIFOCache,
    LFUCache,
    LRUCache,
    RRCache,
    S3FIFOCache,
    SIEVECache,
    TTLCache,
)
from scalekit.testing import FakeClock

KEYS = st.integers(0, 9)
SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)


class ModelMixin:
    """`peek`, `pop` and `setdefault` in terms of each model's own primitives."""

    def keys(self) -> set[int]:
        raise NotImplementedError

    def get(self, key: int) -> Any:
        raise NotImplementedError

    def set(self, key: int, value: Any) -> None:
        raise NotImplementedError

    def peek(self, key: int) -> Any:
        raise NotImplementedError

    def delete(self, key: int) -> bool:
        raise NotImplementedError

    def pop(self, key: int) -> Any:
        value = self.peek(key)
        if value is not None:
            self.delete(key)
        return value

    def setdefault(self, key: int, default: Any) -> Any:
        live = self.keys()
        if key in live:
            return self.get(key)  # a read of a present key: a hit, as `[]`
        self.set(key, default)
        return default


class ListLRU(ModelMixin):
    """Oldest first; a read (LRU) or a write moves a key to the end."""

    move_on_read = True

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: list[list[Any]] = []

    def _find(self, key: int) -> int:
        return next((i for i, item in enumerate(self.items) if item[0] == key), -1)

    def peek(self, key: int) -> Any:
        i = self._find(key)
        return None if i < 0 else self.items[i][1]

    def get(self, key: int) -> Any:
        i = self._find(key)
        if i < 0:
            return None
        item = self.items[i]
        if self.move_on_read:
            self.items.append(self.items.pop(i))
        return item[1]

    def set(self, key: int, value: Any) -> None:
        i = self._find(key)
        if i >= 0:
            self.items.pop(i)
        elif len(self.items) >= self.maxsize:
            self.popitem()
        self.items.append([key, value])

    def delete(self, key: int) -> bool:
        i = self._find(key)
        if i < 0:
            return False
        self.items.pop(i)
        return True

    def popitem(self) -> tuple[int, Any]:
        key, value = self.items.pop(0)
        return key, value

    def keys(self) -> set[int]:
        return {item[0] for item in self.items}


class ListFIFO(ListLRU):
    move_on_read = False


class DictLFU(ModelMixin):
    """Counts and last-use ticks; the victim has the least (count, last use)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.entries: dict[int, list[Any]] = {}  # key -> [value, count, last_use]
        self.tick = 0

    def _use(self, entry: list[Any]) -> None:
        self.tick += 1
        entry[1] += 1
        entry[2] = self.tick

    def peek(self, key: int) -> Any:
        entry = self.entries.get(key)
        return None if entry is None else entry[0]

    def get(self, key: int) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self._use(entry)
        return entry[0]

    def set(self, key: int, value: Any) -> None:
        entry = self.entries.get(key)
        if entry is not None:
            entry[0] = value
            self._use(entry)
            return
        if len(self.entries) >= self.maxsize:
            self.popitem()
        self.tick += 1
        self.entries[key] = [value, 1, self.tick]

    def delete(self, key: int) -> bool:
        return self.entries.pop(key, None) is not None

    def popitem(self) -> tuple[int, Any]:
        key = min(self.entries, key=lambda k: (self.entries[k][1], self.entries[k][2]))
        return key, self.entries.pop(key)[0]

    def keys(self) -> set[int]:
        return set(self.entries)


class ListSIEVE(ModelMixin):
    """A list oldest first with visited bits and a hand index (None: start at the oldest)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: list[list[Any]] = []  # [key, value, visited]
        self.hand: int | None = None

    def _find(self, key: int) -> int:
        return next((i for i, item in enumerate(self.items) if item[0] == key), -1)

    def peek(self, key: int) -> Any:
        i = self._find(key)
        return None if i < 0 else self.items[i][1]

    def get(self, key: int) -> Any:
        i = self._find(key)
        if i < 0:
            return None
        self.items[i][2] = True
        return self.items[i][1]

    def set(self, key: int, value: Any) -> None:
        i = self._find(key)
        if i >= 0:
            self.items[i][1] = value
            self.items[i][2] = True
            return
        if len(self.items) >= self.maxsize:
            self.popitem()
        self.items.append([key, value, False])

    def _delete_at(self, j: int) -> None:
        if self.hand is not None:
            if j < self.hand:
                self.hand -= 1
            elif j == self.hand and j == len(self.items) - 1:
                self.hand = None
        self.items.pop(j)

    def delete(self, key: int) -> bool:
        j = self._find(key)
        if j < 0:
            return False
        self._delete_at(j)
        return True

    def popitem(self) -> tuple[int, Any]:
        i = 0 if self.hand is None else self.hand
        while self.items[i][2]:
            self.items[i][2] = False
            i = (i + 1) % len(self.items)
        key, value, _ = self.items[i]
        self.hand = i
        self._delete_at(i)
        return key, value

    def keys(self) -> set[int]:
        return {item[0] for item in self.items}


class PolicyMachine(RuleBasedStateMachine):
    cache_class: Any = None
    model_class: Any = None

    hits = 0
    misses = 0

    @initialize(maxsize=st.integers(1, 5))
    def create(self, maxsize: int) -> None:
        self.cache = self.cache_class(maxsize)
        self.model = self.model_class(maxsize)

    def _count(self, found: Any) -> None:
        if found is None:
            self.misses += 1
        else:
            self.hits += 1

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        expected = self.model.get(key)
        assert self.cache.get(key) == expected
        self._count(expected)

    @rule(key=KEYS)
    def getitem(self, key: int) -> None:
        expected = self.model.get(key)
        try:
            found = self.cache[key]
        except KeyError:
            assert expected is None
        else:
            assert found == expected
        self._count(expected)

    @rule(key=KEYS)
    def contains(self, key: int) -> None:
        live = self.model.keys()
        assert (key in self.cache) == (key in live)

    @rule(key=KEYS)
    def peek(self, key: int) -> None:
        assert self.cache.peek(key) == self.model.peek(key)

    @rule(key=KEYS)
    def pop(self, key: int) -> None:
        expected = self.model.pop(key)
        assert self.cache.pop(key, None) == expected

    @rule(key=KEYS, value=st.integers())
    def setdefault(self, key: int, value: int) -> None:
        live = self.model.keys()
        present = key in live
        expected = self.model.setdefault(key, (key, value))
        assert self.cache.setdefault(key, (key, value)) == expected
        if present:
            self.hits += 1

    @invariant()
    def stats_count_lookups(self) -> None:
        if hasattr(self, "cache"):
            stats = self.cache.stats()
            assert (stats.hits, stats.misses) == (self.hits, self.misses)

    @rule(key=KEYS, value=st.integers())
    def set(self, key: int, value: int) -> None:
        self.cache[key] = (key, value)
        self.model.set(key, (key, value))

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        present = self.model.delete(key)
        try:
            del self.cache[key]
        except KeyError:
            assert not present
        else:
            assert present

    @precondition(lambda self: len(self.model.keys()) > 0)
    @rule()
    def popitem(self) -> None:
        assert self.cache.popitem() == self.model.popitem()

    @invariant()
    def same_keys(self) -> None:
        if hasattr(self, "model"):
            assert set(self.cache) == self.model.keys()
            assert len(self.cache) == len(self.model.keys()) <= self.cache.maxsize


class LRUMachine(PolicyMachine):
    cache_class = LRUCache
    model_class = ListLRU


class FIFOMachine(PolicyMachine):
    cache_class = FIFOCache
    model_class = ListFIFO


class LFUMachine(PolicyMachine):
    cache_class = LFUCache
    model_class = DictLFU


class SIEVEMachine(PolicyMachine):
    cache_class = SIEVECache
    model_class = ListSIEVE


class DictTTL(ModelMixin):
    """LRU among live entries; an entry is live while now < expires.

    Expired entries stay stored (and count against nothing visible) until a
    write, `len()` or `popitem()` purges them, as in the cache.
    """

    def __init__(self, maxsize: int, clock: FakeClock, ttl: float) -> None:
        self.maxsize = maxsize
        self.clock = clock
        self.ttl = ttl
        self.entries: dict[int, list[Any]] = {}  # key -> [value, expires, last_use]
        self.tick = 0

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, e in self.entries.items() if e[1] <= now]:
            del self.entries[key]

    def get(self, key: int) -> Any:
        entry = self.entries.get(key)
        if entry is None or self.clock() >= entry[1]:
            return None
        self.tick += 1
        entry[2] = self.tick
        return entry[0]

    def peek(self, key: int) -> Any:
        entry = self.entries.get(key)
        return None if entry is None or self.clock() >= entry[1] else entry[0]

    def set(self, key: int, value: Any, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        self._expire()
        self.tick += 1
        if key not in self.entries and len(self.entries) >= self.maxsize:
            self.popitem()
        self.entries[key] = [value, self.clock() + ttl, self.tick]

    def delete(self, key: int) -> bool:
        entry = self.entries.pop(key, None)
        return entry is not None and self.clock() < entry[1]

    def popitem(self) -> tuple[int, Any]:
        self._expire()
        key = min(self.entries, key=lambda k: self.entries[k][2])
        return key, self.entries.pop(key)[0]

    def keys(self) -> set[int]:
        now = self.clock()
        return {k for k, e in self.entries.items() if now < e[1]}


class TTLMachine(PolicyMachine):
    @initialize(maxsize=st.integers(1, 5), ttl=st.integers(1, 5))
    def create(self, maxsize: int, ttl: int) -> None:  # type: ignore[override]
        self.clock = FakeClock()
        self.ttl = ttl
        self.cache = TTLCache(maxsize, ttl=ttl, timer=self.clock)
        self.model = DictTTL(maxsize, self.clock, ttl)

    @rule(key=KEYS, value=st.integers())
    def set(self, key: int, value: int) -> None:
        self.cache[key] = (key, value)
        self.model.set(key, (key, value), self.ttl)

    @rule(key=KEYS, value=st.integers(), ttl=st.integers(1, 8))
    def set_with_ttl(self, key: int, value: int, ttl: int) -> None:
        self.cache.set(key, (key, value), ttl=ttl)
        self.model.set(key, (key, value), ttl)

    @rule(seconds=st.integers(0, 4))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: len(self.model.keys()) > 0)
    @rule()
    def popitem(self) -> None:
        assert self.cache.popitem() == self.model.popitem()

    @invariant()
    def same_keys(self) -> None:
        # No len() here: it purges, and entries expired but still stored must
        # stay observable to the rules (del, pop, expire, writes) that follow.
        if hasattr(self, "model"):
            live = self.model.keys()
            by_use = sorted(self.model.entries, key=lambda k: self.model.entries[k][2])
            assert [k for k in self.cache] == [k for k in by_use if k in live]
            assert len(self.cache._data) == len(self.model.entries) <= self.cache.maxsize

    @rule()
    def length(self) -> None:
        self.model._expire()  # len() drops expired entries, as in cachetools
        assert len(self.cache) == len(self.model.entries) == len(self.model.keys())

    @rule()
    def expire(self) -> None:
        now = self.clock()
        expired = {k for k, e in self.model.entries.items() if e[1] <= now}
        assert {k for k, _ in self.cache.expire()} == expired
        self.model._expire()


class ListRR(ModelMixin):
    """Keys in a list with swap-remove; the victim is `rng.choice(keys)` (cachetools' rule)."""

    def __init__(self, maxsize: int, rng: random.Random) -> None:
        self.maxsize = maxsize
        self.rng = rng
        self.keys_list: list[int] = []
        self.values: dict[int, Any] = {}

    def get(self, key: int) -> Any:
        return self.values.get(key)

    peek = get

    def set(self, key: int, value: Any) -> None:
        if key not in self.values:
            if len(self.values) >= self.maxsize:
                self.popitem()
            self.keys_list.append(key)
        self.values[key] = value

    def delete(self, key: int) -> bool:
        if key not in self.values:
            return False
        del self.values[key]
        i = self.keys_list.index(key)
        last = self.keys_list.pop()
        if i < len(self.keys_list):
            self.keys_list[i] = last
        return True

    def popitem(self) -> tuple[int, Any]:
        key = self.rng.choice(self.keys_list)
        value = self.values[key]
        self.delete(key)
        return key, value

    def keys(self) -> set[int]:
        return set(self.values)


class RRMachine(PolicyMachine):
    @initialize(maxsize=st.integers(1, 5), seed=st.integers(0, 2**32))
    def create(self, maxsize: int, seed: int) -> None:  # type: ignore[override]
        self.cache = RRCache(maxsize, rng=random.Random(seed))
        self.model = ListRR(maxsize, random.Random(seed))


class ListS3FIFO(ModelMixin):
    """S3-FIFO (Yang et al., SOSP 2023) as libCacheSim runs it, with lists and unit sizes.

    A new key enters the small FIFO (10% of maxsize), or the main FIFO if it
    is in the ghost FIFO (90%) or the small one is full before the first
    eviction; a read adds one to its frequency, capped at 3. To evict: from
    main while main is over its share or small is empty (a key with
    frequency > 0 goes back to main's tail with frequency - 1), otherwise
    from small (frequency >= 2 moves to main with frequency 0; else the key
    is evicted and remembered in the ghost).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.small_cap = int(maxsize * 0.1)
        self.main_cap = maxsize - self.small_cap
        self.ghost_cap = int(maxsize * 0.9)
        self.small: list[int] = []
        self.main: list[int] = []
        self.ghost: list[int] = []
        self.values: dict[int, list[Any]] = {}  # key -> [value, frequency]
        self.has_evicted = False

    def peek(self, key: int) -> Any:
        entry = self.values.get(key)
        return None if entry is None else entry[0]

    def get(self, key: int) -> Any:
        entry = self.values.get(key)
        if entry is None:
            return None
        entry[1] = min(entry[1] + 1, 3)
        return entry[0]

    def set(self, key: int, value: Any) -> None:
        entry = self.values.get(key)
        if entry is not None:
            entry[0] = value
            entry[1] = min(entry[1] + 1, 3)
            return
        ghost_hit = key in self.ghost
        if ghost_hit:
            self.ghost.remove(key)
        while len(self.values) >= self.maxsize:
            self.popitem()
        full = not self.has_evicted and len(self.small) >= self.small_cap
        if ghost_hit or self.small_cap <= 1 or full:
            self.main.append(key)
        else:
            self.small.append(key)
        self.values[key] = [value, 0]

    def delete(self, key: int) -> bool:
        if key not in self.values:
            return False
        del self.values[key]
        (self.small if key in self.small else self.main).remove(key)
        return True

    def _victim(self) -> int:
        self.has_evicted = True
        while True:
            if len(self.main) > self.main_cap or not self.small:
                while True:
                    key = self.main[0]
                    if self.values[key][1] < 1:
                        return key
                    self.main.append(self.main.pop(0))
                    self.values[key][1] -= 1
            while self.small:
                key = self.small[0]
                if self.values[key][1] >= 2:
                    self.main.append(self.small.pop(0))
                    self.values[key][1] = 0
                    continue
                if self.ghost_cap > 0 and key not in self.ghost:
                    if len(self.ghost) >= self.ghost_cap:
                        self.ghost.pop(0)
                    self.ghost.append(key)
                return key

    def popitem(self) -> tuple[int, Any]:
        key = self._victim()
        value = self.values[key][0]
        self.delete(key)
        return key, value

    def keys(self) -> set[int]:
        return set(self.values)


class S3FIFOMachine(PolicyMachine):
    # Large enough for a small queue of 2 to 4 and a ghost; keys that overflow it.
    @initialize(maxsize=st.integers(20, 40))
    def create(self, maxsize: int) -> None:  # type: ignore[override]
        self.cache = S3FIFOCache(maxsize)
        self.model = ListS3FIFO(maxsize)

    @rule(key=st.integers(0, 80), value=st.integers())
    def set_wide(self, key: int, value: int) -> None:
        self.cache[key] = (key, value)
        self.model.set(key, (key, value))

    @rule(key=st.integers(0, 80))
    def get_wide(self, key: int) -> None:
        self.get(key)


TestLRU = LRUMachine.TestCase
TestFIFO = FIFOMachine.TestCase
TestLFU = LFUMachine.TestCase
TestSIEVE = SIEVEMachine.TestCase
TestTTL = TTLMachine.TestCase
TestRR = RRMachine.TestCase
TestS3FIFO = S3FIFOMachine.TestCase
for _case in (TestLRU, TestFIFO, TestLFU, TestSIEVE, TestTTL, TestRR, TestS3FIFO):
    _case.settings = SETTINGS


def test_s3fifo_frequency_caps_at_three() -> None:
    # maxsize 10: a small queue of 1, so every key enters main (size >= its share).
    # Key 0, read 10 times (frequency capped at 3), survives three sweeps of
    # main: 9 evictions each; the 28th new key evicts it.
    cache: S3FIFOCache[int, int] = S3FIFOCache(10)
    model = ListS3FIFO(10)
    for key in range(10):
        cache[key] = key
        model.set(key, key)
    for _ in range(10):
        assert cache.get(0) == model.get(0) == 0
    evicted_at = None
    for i in range(40):
        cache[100 + i] = i
        model.set(100 + i, i)
        assert set(cache) == model.keys()
        if evicted_at is None and 0 not in cache:
            evicted_at = i
    assert evicted_at == 27
