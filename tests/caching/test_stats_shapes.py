"""Every cache's `stats()` has one shape: an immutable named tuple with `hit_ratio`.

The Redis tier's snapshot classes are exported from `scalekit.caching` next
to `CacheStats`, and their `hit_ratio` means what `CacheStats.hit_ratio`
means: the share of lookups answered without calling the loader (or, for a
`NearCache`, without going to Redis).
"""

from __future__ import annotations

from typing import Any

import pytest

import scalekit.caching
from scalekit.caching import LRUCache, NearCache, NearCacheStats, RedisCache, RedisCacheStats
from tests.caching._redis_helpers import make_client, unique_namespace


def test_the_redis_tier_stats_classes_are_exported() -> None:
    assert scalekit.caching.RedisCacheStats is RedisCacheStats
    assert scalekit.caching.NearCacheStats is NearCacheStats
    assert {"RedisCacheStats", "NearCacheStats"} <= set(dir(scalekit.caching))


def test_hit_ratio_is_zero_before_the_first_lookup() -> None:
    assert RedisCacheStats(*[0] * len(RedisCacheStats._fields)).hit_ratio == 0.0
    assert NearCacheStats(0, 0, 0, 0).hit_ratio == 0.0
    assert LRUCache(2).stats().hit_ratio == 0.0


@pytest.mark.redis
def test_redis_cache_hit_ratio_counts_loads_avoided(redis_server: Any) -> None:
    cache = RedisCache(
        make_client(("standalone", redis_server.url)), namespace=unique_namespace(), ttl=60
    )
    for _ in range(4):  # one miss (the load), then three hits
        assert cache.get_or_load("k", lambda: 7) == 7
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 1)
    assert stats.hit_ratio == 0.75
    with pytest.raises(AttributeError):
        stats.hits = 0  # type: ignore[misc]


@pytest.mark.redis
def test_near_cache_hit_ratio_counts_reads_kept_local(redis_server: Any) -> None:
    remote = RedisCache(
        make_client(("standalone", redis_server.url)), namespace=unique_namespace(), ttl=60
    )
    # A generous staleness bound: a heartbeat late on a loaded machine would
    # send reads to Redis, and this test is about what the counts mean.
    with NearCache(LRUCache(8), remote, max_staleness=10.0) as near:
        near.set("k", 1)
        assert near.sync(10)
        for _ in range(4):
            assert near.get("k") == 1
        stats = near.stats()
    assert stats.local_hits + stats.remote_reads == 4
    assert stats.hit_ratio == stats.local_hits / 4
    assert stats.local_hits >= 3  # only the first read may go to Redis
