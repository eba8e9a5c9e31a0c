"""Hypothesis state machines: each policy against a trivially correct list/dict model."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from scalekit.caching import FIFOCache, LFUCache, LRUCache, SIEVECache, TTLCache
from scalekit.testing import FakeClock

KEYS = st.integers(0, 9)
SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)


class ListLRU:
    """Oldest first; a read (LRU) or a write moves a key to the end."""

    move_on_read = True

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: list[list[Any]] = []

    def _find(self, key: int) -> int:
        return next((i for i, item in enumerate(self.items) if item[0] == key), -1)

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


class DictLFU:
    """Counts and last-use ticks; the victim has the least (count, last use)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.entries: dict[int, list[Any]] = {}  # key -> [value, count, last_use]
        self.tick = 0

    def _use(self, entry: list[Any]) -> None:
        self.tick += 1
        entry[1] += 1
        entry[2] = self.tick

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


class ListSIEVE:
    """A list oldest first with visited bits and a hand index (None: start at the oldest)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: list[list[Any]] = []  # [key, value, visited]
        self.hand: int | None = None

    def _find(self, key: int) -> int:
        return next((i for i, item in enumerate(self.items) if item[0] == key), -1)

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

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        expected = self.model.get(key)
        assert self.cache.get(key) == expected
        if expected is None:
            self.misses += 1
        else:
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


class DictTTL:
    """LRU among live entries; an entry is live while now < expires."""

    def __init__(self, maxsize: int, clock: FakeClock) -> None:
        self.maxsize = maxsize
        self.clock = clock
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

    def set(self, key: int, value: Any, ttl: float) -> None:
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
        self.model = DictTTL(maxsize, self.clock)

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
        if hasattr(self, "model"):
            assert set(self.cache) == self.model.keys()
            assert len(self.cache) == len(self.model.keys()) <= self.cache.maxsize
            self.model._expire()  # len() drops expired entries, as in cachetools

    @rule()
    def expire(self) -> None:
        now = self.clock()
        expired = {k for k, e in self.model.entries.items() if e[1] <= now}
        assert {k for k, _ in self.cache.expire()} == expired
        self.model._expire()


TestLRU = LRUMachine.TestCase
TestFIFO = FIFOMachine.TestCase
TestLFU = LFUMachine.TestCase
TestSIEVE = SIEVEMachine.TestCase
TestTTL = TTLMachine.TestCase
for _case in (TestLRU, TestFIFO, TestLFU, TestSIEVE, TestTTL):
    _case.settings = SETTINGS
