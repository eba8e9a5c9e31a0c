"""TinyLFU's window order: a shadow FIFO against the shadow LRU.

Known-answer tests, deterministic and small (well under a second each,
compiled; a few times that in the pure build).
"""

from __future__ import annotations

import heapq
import pickle
import random
from typing import Any

from scalekit.caching import TinyLFUCache

_MISSING = object()


def _replay(cache: TinyLFUCache[int, Any], keys: list[int]) -> None:
    for key in keys:
        if cache.get(key, _MISSING) is _MISSING:
            cache[key] = key


def _twice(n: int, gap: int, seed: int) -> list[int]:
    # n keys, each requested twice, the second time U[1, gap] requests later.
    rng = random.Random(seed)
    out: list[int] = []
    due: list[tuple[int, int]] = []
    for key in range(n):
        out.append(key)
        heapq.heappush(due, (len(out) + rng.randint(1, gap), key))
        while due and due[0][0] <= len(out):
            out.append(heapq.heappop(due)[1])
    out.extend(key for _, key in sorted(due))
    return out


def test_the_window_order_follows_a_significant_difference_of_the_shadows_added_over_samples() -> (
    None
):
    cache: TinyLFUCache[int, int] = TinyLFUCache(100)
    # 10 more FIFO hits out of 210 per sample: 2 standard errors of the sum
    # are passed after 9 samples (90 > 2 * sqrt(1890) = 86.9), not after 8.
    for _ in range(8):
        cache._window_order_test(100, 110)
        assert not cache._window_fifo
    assert (cache._order_lru, cache._order_fifo) == (800, 880)
    cache._window_order_test(100, 110)
    assert cache._window_fifo
    assert (cache._order_lru, cache._order_fifo) == (0, 0)  # decided: the count restarts
    cache._window_order_test(150, 100)  # 50 > 2 * sqrt(250) = 31.6: back to LRU at once
    assert not cache._window_fifo
    cache._window_order_test(100, 100)
    assert not cache._window_fifo and (cache._order_lru, cache._order_fifo) == (100, 100)


def test_keys_requested_twice_order_the_window_as_a_fifo_and_a_window_hit_moves_nothing() -> None:
    # Each key twice, 1-50 requests apart, in a 20-entry cache: the shadow
    # FIFO beats the shadow LRU on the first climber sample (8,888 requests)
    # and the window stops moving hit entries to its recent end.
    cache: TinyLFUCache[int, int] = TinyLFUCache(20, rng=random.Random(0))
    keys = _twice(10_000, 50, 1)
    _replay(cache, keys[:8_000])
    assert not cache._window_fifo
    _replay(cache, keys[8_000:])
    assert cache._window_fifo and cache.window_maxsize == 19
    assert round(100 * cache.stats().hit_ratio, 2) == 20.20
    order = list(cache._window)
    assert cache.get(order[0]) == order[0]
    assert cache[order[1]] == order[1]
    assert list(cache._window) == order
    # The order is part of the cache's state (pickles and copies keep it);
    # clear() keeps it too, as it keeps the window's size.
    assert pickle.loads(pickle.dumps(cache))._window_fifo
    cache.clear()
    assert cache._window_fifo and not cache._shadow_fifo
    assert (cache._order_lru, cache._order_fifo) == (0, 0)


def test_hits_that_predict_hits_keep_the_window_an_lru() -> None:
    # 8 hot keys in turn, a new key after each: LRU keeps the hot keys, a
    # FIFO of 20 entries evicts each one as it reaches the old end.
    cache: TinyLFUCache[int, int] = TinyLFUCache(20, rng=random.Random(0))
    tests: list[tuple[int, int]] = []
    decide = cache._window_order_test
    cache._window_order_test = lambda lru, fifo: (  # type: ignore[method-assign]
        tests.append((lru, fifo)),
        decide(lru, fifo),
    )[-1]
    _replay(cache, [i // 2 % 8 if i % 2 == 0 else 1000 + i for i in range(9_000)])
    assert len(tests) == 1 and tests[0][0] > tests[0][1] + 1000
    assert not cache._window_fifo
    window = list(cache._window)
    cache.get(window[0])
    assert list(cache._window) == [*window[1:], window[0]]
