"""Drop-in compatibility with cachetools, asserted on scalekit's own terms.

tests/caching/test_cachetools_suite.py runs cachetools' own TestCases; this
module asserts what docs/caching.md says about compatibility, including the
deliberate differences that suite lists.
"""

from __future__ import annotations

import copy
import functools
import gc
import math
import pickle
import random
import threading
import weakref
from typing import Any

import cachetools
import cachetools.func
import pytest

import scalekit.caching as sk
from scalekit.caching import (
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    RRCache,
    TLRUCache,
    TTLCache,
    cachedmethod,
)
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from scalekit.testing import FakeClock
from tests.caching.caching_factories import FACTORIES, Factory

DROP_IN = ["LRU", "LFU", "FIFO", "RR", "TTL"]


def test_ttl_copy_is_independent_in_recency_order() -> None:
    # cachetools' test_ttl_copy, with scalekit's documented iteration order:
    # least recently used first (cachetools: insertion order).
    clock = FakeClock(0)
    source: TTLCache[int, int] = TTLCache(maxsize=3, ttl=2, timer=clock)
    source[1] = 1
    source[2] = 2
    clock.advance(1)
    source[3] = 3
    assert source[1] == 1  # the least recently used is now 2
    clone = copy.copy(source)
    assert [k for k in clone] == [2, 3, 1] == [k for k in source]
    clone[4] = 4  # evicts 2 in the copy only
    assert [k for k in clone] == [3, 1, 4] and [k for k in source] == [2, 3, 1]
    assert source.timer is not clone.timer
    with source.timer:
        clock.advance(1)
        assert source.timer() == 1 and clone.timer() == 2
    assert source.timer() == 2
    assert [k for k in clone] == [3, 4] and [k for k in source] == [3]


@pytest.mark.parametrize("policy", sorted(FACTORIES))
def test_copy_shares_extra_attributes_and_getsizeof(policy: str) -> None:
    base = type(FACTORIES[policy](1))
    make: Factory = FACTORIES[policy]

    class Locked(base):  # type: ignore[valid-type,misc]
        pass

    def getsizeof(value: Any) -> int:
        return 1

    source = make(4, getsizeof=getsizeof)
    source.__class__ = Locked
    source.lock = threading.Lock()  # cannot be pickled or deep-copied
    source.extra = {"hits": 0}
    source["a"], source["b"] = [1], [2]
    clone = copy.copy(source)
    assert type(clone) is Locked
    assert clone.lock is source.lock and clone.extra is source.extra
    assert clone.getsizeof is source.getsizeof is getsizeof
    assert clone["a"] is source["a"]
    clone["c"] = [3]
    del clone["a"]
    assert sorted(source) == ["a", "b"] and source.currsize == 2
    assert sorted(clone) == ["b", "c"] and clone.currsize == 2


class _WeightedLRU(LRUCache[str, str]):
    # A getsizeof override reading the instance's own state (module level: pickled).
    weight = 1

    def getsizeof(self, value: str) -> int:
        return self.weight * len(value)


def _policy_kwargs(policy: str) -> dict[str, Any]:
    if policy == "TTL":
        return {"ttl": 60, "timer": FakeClock()}
    if policy in ("RR", "TinyLFU"):
        return {"rng": random.Random(1)}
    return {}


@pytest.mark.parametrize("policy", sorted(FACTORIES))
def test_a_copy_sizes_with_its_own_getsizeof_override(policy: str) -> None:
    # cachetools calls `self.getsizeof`: a copy's override runs on the copy,
    # whose state may differ, and the copy holds no reference to its source.
    base = type(FACTORIES[policy](1))

    class Weighted(base):  # type: ignore[misc,valid-type]
        weight = 1

        def getsizeof(self, value: Any) -> Any:
            return self.weight * len(value)

    source = Weighted(100, **_policy_kwargs(policy))
    source["a"] = "xy"
    for clone in (copy.copy(source), copy.deepcopy(source)):
        clone.weight = 5
        clone["b"] = "xyz"
        assert clone.currsize == 2 + 15 and sorted(clone) == ["a", "b"]
    source["c"] = "x"
    assert source.currsize == 3 and sorted(source) == ["a", "c"]
    alive = weakref.ref(source)
    clone = copy.copy(source)
    del source
    gc.collect()
    assert alive() is None
    clone["d"] = "xyzw"
    assert clone.currsize == 3 + 4


def test_a_pickled_getsizeof_override_sizes_with_the_restored_instance() -> None:
    source = _WeightedLRU(100)
    source["a"] = "xy"
    restored = pickle.loads(pickle.dumps(source))
    restored.weight = 5
    restored["b"] = "xyz"
    assert restored.currsize == 2 + 15 and source.currsize == 2


def test_a_getsizeof_reassigned_on_the_instance_sizes_later_writes() -> None:
    # As in cachetools: `cache.getsizeof` is looked up at each write.
    cache: LRUCache[str, str] = LRUCache(100, getsizeof=len)
    cache["a"] = "x"
    cache.getsizeof = lambda value: 10  # type: ignore[method-assign]
    cache["b"] = "x"
    assert cache.currsize == 1 + 10


def test_a_getsizeof_set_on_a_cache_built_without_one_is_not_used_as_in_cachetools() -> None:
    # cachetools 8 decides at construction too: without getsizeof, unit sizes.
    for cache in (LRUCache(100), cachetools.LRUCache(100)):
        cache.getsizeof = lambda value: 10
        cache["a"] = "x"
        assert cache.currsize == 1, type(cache)


# Every class the docs name for iteration: the factories, the base and TLRU.
ITERATED: dict[str, Factory] = {
    **FACTORIES,
    "Cache": Cache,
    "TLRU": lambda maxsize, **kw: TLRUCache(
        maxsize, ttu=lambda key, value, now: now + 60, timer=FakeClock(), **kw
    ),
}


@pytest.mark.parametrize("policy", sorted(ITERATED))
def test_writing_present_keys_while_iterating(policy: str) -> None:
    cache = ITERATED[policy](3)
    cache.update({1: 1, 2: 2, 3: 3})
    seen = []
    for key in cache:
        seen.append(key)
        cache[key] = key * 10
    assert sorted(seen) == [1, 2, 3] and sorted(cache.values()) == [10, 20, 30]


@pytest.mark.parametrize("policy", sorted(ITERATED))
def test_iteration_runs_over_a_snapshot(policy: str) -> None:
    # docs/caching.md: keys added while iterating are not visited, keys
    # removed (deleted, popped or evicted) are skipped; cachetools raises.
    cache = ITERATED[policy](4)
    cache.update({1: 1, 2: 2, 3: 3, 4: 4})
    before = list(cache)
    seen = []
    for key in cache:
        seen.append(key)
        if len(seen) == 1:
            del cache[before[1]]
            cache.pop(before[2])
            cache[10], cache[11], cache[12] = 10, 11, 12  # the last write evicts
    assert seen == [before[0], *(k for k in before[1:] if k in cache)]
    assert len(seen) == len(set(seen)) and not {10, 11, 12} & set(seen)
    assert before[1] not in seen and before[2] not in seen


@pytest.mark.parametrize("policy", sorted(FACTORIES))
def test_popitem_on_empty_suppresses_the_context(policy: str) -> None:
    with pytest.raises(KeyError) as info:
        FACTORIES[policy](2).popitem()
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_lfu_missing_that_stores_counts_the_lookup_as_a_use() -> None:
    class Default(LFUCache[int, int]):
        def __missing__(self, key: int) -> int:
            self[key] = key
            return key

    cache = Default(2)
    assert cache[1] == 1  # stored by __missing__, then this lookup counts: 2 uses
    assert cache.frequency(1) == 2
    cache[2] = 2
    cache[3] = 3  # evicts 2 (1 use), not 1 (2 uses)
    assert sorted(cache) == [1, 3]


@pytest.mark.parametrize("cls", [LRUCache, LFUCache, FIFOCache, RRCache])
def test_cachetools_cached_reports_maxsize_and_currsize(cls: Any) -> None:
    cache = cls(maxsize=8)
    assert isinstance(cache, cachetools.Cache)

    @cachetools.cached(cache, info=True)
    def double(x: int) -> int:
        return 2 * x

    double(1), double(1), double(2)
    assert double.cache_info() == (1, 2, 8, 2)


def test_ttl_maxsize_inf_with_cachetools_cached() -> None:
    cache: TTLCache[Any, Any] = TTLCache(maxsize=math.inf, ttl=math.inf)

    @cachetools.cached(cache, info=True)
    def f(x: int) -> int:
        return x

    f(1)
    assert f.cache_info().maxsize == math.inf and f.cache_info().currsize == 1


class _Prices:
    def __init__(self) -> None:
        self.cache: LRUCache[Any, Any] = LRUCache(8)
        self.calls = 0

    @cachedmethod(lambda self: self.cache)
    def price(self, sku: str) -> int:
        self.calls += 1
        return len(sku)


class _Discounted(_Prices):
    def __init__(self) -> None:
        super().__init__()
        self.own: LRUCache[Any, Any] = LRUCache(8)

    @cachedmethod(lambda self: self.own)
    def price(self, sku: str) -> int:
        return super().price(sku) - 1


def test_cachedmethod_binds_like_a_method_and_shares_the_cache() -> None:
    # cachetools keeps each bound wrapper in the instance's __dict__; scalekit stores nothing there.
    shop = _Discounted()
    assert shop.price is not shop.price and "price" not in vars(shop)
    assert (shop.price("abc"), shop.price("abc"), shop.price("ab")) == (2, 2, 1)
    assert shop.calls == 2 and dict(shop.own) == {("abc",): 2, ("ab",): 1}
    assert dict(shop.cache) == {("abc",): 3, ("ab",): 2}  # the parent's cache, via super()
    for restored in (copy.deepcopy(shop), pickle.loads(pickle.dumps(shop))):
        assert restored.price("abc") == 2 and restored.calls == 2  # hits in the copied caches


def test_cachedmethod_works_without_an_instance_dict() -> None:
    # cachetools raises TypeError for __slots__ instances and read-only instance dicts.
    class Slots:
        __slots__ = ("cache", "calls")

        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(2)
            self.calls = 0

        @cachedmethod(lambda self: self.cache, info=True)
        def get(self, value: int) -> int:
            self.calls += 1
            return value * 2

    class ReadOnlyDict(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            raise TypeError("read-only")

    class ReadOnly:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(2)
            self.__dict__ = ReadOnlyDict(self.__dict__)

        @cachedmethod(lambda self: self.cache)
        def get(self, value: int) -> int:
            return value * 3

    slots = Slots()
    assert (slots.get(1), slots.get(1), slots.calls) == (2, 2, 1)
    # Not weakly referenceable, so not counted per instance: its cache's own stats.
    assert slots.get.cache_info()[:2] == (1, 1)
    frozen = ReadOnly()
    assert (frozen.get(1), frozen.get(1), dict(frozen.cache)) == (3, 3, {(1,): 3})


def test_cachedmethod_needs_no_attribute_name() -> None:
    # cachetools refuses one descriptor under two names, and one set after the class body.
    class Twice:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        def foo(self, x: int) -> int:
            return x + 1

        bar = foo

    class Late:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        def plain(self, x: int) -> int:
            return x + 2

    Late.cached = cachedmethod(lambda self: self.cache)(Late.plain)  # type: ignore[attr-defined]
    twice, late = Twice(), Late()
    assert (twice.foo(1), twice.bar(1), dict(twice.cache)) == (2, 2, {(1,): 2})
    assert (late.cached(1), dict(late.cache)) == (3, {(1,): 3})  # type: ignore[attr-defined]


def test_cachedmethod_refuses_a_bad_key_when_decorating() -> None:
    # cachetools accepts key=None and raises at the first call.
    with pytest.raises(ArgumentTypeError, match=r"key must be callable, got NoneType") as err:
        cachedmethod(lambda self: self.cache, key=None)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError)


FUNC_DECORATORS = [
    "lru_cache",
    "fifo_cache",
    "lfu_cache",
    "rr_cache",
    "ttl_cache",
    "sieve_cache",
    "s3fifo_cache",
    "tinylfu_cache",
]


@pytest.mark.parametrize("name", FUNC_DECORATORS)
def test_a_negative_maxsize_of_a_functools_style_decorator_is_refused_as_documented(
    name: str,
) -> None:
    # docs/caching.md's table of differences: functools.lru_cache takes a
    # negative maxsize as 0 (every call a miss); scalekit refuses it when
    # decorating, as cachetools.func does, naming the argument and the value.
    clamped = functools.lru_cache(maxsize=-1)(abs)
    clamped(1), clamped(1)
    assert clamped.cache_info() == (0, 2, 0, 0)  # the difference: functools caches nothing
    peer = getattr(cachetools.func, name, None)  # cachetools.func has five of the eight
    if peer is not None:
        with pytest.raises(ValueError, match="maxsize must be non-negative"):
            peer(maxsize=-1)
    with pytest.raises(ConfigurationError, match=r"maxsize must be a non-negative .* got -1$"):
        getattr(sk, name)(maxsize=-1)
    # maxsize=0 is the way to cache nothing, as in functools.
    nothing = getattr(sk, name)(maxsize=0)(abs)
    assert nothing(-2) == 2 and nothing(-2) == 2 and nothing.cache_info() == (0, 2, 0, 0)
