"""Static types of the caching API: checked by `mypy --strict` (tests/typing/test_types.py).

Nothing here runs as a test; every `assert_type` is a claim mypy verifies.
"""

from __future__ import annotations

from collections.abc import Coroutine, Hashable
from typing import Any

from typing_extensions import assert_type

from scalekit.caching import (
    CacheInfo,
    LFUCache,
    LRUCache,
    TinyLFUCache,
    TTLCache,
    cached,
    cachedmethod,
    lru_cache,
)


def cache_values() -> None:
    c: LRUCache[str, int] = LRUCache(maxsize=10)
    c["a"] = 1
    assert_type(c["a"], int)
    assert_type(c.get("a"), int | None)
    assert_type(c.get("a", 0), int)
    assert_type(c.get("a", "none"), int | str)
    assert_type(c.get("a", default=None), int | None)
    assert_type(c.pop("a"), int)
    assert_type(c.pop("a", 0), int)
    assert_type(c.pop("a", None), int | None)
    assert_type(c.setdefault("a", 2), int)
    assert_type(c.peek("a"), int | None)
    assert_type(c.peek("a", 0), int)
    assert_type(c.popitem(), tuple[str, int])
    w: TinyLFUCache[str, bytes] = TinyLFUCache(maxsize=10)
    assert_type(w.get("k"), bytes | None)
    assert_type(w.get("k", b""), bytes)
    assert_type(w["k"], bytes)
    t: TTLCache[str, bytes] = TTLCache(maxsize=10, ttl=60)
    assert_type(t.get("k", b""), bytes)
    assert_type(t.pop("k", None), bytes | None)
    f: LFUCache[int, float] = LFUCache(4)
    assert_type(f.get(1, 0.0), float)
    o: LRUCache[str, int | None] = LRUCache(4)
    assert_type(o.setdefault("a"), int | None)


@cached(LRUCache(maxsize=32))
def square(x: int) -> int:
    return x * x


@cached(LRUCache(maxsize=32))
async def fetch(key: str) -> bytes:
    return key.encode()


def decorated() -> None:
    assert_type(square(3), int)
    assert_type(square.cache_info(), CacheInfo)
    assert_type(square.cache_info().hits, int)
    square.cache_clear()
    pending = assert_type(fetch("k"), Coroutine[Any, Any, bytes])
    pending.close()
    assert_type(fetch.cache_info(), CacheInfo)


@lru_cache(maxsize=16)
def cube(x: int) -> int:
    return x**3


def functools_style() -> None:
    assert_type(cube.cache_info(), CacheInfo)
    assert_type(cube.cache_parameters(), dict[str, Any])
    cube.cache_clear()


class Prices:
    def __init__(self) -> None:
        self.cache: LRUCache[str, int] = LRUCache(10)

    @cachedmethod(lambda self: self.cache)
    def price(self, sku: str) -> int:
        return len(sku)


def methods() -> None:
    assert_type(Prices().price("abc"), int)
    shop = Prices()
    assert_type(shop.price.cache_info(), CacheInfo)
    assert_type(shop.price.cache_info().hits, int)
    assert_type(Prices.price(shop, "abc"), int)
    assert_type(shop.price.cache_key("abc"), Hashable)
    shop.price.cache_clear()


class AsyncPrices:
    def __init__(self) -> None:
        self.cache: LRUCache[str, int] = LRUCache(10)

    @cachedmethod(lambda self: self.cache)
    async def price(self, sku: str) -> int:
        return len(sku)


async def async_methods() -> None:
    shop = AsyncPrices()
    assert_type(await shop.price("abc"), int)
    assert_type(await AsyncPrices.price(shop, "abc"), int)
    assert_type(shop.price.cache_info(), CacheInfo)
