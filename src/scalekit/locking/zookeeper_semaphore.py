"""A counting semaphore on ZooKeeper: the lock recipe with room for n holders."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._validation import positive_int
from ..exceptions import ConfigurationError
from .lease import OnLost
from .zookeeper_lock import ZooKeeperLock

__all__ = ["ZooKeeperSemaphore"]


class ZooKeeperSemaphore(ZooKeeperLock):
    """A counting semaphore on ZooKeeper: the first *n* znodes under *path* hold it.

    The lock recipe with room for *n*: a contender holds a place when fewer
    than *n* nodes precede its own. A waiter watches the children of the
    path, since any node ahead of it may leave. Tokens are the nodes'
    `czxid`; every client of a path must use the same *n*. The path's data
    holds the *n* it is in use with: an acquire with another *n* while a
    contender is queued or holds it raises `ConfigurationError` (as kazoo's
    `Semaphore` refuses "Inconsistent max leases"); an idle path takes the
    *n* of its next acquire.

    Args:
        client: a started `kazoo.client.KazooClient`.
        path: the semaphore's znode.
        n: how many holders at once.

    The other options (`op_timeout`, `suspended_grace`, `reentrant`,
    `on_lost`, `clock`) are those of `ZooKeeperLock`.

    Raises:
        ConfigurationError: *n* not a positive integer, or as ZooKeeperLock;
            from `acquire()`, the path is in use with another *n*.

    Thread-safe. Cost: a get of the path, a transaction (check of *n*,
    create) and an exists, then a get_children to acquire; one delete
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

    def _create(self, attempt: Any, deadline: float | None) -> tuple[str, int]:
        """Create the node in one transaction with a check of the *n* just read.

        A change of the path's *n* between the check and the create (another
        *n* took an idle path over) fails the transaction, and the check runs
        again: it then sees the other *n* in use and refuses.
        """
        while True:
            version = self._check_n(deadline)
            transaction = self.client.transaction()
            transaction.check(self.path, version)
            transaction.create(
                f"{self.path}/{self._node_prefix}{attempt.owner}-",
                b"",
                ephemeral=True,
                sequence=True,
            )
            pending = transaction.commit_async()
            pending.rawlink(lambda result, a=attempt: self._created_late(a, result))
            checked, created = self._call("create", pending, self._budget(deadline))
            if isinstance(checked, Exception):
                continue  # the path's n or version changed since the check
            if isinstance(created, Exception):
                raise created
            stat = self._call("exists", self.client.exists_async(created), self._budget(deadline))
            # A node gone already (its session expired) is not among the children: the
            # caller starts over, and never uses this czxid.
            return created, 0 if stat is None else int(stat.czxid)

    def _check_n(self, deadline: float | None) -> int:
        """Store *n* in the path's data, or refuse if the path is in use with another.

        Returns:
            The version of the path's data that holds this client's *n*.
        """
        from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

        mine = str(self._limit).encode()
        while True:
            try:
                data, stat = self._call(
                    "get", self.client.get_async(self.path), self._budget(deadline)
                )
            except NoNodeError:
                try:
                    pending = self.client.create_async(self.path, mine, makepath=True)
                    self._call("create", pending, self._budget(deadline))
                    return 0
                except NodeExistsError:
                    continue
            if data == mine:
                return int(stat.version)
            if data:
                children = self._call(
                    "get_children",
                    self.client.get_children_async(self.path),
                    self._budget(deadline),
                )
                if any(c.startswith(self._family) for c in children):
                    raise ConfigurationError(
                        f"semaphore {self.path!r}: this client has n={self._limit}, but the "
                        f"semaphore is in use with n={data.decode(errors='replace')}; every "
                        "client of a semaphore must use the same n (a new n takes over once "
                        "it has no holder and no waiter)"
                    )
            try:
                pending = self.client.set_async(self.path, mine, version=stat.version)
                return int(self._call("set", pending, self._budget(deadline)).version)
            except BadVersionError:
                continue
