"""The contract every scalekit cache honours: one parametrized suite for all policies."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from scalekit.caching import Cache
from scalekit.caching.base import MISSING
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from tests.caching.caching_factories import ADMISSION_POLICIES, FACTORIES, Factory


@pytest.mark.parametrize("bad", [True, False, "3", None, b"3", 3j])
def test_a_bool_or_non_number_maxsize_is_a_configuration_error(make: Factory, bad: Any) -> None:
    # A ConfigurationError (a ValueError), as the migration from cachetools
    # promises, that is also an ArgumentTypeError (a TypeError), as every other
    # wrong type in scalekit is: either except clause catches it.
    with pytest.raises(ConfigurationError, match=r"maxsize must be a non-negative whole") as err:
        make(bad)
    assert isinstance(err.value, ArgumentTypeError) and isinstance(err.value, ValueError)
    assert isinstance(err.value, TypeError) and repr(bad) in str(err.value)


@pytest.mark.parametrize(
    "bad", [-1, -math.inf, math.nan, -1.0, Decimal("NaN"), Decimal(-2), Fraction(-1, 2)]
)
def test_a_negative_or_nan_maxsize_is_a_configuration_error(make: Factory, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"maxsize must be a non-negative whole") as err:
        make(bad)
    assert not isinstance(err.value, TypeError)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(1e6, 10**6), (10.0, 10), (0.0, 0), (Decimal(3), 3), (Fraction(6, 2), 3), (1e300, int(1e300))],
    ids=["1e6", "10.0", "0.0", "Decimal(3)", "Fraction(6,2)", "1e300"],
)
def test_a_whole_number_maxsize_of_any_real_type_is_accepted(
    make: Factory, given: Any, expected: int
) -> None:
    # cachetools takes any number: `LRUCache(1e6)` from a settings file must not
    # refuse to start after swapping the import.
    cache = make(given)
    assert cache.maxsize == expected and type(cache.maxsize) is int
    if expected == 0:
        with pytest.raises(ValueError, match="value too large"):
            cache["a"] = 1
        return
    cache.update((i, i) for i in range(min(expected, 50) + 3))
    assert len(cache) == min(expected, 53)


@pytest.mark.parametrize("given", [2.5, Fraction(5, 2), Decimal("2.5"), 1e-9])
def test_a_fractional_maxsize_is_refused_as_a_documented_difference(
    make: Factory, given: Any
) -> None:
    # A deliberate difference (docs/caching.md): capacities are whole units here.
    with pytest.raises(ConfigurationError, match=r"whole number.*fractional part") as err:
        make(given)
    assert not isinstance(err.value, TypeError)


# TinyLFU sizes its sketch by maxsize, so it needs a positive finite one.
UNBOUNDED_OK = sorted(set(FACTORIES) - {"TinyLFU"})


@pytest.mark.parametrize("policy", UNBOUNDED_OK)
def test_maxsize_zero_stores_nothing(policy: str) -> None:
    cache = FACTORIES[policy](0)
    assert cache.maxsize == 0
    with pytest.raises(ValueError, match="value too large"):
        cache["a"] = 1
    sized = FACTORIES[policy](0, getsizeof=len)
    with pytest.raises(ValueError, match="value too large"):
        sized["a"] = "x"
    assert len(cache) == 0 and cache.currsize == 0 and len(sized) == 0 and sized.currsize == 0


@pytest.mark.parametrize("policy", UNBOUNDED_OK)
def test_maxsize_inf_is_unbounded(policy: str) -> None:
    cache = FACTORIES[policy](math.inf)
    cache.update((i, i) for i in range(1000))
    assert cache.maxsize == math.inf and len(cache) == 1000 and cache.currsize == 1000
    assert cache.stats().evictions == 0
    sized = FACTORIES[policy](math.inf, getsizeof=len)
    sized.update((i, "x" * i) for i in range(100))
    assert len(sized) == 100 and sized.currsize == sum(range(100))


def test_basic_mapping(make: Factory) -> None:
    cache = make(10)
    assert len(cache) == 0 and cache.currsize == 0 and cache.maxsize == 10
    cache[1] = "one"
    cache[2] = "two"
    assert cache[1] == "one" and cache.get(2) == "two" and cache.get(3) is None
    assert cache.get(3, "dflt") == "dflt"
    assert 1 in cache and 3 not in cache
    assert sorted(cache) == [1, 2] and len(cache) == 2 and cache.currsize == 2
    cache[1] = "uno"
    assert cache[1] == "uno" and len(cache) == 2
    del cache[1]
    assert 1 not in cache and len(cache) == 1
    with pytest.raises(KeyError):
        del cache[1]
    with pytest.raises(KeyError):
        cache[1]
    assert cache.pop(2) == "two" and cache.pop(2, "gone") == "gone"
    with pytest.raises(KeyError):
        cache.pop(2)
    assert cache.setdefault(5, "five") == "five" and cache.setdefault(5, "x") == "five"
    cache.clear()
    assert len(cache) == 0 and cache.currsize == 0 and list(cache) == []
    assert type(cache).__name__ in repr(cache)


def test_never_exceeds_maxsize_and_keeps_the_latest_write(make: Factory, policy: str) -> None:
    cache = make(7)
    for i in range(200):
        cache[i % 31] = i
        if policy not in ADMISSION_POLICIES:
            assert cache[i % 31] == i
        assert len(cache) <= 7 and cache.currsize == len(cache)
    for key in list(cache):
        assert cache.peek(key) % 31 == key  # values belong to their keys


def test_popitem_removes_entries_until_empty(make: Factory) -> None:
    cache = make(5)
    for i in range(5):
        cache[i] = i * 10
    seen = set()
    while cache:
        key, value = cache.popitem()
        assert value == key * 10 and key not in cache
        seen.add(key)
    assert seen == set(range(5))
    with pytest.raises(KeyError, match="is empty"):
        cache.popitem()


@pytest.mark.parametrize(
    "policy",
    # An admission policy (TinyLFU) evicts the loser of a duel, not through popitem().
    sorted(set(FACTORIES) - ADMISSION_POLICIES),
)
def test_eviction_goes_through_popitem(policy: str) -> None:
    make = FACTORIES[policy]
    evicted: list[Any] = []
    base = type(make(1))

    class Observed(base):  # type: ignore[valid-type, misc]
        def popitem(self) -> Any:
            item = super().popitem()
            evicted.append(item)
            return item

    cache = make(3)
    cache.__class__ = Observed
    for i in range(10):
        cache[i] = i
    assert len(evicted) == 7 and len(cache) == 3
    assert cache.stats().evictions == 7
    assert {k for k, _ in evicted}.isdisjoint(set(cache))


def test_stats_count_get_and_getitem(make: Factory) -> None:
    cache = make(10)
    cache["a"] = 1
    assert cache.get("a") == 1
    assert cache["a"] == 1
    assert cache.get("b") is None
    with pytest.raises(KeyError):
        cache["b"]
    assert "a" in cache and cache.peek("a") == 1  # neither counts
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.hit_ratio) == (2, 2, 0.5)
    for i in range(30):
        cache[i] = i
    assert cache.stats().evictions == 21
    cache.reset_stats()
    assert cache.stats() == (0, 0, 0, 0.0)


def test_unhashable_keys_raise_type_error_like_dict(make: Factory) -> None:
    cache = make(4)
    for op in (lambda: cache[[1]], lambda: cache.get([1]), lambda: [1] in cache):
        with pytest.raises(TypeError, match="unhashable"):
            op()
    with pytest.raises(TypeError, match="unhashable"):
        cache[[1]] = 1
    assert len(cache) == 0


def test_getsizeof_bounds_the_total_size(make: Factory, policy: str) -> None:
    cache = make(10, getsizeof=len)
    cache["a"] = "xxxx"
    cache["b"] = "yyyy"
    assert cache.currsize == 8 and cache.getsizeof("zzz") == 3
    with pytest.raises(ValueError, match="value too large"):
        cache["c"] = "z" * 11
    assert "c" not in cache and cache.currsize == 8
    for i in range(50):
        cache[i % 13] = "v" * (i % 5)
        assert cache.currsize == sum(len(cache.peek(k)) for k in cache) <= 10
    cache["a"] = "1234567890"
    if policy not in ADMISSION_POLICIES:
        assert cache.currsize == 10 and list(cache) == ["a"]


def test_negative_getsizeof_is_a_configuration_error(make: Factory) -> None:
    cache = make(10, getsizeof=lambda value: -1)
    with pytest.raises(ConfigurationError, match="getsizeof must return a non-negative number"):
        cache["a"] = 1
    assert len(cache) == 0 and cache.currsize == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [(math.nan, ConfigurationError), (True, ArgumentTypeError), ("1", ArgumentTypeError),
     (None, ArgumentTypeError)],
)  # fmt: skip
def test_getsizeof_must_return_a_number(make: Factory, bad: Any, error: type[Exception]) -> None:
    cache = make(10, getsizeof=lambda value: bad)
    with pytest.raises(error, match="getsizeof must return a non-negative number"):
        cache["a"] = 1
    assert len(cache) == 0


def test_float_sizes_add_up(make: Factory, policy: str) -> None:
    cache = make(10, getsizeof=lambda value: value / 4)
    cache["a"], cache["b"] = 10, 20  # 2.5 + 5.0
    assert cache.currsize == 7.5
    cache["c"] = 8  # 2.0 more: 9.5 fits
    if policy not in ADMISSION_POLICIES:
        assert sorted(cache) == ["a", "b", "c"] and cache.currsize == 9.5
    del cache["b"]
    assert cache.currsize == (4.5 if "c" in cache else 2.5)


def test_missing_hook_computes_values(make: Factory) -> None:
    base = type(make(1))

    class Squares(base):  # type: ignore[valid-type, misc]
        def __missing__(self, key: int) -> int:
            self[key] = key * key
            return key * key

    cache = make(5)
    cache.__class__ = Squares
    assert cache[4] == 16 and 4 in cache and cache.get(5) is None


def test_is_a_cache_and_mutable_mapping(make: Factory) -> None:
    from collections.abc import MutableMapping

    cache = make(3)
    assert isinstance(cache, Cache) and isinstance(cache, MutableMapping)
    cache.update({1: 1, 2: 2})
    assert dict(cache.items()) == {1: 1, 2: 2}


def test_copy_is_independent_and_keeps_the_policy(make: Factory, policy: str) -> None:
    import copy

    cache = make(4)
    value = ["shared"]
    for i in range(4):
        cache[i] = value
    cache.get(0)
    clone = copy.copy(cache)
    assert dict(clone.items()) == dict(cache.items()) and clone.stats() == cache.stats()
    assert clone.peek(1) is value  # values are shared, not copied
    for i in range(10, 14):
        cache[i] = i
        clone[i] = i
    if policy != "RR":  # RR's clone shares its choice function, hence its random stream
        assert set(clone) == set(cache)  # same policy state, same decisions
    del cache[13]
    assert 13 in clone and 13 not in cache


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_large_cache_copies_and_pickles_without_deep_recursion(
    make: Factory, policy: str, how: str
) -> None:
    """Linked policy state (SIEVE's queue, LFU's buckets) must not recurse per entry."""
    import copy
    import pickle
    import random

    cache = make(5000)
    rng = random.Random(3)
    for _ in range(20_000):
        key = rng.randrange(8000)
        if cache.get(key) is None:
            cache[key] = key
    clone = {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda c: pickle.loads(pickle.dumps(c)),
    }[how](cache)
    assert list(clone) == list(cache)
    assert dict(clone.items()) == dict(cache.items())
    if policy == "RR":
        return  # a copy draws its own random victims
    for _ in range(3000):  # the same policy state makes the same decisions
        key = rng.randrange(8000)
        found = cache.get(key)
        assert clone.get(key) == found
        if found is None:
            cache[key] = clone[key] = key
    assert list(clone) == list(cache)


class _DictFIFO(Cache[Any, Any]):
    """The smallest policy a user can write on the base: a dict, oldest first."""

    def __init__(self, maxsize: Any, getsizeof: Any = None) -> None:
        super().__init__(maxsize, getsizeof)
        self._data: dict[Any, Any] = {}

    def _touch(self, key: Any) -> Any:
        return self._data.get(key, MISSING)

    _peek = _touch

    def _update(self, key: Any, value: Any) -> bool:
        if key not in self._data:
            return False
        self._data[key] = value
        return True

    def _insert(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def _remove(self, key: Any) -> Any:
        return self._data.pop(key)

    def _victim(self) -> Any:
        return next(iter(self._data))

    def _clear(self) -> None:
        self._data.clear()


@pytest.mark.parametrize("sized", [False, True], ids=["unit", "getsizeof"])
def test_a_policy_written_on_the_base_gets_the_whole_api(sized: bool) -> None:
    cache = _DictFIFO(2, getsizeof=(lambda v: 1) if sized else None)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1 and cache.get("x") is None and cache.get("x", 0) == 0
    assert cache["b"] == 2 and cache.peek("a") == 1 and "a" in cache
    with pytest.raises(KeyError):
        cache["x"]
    assert cache.stats()[:3] == (2, 3, 0)
    cache["c"] = 3  # evicts "a", the oldest
    assert sorted(cache) == ["b", "c"] and cache.stats().evictions == 1
    assert cache.setdefault("b", 9) == 2 and cache.pop("b") == 2 and cache.pop("b", 0) == 0
    assert cache.popitem() == ("c", 3) and len(cache) == 0 and cache.currsize == 0
    with pytest.raises(KeyError):
        cache.popitem()


def test_the_lru_touch_hook_records_recency_for_the_base_read_paths() -> None:
    # `LRUCache` inlines its own reads; `_touch` is the policy hook the base
    # `Cache.get` and `Cache.__getitem__` use (a subclass reading through them).
    from scalekit.caching import LRUCache
    from scalekit.caching.base import Cache

    for read in (lambda c, k: Cache.get(c, k), lambda c, k: Cache.__getitem__(c, k)):
        cache = LRUCache(2)
        cache[1] = "a"
        cache[2] = "b"
        assert read(cache, 1) == "a"
        cache[3] = "c"
        assert sorted(cache) == [1, 3]  # 2, not the key just read, was evicted


def test_writing_present_keys_while_iterating_visits_each_key_once(make: Factory) -> None:
    # As in cachetools: the loop runs over a snapshot, even when a write moves the key
    # (to the end of a queue, or from one segment to another).
    cache = make(10)
    for n in range(10):
        cache[n] = n
    for _ in range(2):
        for n in range(10):
            cache.get(n)
    before = list(cache)
    seen = []
    for key in cache:
        seen.append(key)
        cache[key] = -1
    assert sorted(seen) == sorted(before) and len(seen) == len(before)
    assert all(cache.peek(key) == -1 for key in cache)
