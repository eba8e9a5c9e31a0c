"""The ``cached`` decorator: cachetools call compatibility, single-flight, asyncio, info."""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import traceback
from decimal import Decimal
from fractions import Fraction
from typing import Any

import cachetools
import pytest

from scalekit.caching import (
    CacheInfo,
    FIFOCache,
    LFUCache,
    LRUCache,
    ReentrantCallError,
    cached,
    hashkey,
)


@pytest.mark.parametrize("cache_class", [LRUCache, FIFOCache, LFUCache, cachetools.LRUCache])
def test_memoizes_like_cachetools(cache_class: Any) -> None:
    calls: list[Any] = []

    @cached(cache_class(maxsize=2))
    def square(x: int, *, scale: int = 1) -> int:
        calls.append((x, scale))
        return x * x * scale

    assert square(3) == 9 and square(3) == 9
    assert square(3, scale=2) == 18 and square(3, scale=2) == 18
    assert calls == [(3, 1), (3, 2)]
    assert square.__name__ == "square" and square.__wrapped__ is not None  # type: ignore[attr-defined]
    assert hashkey(3) in square.cache  # type: ignore[attr-defined]
    square.cache_clear()  # type: ignore[attr-defined]
    assert square(3) == 9 and len(calls) == 3


def test_custom_key_lock_and_info() -> None:
    lock = threading.Lock()

    @cached(LRUCache(10), key=lambda x, y: x, lock=lock, info=True)
    def first(x: int, y: int) -> int:
        return x + y

    assert first(1, 1) == 2 and first(1, 100) == 2 and first(2, 0) == 2
    assert first.cache_info() == CacheInfo(hits=1, misses=2, maxsize=10, currsize=2)  # type: ignore[attr-defined]
    assert first.cache_lock is lock  # type: ignore[attr-defined]
    first.cache_clear()  # type: ignore[attr-defined]
    assert first.cache_info() == CacheInfo(0, 0, 10, 0)  # type: ignore[attr-defined]


def test_cache_info_without_info_reports_the_cache_stats() -> None:
    @cached(LRUCache(10))
    def ident(x: int) -> int:
        return x

    ident(1)
    ident(1)
    ident(1)
    assert ident.cache_info() == CacheInfo(hits=2, misses=1, maxsize=10, currsize=1)  # type: ignore[attr-defined]


def test_value_too_large_is_returned_uncached() -> None:
    @cached(LRUCache(3, getsizeof=len))
    def text(n: int) -> str:
        return "x" * n

    assert text(10) == "x" * 10 and len(text.cache) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("lock", [None, threading.Lock()], ids=["no-lock", "lock"])
def test_single_flight_under_16_threads(lock: Any) -> None:
    started = threading.Event()
    release = threading.Event()
    calls = []

    @cached(LRUCache(10), lock=lock)
    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        assert release.wait(10)
        return x * 2

    results: list[int] = []
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        results.append(slow(21))

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    assert started.wait(10)
    # Release the leader only once the 15 others are parked waiting for its flight.
    for _ in range(5000):
        if _parked_in_flight(threads) == 15:
            break
        threading.Event().wait(0.001)
    assert _parked_in_flight(threads) == 15
    release.set()
    for t in threads:
        t.join(10)
    assert results == [42] * 16
    assert calls == [21]


def _parked_in_flight(threads: list[threading.Thread]) -> int:
    """How many of *threads* are blocked inside the decorator's wait for a leader."""
    return sum(_waits_on_a_flight(t, "decorators.py") for t in threads)


def _waits_on_a_flight(thread: threading.Thread, module: str) -> bool:
    """Whether *thread* is blocked on a flight's `done.wait` in the caching module *module*.

    Found by the line each frame of the thread executes, not by function names,
    so that it holds whatever wraps or renames the functions.
    """
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith(module) and "flight.done.wait" in linecache.getline(
            code.co_filename, frame.f_lineno
        ):
            return True
        frame = frame.f_back
    return False


def test_exceptions_are_shared_with_waiters_and_not_cached() -> None:
    release = threading.Event()
    calls = []

    @cached(LRUCache(10))
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            assert release.wait(10)
            raise RuntimeError("backend down")
        return x

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flaky(7)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(2000):
        if calls:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert 1 <= len(errors) <= 8 and all(str(e) == "backend down" for e in errors)
    assert 7 not in flaky.cache  # type: ignore[attr-defined]
    assert flaky(7) == 7  # the next call runs the function again
    assert flaky(7) == 7 and len(calls) == 2 + (8 - len(errors))


def test_async_single_flight_and_errors_not_cached() -> None:
    calls: list[int] = []

    @cached(LRUCache(10), info=True)
    async def fetch(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError("negative")
        return x + 1

    async def main() -> None:
        results = await asyncio.gather(*(fetch(1) for _ in range(50)))
        assert results == [2] * 50 and calls == [1]
        assert await fetch(1) == 2 and calls == [1]
        outcome = await asyncio.gather(*(fetch(-1) for _ in range(10)), return_exceptions=True)
        assert all(isinstance(o, ValueError) for o in outcome) and calls == [1, -1]
        with pytest.raises(ValueError):
            await fetch(-1)
        assert calls == [1, -1, -1]
        assert -1 not in fetch.cache  # type: ignore[attr-defined]

    asyncio.run(main())
    assert fetch.cache_info().hits == 1  # type: ignore[attr-defined]


def test_condition_argument_is_accepted_like_cachetools() -> None:
    cond = threading.Condition()

    @cached(LRUCache(4), condition=cond, info=True)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4 and double(2) == 4
    assert double.cache_lock is cond  # type: ignore[attr-defined]
    assert double.cache_info().hits == 1  # type: ignore[attr-defined]


def test_async_waiter_cancellation_leaves_the_call_running() -> None:
    release = asyncio.Event
    calls: list[int] = []

    async def main() -> None:
        gate = release()

        @cached(LRUCache(10))
        async def slow(x: int) -> int:
            calls.append(x)
            await gate.wait()
            return x * 10

        leader = asyncio.create_task(slow(4))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(slow(4))
        other = asyncio.create_task(slow(4))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        gate.set()
        assert await leader == 40 and await other == 40
        assert waiter.cancelled() and calls == [4]
        assert slow.cache[(4,)] == 40  # type: ignore[attr-defined]

    asyncio.run(main())


# -- hazards (each was a bug: the test failed before its fix) ------------------------


def test_async_error_while_storing_ends_the_flight() -> None:
    calls: list[int] = []

    @cached(LRUCache(10, getsizeof=len))
    async def nothing(x: int) -> Any:
        calls.append(x)
        return None  # len(None) raises TypeError while storing

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(TypeError):
                await asyncio.wait_for(nothing(1), timeout=5)
        assert calls == [1, 1]  # the second call ran again instead of waiting forever

    asyncio.run(main())


def test_async_cancelling_the_first_caller_spares_the_others() -> None:
    calls: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        @cached(LRUCache(10))
        async def slow(x: int) -> int:
            calls.append(x)
            await gate.wait()
            return x * 10

        leader = asyncio.create_task(slow(4))
        await asyncio.sleep(0)
        followers = [asyncio.create_task(slow(4)) for _ in range(3)]
        await asyncio.sleep(0)
        leader.cancel()
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*followers) == [40, 40, 40]
        assert leader.cancelled() and calls == [4]
        assert slow.cache[(4,)] == 40
        assert await slow(4) == 40 and calls == [4]

    asyncio.run(main())


def test_async_flights_are_per_event_loop() -> None:
    gate = threading.Event()
    calls: list[str] = []
    results: dict[str, Any] = {}

    @cached(None)  # no caching: each loop's call must run, never wait on another loop
    async def fetch(key: str) -> str:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        return key.upper()

    def run(name: str) -> None:
        try:
            results[name] = asyncio.run(fetch("k"))
        except BaseException as exc:
            results[name] = exc

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    for _ in range(5000):
        if calls:
            break
        threading.Event().wait(0.001)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    second.join(10)
    gate.set()
    first.join(10)
    assert results == {"first": "K", "second": "K"} and sorted(calls) == ["first", "second"]


def test_a_call_reentering_itself_with_the_same_key_raises() -> None:
    @cached(LRUCache(10))
    def loop(x: int) -> int:
        return loop(x) if x > 0 else 0

    outcome: list[BaseException] = []

    def call() -> None:
        try:
            loop(1)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the re-entrant call deadlocked"
    assert len(outcome) == 1 and isinstance(outcome[0], ReentrantCallError)
    assert isinstance(outcome[0], RecursionError) and "(1,)" in str(outcome[0])
    assert loop(0) == 0 and 1 not in loop.cache


def test_an_async_call_reentering_itself_with_the_same_key_raises() -> None:
    @cached(LRUCache(10))
    async def loop(x: int) -> int:
        return await loop(x)

    async def main() -> None:
        with pytest.raises(ReentrantCallError):
            await asyncio.wait_for(loop(1), timeout=5)

    asyncio.run(main())


def test_cache_clear_resets_the_statistics() -> None:
    @cached(LRUCache(10))
    def ident(x: int) -> int:
        return x

    ident(1), ident(1), ident(2)
    assert ident.cache_info() == CacheInfo(hits=1, misses=2, maxsize=10, currsize=2)
    ident.cache_clear()
    assert ident.cache_info() == CacheInfo(0, 0, 10, 0)
    assert ident.cache.stats().hits == 0  # type: ignore[union-attr]


def test_each_waiting_thread_raises_its_own_exception() -> None:
    release = threading.Event()
    entered = threading.Event()
    calls = []

    class BackendDown(RuntimeError):
        pass

    @cached(LRUCache(10))
    def flaky(x: int) -> int:
        calls.append(x)
        entered.set()
        assert release.wait(10)
        raise BackendDown("backend down")

    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda: _catch(flaky, errors)) for _ in range(8)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    for _ in range(5000):
        if _parked_in_flight(threads) == 7:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 8 and calls == [7]
    assert len({id(e) for e in errors}) == 8  # no object shared between threads
    original = [e for e in errors if e.__cause__ is None]
    assert len(original) == 1
    for error in errors:
        assert type(error) is BackendDown and str(error) == "backend down"
        assert error is original[0] or error.__cause__ is original[0]
        # A traceback holds its own thread's frames only: one entry frame, not eight.
        frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        assert frames.count("_catch") == 1, frames


def _catch(func: Any, errors: list[BaseException]) -> None:
    try:
        func(7)
    except BaseException as exc:
        errors.append(exc)


def test_maxsize_zero_just_calls() -> None:
    calls: list[int] = []

    @cached(LRUCache(0))
    def ident(x: int) -> int:
        calls.append(x)
        return x

    assert ident(1) == 1 and ident(1) == 1 and calls == [1, 1] and len(ident.cache) == 0


@pytest.mark.parametrize(
    "size", [True, -1, Decimal(1), Fraction(1, 2)], ids=["bool", "negative", "decimal", "fraction"]
)
def test_a_bad_getsizeof_result_raises_through_cached_instead_of_disabling_it(size: Any) -> None:
    # Only the genuine "value too large" stays uncached silently, as in cachetools.
    from scalekit.caching.base import ConfigurationError

    calls: list[int] = []

    @cached(LRUCache(10, getsizeof=lambda v: size))
    def f(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(ConfigurationError, match="getsizeof must return"):
        f(1)


@pytest.mark.parametrize("kind", ["async cached", "cachedmethod", "async cachedmethod"])
def test_a_bad_getsizeof_result_raises_through_every_decorator(kind: str) -> None:
    # The same store is behind each decorator: a Decimal size is not "value too large".
    from scalekit.caching import cachedmethod
    from scalekit.caching.base import ConfigurationError

    cache: LRUCache[Any, Any] = LRUCache(10, getsizeof=lambda v: Decimal(1))
    if kind == "async cached":

        @cached(cache)
        async def f(x: int) -> int:
            return x

        call: Any = lambda: asyncio.run(f(1))  # noqa: E731
    else:

        class Owner:
            @cachedmethod(lambda self: cache)
            def sync(self, x: int) -> int:
                return x

            @cachedmethod(lambda self: cache)
            async def asynchronous(self, x: int) -> int:
                return x

        owner = Owner()
        if kind == "cachedmethod":
            call = lambda: owner.sync(1)  # noqa: E731
        else:
            call = lambda: asyncio.run(owner.asynchronous(1))  # noqa: E731
    for _ in range(2):  # and again: the failed store left no flight behind
        with pytest.raises(ConfigurationError, match="getsizeof must return"):
            call()
    assert len(cache) == 0
