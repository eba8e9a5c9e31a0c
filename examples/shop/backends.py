"""Which scalekit backends a shop process uses: memory, Redis, Redis Cluster or ZooKeeper.

Embedded default: ``MemoryLock`` and a local ``TinyLFUCache``. With a Redis
URL, every process shares ``RedisLock`` locks and a ``NearCache`` over a
``RedisCache``; with a Redis Cluster URL, the same over a
``redis.cluster.RedisCluster`` (every key of one lock or one cache entry
shares a hash tag, so it lives in one slot; the shop needs no key of two
SKUs in one slot); with ZooKeeper hosts, ``ZooKeeperLock`` locks and a
local cache. Fencing tokens come from the lock backend, so they only grow
across every process that shares it, as long as the backend keeps its
counters: run Redis with ``appendonly yes``. A ZooKeeper's zxids restart
when its data is wiped, at the same address too, so the shop keeps an id
node there (``backend_id``): a new id means a new backend, whose tokens
are not comparable with the stored fences (``catalog.adopt_fences``).

Lock and cache names carry the catalog's ``shop_id``, so a second run on
the same data directory uses the same locks (and their token counters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scalekit import BackendUnavailableError, ConfigurationError
from scalekit.caching import TinyLFUCache
from scalekit.locking import MemoryLock

from .product_cache import LocalCache, ProductCache

# Seconds: every Redis call is bounded by about (retries + 1) * socket timeout.
REDIS_SOCKET_TIMEOUT = 1.0
REDIS_RETRIES = 2
# Seconds after a write completes within which no other process's near cache
# serves the old value (NearCache's bound; docs/shop.md).
MAX_STALENESS = 0.5
PRODUCT_TTL = 60.0


def _redis_client(url: str, cluster: bool) -> Any:
    import redis
    import redis.cluster
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), REDIS_RETRIES),
    }
    probe = redis.Redis.from_url(url, **options)
    try:
        enabled = bool(probe.info("cluster").get("cluster_enabled"))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BackendUnavailableError(f"cannot reach Redis at {url}: {exc}") from exc
    except redis.ResponseError as exc:  # a database number out of range, an ACL refusal
        option = "--redis-cluster" if cluster else "--redis"
        raise ConfigurationError(f"{option} {url}: Redis refused it: {exc}") from exc
    finally:
        probe.close()
    if cluster and not enabled:
        raise ConfigurationError(
            f"--redis-cluster {url}: not a Redis Cluster node (cluster_enabled:0); "
            f"use --redis {url}"
        )
    if enabled and not cluster:
        raise ConfigurationError(
            f"--redis {url} is a Redis Cluster node (cluster_enabled:1); use --redis-cluster {url}"
        )
    if not cluster:
        return redis.Redis.from_url(url, **options)
    try:
        return redis.cluster.RedisCluster.from_url(url, **options)
    except redis.exceptions.RedisClusterException as exc:
        raise BackendUnavailableError(f"cannot use the Redis Cluster at {url}: {exc}") from exc


def _zookeeper_id(client: Any, path: str) -> str:
    """The random id stored at *path*, created by the first process that asks.

    Raises:
        BackendUnavailableError: ZooKeeper did not answer.
    """
    import contextlib
    import uuid

    from kazoo.exceptions import KazooException, NodeExistsError
    from kazoo.handlers.threading import KazooTimeoutError

    try:
        with contextlib.suppress(NodeExistsError):
            client.create(path, uuid.uuid4().hex.encode(), makepath=True)
        data, _ = client.get(path)
    except (KazooException, KazooTimeoutError) as exc:
        client.stop()
        client.close()
        raise BackendUnavailableError(f"cannot read the shop's id node {path}: {exc}") from exc
    return str(data.decode())


class Backends:
    """The lock factory and product cache of one shop process; `close()` frees them.

    Args:
        namespace: prefix of every lock and cache name (the catalog's ``shop_id``).
        redis_url: share Redis locks and a near cache over this standalone Redis.
        redis_cluster_url: the same over this Redis Cluster (any node's URL).
        zookeeper_hosts: share ZooKeeper locks over this ensemble.
        lock_ttl: seconds a Redis or memory lease lasts.
        cache_size: entries of the local cache layer.

    Raises:
        BackendUnavailableError: the backend does not answer (within about 5 s).
        ConfigurationError: a cluster node given as `--redis`, or a standalone
            server as `--redis-cluster`.
    """

    def __init__(
        self,
        *,
        namespace: str,
        redis_url: str | None = None,
        redis_cluster_url: str | None = None,
        zookeeper_hosts: str | None = None,
        lock_ttl: float = 5.0,
        cache_size: int = 64,
    ) -> None:
        self.kind = "memory"
        # Changes when the backend's data does (ZooKeeper only: a Redis that lost its
        # counters issues tokens from its clock, still above the stored fences).
        self.backend_id = ""
        self.remote_cache: Any = None  # the RedisCache under the near cache, with Redis
        self._closers: list[Callable[[], None]] = []
        # The process-local layer of the product cache (what /metrics reports).
        self.local_cache: TinyLFUCache[str, Any] = TinyLFUCache(cache_size)
        self.cache: ProductCache = LocalCache(self.local_cache)
        self.lock_for: Callable[[str], Any] = lambda name: MemoryLock(
            f"{namespace}:{name}", ttl=lock_ttl
        )
        url = redis_url or redis_cluster_url
        if url is not None:
            self._use_redis(url, redis_cluster_url is not None, namespace, lock_ttl, cache_size)
        elif zookeeper_hosts is not None:
            self._use_zookeeper(zookeeper_hosts, namespace)

    def _use_redis(
        self, url: str, cluster: bool, namespace: str, lock_ttl: float, cache_size: int
    ) -> None:
        from scalekit.caching import NearCache, RedisCache
        from scalekit.locking import RedisLock

        client = _redis_client(url, cluster)
        self._closers.append(client.close)
        remote = RedisCache(
            client,
            namespace=f"shop:{namespace}:product",
            ttl=PRODUCT_TTL,
            lease_ttl=2.0,
            fallback=True,
        )
        self.remote_cache = remote
        self.local_cache = TinyLFUCache(cache_size)
        near = NearCache(self.local_cache, remote, max_staleness=MAX_STALENESS)
        self._closers.insert(0, near.close)
        self.kind = "redis-cluster" if cluster else "redis"
        self.cache = near
        self.lock_for = lambda name: RedisLock(client, f"shop:{namespace}:{name}", ttl=lock_ttl)

    def _use_zookeeper(self, hosts: str, namespace: str) -> None:
        from kazoo.client import KazooClient
        from kazoo.handlers.threading import KazooTimeoutError

        from scalekit.locking import ZooKeeperLock

        client = KazooClient(hosts=hosts, timeout=10.0)
        try:
            client.start(timeout=5)
        except KazooTimeoutError as exc:
            client.close()
            raise BackendUnavailableError(f"cannot reach ZooKeeper at {hosts}: {exc}") from exc
        self.kind = "zookeeper"
        self.backend_id = _zookeeper_id(client, f"/scalekit-shop/{namespace}-id")
        self.lock_for = lambda name: ZooKeeperLock(
            client, f"/scalekit-shop/{namespace}/{name.replace(':', '/')}"
        )
        self._closers += [client.stop, client.close]

    def cache_fallbacks(self) -> int:
        """Product loads served from the database because Redis was unavailable."""
        return 0 if self.remote_cache is None else int(self.remote_cache.stats().fallbacks)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
