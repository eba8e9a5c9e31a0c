"""A user program over the public API, checked by `mypy --strict` (tests/typing/test_api_types.py).

Nothing here runs. Each `assert_type` is a claim mypy verifies; each
`# type: ignore[code]` marks a mistake the types must catch: strict mode
(`warn_unused_ignores`) fails the check if that error is not reported.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio
from typing_extensions import assert_type

from scalekit.caching import (
    CacheInfo,
    LRUCache,
    NearCacheStats,
    RedisCacheStats,
    fifo_cache,
    lfu_cache,
    lru_cache,
    rr_cache,
    s3fifo_cache,
    sieve_cache,
    tinylfu_cache,
    ttl_cache,
)
from scalekit.locking import AsyncRedisLock, RedisLock
from scalekit.observability import Telemetry, watch_cache
from scalekit.sharding import HashRouter, TimeRouter


@tinylfu_cache(maxsize=8, rng=random.Random(1))
def by_tinylfu(x: int) -> str:
    return str(x)


@ttl_cache(maxsize=8, ttl=5)
def by_ttl(x: int) -> str:
    return str(x)


@ttl_cache
def by_bare_ttl(x: int) -> str:
    return str(x)


@fifo_cache(maxsize=8)
def by_fifo(x: int) -> str:
    return str(x)


@lru_cache(maxsize=8)
def by_lru(x: int, *, scale: float = 1.0) -> float:
    return x * scale


@lru_cache
def by_bare_lru(x: int) -> bytes:
    return bytes(x)


@lfu_cache(maxsize=None)
def by_lfu(x: int) -> str:
    return str(x)


@rr_cache(maxsize=8, choice=random.choice)
def by_rr(x: int) -> str:
    return str(x)


@sieve_cache(8)
def by_sieve(x: int) -> str:
    return str(x)


@s3fifo_cache(maxsize=8, typed=True)
def by_s3fifo(x: int) -> str:
    return str(x)


@tinylfu_cache
def by_bare_tinylfu(x: int) -> str:
    return str(x)


def decorator_factories_keep_the_function_types() -> None:
    for f in (by_tinylfu, by_ttl, by_bare_ttl, by_fifo, by_lfu, by_rr, by_sieve, by_s3fifo):
        assert_type(f(1), str)
        assert_type(f.cache_info(), CacheInfo)
        assert_type(f.cache_parameters(), dict[str, Any])
    assert_type(by_bare_tinylfu(1), str)
    assert_type(by_lru(1, scale=2.0), float)
    assert_type(by_bare_lru(1), bytes)
    assert_type(by_lru.cache_info().hits, int)
    by_tinylfu("x")  # type: ignore[arg-type]
    by_ttl("x")  # type: ignore[arg-type]
    by_fifo("x")  # type: ignore[arg-type]
    by_lru(1, scale="x")  # type: ignore[arg-type]
    by_bare_lru("x")  # type: ignore[arg-type]
    wrong: int = by_fifo(1)  # type: ignore[assignment]  # noqa: F841
    by_fifo.cache_info().nope  # type: ignore[attr-defined]  # noqa: B018


def routers_take_the_keys_they_accept() -> None:
    users = HashRouter(["db0", "db1"])
    assert_type(users.route("user:1"), str)
    assert_type(users.route(b"user:1"), str)
    assert_type(users.route(42), str)
    users.route(1.5)  # type: ignore[arg-type]
    users.route(None)  # type: ignore[arg-type]
    orders = TimeRouter("month", "orders_{:%Y_%m}")
    assert_type(orders.route(datetime(2026, 1, 1, tzinfo=timezone.utc)), str)
    orders.route("2026-01-01")  # type: ignore[arg-type]
    TimeRouter("fortnight", "x_{:%Y}")  # type: ignore[arg-type]


def locks_take_the_client_of_their_flavour(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> None:
    assert_type(RedisLock(client, "orders"), RedisLock)
    assert_type(AsyncRedisLock(aclient, "orders"), AsyncRedisLock)
    RedisLock("not a client", "orders")  # type: ignore[arg-type]
    RedisLock(aclient, "orders")  # type: ignore[arg-type]
    AsyncRedisLock(client, "orders")  # type: ignore[arg-type]


def observability_names_what_exists(hub: Telemetry) -> None:
    watch_cache(LRUCache(8), "products", telemetry=hub)
    watch_cache("not a cache", "products")  # type: ignore[arg-type]
    hub.add("scalekit_cache_hits", cache="products")
    hub.set("scalekit_cache_size", 3.0, cache="products")
    hub.observe("scalekit_lock_wait_seconds", 0.1, lock="orders", outcome="acquired")
    hub.add("no.such.metric")  # type: ignore[arg-type]
    hub.add("scalekit_cache_size", cache="products")  # type: ignore[arg-type]  # a gauge


def redis_tier_stats(redis_stats: RedisCacheStats, near_stats: NearCacheStats) -> None:
    assert_type(redis_stats.hit_ratio, float)
    assert_type(near_stats.hit_ratio, float)
    assert_type(LRUCache[str, int](4).stats().hit_ratio, float)


class Product:
    price = 0


def redis_tier_values_are_typed(client: redis.Redis) -> None:
    from scalekit.caching import NearCache, RedisCache

    products = RedisCache[Product](client, namespace="products")
    assert_type(products.get("42"), Product | None)
    assert_type(products.get("42", 0), Product | int)
    assert_type(products.get_or_load("42", Product), Product)
    assert_type(products.get_many(["42"]), dict[str, Product])
    products.set("42", Product())
    annotated: RedisCache[Product] = RedisCache(client, namespace="products")
    assert_type(annotated.get_or_load("42", Product).price, int)
    near = NearCache(LRUCache[str, Any](100), products)
    assert_type(near, NearCache[Product])
    assert_type(near.get("42"), Product | None)
    assert_type(near.get_or_load("42", Product), Product)
    untyped = RedisCache(client, namespace="any")  # no annotation needed: RedisCache[Any]
    assert_type(untyped, RedisCache[Any])
    price: int = products.get("42")  # type: ignore[assignment]  # may be None
    label: str = products.get_or_load("42", Product)  # type: ignore[assignment]
    products.set("42", "not a product")  # type: ignore[arg-type]
    products.get_or_load("42", lambda: "not a product")  # type: ignore[arg-type, return-value]
    near.set("42", 7)  # type: ignore[arg-type]
    del price, label
