"""The pure classes shared by unlocked threads may go stale, but they never break.

The interleavings a thread switch can produce are built here directly on the
pure class (what users get where the extension is not built), so each test
is deterministic and fast.
"""

from __future__ import annotations

import inspect
from typing import Any

from scalekit.caching import SIEVECache

_OLDER, _NEWER, _KEY = 0, 1, 2


def _pure(public: type) -> Any:
    """The pure-Python class behind *public* (itself, when the extension is not built)."""
    return next(k for k in public.__mro__ if inspect.isfunction(vars(k).get("_victim")))


def _filled(n: int) -> Any:
    cache = _pure(SIEVECache)(n)
    for key in range(n):
        cache[key] = key
    return cache


def _still_works(cache: Any, n: int) -> None:
    for key in range(100, 100 + 3 * n):
        cache[key] = key  # every write evicts
        assert cache[key] == key
    assert len(cache) == n and cache.currsize == n
    assert sorted(cache) == list(range(100 + 2 * n, 100 + 3 * n))


def test_a_sieve_hand_left_on_an_unlinked_node_is_dropped() -> None:
    # Thread A's eviction sets the hand on node X just after thread B, removing
    # X, checked that the hand was elsewhere: X is unlinked, the hand stays on it.
    cache = _filled(5)
    node = cache._data[2]
    cache._hand = None
    del cache[2]
    cache._hand = node
    cache[50] = 50  # evicts: must not follow the hand out of the queue
    assert 2 not in cache and len(cache) == 5
    _still_works(cache, 5)


def test_a_sieve_hand_on_the_root_or_on_a_reused_key_is_dropped() -> None:
    cache = _filled(5)
    cache._hand = cache._root  # the sentinel: a victim of MISSING was the bug
    cache[50] = 50
    _still_works(cache, 5)
    cache = _filled(5)
    stale = cache._data[3]
    del cache[3]
    cache[3] = "again"  # a new node for the same key
    cache._hand = stale
    cache[51] = 51
    assert len(cache) == 5
    _still_works(cache, 5)
