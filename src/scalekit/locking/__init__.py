"""Distributed locks with fencing tokens and lost-lease notice.

One protocol (`BaseLock`, `Lease`), four backends:

* `MemoryLock`: in-process, the embedded default and for tests;
* `RedisLock`: one Redis server, fair, one round trip per acquire;
* `Redlock`: a quorum of independent Redis servers;
* `ZooKeeperLock`: ephemeral sequential znodes, token = czxid.

The Redis and ZooKeeper backends (with `AsyncRedisLock`, the semaphores and
the read-write locks) import their drivers lazily, so `import
scalekit.locking` needs neither redis nor kazoo. Without the driver,
`from scalekit.locking import RedisLock` raises
[MissingDependencyError][scalekit.exceptions.MissingDependencyError] (an
`ImportError`) that names the extra to install (`redis` or `zookeeper`),
and an attribute lookup (`scalekit.locking.RedisLock`, `getattr`) raises
[MissingBackendError][scalekit.exceptions.MissingBackendError] (an
`AttributeError`, so `hasattr` and `help()` pass over it) with the same
message.
`__all__` lists the names that need no optional driver, so `from
scalekit.locking import *` never imports one; `dir()` lists the backends
too, and `from scalekit.locking import RedisLock` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .base import BaseLock, Lease, LeaseLostEvent, OnLost
from .memory import MemoryLock

if TYPE_CHECKING:
    from .async_redis_lock import AsyncLease as AsyncLease
    from .async_redis_lock import AsyncRedisLock as AsyncRedisLock
    from .redis_lock import RedisLock as RedisLock
    from .redis_rwlock import RedisReadWriteLock as RedisReadWriteLock
    from .redis_semaphore import RedisSemaphore as RedisSemaphore
    from .redlock import Redlock as Redlock
    from .zookeeper_lock import ZooKeeperLock as ZooKeeperLock
    from .zookeeper_rwlock import ZooKeeperReadWriteLock as ZooKeeperReadWriteLock
    from .zookeeper_semaphore import ZooKeeperSemaphore as ZooKeeperSemaphore

__all__ = [
    "BaseLock",
    "Lease",
    "LeaseLostEvent",
    "MemoryLock",
    "OnLost",
]

# Backends whose driver is optional: not in __all__, loaded on first lookup.
_LAZY = {
    "AsyncLease": ".async_redis_lock",
    "AsyncRedisLock": ".async_redis_lock",
    "RedisLock": ".redis_lock",
    "RedisReadWriteLock": ".redis_rwlock",
    "RedisSemaphore": ".redis_semaphore",
    "Redlock": ".redlock",
    "ZooKeeperLock": ".zookeeper_lock",
    "ZooKeeperReadWriteLock": ".zookeeper_rwlock",
    "ZooKeeperSemaphore": ".zookeeper_semaphore",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
