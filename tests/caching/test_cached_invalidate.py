"""Per-key invalidation: `f.cache_invalidate(*args)` and what it does to the calls in progress.

The scenario each test plays: a call reads the source of truth, which then
changes; the key is invalidated while that call is still running. The call
must not store its (old) value afterwards, and a caller that starts after
the invalidation must run a new call instead of joining the old one. Threads
and tasks are coordinated by events and joined with a timeout, so a
regression fails within seconds instead of hanging; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import cachetools
import pytest

from scalekit.caching import (
    LRUCache,
    TTLCache,
    cached,
    cachedmethod,
    fifo_cache,
    lfu_cache,
    lru_cache,
    rr_cache,
    s3fifo_cache,
    sieve_cache,
    tinylfu_cache,
    ttl_cache,
)

from .test_cached import _waits_on_a_flight


class _Source:
    """A database row: the first call for a key stalls after reading it, until released."""

    def __init__(self) -> None:
        self.price = 2999
        self.reads: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def read(self) -> int:
        value = self.price
        self.reads.append(value)
        if len(self.reads) == 1:
            self.entered.set()  # read, and now stalls (a GC pause, a slow query)
            assert self.release.wait(5)
        return value


def _until_waiting(thread: threading.Thread) -> None:
    """Return once *thread* is blocked waiting for a call in progress (polled, at most 5 s)."""
    for _ in range(5000):
        if _waits_on_a_flight(thread, "decorators.py"):
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{thread.name} never waited for the call in progress")


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize(
    "cache",
    [
        lambda: TTLCache(100, ttl=3600),
        lambda: LRUCache(100),
        dict,
        lambda: cachetools.TTLCache(100, ttl=3600),
    ],
    ids=["ttl", "lru", "dict", "cachetools"],
)
@pytest.mark.parametrize("lock", [True, False], ids=["locked", "unlocked"])
def test_invalidating_a_key_stops_the_stale_write_back_of_a_thread_call(
    cache: Any, lock: bool
) -> None:
    db = _Source()

    @cached(cache(), lock=threading.Lock() if lock else None)
    def price(sku: str) -> int:
        return db.read()

    a, out_a = _in_thread(lambda: price("sku1"))
    assert db.entered.wait(5)
    db.price = 1999  # the writer updates the row ...
    assert price.cache_invalidate("sku1") is False  # ... and invalidates: nothing stored yet
    # A caller after the invalidation runs a new call instead of joining the old one.
    b, out_b = _in_thread(lambda: price("sku1"))
    b.join(5)
    assert out_b == [1999]
    db.release.set()
    a.join(5)
    assert out_a == [2999]  # the call begun before returns its own value to its caller
    assert price.cache[price.cache_key("sku1")] == 1999  # ... but did not store it
    assert price("sku1") == 1999 and db.reads == [2999, 1999]


def test_invalidate_removes_the_entry_and_says_whether_there_was_one() -> None:
    calls: list[tuple[int, int]] = []

    @cached(LRUCache(10))
    def add(x: int, y: int = 0) -> int:
        calls.append((x, y))
        return x + y

    add(1, y=2), add(1, y=2), add(3)
    assert add.cache_invalidate(1, y=2) is True  # the key of that call, keywords included
    assert add.cache_invalidate(1, y=2) is False
    assert add.cache_invalidate(1, 2) is False  # another key: hashkey(1, 2) != hashkey(1, y=2)
    assert add.cache_key(3) in add.cache and len(add.cache) == 1  # other keys stay
    add(1, y=2)
    assert calls == [(1, 2), (3, 0), (1, 2)]


def test_invalidate_stops_only_the_invalidated_key() -> None:
    db = _Source()

    @cached(LRUCache(10), lock=threading.Lock())
    def price(sku: str) -> int:
        return db.read()

    a, out_a = _in_thread(lambda: price("sku1"))
    assert db.entered.wait(5)
    assert price.cache_invalidate("sku2") is False
    db.release.set()
    a.join(5)
    assert out_a == [2999] and price.cache[price.cache_key("sku1")] == 2999  # stored as usual


def test_a_follower_that_joined_before_the_invalidation_gets_the_call_it_joined() -> None:
    db = _Source()

    @cached(LRUCache(10), lock=threading.Lock())
    def price(sku: str) -> int:
        return db.read()

    a, out_a = _in_thread(lambda: price("sku1"))
    assert db.entered.wait(5)
    follower, out_f = _in_thread(lambda: price("sku1"))
    _until_waiting(follower)
    db.price = 1999
    price.cache_invalidate("sku1")
    db.release.set()
    a.join(5), follower.join(5)
    assert out_a == out_f == [2999]  # both calls began before the invalidation
    assert price("sku1") == 1999  # nothing stale was stored


def test_async_invalidating_a_key_stops_the_stale_write_back() -> None:
    reads: list[int] = []
    row = {"price": 2999}

    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        @cached(TTLCache(100, ttl=3600))
        async def price(sku: str) -> int:
            value = row["price"]
            reads.append(value)
            if len(reads) == 1:
                entered.set()
                await release.wait()
            return value

        first = asyncio.create_task(price("sku1"))
        await asyncio.wait_for(entered.wait(), 5)
        row["price"] = 1999
        assert price.cache_invalidate("sku1") is False
        assert await asyncio.wait_for(price("sku1"), 5) == 1999  # a new call, not the old one
        assert not first.done()
        release.set()
        assert await asyncio.wait_for(first, 5) == 2999  # its own caller gets its value
        assert price.cache[price.cache_key("sku1")] == 1999  # ... which was not stored
        assert await price("sku1") == 1999 and reads == [2999, 1999]
        assert price.cache_invalidate("sku1") is True and len(price.cache) == 0

    asyncio.run(main())


def test_async_invalidation_from_another_thread_reaches_the_loop_s_call() -> None:
    # The event loop runs in its own thread; the invalidation comes from another one.
    row = {"price": 2999}
    reads: list[int] = []
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    out: list[int] = []

    @cached(LRUCache(10), lock=threading.Lock())
    async def price(sku: str) -> int:
        value = row["price"]
        reads.append(value)
        if len(reads) == 1:
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0)
        return value

    async def main() -> None:
        first = asyncio.create_task(price("sku1"))
        await asyncio.sleep(0)
        while not done.is_set():  # the main thread invalidates meanwhile
            await asyncio.sleep(0)
        second = await asyncio.wait_for(price("sku1"), 5)
        release.set()
        out.extend([await asyncio.wait_for(first, 5), second, await price("sku1")])

    loop_thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    loop_thread.start()
    assert entered.wait(5)
    row["price"] = 1999
    price.cache_invalidate("sku1")
    done.set()
    loop_thread.join(5)
    assert out == [2999, 1999, 1999] and reads == [2999, 1999]


class _Prices:
    def __init__(self, db: _Source, cache: Any = None) -> None:
        self.db = db
        self.cache = LRUCache(10) if cache is None else cache
        self.lock = threading.Lock()

    @cachedmethod(lambda self: self.cache, lock=lambda self: self.lock)
    def price(self, sku: str) -> int:
        return self.db.read()


@pytest.mark.parametrize("shared", [False, True], ids=["own-cache", "shared-cache"])
def test_cachedmethod_invalidate_stops_the_stale_write_back(shared: bool) -> None:
    db = _Source()
    cache: LRUCache[Any, int] = LRUCache(10)
    slow = _Prices(db, cache)
    # Invalidated through the same instance, or through another sharing its cache.
    other = _Prices(db, cache) if shared else slow
    a, out_a = _in_thread(lambda: slow.price("sku1"))
    assert db.entered.wait(5)
    db.price = 1999
    assert other.price.cache_invalidate("sku1") is False
    assert slow.price("sku1") == 1999  # a new call, not a wait for the old one
    db.release.set()
    a.join(5)
    assert out_a == [2999]
    assert cache[slow.price.cache_key("sku1")] == 1999
    assert other.price.cache_invalidate("sku1") is True and len(cache) == 0


def test_cachedmethod_invalidate_leaves_an_instance_with_another_cache_alone() -> None:
    db = _Source()
    slow, unrelated = _Prices(db), _Prices(db)
    a, out_a = _in_thread(lambda: slow.price("sku1"))
    assert db.entered.wait(5)
    assert unrelated.price.cache_invalidate("sku1") is False
    db.release.set()
    a.join(5)
    assert out_a == [2999] and slow.cache[slow.price.cache_key("sku1")] == 2999


def test_async_cachedmethod_invalidate_stops_the_stale_write_back() -> None:
    class Prices:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, int] = LRUCache(10)
            self.row = 2999
            self.reads: list[int] = []
            self.entered, self.release = asyncio.Event(), asyncio.Event()

        @cachedmethod(lambda self: self.cache)
        async def price(self, sku: str) -> int:
            value = self.row
            self.reads.append(value)
            if len(self.reads) == 1:
                self.entered.set()
                await self.release.wait()
            return value

    async def main() -> None:
        obj = Prices()
        first = asyncio.create_task(obj.price("sku1"))
        await asyncio.wait_for(obj.entered.wait(), 5)
        obj.row = 1999
        assert obj.price.cache_invalidate("sku1") is False
        assert await asyncio.wait_for(obj.price("sku1"), 5) == 1999
        obj.release.set()
        assert await asyncio.wait_for(first, 5) == 2999
        assert obj.cache[obj.price.cache_key("sku1")] == 1999
        assert obj.reads == [2999, 1999]

    asyncio.run(main())


@pytest.mark.parametrize(
    "decorator",
    [
        lru_cache,
        fifo_cache,
        lfu_cache,
        rr_cache,
        ttl_cache,
        sieve_cache,
        s3fifo_cache,
        tinylfu_cache,
    ],
    ids=lambda d: d.__name__,
)
def test_functools_style_decorators_invalidate_a_key_and_its_call_in_progress(
    decorator: Any,
) -> None:
    db = _Source()

    @decorator(maxsize=16)
    def price(sku: str) -> int:
        return db.read()

    a, out_a = _in_thread(lambda: price("sku1"))
    assert db.entered.wait(5)
    db.price = 1999
    assert price.cache_invalidate("sku1") is False
    assert price("sku1") == 1999
    db.release.set()
    a.join(5)
    assert out_a == [2999] and price("sku1") == 1999
    assert price.cache_info()[:2] == (1, 2)
    assert price.cache_invalidate("sku1") is True and price.cache_info().currsize == 0


def test_a_direct_pop_is_the_cache_s_own_and_leaves_the_call_in_progress_as_cachetools() -> None:
    # The documented contrast: f.cache.pop() removes the entry only, as in cachetools;
    # the call in progress stores its value afterwards, and a caller arriving meanwhile
    # joins it. cache_invalidate() is the protected way.
    db = _Source()

    @cached(LRUCache(10), lock=threading.Lock())
    def price(sku: str) -> int:
        return db.read()

    a, out_a = _in_thread(lambda: price("sku1"))
    assert db.entered.wait(5)
    db.price = 1999
    price.cache.pop(price.cache_key("sku1"), None)
    b, out_b = _in_thread(lambda: price("sku1"))
    _until_waiting(b)  # b joins a's call
    db.release.set()
    a.join(5), b.join(5)
    assert out_a == out_b == [2999]
    assert price.cache[price.cache_key("sku1")] == 2999 and db.reads == [2999]
