"""Cache behaviours the broad suites reached without checking (each found by a surviving mutant).

`scripts/mutation` runs mutmut over the pure cache modules; a mutant that
changed one of these behaviours and still passed every test is what each
test here now fails on. Fast: no trace, no Hypothesis.
"""

from __future__ import annotations

import copy
import pickle
import random
from typing import Any

import pytest

from scalekit.caching import Cache, FIFOCache, LRUCache, RRCache, TTLCache
from scalekit.testing import FakeClock
from tests.caching.caching_factories import FACTORIES


def _replay(cache: Cache[Any, Any], seed: int) -> list[Any]:
    """A fixed mix of writes and reads; what the cache answered and held after each step."""
    order = random.Random(seed)
    seen: list[Any] = []
    for step in range(120):
        key = order.randrange(12)
        if order.random() < 0.5:
            cache[key] = step
        else:
            seen.append(cache.get(key))
        seen.append(sorted(cache))
    return seen


# TinyLFU keeps its frequency history and window size across clear() (they
# describe the workload, not the entries): it has its own test below.
_FORGETFUL = sorted(set(FACTORIES) - {"TinyLFU"})


def _make(policy: str, maxsize: int, rng: random.Random, **kw: Any) -> Cache[Any, Any]:
    if policy == "RR":  # the same draws from here on, for the cleared cache and the new one
        return RRCache(maxsize, rng=rng, **kw)
    return FACTORIES[policy](maxsize, **kw)


def _twin_rng(rng: random.Random) -> random.Random:
    twin = random.Random()
    twin.setstate(rng.getstate())
    return twin


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
@pytest.mark.parametrize("policy", _FORGETFUL)
def test_a_cleared_cache_behaves_as_a_new_one(policy: str, weighted: bool) -> None:
    kw: dict[str, Any] = {"getsizeof": lambda v: 1 + v % 3} if weighted else {}
    maxsize = 9 if weighted else 5
    rng = random.Random(3)
    cleared = _make(policy, maxsize, rng, **kw)
    _replay(cleared, seed=1)  # fill it, evict, build up recency, counts, ghosts ...
    cleared.clear()
    assert (len(cleared), cleared.currsize, list(cleared)) == (0, 0, [])
    fresh = _make(policy, maxsize, _twin_rng(rng), **kw)
    assert _replay(cleared, seed=2) == _replay(fresh, seed=2)


@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
def test_a_cleared_tinylfu_holds_a_full_cache_again(weighted: bool) -> None:
    kw: dict[str, Any] = {"getsizeof": lambda v: 1} if weighted else {}
    cache = FACTORIES["TinyLFU"](50, **kw)
    _replay(cache, seed=1)
    for k in range(300):  # every region full, entries admitted and rejected
        cache[k % 120] = k
    cache.clear()
    assert (len(cache), cache.currsize, list(cache)) == (0, 0, [])
    for k in range(1000, 1050):  # while it is not full, nothing is evicted
        cache[k] = k
    assert sorted(cache) == list(range(1000, 1050)) and cache.currsize == 50


def test_the_base_cache_counts_every_hit_and_reports_sizes_and_contents() -> None:
    cache: Cache[str, Any] = Cache(maxsize=10, getsizeof=len)
    cache["a"] = "xyz"
    assert cache.get("a") == "xyz" and cache.get("a") == "xyz" and cache.get("b") is None
    assert (cache.stats().hits, cache.stats().misses) == (2, 1)
    assert cache.getsizeof("four") == 4 and Cache(maxsize=3).getsizeof("four") == 1
    assert repr(cache) == "Cache({'a': 'xyz'}, maxsize=10, currsize=3)"


def test_values_view_finds_equal_values_not_only_the_same_object() -> None:
    cache: LRUCache[int, Any] = LRUCache(4)
    cache[1] = [1, 2]
    assert [1, 2] in cache.values() and [3] not in cache.values()


@pytest.mark.parametrize("value", [None, 0, ""], ids=["None", "zero", "empty"])
def test_the_lru_base_read_paths_record_recency_of_a_falsy_value(value: Any) -> None:
    # A stored None is a value like any other: reading it makes it the most recent.
    for read in (lambda c, k: Cache.get(c, k), lambda c, k: Cache.__getitem__(c, k)):
        cache: LRUCache[int, Any] = LRUCache(2)
        cache[1] = value
        cache[2] = "b"
        assert read(cache, 1) == value
        cache[3] = "c"
        assert sorted(cache) == [1, 3]


@pytest.mark.parametrize("cls", [LRUCache, FIFOCache])
def test_updating_a_weighted_ordered_cache_moves_the_key_to_the_end(cls: Any) -> None:
    # As cachetools: an update makes the key the newest, in LRU and FIFO alike.
    cache = cls(3, getsizeof=len)
    cache["a"], cache["b"], cache["c"] = "1", "2", "3"
    cache["a"] = "4"
    cache["d"] = "5"
    assert list(cache) == ["c", "a", "d"]


def test_rr_counts_hits_and_refuses_writes_when_maxsize_is_zero() -> None:
    cache: RRCache[int, int] = RRCache(2, rng=random.Random(1))
    cache[1] = 1
    assert cache.get(1) == 1 and cache.get(1) == 1
    assert cache.stats().hits == 2
    for empty in (RRCache(0), RRCache(0, rng=random.Random(1))):
        with pytest.raises(ValueError, match="value too large"):
            empty[1] = 1


def test_rr_with_a_random_subclass_uses_its_choice() -> None:
    class First(random.Random):
        def choice(self, seq: Any) -> Any:
            return seq[0]

    cache: RRCache[int, int] = RRCache(3, rng=First(1))
    slots: list[int] = []  # the key list: a removal moves the last key into the freed slot
    for k in range(40):
        cache[k] = k
        if len(slots) == 3:
            last = slots.pop()
            if slots:
                slots[0] = last
        slots.append(k)
        assert sorted(cache) == sorted(slots)  # each victim the first slot, as the override says


# -- TTLCache ------------------------------------------------------------------------


def test_ttl_set_without_a_ttl_uses_the_cache_ttl() -> None:
    clock = FakeClock(0.0)
    cache: TTLCache[str, int] = TTLCache(4, ttl=10, timer=clock)
    cache.set("a", 1)
    clock.advance(9.5)
    assert cache["a"] == 1
    clock.advance(0.5)
    assert "a" not in cache


def test_ttl_deleting_an_expired_key_raises_key_error_naming_it() -> None:
    clock = FakeClock(0.0)
    cache: TTLCache[str, int] = TTLCache(4, ttl=1, timer=clock)
    cache["a"] = 1
    clock.advance(1)
    with pytest.raises(KeyError) as raised:
        del cache["a"]
    assert raised.value.args == ("a",)


def test_ttl_an_updated_entry_expires_at_its_new_deadline() -> None:
    clock = FakeClock(0.0)
    cache: TTLCache[str, int] = TTLCache(4, ttl=10, timer=clock, getsizeof=lambda v: 1)
    cache["a"] = 1
    clock.advance(5)
    cache["a"] = 2  # now expires at 15
    clock.advance(6)
    assert cache["a"] == 2 and len(cache) == 1
    clock.advance(4)
    assert "a" not in cache and len(cache) == 0 and cache.currsize == 0


def test_ttl_weighted_pop_and_popitem_return_the_values() -> None:
    cache: TTLCache[str, str] = TTLCache(10, ttl=10, timer=FakeClock(0.0), getsizeof=len)
    cache["a"], cache["b"] = "xx", "yyy"
    assert cache.pop("a") == "xx"
    assert cache.popitem() == ("b", "yyy")
    assert cache.currsize == 0


class _Ticking:
    """A timer that moves on by one second at every reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_weighted_ttl_write_reads_the_timer_once() -> None:
    # The write, its expiry pass and the evictions it makes all see one time:
    # the entry written lives exactly ttl from that time.
    timer = _Ticking()
    cache: TTLCache[str, int] = TTLCache(2, ttl=3, timer=timer, getsizeof=lambda v: 1)
    cache["a"] = 1  # written at 1: lives while the time is below 4
    cache["b"] = 2  # at 2
    readings = timer.now
    cache["c"] = 3  # at 3, evicting a
    assert timer.now == readings + 1
    with cache.timer as now:  # one reading for the whole block
        assert now == 4.0 and list(cache) == ["b", "c"]  # b lives until 5, c until 6


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, lambda c: pickle.loads(pickle.dumps(c))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_ttl_a_copy_freezes_its_own_reads_in_a_timer_block(duplicate: Any) -> None:
    clock = FakeClock(0.0)
    cache: TTLCache[str, int] = TTLCache(4, ttl=10, timer=clock)
    cache["a"] = 1
    twin = duplicate(cache)
    with twin.timer as now:
        assert now == 0.0
        twin_clock = twin.timer._timer  # the copy's clock (its own after deepcopy or pickle)
        twin_clock.advance(20)  # the clock moves on, the block's time does not
        assert twin["a"] == 1 and "a" in twin and twin.get("a") == 1
    assert "a" not in twin


@pytest.mark.parametrize("policy", sorted(FACTORIES))
def test_a_getsizeof_override_may_call_the_base_getsizeof(policy: str) -> None:
    # As in cachetools, whose base getsizeof returns 1: an override adding to it
    # used to recurse without end (the base called the override back).
    base = type(FACTORIES[policy](1))

    class Sized(base):  # type: ignore[misc,valid-type]
        def getsizeof(self, value: Any) -> Any:
            return super().getsizeof(value) + len(value)

    kwargs: dict[str, Any] = {}
    if policy == "TTL":
        kwargs = {"ttl": 60, "timer": FakeClock()}
    elif policy in ("RR", "TinyLFU"):
        kwargs = {"rng": random.Random(1)}
    cache = Sized(10, **kwargs)
    cache["a"] = "xyz"
    assert cache.currsize == 4 and cache["a"] == "xyz"


def test_pop_of_an_absent_key_raises_key_error_naming_it() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    with pytest.raises(KeyError) as raised:
        cache.pop("absent")
    assert raised.value.args == ("absent",)


def test_the_lru_base_read_path_of_an_absent_key_is_a_miss() -> None:
    cache: LRUCache[int, Any] = LRUCache(2)
    cache[1] = "a"
    assert Cache.get(cache, 2, "default") == "default"
    assert (cache.stats().hits, cache.stats().misses) == (0, 1)
