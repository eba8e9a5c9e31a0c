"""TTLCache's time handling and RRCache's injected randomness."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import random
import warnings
from datetime import datetime, timedelta
from typing import Any

import pytest

from scalekit.caching import RRCache, TTLCache
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from scalekit.testing import FakeClock


@pytest.mark.parametrize("bad", [math.nan, True, "5", None])
def test_ttl_must_be_a_number_or_a_timedelta(bad: Any) -> None:
    wrong_type = isinstance(bad, (bool, str)) or bad is None
    error = ArgumentTypeError if wrong_type else ConfigurationError
    with pytest.raises(error, match="ttl must be a number"):
        TTLCache(10, ttl=bad)
    cache = TTLCache(10, ttl=1)
    if bad is not None:
        with pytest.raises(error, match="ttl must be a number"):
            cache.set("k", 1, ttl=bad)
        assert "k" not in cache


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -math.inf])
def test_a_ttl_of_zero_or_less_expires_every_entry_at_once(ttl: Any) -> None:
    # As in cachetools (a common "disable caching" setting): an entry's deadline
    # is its write time or earlier, and an entry is never served at its deadline.
    clock = FakeClock(100.0)
    cache = TTLCache(10, ttl=ttl, timer=clock)
    cache["a"] = 1
    assert "a" not in cache and cache.get("a") is None and len(cache) == 0
    live = TTLCache(10, ttl=60, timer=clock)
    live.set("b", 2, ttl=ttl)
    assert "b" not in live and len(live) == 0


def test_a_timedelta_ttl_of_zero_or_less_expires_at_once() -> None:
    now = [datetime(2026, 1, 1)]
    for ttl in (timedelta(0), timedelta(seconds=-1)):
        cache = TTLCache(10, ttl=ttl, timer=lambda: now[0])
        cache["a"] = 1
        assert "a" not in cache and len(cache) == 0


def test_entries_expire_at_their_own_deadline() -> None:
    clock = FakeClock(100.0)
    cache = TTLCache(10, ttl=10, timer=clock)
    cache["default"] = 1
    cache.set("short", 2, ttl=1)
    cache.set("long", 3, ttl=60)
    assert cache.ttl == 10 and cache.timer() == clock() and cache.timer.advance == clock.advance
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


def test_an_entry_is_not_served_at_exactly_its_deadline() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(10, ttl=5, timer=clock)
    cache["a"] = 1
    clock.advance(4.999)
    assert cache["a"] == 1 and cache.get("a") == 1 and cache.peek("a") == 1 and "a" in cache
    clock.advance(0.001)  # now == the deadline: expired, as in cachetools
    assert clock() == 5.0
    assert "a" not in cache and cache.get("a") is None and cache.peek("a") is None
    with pytest.raises(KeyError):
        cache["a"]
    assert list(cache) == [] and list(cache.items()) == [] and cache.pop("a", "gone") == "gone"


def test_ttl_inf_never_expires() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(2, ttl=math.inf, timer=clock)
    cache["a"], cache["b"] = 1, 2
    clock.advance(1e300)
    assert cache["a"] == 1 and sorted(cache) == ["a", "b"] and cache.expire() == []
    cache["c"] = 3  # still an LRU: "b" is the least recent
    assert sorted(cache) == ["a", "c"]


def test_timedelta_ttl_with_a_datetime_timer() -> None:
    now = [datetime(2026, 1, 1, 12, 0)]
    cache = TTLCache(10, ttl=timedelta(minutes=5), timer=lambda: now[0])
    cache["a"] = 1
    cache.set("b", 2, ttl=timedelta(hours=1))
    now[0] += timedelta(minutes=5)
    assert "a" not in cache and cache["b"] == 2 and len(cache) == 1
    assert cache.expire(now[0] + timedelta(hours=1)) == [("b", 2)]


@pytest.mark.parametrize("ttl", [timedelta(seconds=1), timedelta(0)])
def test_a_timedelta_ttl_with_a_timer_of_seconds_is_refused_at_construction(ttl: Any) -> None:
    # cachetools accepts it and fails at the first write with a bare TypeError.
    for timer in (FakeClock(5.0), None):
        with pytest.raises(ArgumentTypeError) as raised:
            if timer is None:
                TTLCache(3, ttl=ttl)  # time.monotonic
            else:
                TTLCache(3, ttl=ttl, timer=timer)
        message = str(raised.value)
        assert "ttl" in message and repr(ttl) in message and "float" in message
    now = [datetime(2026, 1, 1)]
    TTLCache(3, ttl=ttl, timer=lambda: now[0])  # a datetime timer takes it


def test_with_timer_freezes_time_for_a_batch() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(10, ttl=5, timer=clock)
    cache["a"] = 1
    with cache.timer as now:
        assert now == 0.0
        clock.advance(10)
        assert cache.timer() == 0.0 and cache["a"] == 1 and "a" in cache
        with cache.timer as inner:
            assert inner == 0.0
        assert cache.timer() == 0.0  # still frozen: the outer block is open
    assert cache.timer() == 10.0 and "a" not in cache


def test_currsize_drops_expired_entries() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(100, ttl=5, timer=clock, getsizeof=len)
    cache["a"] = "abcd"
    assert cache.currsize == 4
    clock.advance(5)
    assert cache.currsize == 0 and len(cache) == 0


def test_copies_and_pickles_hold_no_iterator() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(10, ttl=5, timer=clock)
    for i in range(5):
        cache[i] = i
    state = cache.__getstate__()
    assert not any(isinstance(v, itertools.count) for v in state.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pickling an itertools object warns from 3.12
        clones = [copy.copy(cache), copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))]
    for clone in clones:
        clone[9] = 9
        assert sorted(clone) == [0, 1, 2, 3, 4, 9] and sorted(cache) == [0, 1, 2, 3, 4]
    clone = copy.copy(cache)
    clock.advance(5)
    # (a comprehension: list() would call len(), which purges)
    assert [k for k in clone] == [] and clone.expire() == [(i, i) for i in range(5)]
    assert len(cache) == 0


def test_rr_default_choice_is_random_choice() -> None:
    def evictions() -> list[int]:
        cache: RRCache[int, int] = RRCache(4)
        assert cache.choice is random.choice
        out = []
        for i in range(20):
            cache[i] = i
            out.append(sorted(cache))
        return out

    random.seed(42)
    first = evictions()
    random.seed(42)
    assert evictions() == first


def test_a_sized_rewrite_makes_the_key_most_recent() -> None:
    clock = FakeClock(0.0)
    cache = TTLCache(6, ttl=60, timer=clock, getsizeof=len)
    cache["a"], cache["b"] = "xx", "yy"
    cache["a"] = "zz"  # a write of a present key: "b" is now the least recent
    cache["c"] = "www"  # 7 units do not fit in 6: "b" is evicted to make room
    assert [k for k in cache] == ["a", "c"] and cache.currsize == 5
