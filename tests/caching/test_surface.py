"""cachetools' wider surface: keys, cachedmethod, TLRUCache and the functools-style decorators."""

from __future__ import annotations

import asyncio
import copy
import gc
import math
import pickle
import threading
import weakref
from typing import Any

import pytest

from scalekit.caching import (
    CacheInfo,
    LRUCache,
    TLRUCache,
    cached,
    cachedmethod,
    hashkey,
    lru_cache,
    methodkey,
    s3fifo_cache,
    sieve_cache,
    tinylfu_cache,
    ttl_cache,
    typedkey,
)
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from scalekit.testing import FakeClock


@pytest.mark.parametrize("restore", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_a_restored_memo_cache_hits_on_keyword_calls(restore: Any) -> None:
    calls: list[Any] = []
    cache: LRUCache[Any, Any] = LRUCache(10)

    @cached(cache)
    def scale(x: int, *, by: int = 1) -> int:
        calls.append((x, by))
        return x * by

    scale(2, by=3)
    data = pickle.dumps(cache) if restore is pickle.loads else cache
    restored = restore(data)
    assert hashkey(2, by=3) in restored

    @cached(restored)
    def again(x: int, *, by: int = 1) -> int:
        calls.append((x, by))
        return x * by

    assert again(2, by=3) == 6 and calls == [(2, 3)]


def test_keys_tell_calls_apart() -> None:
    assert hashkey(1, 2) == (1, 2) and hashkey(1, b=2) != hashkey(1, 2) != hashkey(2, 1)
    assert hashkey(a=1, b=2) == hashkey(b=2, a=1)
    assert methodkey(object(), 1, b=2) == hashkey(1, b=2)
    assert typedkey(1) != typedkey(1.0) and hashkey(1) == hashkey(1.0)
    assert typedkey(x=1) != typedkey(x=1.0)


class _Prices:
    def __init__(self) -> None:
        self.cache: LRUCache[Any, Any] = LRUCache(10)
        self.calls: list[str] = []

    @cachedmethod(lambda self: self.cache)
    def price(self, sku: str, *, currency: str = "EUR") -> str:
        self.calls.append(sku)
        return f"{sku}:{currency}"


def test_cachedmethod_caches_per_instance() -> None:
    a, b = _Prices(), _Prices()
    assert a.price("x") == "x:EUR" and a.price("x") == "x:EUR" and b.price("x") == "x:EUR"
    assert a.calls == ["x"] and b.calls == ["x"]
    assert a.price("x", currency="USD") == "x:USD" and a.calls == ["x", "x"]
    assert a.price.cache is a.cache and ("x",) in a.cache
    assert a.price.cache_info() == CacheInfo(hits=1, misses=2, maxsize=10, currsize=2)
    assert a.price.cache_key("x") == ("x",)
    a.price.cache_clear()
    assert len(a.cache) == 0 and a.price.cache_info() == CacheInfo(0, 0, 10, 0)
    assert len(b.cache) == 1


def test_cachedmethod_keeps_no_instance_alive() -> None:
    obj = _Prices()
    obj.price("x")
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_cached_on_a_method_keys_on_self_and_keeps_it_alive() -> None:
    # The documented reason to prefer cachedmethod for methods.
    class Keeper:
        @cached(LRUCache(10))
        def value(self) -> int:
            return 1

    obj = Keeper()
    obj.value()
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is not None


def test_cachedmethod_info_counts_per_instance_and_lock() -> None:
    lock = threading.RLock()

    class Counted:
        def __init__(self) -> None:
            self.cache: dict[Any, Any] = {}

        @cachedmethod(lambda self: self.cache, lock=lambda self: lock, info=True)
        def double(self, x: int) -> int:
            return 2 * x

    a, b = Counted(), Counted()
    a.double(1), a.double(1), b.double(1)
    assert a.double.cache_info() == CacheInfo(1, 1, None, 1)
    assert b.double.cache_info() == CacheInfo(0, 1, None, 1)
    assert a.double.cache_lock is lock


def test_cachedmethod_single_flight_and_reentry() -> None:
    class Loop:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        def spin(self, x: int) -> int:
            return self.spin(x)

    from scalekit.caching import ReentrantCallError

    with pytest.raises(ReentrantCallError):
        Loop().spin(1)


def test_cachedmethod_async() -> None:
    class Client:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)
            self.calls = 0

        @cachedmethod(lambda self: self.cache)
        async def fetch(self, x: int) -> int:
            self.calls += 1
            await asyncio.sleep(0)
            return x + 1

    async def main() -> None:
        c = Client()
        assert await asyncio.gather(*(c.fetch(1) for _ in range(10))) == [2] * 10
        assert c.calls == 1 and await c.fetch(1) == 2 and c.calls == 1

    asyncio.run(main())


def test_cachedmethod_needs_a_callable() -> None:
    with pytest.raises(
        ArgumentTypeError, match=r"cache must be callable \(a function of the instance\)"
    ):
        cachedmethod(LRUCache(2))  # type: ignore[arg-type]


def test_tlru_expires_each_entry_when_ttu_says() -> None:
    clock = FakeClock(0.0)
    ttu_calls: list[Any] = []

    def ttu(key: str, value: int, now: float) -> float:
        ttu_calls.append(key)
        return now + value

    cache: TLRUCache[str, int] = TLRUCache(10, ttu=ttu, timer=clock)
    cache["short"], cache["long"] = 1, 100
    assert ttu_calls == ["short", "long"]  # once per write
    clock.advance(1)
    assert "short" not in cache and cache["long"] == 100 and cache.ttu is ttu
    cache["long"] = 0  # already expired: not stored, and the old entry is gone
    assert "long" not in cache and len(cache) == 0
    cache["forever"] = math.inf  # type: ignore[assignment]
    clock.advance(1e9)
    assert cache["forever"] == math.inf


def test_functools_style_decorators() -> None:
    @lru_cache
    def plain(x: int) -> int:
        return x

    @lru_cache(maxsize=None, typed=True)
    def unbounded(x: Any) -> Any:
        return x

    plain(1), plain(1)
    assert plain.cache_info() == CacheInfo(1, 1, 128, 1)
    assert plain.cache_parameters() == {"maxsize": 128, "typed": False}
    unbounded(1), unbounded(1.0), unbounded(1)
    assert unbounded.cache_info() == CacheInfo(1, 2, None, 2)
    unbounded.cache_clear()
    assert unbounded.cache_info() == CacheInfo(0, 0, None, 0)

    clock = FakeClock(0.0)

    @ttl_cache(maxsize=4, ttl=5, timer=clock)
    def now(x: int) -> float:
        return clock()

    assert now(1) == 0.0 and now(1) == 0.0
    clock.advance(5)
    assert now(1) == 5.0
    for decorator in (sieve_cache, s3fifo_cache, tinylfu_cache):
        f = decorator(maxsize=16)(lambda x: -x)
        assert f(3) == -3 and f(3) == -3 and f.cache_info()[:3] == (1, 1, 16)
    unbounded_tinylfu = tinylfu_cache(maxsize=None)(lambda x: -x)
    assert [unbounded_tinylfu(i) for i in range(300)] == [-i for i in range(300)]
    assert unbounded_tinylfu.cache_info() == CacheInfo(0, 300, None, 300)
    with pytest.raises(ConfigurationError):
        tinylfu_cache(maxsize=-1)


@pytest.mark.parametrize(
    "name",
    [
        "lru_cache",
        "fifo_cache",
        "lfu_cache",
        "rr_cache",
        "sieve_cache",
        "s3fifo_cache",
        "tinylfu_cache",
        "ttl_cache",
    ],
)
def test_functools_style_decorators_default_to_128_untyped_as_functools(name: str) -> None:
    import scalekit.caching.func as func

    decorator = getattr(func, name)
    for f in (decorator(lambda x: x), decorator()(lambda x: x)):  # bare and called
        assert f.cache_parameters() == {"maxsize": 128, "typed": False}
        assert f.cache_info().maxsize == 128
        f(1), f(1.0)  # equal untyped keys: one entry, one hit
        assert f.cache_info()[:2] == (1, 1)


def test_tinylfu_cache_uses_the_rng_it_is_given() -> None:
    import random

    class CountingRandom(random.Random):
        draws = 0

        def getrandbits(self, k: int) -> int:
            CountingRandom.draws += 1
            return super().getrandbits(k)

    f = tinylfu_cache(maxsize=8, rng=CountingRandom(7))(lambda x: x)
    order = random.Random(1)
    for _ in range(3000):  # warm keys of equal frequency contest admission: a random draw
        f(order.randrange(40))
    assert CountingRandom.draws > 0


class _Service:
    """Async and sync cachedmethods, with a lock that records whether a write holds it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.lock = _HeldLock()
        self.cache = _LockCheckedCache(self.lock)
        self.calls: list[Any] = []

    @cachedmethod(lambda self: self.cache, lock=lambda self: self.lock)
    async def fetch(self, x: int, *, scale: int = 1) -> str:
        self.calls.append((x, scale))
        await asyncio.sleep(0)
        return f"{self.tag}:{x * scale}"

    @cachedmethod(lambda self: self.cache, key=hashkey, lock=lambda self: self.lock)  # keys self
    def keyed(self, x: int, *, scale: int = 1) -> int:
        return x * scale


class _HeldLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = False

    def __enter__(self) -> None:
        self._lock.acquire()
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False
        self._lock.release()


class _LockCheckedCache(LRUCache[Any, Any]):
    def __init__(self, lock: _HeldLock) -> None:
        super().__init__(maxsize=16)
        self.checked_lock = lock

    def __setitem__(self, key: Any, value: Any) -> None:
        assert self.checked_lock.held, "a cachedmethod wrote the cache without its lock"
        super().__setitem__(key, value)


def test_async_cachedmethod_passes_keywords_stores_under_the_lock_and_keeps_calls_apart() -> None:
    async def main() -> None:
        a, b = _Service("a"), _Service("b")
        # Concurrent calls: two instances with one key, one instance with two keys.
        got = await asyncio.gather(a.fetch(1), b.fetch(1), a.fetch(2), a.fetch(1, scale=3))
        assert got == ["a:1", "b:1", "a:2", "a:3"]
        assert a.calls == [(1, 1), (2, 1), (1, 3)] and b.calls == [(1, 1)]
        assert await a.fetch(1, scale=3) == "a:3" and len(a.calls) == 3  # a hit, keyword included

    asyncio.run(main())


def test_async_cachedmethod_reentry_names_the_method() -> None:
    class Loop:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, Any] = LRUCache(4)

        @cachedmethod(lambda self: self.cache)
        async def spin(self, x: int) -> int:
            return await self.spin(x)

    from scalekit.caching import ReentrantCallError

    with pytest.raises(ReentrantCallError, match=r"Loop\.spin called itself with the same key"):
        asyncio.run(Loop().spin(1))


def test_bound_cache_key_is_the_key_the_call_uses() -> None:
    obj = _Service("a")
    assert obj.keyed.cache_key(2, scale=3) == hashkey(obj, 2, scale=3)
    assert obj.keyed(2, scale=3) == 6
    assert obj.keyed.cache_key(2, scale=3) in obj.cache
    assert obj.fetch.cache_key(2, scale=3) == methodkey(obj, 2, scale=3)


def test_a_bound_cachedmethod_names_a_missing_attribute() -> None:
    obj = _Service("a")
    with pytest.raises(AttributeError, match=r"'_Bound' object has no attribute 'nope'"):
        obj.keyed.nope  # noqa: B018


def test_cachedmethod_misuse_is_refused_and_metaclass_methods_bind_without_a_name() -> None:
    class Meta(type):
        pass

    def lookup(cls: Any, name: str) -> str:
        return name.upper()

    # Set on the metaclass after its creation: no __set_name__, found by value.
    Meta.lookup = cachedmethod(lambda cls: cls.registry)(lookup)  # type: ignore[attr-defined]

    class Priced(metaclass=Meta):
        registry: dict[Any, Any] = {}

        @cachedmethod(lambda self: {})
        def named(self, x: int) -> int:
            return x

        as_class = classmethod(named)  # a named cachedmethod under @classmethod

    assert Priced.lookup("a") == "A" and Priced.registry == {("a",): "A"}  # type: ignore[attr-defined]
    with pytest.raises(ArgumentTypeError, match="outermost decorator"):
        Priced.as_class(1)
    assert Priced().named(1) == 1


def test_cachedmethod_through_its_class_has_the_methods_names() -> None:
    class Holder:
        @cachedmethod(lambda self: {})
        def method(self, x: int) -> int:
            """Doc of the method."""
            return x

    unbound = Holder.method
    assert unbound.__name__ == "method" and unbound.__doc__ == "Doc of the method."
    assert unbound.__qualname__.endswith("Holder.method")
    assert unbound.__wrapped__(Holder(), 3) == 3  # type: ignore[attr-defined]
