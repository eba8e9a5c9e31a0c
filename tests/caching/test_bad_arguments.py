"""Bad `rng`, `choice` and `ttu` results: a clear error naming the argument, at once.

A wrong `rng` or `choice` is refused when the cache is built (as `timer=5`,
`ttu=5` and `getsizeof=1` are), not thousands of requests later inside a
write; a `ttu` result that is no expiry time is refused by the write that
got it, which then leaves the cache as it was.
"""

from __future__ import annotations

import datetime
import math
import random
from decimal import Decimal
from typing import Any

import pytest

from scalekit.caching import RRCache, TinyLFUCache, TLRUCache
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from scalekit.testing import FakeClock


@pytest.mark.parametrize("rng", [5, "abc", object()])
def test_tinylfu_refuses_an_rng_without_getrandbits_at_construction(rng: Any) -> None:
    with pytest.raises(ArgumentTypeError) as err:
        TinyLFUCache(50, rng=rng)
    message = str(err.value)
    assert message.startswith("rng must be a random.Random")
    assert "getrandbits" in message and repr(rng) in message


def test_tinylfu_takes_any_rng_with_getrandbits() -> None:
    class Bits:
        def __init__(self) -> None:
            self.calls = 0

        def getrandbits(self, k: int) -> int:
            self.calls += 1
            return 0

    bits = Bits()
    cache: TinyLFUCache[int, int] = TinyLFUCache(50, rng=bits)  # type: ignore[arg-type]
    draws = random.Random(1)
    for _ in range(30_000):  # the repro first failed at request 18,850
        key = int(2000 * draws.random() ** 3)
        if cache.get(key) is None:
            cache[key] = key
    assert bits.calls > 0 and len(cache) == 50
    assert TinyLFUCache(5, rng=random.SystemRandom()) is not None


@pytest.mark.parametrize("rng", [5, "abc", object()])
def test_rr_refuses_an_rng_without_choice_at_construction(rng: Any) -> None:
    with pytest.raises(ArgumentTypeError) as err:
        RRCache(3, rng=rng)
    message = str(err.value)
    assert message.startswith("rng must be a random.Random")
    assert "choice" in message and repr(rng) in message


@pytest.mark.parametrize("choice", [5, "abc", [1, 2]])
def test_rr_refuses_a_choice_that_is_not_callable_at_construction(choice: Any) -> None:
    with pytest.raises(ArgumentTypeError) as err:
        RRCache(3, choice=choice)
    message = str(err.value)
    assert message.startswith("choice must be callable")
    assert repr(choice) in message and type(choice).__name__ in message


def test_rr_takes_a_duck_typed_rng_and_a_callable_choice() -> None:
    class Smallest:
        def choice(self, keys: Any) -> Any:
            return min(keys)

    by_rng: RRCache[int, int] = RRCache(3, rng=Smallest())  # type: ignore[arg-type]
    by_choice: RRCache[int, int] = RRCache(3, choice=max)
    for i in range(5):
        by_rng[i] = by_choice[i] = i
    assert sorted(by_rng) == [2, 3, 4] and sorted(by_choice) == [0, 1, 4]


# -- ttu results ----------------------------------------------------------------


def _cache(result: Any) -> tuple[TLRUCache[str, str], FakeClock]:
    # Good writes live 50 s ("short" 10 s, "long" 500 s); a write of "bad" gets `result` from ttu.
    def ttu(key: str, value: str, now: float) -> Any:
        if value == "bad":
            return result
        return now + {"short": 10, "long": 500}.get(value, 50)

    clock = FakeClock(100.0)
    cache: TLRUCache[str, str] = TLRUCache(10, ttu=ttu, timer=clock)
    cache["a"] = "old"  # expires at 150
    cache["b"] = "long"
    cache["c"] = "short"  # expires at 110
    return cache, clock


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (None, ArgumentTypeError),
        ("x", ArgumentTypeError),
        (True, ArgumentTypeError),
        (False, ArgumentTypeError),
        (math.nan, ConfigurationError),
        (Decimal("NaN"), ConfigurationError),
    ],
)
def test_a_bad_ttu_result_is_refused_by_the_write_and_changes_nothing(
    result: Any, error: type[Exception]
) -> None:
    cache, clock = _cache(result)
    clock.set(149.0)  # "c" has expired but is still stored: a write would drop it
    with pytest.raises(error) as err:
        cache["a"] = "bad"
    message = str(err.value)
    assert message.startswith("ttu must return an expiry time")
    assert f"got {result!r} ({type(result).__name__}) for key 'a'" in message
    assert "not a bool or NaN" in message
    # Unchanged: the old entry of that key stays, with its old value and deadline,
    # and the expired one was not dropped by the refused write.
    assert cache.peek("a") == "old" and cache.peek("b") == "long"
    assert cache.expire() == [("c", "short")]
    assert cache["a"] == "old"
    clock.set(150.0)  # the old deadline: the old entry expires as it would have
    assert "a" not in cache and sorted(cache) == ["b"]
    # A bad result for a new key stores nothing either.
    with pytest.raises(error):
        cache["z"] = "bad"
    assert "z" not in cache and len(cache) == 1


def test_a_ttu_result_that_cannot_be_compared_with_the_timer_is_refused() -> None:
    start = datetime.datetime(2026, 1, 1)
    good = TLRUCache(
        3, ttu=lambda k, v, now: now + datetime.timedelta(seconds=5), timer=lambda: start
    )
    good["a"] = 1  # a datetime expiry with a datetime timer is an expiry time
    assert good["a"] == 1
    bad = TLRUCache(3, ttu=lambda k, v, now: 5.0, timer=lambda: start)
    with pytest.raises(
        ArgumentTypeError, match=r"ttu must return an expiry time .*got 5\.0 \(float\) for key 'a'"
    ):
        bad["a"] = 1
    assert len(bad) == 0


def test_good_ttu_results_keep_working() -> None:
    clock = FakeClock(0.0)
    cache: TLRUCache[str, int] = TLRUCache(
        5, ttu=lambda key, value, now: now + value if value else math.inf, timer=clock
    )
    cache["never"] = 0  # math.inf: never expires
    cache["soon"] = 1
    cache["gone"] = -1  # an expiry not after now: not stored
    assert sorted(cache) == ["never", "soon"]
    clock.advance(1)
    assert sorted(cache) == ["never"]
