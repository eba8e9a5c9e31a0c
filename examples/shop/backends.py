"""Which scalekit backends a shop process uses: memory, Redis or ZooKeeper.

Embedded default: ``MemoryLock`` and a local ``TinyLFUCache``. With a Redis
URL, every process shares ``RedisLock`` locks and a ``NearCache`` over a
``RedisCache``; with ZooKeeper hosts, ``ZooKeeperLock`` locks and a local
cache. Fencing tokens come from the lock backend, so they only grow across
every process that shares it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scalekit.caching import TinyLFUCache
from scalekit.locking import MemoryLock

from .service import LocalCache, ProductCache


class Backends:
    """The lock factory and product cache of one shop process; :meth:`close` frees them."""

    def __init__(
        self,
        *,
        run_id: str,
        redis_url: str | None = None,
        zookeeper_hosts: str | None = None,
        lock_ttl: float = 5.0,
        cache_size: int = 64,
    ) -> None:
        self.kind = "memory"
        self._closers: list[Callable[[], None]] = []
        self.cache: ProductCache = LocalCache(TinyLFUCache(cache_size))
        self.lock_for: Callable[[str], Any] = lambda name: MemoryLock(name, ttl=lock_ttl)
        if redis_url is not None:
            self._use_redis(redis_url, run_id, lock_ttl, cache_size)
        elif zookeeper_hosts is not None:
            self._use_zookeeper(zookeeper_hosts, run_id)

    def _use_redis(self, url: str, run_id: str, lock_ttl: float, cache_size: int) -> None:
        import redis

        from scalekit.caching import NearCache, RedisCache
        from scalekit.locking import RedisLock

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        near = NearCache(
            TinyLFUCache(cache_size),
            RedisCache(client, namespace=f"shop:{run_id}:product", ttl=60.0),
        )
        self.kind = "redis"
        self.cache = near
        self.lock_for = lambda name: RedisLock(client, f"shop:{run_id}:{name}", ttl=lock_ttl)
        self._closers += [near.close, client.close]

    def _use_zookeeper(self, hosts: str, run_id: str) -> None:
        from kazoo.client import KazooClient

        from scalekit.locking import ZooKeeperLock

        client = KazooClient(hosts=hosts, timeout=10.0)
        client.start(timeout=15)
        self.kind = "zookeeper"
        self.lock_for = lambda name: ZooKeeperLock(
            client, f"/scalekit-shop/{run_id}/{name.replace(':', '/')}"
        )
        self._closers += [client.stop, client.close]

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
