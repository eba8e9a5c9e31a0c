"""LFUCache's frequency buckets survive copying and pickling, however many there are."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import LFUCache

COPIERS: dict[str, Callable[[LFUCache[int, Any]], LFUCache[int, Any]]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda cache: pickle.loads(pickle.dumps(cache)),
}


def _drain(cache: LFUCache[int, Any]) -> list[tuple[int, Any, int]]:
    """Every entry with its frequency, in eviction order (empties the cache)."""
    order = []
    while cache:
        frequency = cache.frequency(cache._victim())
        key, value = cache.popitem()
        order.append((key, value, frequency))
    return order


@pytest.mark.parametrize("how", sorted(COPIERS))
def test_a_copy_with_over_a_thousand_frequencies_keeps_the_policy(how: str) -> None:
    # 1,200 distinct counts: a recursive copy of the bucket chain would overflow the stack.
    cache: LFUCache[int, Any] = LFUCache(3000)
    for key in range(1200):
        for _ in range(key % 7 + key):
            cache[key] = [key]
    cache.get(5)
    clone = COPIERS[how](cache)
    assert clone.stats() == cache.stats()
    assert {k: clone.frequency(k) for k in clone} == {k: cache.frequency(k) for k in cache}
    for key in range(3000, 3100):  # the same writes make the same evictions
        cache[key] = [key]
        clone[key] = [key]
        assert set(clone) == set(cache)
    theirs, ours = _drain(clone), _drain(cache)
    assert theirs == ours
    assert frequencies_seen(ours) > 1000
    if how == "copy":  # values are shared, as cachetools' copy.copy shares them
        shared = [a[1] is b[1] for a, b in zip(theirs, ours, strict=True) if a[0] < 3000]
        assert len(shared) > 1000 and all(shared)


def frequencies_seen(order: list[tuple[int, Any, int]]) -> int:
    return len({frequency for _, _, frequency in order})


@pytest.mark.parametrize("sized", [False, True], ids=["unit", "getsizeof"])
def test_a_read_counts_one_use_for_that_key_only(sized: bool) -> None:
    # Ties go to the least recently used; a read moves only the key read.
    cache: LFUCache[str, int] = LFUCache(3, getsizeof=(lambda v: 1) if sized else None)
    cache["a"], cache["b"], cache["c"] = 1, 2, 3
    assert cache.get("a") == 1  # the get path
    assert cache["b"] == 2  # the [] path
    assert [cache.frequency(k) for k in "abc"] == [2, 2, 1]
    cache["d"] = 4  # evicts c, the only key used once
    assert sorted(cache) == ["a", "b", "d"]
    cache["a"] = 10  # a write of a present key is a use too
    assert [cache.frequency(k) for k in "abd"] == [3, 2, 1]
    assert [cache.popitem()[0] for _ in range(3)] == ["d", "b", "a"]


@pytest.mark.parametrize("sized", [False, True], ids=["unit", "getsizeof"])
def test_new_keys_share_one_bucket_and_leave_in_insertion_order(sized: bool) -> None:
    cache: LFUCache[int, int] = LFUCache(3, getsizeof=(lambda v: 1) if sized else None)
    for key in range(10):
        cache[key] = key
        assert sorted(cache) == list(range(max(0, key - 2), key + 1))
    assert [cache.popitem()[0] for _ in range(3)] == [7, 8, 9]
