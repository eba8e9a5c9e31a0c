"""TTLCache's time handling and RRCache's injected randomness."""

from __future__ import annotations

import random
from typing import Any

import pytest

from scalekit.caching import RRCache, TTLCache
from scalekit.exceptions import ConfigurationError
from scalekit.testing import FakeClock


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "5", None])
def test_ttl_must_be_positive(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl must be a positive finite number"):
        TTLCache(10, ttl=bad)
    cache = TTLCache(10, ttl=1)
    if bad is not None:
        with pytest.raises(ConfigurationError, match="ttl must be a positive finite number"):
            cache.set("k", 1, ttl=bad)
        assert "k" not in cache


def test_entries_expire_at_their_own_deadline() -> None:
    clock = FakeClock(100.0)
    cache = TTLCache(10, ttl=10, timer=clock)
    cache["default"] = 1
    cache.set("short", 2, ttl=1)
    cache.set("long", 3, ttl=60)
    assert cache.ttl == 10 and cache.timer is clock
    clock.advance(1)
    assert "short" not in cache and cache.get("short") is None and len(cache) == 2
    clock.advance(9)
    assert sorted(cache) == ["long"]
    assert cache.expire(clock() + 100) == [("long", 3)]
    assert len(cache) == 0


def test_a_rewrite_restarts_the_clock_and_reads_do_not() -> None:
    clock = FakeClock()
    cache = TTLCache(10, ttl=5, timer=clock)
    cache["a"] = 1
    clock.advance(4)
    assert cache["a"] == 1
    cache["b"] = 2
    clock.advance(1)
    assert "a" not in cache and "b" in cache
    cache["b"] = 3
    clock.advance(4)
    assert cache["b"] == 3


def test_deleting_an_expired_entry_raises_key_error_like_cachetools() -> None:
    clock = FakeClock()
    cache = TTLCache(10, ttl=1, timer=clock)
    cache["a"] = 1
    clock.advance(2)
    with pytest.raises(KeyError):
        del cache["a"]
    assert len(cache) == 0


def test_rr_victims_follow_the_injected_rng() -> None:
    def evictions(seed: int) -> list[int]:
        cache: RRCache[int, int] = RRCache(5, rng=random.Random(seed))
        order = []
        for key in range(50):
            before = set(cache)
            cache[key] = key
            order.extend(before - set(cache))
        return order

    assert evictions(1) == evictions(1)
    assert evictions(1) != evictions(2)


def test_rr_rng_draws_the_victims_rng_choice_would() -> None:
    # The inlined draw of __setitem__ against rng.choice itself, called through choice=.
    def evictions(cache: RRCache[int, int]) -> list[int]:
        order: list[int] = []
        for key in range(3000):
            before = set(cache)
            cache[key] = key
            order.extend(before - set(cache))
        return order

    for maxsize in (1, 5, 64, 100):
        inlined = evictions(RRCache(maxsize, rng=random.Random(maxsize)))
        called = evictions(RRCache(maxsize, choice=random.Random(maxsize).choice))
        assert len(inlined) == 3000 - maxsize and inlined == called


def test_rr_choice_is_called_with_the_keys() -> None:
    seen: list[list[int]] = []

    def first(keys: Any) -> int:
        seen.append(list(keys))
        return int(keys[0])

    cache: RRCache[int, int] = RRCache(3, choice=first)
    for key in range(4):
        cache[key] = key
    assert cache.choice is first and sorted(seen[0]) == [0, 1, 2] and 0 not in cache
