"""The ``cached`` decorator: cachetools call compatibility, single-flight, asyncio, info."""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
from typing import Any

import cachetools
import pytest

from scalekit.caching import CacheInfo, FIFOCache, LFUCache, LRUCache, cached, hashkey


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
    frames = sys._current_frames()
    parked = 0
    for t in threads:
        frame = frames.get(t.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == "run" and "decorators" in frame.f_code.co_filename:
                parked += _in_wait(frame)
                break
            frame = frame.f_back
    return parked


def _in_wait(run_frame: Any) -> bool:
    line = linecache.getline(run_frame.f_code.co_filename, run_frame.f_lineno)
    return "flight.done.wait" in line


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
