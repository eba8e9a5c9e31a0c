"""Distributed locks with fencing tokens and lost-lease notice.

One protocol (:class:`BaseLock`, :class:`Lease`), four backends:

* :class:`MemoryLock` - in-process, the embedded default and for tests;
* :class:`RedisLock` - one Redis server, fair, one round trip per acquire;
* :class:`Redlock` - a quorum of independent Redis servers;
* :class:`ZooKeeperLock` - ephemeral sequential znodes, token = czxid.

The Redis and ZooKeeper backends import their drivers lazily, so
``import scalekit.locking`` needs neither redis nor kazoo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BaseLock, Lease, LeaseLostEvent, OnLost
from .memory import MemoryLock

if TYPE_CHECKING:
    from .async_redis_lock import AsyncLease, AsyncRedisLock
    from .redis_lock import RedisLock
    from .redis_rwlock import RedisReadWriteLock
    from .redis_semaphore import RedisSemaphore
    from .redlock import Redlock
    from .zookeeper_lock import ZooKeeperLock
    from .zookeeper_rwlock import ZooKeeperReadWriteLock
    from .zookeeper_semaphore import ZooKeeperSemaphore

__all__ = [
    "AsyncLease",
    "AsyncRedisLock",
    "BaseLock",
    "Lease",
    "LeaseLostEvent",
    "MemoryLock",
    "OnLost",
    "RedisLock",
    "RedisReadWriteLock",
    "RedisSemaphore",
    "Redlock",
    "ZooKeeperLock",
    "ZooKeeperReadWriteLock",
    "ZooKeeperSemaphore",
]

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scalekit.locking' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
