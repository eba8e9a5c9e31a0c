"""`Cache`'s shared behaviour: the cases mutation testing found the suite did not check.

Each test failed with a mutant of `base.py` (or found a bug: `copy.copy` of a
`SIEVECache` or `S3FIFOCache` subclass holding a lock tried to deep-copy the
lock) that passed the rest of the suite: `copy.copy` sharing what a subclass
adds, the eviction count of weighted writes, the error texts, `KeyError` of
an absent key, `get()` of a subclass overriding `__getitem__`, and
`getsizeof` sizes kept right when a value's `__del__` runs cache code in the
middle of a weighted write or `clear()`. Fast: a few entries each.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import (
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    RRCache,
    S3FIFOCache,
    SIEVECache,
    TTLCache,
)

CLASSES: list[tuple[type, dict[str, Any]]] = [
    (LRUCache, {}),
    (FIFOCache, {}),
    (LFUCache, {}),
    (RRCache, {}),
    (SIEVECache, {}),
    (S3FIFOCache, {}),
    (TTLCache, {"ttl": 60}),
]
IDS = ["LRU", "FIFO", "LFU", "RR", "SIEVE", "S3FIFO", "TTL"]


def _maker(cls: type, extra: dict[str, Any]) -> Callable[..., Any]:
    return lambda maxsize, **kw: cls(maxsize, **extra, **kw)


def _sizes_add_up(cache: Any) -> None:
    keys = list(cache)
    assert len(cache) == len(keys) == len(set(keys))
    assert cache.currsize == sum(len(cache.peek(key)) for key in keys) <= cache.maxsize


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_copy_shares_the_lock_and_dicts_a_subclass_adds(cls: type, extra: dict[str, Any]) -> None:
    # docs/caching.md: copy.copy shares any attribute a subclass adds (a lock, a
    # dict of its own); the entries, their order and the statistics are the copy's.
    guarded = type("Guarded", (cls,), {})
    cache = guarded(3, **extra)
    cache._lock = threading.Lock()
    cache._audit = {"writes": 0}
    cache.listeners = [print]
    cache["a"], cache["b"] = 1, 2
    clone = copy.copy(cache)
    assert clone._lock is cache._lock and clone._audit is cache._audit
    assert clone.listeners is cache.listeners
    clone["c"] = 3
    clone["d"] = 4  # evicts in the copy only
    assert sorted(cache) == ["a", "b"] and cache.stats().evictions == 0
    assert len(clone) == 3 and clone.stats().evictions == 1


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_weighted_writes_count_every_eviction(cls: type, extra: dict[str, Any]) -> None:
    make = _maker(cls, extra)
    cache = make(6, getsizeof=len)
    for key in "abcdef":
        cache[key] = "xx"  # each write past the third evicts one entry
    assert cache.stats().evictions == 3
    cache["big"] = "xxxxxx"  # evicts the other three
    assert cache.stats().evictions == 6 and list(cache) == ["big"]
    _sizes_add_up(cache)


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_error_texts_name_the_class_the_size_and_its_type(cls: type, extra: dict[str, Any]) -> None:
    make = _maker(cls, extra)
    empty = make(2)
    with pytest.raises(KeyError) as raised:
        empty.popitem()
    assert raised.value.args == (f"{type(empty).__name__} is empty",)
    with pytest.raises(KeyError) as raised:
        empty["absent"]
    assert raised.value.args == ("absent",)
    for size, kind in [("3", "str"), (-1, "int")]:
        cache = make(10, getsizeof=lambda value, size=size: size)
        with pytest.raises(ValueError) as error:
            cache["a"] = "v"
        assert str(error.value) == (
            f"getsizeof must return a non-negative number, got {size!r} ({kind}) for 'v'"
        )


def test_get_of_a_subclass_overriding_getitem_returns_the_default_for_an_absent_key() -> None:
    class Logged(LRUCache[Any, Any]):
        def __getitem__(self, key: Any) -> Any:
            return super().__getitem__(key)

    cache = Logged(4)
    cache[None] = "stored under None"
    cache["a"] = 1
    assert cache.get("absent", "default") == "default"
    assert cache.get("absent") is None
    assert cache.get("a") == 1 and cache.get(None) == "stored under None"


class _Releases:
    """A value of size `len(text)` whose `__del__` calls `action`."""

    def __init__(self, text: str, action: Callable[[], Any]) -> None:
        self.text = text
        self.action = action

    def __len__(self) -> int:
        return len(self.text)

    def __del__(self) -> None:
        self.action()


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_a_del_writing_another_key_during_a_weighted_eviction_keeps_sizes_right(
    cls: type, extra: dict[str, Any]
) -> None:
    make = _maker(cls, extra)
    cache = make(6, getsizeof=len)
    cache["a"] = _Releases("xx", lambda: cache.__setitem__("from_del", "y"))
    cache["b"] = "xx"
    cache["c"] = "xx"
    cache["d"] = "xxx"  # evicts until 3 units fit; "a"'s __del__ writes meanwhile
    assert "d" in cache
    _sizes_add_up(cache)
    for key in "efgh":
        cache[key] = "xx"
        _sizes_add_up(cache)


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_a_del_clearing_then_writing_during_clear_keeps_sizes_right(
    cls: type, extra: dict[str, Any]
) -> None:
    make = _maker(cls, extra)
    cache = make(6, getsizeof=len)

    def clear_then_write() -> None:
        cache.clear()
        cache["b"] = "yyy"

    cache["a"] = _Releases("xx", clear_then_write)
    cache["z"] = "x"
    cache.clear()
    assert (list(cache), cache.currsize) == (["b"], 3)
    _sizes_add_up(cache)
    del cache["b"]
    assert (len(cache), cache.currsize) == (0, 0)


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_a_values_del_writing_during_clear_leaves_a_whole_cache(
    cls: type, extra: dict[str, Any]
) -> None:
    # RRCache.clear() let go of the values before its key list was emptied: the
    # entry a __del__ wrote then had no place in it, and could not be deleted.
    cache = cls(4, **extra)
    cache["a"] = _Releases("x", lambda: cache.__setitem__("b", 1))
    cache["z"] = 0
    cache.clear()
    assert (len(cache), list(cache), cache.get("b")) == (1, ["b"], 1)
    del cache["b"]
    cache["c"] = 2
    assert cache.popitem() == ("c", 2)
    assert (len(cache), list(cache), cache.currsize) == (0, [], 0)


@pytest.mark.parametrize(("cls", "extra"), CLASSES, ids=IDS)
def test_items_view_membership_is_by_key_and_value_without_touching_the_policy(
    cls: type, extra: dict[str, Any]
) -> None:
    cache = cls(4, **extra)
    nan = float("nan")
    cache["a"], cache["b"], cache["n"] = 1, [2], nan
    items = cache.items()
    assert ("a", 1) in items and ("b", [2]) in items
    assert ("n", nan) in items  # the same object, though nan != nan
    assert ("a", 2) not in items and ("absent", 1) not in items
    assert "a" not in items and ("a",) not in items and ("a", 1, 1) not in items
    assert ["a", 1] not in items  # a pair is a tuple, as in dict.items()
    assert cache.stats().hits == cache.stats().misses == 0


def test_get_of_a_cache_subclass_overriding_getitem_counts_as_cache_get() -> None:
    # A policy built on Cache's own hooks, with a __getitem__ that logs reads.
    reads: list[Any] = []

    class Logged(Cache[Any, Any]):
        def __getitem__(self, key: Any) -> Any:
            reads.append(key)
            return super().__getitem__(key)

    cache = Logged(2)
    cache[None] = "stored under None"
    cache["a"] = 1
    assert cache.get("absent", "default") == "default" and cache.get("absent") is None
    assert cache.get("a") == 1 and cache.get(None) == "stored under None"
    assert reads == ["a", None]  # a present key is read through __getitem__
    assert cache.stats()[:2] == (2, 2)
