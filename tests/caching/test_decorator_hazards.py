"""`cached` and `cachedmethod` hazards: a call ending in `CancelledError`, clears from
threads running their own event loops, caches shared by several wrappers, per-instance
counters, bound-method equality and subclasses overriding `get`.

Every test is bounded: the async ones by `asyncio.wait_for`, the threaded one by a
deadline of about two seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import random
import sys
import threading
import time
import weakref
from typing import Any

import cachetools
import pytest

from scalekit.caching import LRUCache, cached, cachedmethod, hashkey
from scalekit.caching import decorators as decorators_module


async def _inner_cancelled_by_someone_else() -> None:
    inner = asyncio.ensure_future(asyncio.sleep(10))
    asyncio.get_running_loop().call_soon(inner.cancel)  # e.g. a pool closing its work
    await inner


def _ends_cancelled(kind: str, calls: list[int]) -> Any:
    async def body(x: int) -> int:
        calls.append(x)
        if kind == "raises":
            raise asyncio.CancelledError
        await _inner_cancelled_by_someone_else()
        return x

    return body


@pytest.mark.parametrize("kind", ["raises", "inner task cancelled"])
def test_async_a_call_ending_in_cancelled_error_gives_it_to_its_callers(kind: str) -> None:
    calls: list[int] = []
    f = cached(LRUCache(4))(_ends_cancelled(kind, calls))

    async def main() -> list[Any]:
        # The callers themselves are never cancelled: the call's outcome is CancelledError.
        callers = [asyncio.ensure_future(f(1)) for _ in range(3)]
        return await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [asyncio.CancelledError] * 3
    assert calls == [1]  # one call for the three callers, not re-run


@pytest.mark.parametrize("kind", ["raises", "inner task cancelled"])
def test_async_cachedmethod_call_ending_in_cancelled_error_is_not_re_run(kind: str) -> None:
    calls: list[int] = []
    body = _ends_cancelled(kind, calls)

    class Loader:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        async def load(self, x: int) -> int:
            return await body(x)  # type: ignore[no-any-return]

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(Loader().load(2))), 5)

    asyncio.run(main())
    assert calls == [2]


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="needs Task.cancelling(): on 3.10 only the last caller leaving starts the callers over",
)
def test_async_a_call_cancelled_by_a_cancel_request_every_time_is_retried_once() -> None:
    calls: list[int] = []

    @cached(LRUCache(4))
    async def f(x: int) -> int:
        calls.append(x)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # its own task, every time
        await asyncio.sleep(0)
        return x

    async def main() -> Any:
        return await asyncio.wait_for(asyncio.gather(f(1), f(1), return_exceptions=True), 5)

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [asyncio.CancelledError] * 2
    assert calls == [1, 1]  # the first call and one new call, shared by both callers


def test_async_cache_clear_while_threads_run_their_own_event_loops() -> None:
    # About two seconds: four threads each call asyncio.run() (a new loop per call,
    # collected afterwards) while this thread clears. By the docs, cache_clear()
    # returns normally, and a call started before it stores nothing after it: each
    # value carries the clear count its call began under, so once a clear returns
    # every stored value is from a call begun after that clear started.
    cache: LRUCache[Any, Any] = LRUCache(32)
    lock = threading.Lock()
    began = [0]

    @cached(cache, lock=lock)
    async def g(k: int) -> tuple[int, int]:
        started = began[0]
        await asyncio.sleep(0)
        return k, started

    errors: list[BaseException] = []
    stop = time.monotonic() + 2.0
    switch = sys.getswitchinterval()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            k = rng.randrange(200)
            try:
                assert asyncio.run(g(k))[0] == k
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    sys.setswitchinterval(1e-6)
    clears = 0
    try:
        for t in threads:
            t.start()
        while time.monotonic() < stop and not errors:
            began[0] += 1
            floor = began[0]
            g.cache_clear()
            clears += 1
            with lock:
                stale = [v for v in cache.values() if v[1] < floor]
            assert stale == [], f"stored after clear {clears} by calls begun before it"
    finally:
        sys.setswitchinterval(switch)
        for t in threads:
            t.join(10)
    assert errors == []
    assert clears > 100


def _shared_functions(cache: Any, lock: Any) -> tuple[Any, Any, dict[str, int], threading.Event]:
    db = {"price": 1, "stock": 1}
    entered, release = threading.Event(), threading.Event()

    @cached(cache, key=functools.partial(hashkey, "price"), lock=lock)
    def price() -> int:
        return db["price"]

    @cached(cache, key=functools.partial(hashkey, "stock"), lock=lock)
    def stock() -> int:
        value = db["stock"]
        entered.set()
        assert release.wait(5)
        return value

    stock.release = release  # type: ignore[attr-defined]
    return price, stock, db, entered


@pytest.mark.parametrize(
    "make",
    [lambda: LRUCache(100), lambda: cachetools.LRUCache(100)],
    ids=["scalekit", "cachetools"],
)
def test_a_clear_through_one_function_stops_the_stale_store_of_a_sibling_sharing_the_cache(
    make: Any,
) -> None:
    cache = make()
    price, stock, db, entered = _shared_functions(cache, threading.Lock())
    t = threading.Thread(target=stock)
    t.start()
    assert entered.wait(5)
    db["stock"] = 2
    price.cache_clear()  # empties the shared cache while stock() has read 1
    stock.release.set()
    t.join(5)
    assert hashkey("stock") not in cache  # the pre-clear value was not stored
    assert stock() == 2


def test_async_a_clear_through_one_function_stops_the_stale_store_of_a_sibling() -> None:
    cache: LRUCache[Any, Any] = LRUCache(100)
    db = {"stock": 1}

    @cached(cache, key=functools.partial(hashkey, "price"))
    async def price() -> int:
        return 0

    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        @cached(cache, key=functools.partial(hashkey, "stock"))
        async def stock() -> int:
            value = db["stock"]
            entered.set()
            await release.wait()
            return value

        first = asyncio.ensure_future(stock())
        await asyncio.wait_for(entered.wait(), 5)
        db["stock"] = 2
        price.cache_clear()
        release.set()
        assert await asyncio.wait_for(first, 5) == 1  # its caller still gets its value
        assert hashkey("stock") not in cache
        assert await asyncio.wait_for(stock(), 5) == 2

    asyncio.run(main())


def test_a_clear_through_one_method_stops_the_stale_store_of_a_sibling_method() -> None:
    entered, release = threading.Event(), threading.Event()

    class Shop:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(100)
            self.lock = threading.Lock()
            self.db = {"price": 1, "stock": 1}

        @cachedmethod(
            lambda self: self.cache,
            key=functools.partial(hashkey, "price"),
            lock=lambda self: self.lock,
        )
        def price(self) -> int:
            return self.db["price"]

        @cachedmethod(
            lambda self: self.cache,
            key=functools.partial(hashkey, "stock"),
            lock=lambda self: self.lock,
        )
        def stock(self) -> int:
            value = self.db["stock"]
            entered.set()
            assert release.wait(5)
            return value

    shop = Shop()
    t = threading.Thread(target=shop.stock)
    t.start()
    assert entered.wait(5)
    shop.db["stock"] = 2
    shop.price.cache_clear()
    release.set()
    t.join(5)
    assert shop.stock() == 2


def test_the_clear_counts_of_collected_caches_are_not_kept() -> None:
    class Item:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        def get(self, x: int) -> int:
            return x

    before = len(decorators_module._EPOCHS)
    for i in range(1000):
        assert Item().get(i) == i  # each instance's cache gets a clear count, then dies
    gc.collect()
    Item().get(0)  # the next registration prunes the collected ones
    assert len(decorators_module._EPOCHS) <= before + 2


def test_cachedmethod_info_counts_each_instance_apart_from_equal_ones() -> None:
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int

        @cachedmethod(lambda self: _point_caches.setdefault(id(self), LRUCache(10)), info=True)
        def norm(self, p: int) -> int:
            return abs(self.x) * p

    _point_caches: dict[int, LRUCache[Any, Any]] = {}
    a, b = Point(1), Point(1)  # equal, distinct
    assert a == b
    a.norm(2), a.norm(2), a.norm(2)
    assert (b.norm.cache_info().hits, b.norm.cache_info().misses) == (0, 0)
    b.norm.cache_clear()
    assert (a.norm.cache_info().hits, a.norm.cache_info().misses) == (2, 1)


def test_cachedmethod_info_counts_an_unhashable_instance_and_one_with_a_raising_eq() -> None:
    class Frame:
        """As numpy and pandas objects: `==` is elementwise, its truth value raises."""

        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(10)

        def __hash__(self) -> int:
            return 7  # every frame's hash collides

        def __eq__(self, other: object) -> bool:
            raise ValueError("The truth value of an array is ambiguous")

        @cachedmethod(lambda self: self.cache, info=True)
        def total(self, p: int) -> int:
            return p

    @dataclasses.dataclass
    class Plain:  # a plain dataclass: weakly referenceable, unhashable
        cache: LRUCache[Any, Any] = dataclasses.field(default_factory=lambda: LRUCache(10))

        @cachedmethod(lambda self: self.cache, info=True)
        def f(self, p: int) -> int:
            return p

    f1, f2 = Frame(), Frame()
    assert (f1.total(1), f2.total(1), f2.total(1)) == (1, 1, 1)
    assert (f2.total.cache_info().hits, f2.total.cache_info().misses) == (1, 1)
    u = Plain()
    u.f(1), u.f(1)
    assert (u.f.cache_info().hits, u.f.cache_info().misses) == (1, 1)


def test_a_bound_cached_method_compares_and_hashes_as_a_plain_bound_method() -> None:
    class Sensor:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        def read(self, x: int) -> int:
            return x

        @cachedmethod(lambda self: self.cache)
        def other(self, x: int) -> int:
            return -x

    a, b = Sensor(), Sensor()
    assert a.read == a.read
    assert hash(a.read) == hash(a.read)
    assert a.read != b.read
    assert a.read != a.other
    callbacks = [a.read, b.read]
    callbacks.remove(a.read)  # as a plain method: the one added earlier is found
    assert callbacks == [b.read]
    assert {a.read, a.read} == {a.read}
    assert a.read.__self__ is a
    held = weakref.WeakMethod(a.read)
    assert held() == a.read
    assert held()(3) == 3  # type: ignore[misc]
    del a
    gc.collect()
    assert held() is None  # it does not keep the instance alive


class _Audited(LRUCache[Any, Any]):
    """Counts the lookups the application makes through `get`."""

    gets = 0

    def get(self, key: Any, default: Any = None) -> Any:
        type(self).gets += 1
        return super().get(key, default)


class _Strict(LRUCache[Any, Any]):
    """A narrower `get`: one argument, no default."""

    def get(self, key: Any) -> Any:  # type: ignore[override]
        return self[key]


@pytest.mark.parametrize("cls", [_Audited, _Strict])
def test_a_subclass_overriding_only_get_is_read_through_getitem_as_cachetools_does(
    cls: type[LRUCache[Any, Any]],
) -> None:
    calls: list[int] = []
    c = cls(10)

    @cached(c)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    class Holder:
        def __init__(self) -> None:
            self.cache = cls(10)

        @cachedmethod(lambda self: self.cache)
        def g(self, x: int) -> int:
            calls.append(-x)
            return x * 3

    _Audited.gets = 0
    h = Holder()
    assert (f(1), f(1), h.g(1), h.g(1)) == (2, 2, 3, 3)
    assert calls == [1, -1]
    assert _Audited.gets == 0  # the decorators never called the subclass's get
    assert c.get(hashkey(1)) == 2  # which still works for the application
