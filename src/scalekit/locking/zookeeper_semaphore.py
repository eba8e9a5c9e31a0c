"""A counting semaphore on ZooKeeper: the lock recipe with room for n holders."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._validation import positive_int
from .lease import OnLost
from .zookeeper_lock import ZooKeeperLock

__all__ = ["ZooKeeperSemaphore"]


class ZooKeeperSemaphore(ZooKeeperLock):
    """A counting semaphore on ZooKeeper: the first *n* znodes under *path* hold it.

    The lock recipe with room for *n*: a contender holds a place when fewer
    than *n* nodes precede its own. A waiter watches the children of the
    path, since any node ahead of it may leave. Tokens are the nodes'
    `czxid`; every client of a path must use the same *n*.

    Args:
        client: a started `kazoo.client.KazooClient`.
        path: the semaphore's znode.
        n: how many holders at once.

    The other options (`op_timeout`, `suspended_grace`, `reentrant`,
    `on_lost`, `clock`) are those of `ZooKeeperLock`.

    Raises:
        ConfigurationError: *n* not a positive integer, or as ZooKeeperLock.

    Thread-safe. Cost: a create and a get_children to acquire, one delete
    to release; every release wakes all waiters (herd).
    """

    def __init__(
        self,
        client: Any,
        path: str,
        n: int,
        *,
        op_timeout: float = 5.0,
        suspended_grace: float | None = None,
        reentrant: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = positive_int("n", n)
        self.n = self._limit
        super().__init__(
            client,
            path,
            op_timeout=op_timeout,
            suspended_grace=suspended_grace,
            reentrant=reentrant,
            on_lost=on_lost,
            clock=clock,
        )
