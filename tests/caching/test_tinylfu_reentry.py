"""TinyLFU writes that run a value's `__del__` which writes, deletes or clears the same cache.

A write releases the value it replaces, and an eviction or a delete the
value it removes; that value's `__del__` may use the cache. What a user
relies on, as with the other caches: the write or delete does not raise,
and the cache stays whole (its length is the number of keys it iterates,
each readable; with `getsizeof`, every entry has its size, `currsize` is
their sum and later writes evict as usual). Each case runs on the public
class and on the pure one (the same class when the extension is not
built). Fast: well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import TinyLFUCache

# The public class is the compiled twin, pure class second among its bases, when built.
_CLASSES = {"public": TinyLFUCache, "pure": TinyLFUCache.__mro__[2]}
if not _CLASSES["pure"].__module__.endswith(".tinylfu"):  # not built: one class
    _CLASSES["pure"] = TinyLFUCache


@pytest.fixture(params=sorted(_CLASSES))
def cls(request: pytest.FixtureRequest) -> Any:
    return _CLASSES[request.param]


def _unit(value: Any) -> int:
    return 1


def _assert_whole(cache: Any, maxsize: int) -> None:
    """The cache is whole, and later writes fill it to `maxsize` and evict as usual."""
    for n in range(2):
        walk = list(cache)
        assert len(walk) == len(cache)
        assert all(cache.peek(key, cache) is not cache for key in walk)
        if cache._sizes is not None:
            assert sorted(map(str, cache._sizes)) == sorted(map(str, walk))
            assert cache.currsize == sum(cache._sizes.values())
        if n == 0:
            for i in range(3 * maxsize):  # evicts every entry there was, sizes and all
                cache[f"later{i}"] = i
    assert cache.currsize == maxsize
    while cache:
        cache.popitem()
    assert cache.currsize == 0


def _releases(cache: Any, action: Callable[[Any], None]) -> Any:
    class Value:
        def __del__(self) -> None:
            action(cache)

    return Value()


@pytest.mark.parametrize("getsizeof", [None, _unit], ids=["unit", "weighted"])
def test_an_overwritten_value_whose_del_deletes_its_key(cls: Any, getsizeof: Any) -> None:
    # The old value is released once the write is done; its __del__ then deletes the
    # key, as with the other caches. The write raised KeyError (it went on moving a
    # key the __del__ had removed).
    cache = cls(4, getsizeof=getsizeof)
    cache["a"] = 1
    cache["k"] = _releases(cache, lambda c: c.__delitem__("k"))
    cache["z"] = 2
    cache["k"] = "new"
    assert "k" not in cache and sorted(cache) == ["a", "z"]
    _assert_whole(cache, 4)


@pytest.mark.parametrize("getsizeof", [None, _unit], ids=["unit", "weighted"])
def test_an_overwritten_value_whose_del_clears_the_cache(cls: Any, getsizeof: Any) -> None:
    cache = cls(4, getsizeof=getsizeof)
    cache["a"] = 1
    cache["k"] = _releases(cache, lambda c: c.clear())
    cache["k"] = "new"
    assert len(cache) == cache.currsize == 0
    _assert_whole(cache, 4)


def test_an_overwritten_value_whose_del_writes_another_key(cls: Any) -> None:
    # Weighted: the write from __del__ moves "k" out of the window; the outer
    # write raised KeyError (it went on with the segment "k" had left).
    cache = cls(10, getsizeof=lambda v: 3 if v == "big" else 1)
    cache["k"] = _releases(cache, lambda c: c.__setitem__("o", "big"))
    cache["k"] = "new"
    assert cache.peek("k") == "new" and cache.peek("o") == "big" and cache.currsize == 4
    _assert_whole(cache, 10)


def test_a_deleted_value_whose_del_writes_its_key_back_keeps_the_new_entry_size(
    cls: Any,
) -> None:
    # `del` releases the value before it forgets the key's size; the write from its
    # __del__ recorded a size that the delete then dropped: an entry without a size
    # (currsize 0 for one entry, and the next eviction of it raised KeyError).
    cache = cls(5, getsizeof=_unit)
    cache["k"] = _releases(cache, lambda c: c.__setitem__("k", 2))
    del cache["k"]
    assert list(cache.items()) == [("k", 2)] and cache.currsize == 1
    _assert_whole(cache, 5)


def _evicts_a(cache: Any) -> None:
    # maxsize 3: "c", read twice in the window, wins its duel with "a", probation's
    # least recent entry, when "d" pushes it out of the window; "a" is evicted.
    cache["b"] = 1
    cache["c"] = 1
    cache.get("c")
    cache.get("c")
    cache["d"] = 1


@pytest.mark.parametrize(
    "action",
    [lambda c: c.clear(), lambda c: c.__setitem__("a", 5), lambda c: c.__setitem__("z", 5)],
    ids=["clears", "writes-back", "writes-another"],
)
def test_an_evicted_value_whose_del_uses_the_cache(cls: Any, action: Any) -> None:
    # The eviction released the value before it forgot its size: clearing or writing
    # the key back from __del__ made the write raise KeyError.
    cache = cls(3, getsizeof=_unit)
    cache["a"] = _releases(cache, action)
    _evicts_a(cache)
    assert len(cache) <= 3
    _assert_whole(cache, 3)


def test_the_eviction_case_evicts_a(cls: Any) -> None:
    # The scenario above, with a plain value: "a" is the one evicted.
    cache = cls(3, getsizeof=_unit)
    cache["a"] = 1
    _evicts_a(cache)
    assert sorted(cache) == ["b", "c", "d"] and cache.stats().evictions == 1


def test_a_value_whose_del_writes_during_clear_keeps_its_size(cls: Any) -> None:
    # clear() holds the entries until the cache is empty and whole; the write from
    # a value's __del__ is counted as a re-entry, so its size is kept.
    cache = cls(20, getsizeof=lambda v: 2)
    cache["a"] = _releases(cache, lambda c: c.__setitem__("back", 1))
    cache.clear()
    assert list(cache.items()) == [("back", 1)] and cache.currsize == 2
    _assert_whole(cache, 20)


def test_a_getsizeof_that_writes_and_clears_the_cache(cls: Any) -> None:
    # getsizeof runs before the write touches the cache: what it does comes first.
    cache: Any = None

    def size(value: Any) -> int:
        if value == "clears":
            cache.clear()
        elif value == "writes":
            cache["inner"] = 1
        return 1

    cache = cls(4, getsizeof=size)
    cache["a"] = 1
    cache["x"] = "writes"
    assert sorted(cache) == ["a", "inner", "x"] and cache.currsize == 3
    cache["y"] = "clears"
    assert list(cache) == ["y"] and cache.currsize == 1
    _assert_whole(cache, 4)
