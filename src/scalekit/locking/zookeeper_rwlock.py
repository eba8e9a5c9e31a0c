"""A read-write lock on ZooKeeper: the shared-lock recipe with read- and write- nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .lease import OnLost
from .zookeeper_lock import ZooKeeperLock

__all__ = ["ZooKeeperReadWriteLock"]


class _ZooKeeperSide(ZooKeeperLock):
    """The read or write side of a `ZooKeeperReadWriteLock`."""

    _family = ("read-", "write-")

    def __init__(self, mode: str, client: Any, path: str, **options: Any) -> None:
        self._node_prefix = "read-" if mode == "r" else "write-"
        self.mode = mode
        super().__init__(client, path, **options)

    def _blocking(self, ahead: list[str]) -> list[str]:
        if self.mode == "r":
            return [c for c in ahead if c.startswith("write-")]
        return ahead


class ZooKeeperReadWriteLock:
    """A read-write lock on ZooKeeper: `rw.read` and `rw.write` are the two locks.

    ZooKeeper's shared-lock recipe: readers create `read-` nodes and hold
    the lock when no `write-` node precedes theirs (they watch the last
    such node); writers create `write-` nodes and hold it when theirs is
    first (they watch the node just before). Tokens are `czxid`, shared.

    Args:
        client: a started `kazoo.client.KazooClient`.
        path: the lock's znode.

    The other options (`op_timeout`, `suspended_grace`, `reentrant`,
    `on_lost`, `clock`) are those of `ZooKeeperLock`, for both sides.

    Thread-safe. Cost: as `ZooKeeperLock`.
    """

    def __init__(
        self,
        client: Any,
        path: str,
        *,
        op_timeout: float = 5.0,
        suspended_grace: float | None = None,
        reentrant: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        options = dict(
            op_timeout=op_timeout,
            suspended_grace=suspended_grace,
            reentrant=reentrant,
            on_lost=on_lost,
            clock=clock,
        )
        self.path = path
        self.read: ZooKeeperLock = _ZooKeeperSide("r", client, path, **options)
        self.write: ZooKeeperLock = _ZooKeeperSide("w", client, path, **options)

    def __repr__(self) -> str:
        return f"ZooKeeperReadWriteLock({self.path!r})"
