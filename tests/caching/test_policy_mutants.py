"""LRU, FIFO, LFU and SIEVE: the cases mutation testing found the suite did not check.

Each test here failed with a mutant of `_ordered.py`, `lfu.py` or `sieve.py`
that passed the rest of the suite: a value's `__del__` that writes or
deletes in the cache while a write or `clear()` lets go of it (released only
once the cache is whole, docs/caching.md "Compiled hot paths"; the child
processes of `test_compiled.py` run the same cases, which in-process tests
reach for the pure classes too), `LFUCache.frequency` of an absent key,
`copy.deepcopy` of an `LFUCache` whose keys are shared with other copied
objects, and the `KeyError` of a tuple key. Fast: a few entries each.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import FIFOCache, LFUCache, LRUCache, SIEVECache

CLASSES = [LRUCache, FIFOCache, LFUCache, SIEVECache]
SIZED = [None, lambda value: 1]  # unit sizes, and the same through the weighted path


class _Releases:
    """A value whose `__del__` calls `action`: it runs when the cache lets go of it."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def __del__(self) -> None:
        self.action()


def _whole(cache: Any) -> None:
    keys = list(cache)
    assert len(cache) == len(keys) == len(set(keys)) <= cache.maxsize
    assert [cache.peek(key, "absent") for key in keys] == [v for _, v in cache.items()]
    assert cache.currsize == len(keys)


@pytest.mark.parametrize("getsizeof", SIZED, ids=["unit", "sized"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_values_del_writing_the_key_being_inserted_leaves_the_outer_write(
    cls: type, getsizeof: Any
) -> None:
    # Writing "new" evicts "a", whose value's __del__ writes "new" as well: the
    # outer write is then an update of the entry the __del__ made.
    cache = cls(2, getsizeof=getsizeof)
    cache["a"] = _Releases(lambda: cache.__setitem__("new", "from __del__"))
    cache["b"] = 2
    cache["new"] = "outer"
    assert cache.peek("new") == "outer"
    assert "a" not in cache
    _whole(cache)
    if cls is LFUCache:
        assert cache.frequency("new") == 2  # the write from __del__, then the update
    for i in range(6):
        cache[f"k{i}"] = i
        _whole(cache)
    # LFU keeps "new", used twice, over the keys written once.
    assert sorted(cache) == (["k5", "new"] if cls is LFUCache else ["k4", "k5"])


def test_a_sieve_write_the_eviction_turned_into_an_update_counts_as_a_visit() -> None:
    # The eviction for "new" lets go of "a", whose __del__ writes "new"; the cache
    # is full again, so "b" goes too, and the outer write updates "new". An update
    # sets the visited bit (as a hit does), so the next eviction spares "new" once.
    cache = SIEVECache(2)
    cache["a"] = _Releases(lambda: cache.__setitem__("new", "from __del__"))
    cache["b"] = 2
    cache["new"] = "outer"
    assert list(cache.items()) == [("new", "outer")]
    cache["k0"] = 0
    cache["k1"] = 1  # the hand clears "new"'s bit and evicts "k0"
    assert sorted(cache) == ["k1", "new"]


@pytest.mark.parametrize("getsizeof", SIZED, ids=["unit", "sized"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_values_del_deleting_its_overwritten_key_finds_the_write_done(
    cls: type, getsizeof: Any
) -> None:
    # The old value is let go only after the write is done: its __del__ then
    # deletes the key, and the cache holds the other two entries.
    cache = cls(4, getsizeof=getsizeof)
    cache["a"] = 1
    cache["k"] = _Releases(lambda: cache.__delitem__("k"))
    cache["z"] = 2
    cache["k"] = "new"
    assert "k" not in cache
    assert sorted(cache) == ["a", "z"]
    _whole(cache)
    for i in range(10):
        cache[f"x{i}"] = i
    assert sorted(cache) == ["x6", "x7", "x8", "x9"]
    _whole(cache)


@pytest.mark.parametrize("getsizeof", SIZED, ids=["unit", "sized"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_values_del_writing_during_clear_makes_the_only_entry(cls: type, getsizeof: Any) -> None:
    cache = cls(4, getsizeof=getsizeof)
    seen: list[Any] = []

    def write() -> None:
        seen.append((len(cache), list(cache)))  # the cache it finds is empty and whole
        cache["b"] = 1

    cache["a"] = _Releases(write)
    cache["z"] = 0
    cache.clear()
    assert seen == [(0, [])]
    assert (len(cache), list(cache), cache.get("b")) == (1, ["b"], 1)
    _whole(cache)
    assert cache.popitem() == ("b", 1)
    assert (len(cache), list(cache), cache.currsize) == (0, [], 0)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_missing_tuple_key_raises_key_error_with_the_key_as_dict_does(cls: type) -> None:
    cache = cls(2)
    cache[(0, 0)] = 0
    for absent in [(1, 2), ()]:
        with pytest.raises(KeyError) as raised:
            del cache[absent]
        assert raised.value.args == (absent,)
        with pytest.raises(KeyError) as raised:
            cache.pop(absent)
        assert raised.value.args == (absent,)


def test_lfu_frequency_is_zero_for_a_key_never_stored_or_evicted() -> None:
    cache = LFUCache(2)
    assert cache.frequency("a") == 0
    cache["a"] = 1
    cache["a"]
    cache["b"] = 2
    assert (cache.frequency("a"), cache.frequency("b")) == (2, 1)
    cache["c"] = 3  # evicts "b", the least used
    assert (cache.frequency("b"), cache.frequency("c")) == (0, 1)
    assert cache.frequency("never") == 0


class _Key:
    """A hashable key object with identity, as a user's own key class."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.name == self.name


def test_lfu_deepcopy_shares_its_keys_with_the_rest_of_the_copy() -> None:
    # copy.deepcopy copies each object once: a key held by the cache and by another
    # object copied with it is one object in the copy, in every bucket.
    keys = [_Key("a"), _Key("b"), _Key("c")]
    cache = LFUCache(3)
    for n, key in enumerate(keys):
        cache[key] = [n]
        for _ in range(n):
            cache[key]  # three buckets: counts 1, 2 and 3
    copied_keys, copied = copy.deepcopy((keys, cache))
    assert [copied.frequency(key) for key in copied_keys] == [1, 2, 3]
    evicted = [copied.popitem()[0] for _ in range(3)]  # least used first
    assert [id(key) for key in evicted] == [id(key) for key in copied_keys]
    assert all(new is not old for new, old in zip(copied_keys, keys, strict=True))
    assert [cache.frequency(key) for key in keys] == [1, 2, 3]  # the original is untouched
