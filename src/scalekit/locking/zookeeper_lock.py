"""A ZooKeeper lock: ephemeral sequential znodes, each waiter watching its predecessor.

The recipe of ZooKeeper's documentation and kazoo's `Lock`: a contender
creates `<path>/lock-<owner>-<seq>` (ephemeral, sequential) and holds the lock
when its node has the lowest sequence number; otherwise it watches only
the node just before its own, so a release wakes exactly one waiter.

The fencing token is the node's `czxid` (the transaction id that created
it, from `create(..., include_data=True)`): it grows with every write to
the ensemble and, unlike the sequence suffix, never restarts.

A lease ends with the session. The holder is told before the server can
expire it, busy or idle, and on a follower cut from its leader too: every
lease of the client is declared lost at `last_heard + 2/3` of the
*negotiated* session timeout, `last_heard` being the send time of the
latest answered request the leader took part in (a `sync` or a write;
a follower answers reads by itself), minus a quarter of the timeout (see
`_zk_session`); `LOST` from kazoo, or `SUSPENDED` for longer than an
explicit `suspended_grace`, declares it at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    from kazoo.exceptions import (
        ConnectionLoss,
        NoNodeError,
        OperationTimeoutError,
        SessionExpiredError,
    )
    from kazoo.protocol.states import KazooState
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .._validation import non_empty_str, positive_number
from ..exceptions import BackendUnavailableError
from ._clients import check_kazoo
from ._zk_session import session_watch
from .base import BaseLock, Grant, Lease, OnLost

__all__ = ["ZooKeeperLock"]

_PREFIX = "lock-"


class _Attempt:
    __slots__ = ("abandoned", "czxid", "epoch", "maybe_created", "node", "owner", "wake")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.maybe_created = False
        self.abandoned = False
        self.node: str | None = None
        self.czxid = 0
        self.epoch = 0
        self.wake = threading.Event()


class ZooKeeperLock(BaseLock):
    """A distributed lock on a ZooKeeper ensemble, fair and fenced by `czxid`.

    Args:
        client: a started `kazoo.client.KazooClient` you configured.
        path: the lock's znode, e.g. `/locks/stock/42`; it is the name.
        op_timeout: the most any single ZooKeeper call may take before
            `BackendUnavailableError`.
        suspended_grace: if set, seconds the connection may stay `SUSPENDED`
            before every lease is declared lost. Not needed for safety: leases
            are declared lost at the latest 5/12 of the negotiated session
            timeout after the send time of the last request the leader
            answered, whatever kazoo's state.
        reentrant: let the owning thread acquire again, counted.
        on_lost: called once with a lease when it is found lost.
        clock: monotonic seconds (inject a FakeClock in tests).

    Raises:
        ConfigurationError: empty `path` or `op_timeout` <= 0.
        ArgumentTypeError: `client` is not a `KazooClient`.

    There is no ttl: a lease lasts as long as the client's session, and the
    holder is told before the server can expire that session (see
    docs/locking.md for the clock assumption).

    Thread-safe. Cost: acquire is a create and a get_children (plus an
    exists watch while waiting, and a sync with each later get_children);
    release is one delete. One `sync` ping per sixth of the session
    timeout per client while leases are live.
    """

    _track_live = True
    _limit = 1
    _node_prefix = _PREFIX
    _family: tuple[str, ...] = (_PREFIX,)

    def _blocking(self, ahead: list[str]) -> list[str]:
        """Of the contenders ahead of ours, those that keep us waiting (all, for a lock)."""
        return ahead

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
        check_kazoo("client", client)
        non_empty_str("path", path)
        super().__init__(path, ttl=None, reentrant=reentrant, on_lost=on_lost, clock=clock)
        self.client = client
        self.path = path.rstrip("/") or "/"
        self.op_timeout = positive_number("op_timeout", op_timeout)
        self.suspended_grace = (
            None if suspended_grace is None else positive_number("suspended_grace", suspended_grace)
        )
        self._suspended_timer: threading.Timer | None = None
        self._nodes: dict[int, str] = {}
        self._node_epochs: dict[int, int] = {}  # the loss epoch each node was granted in
        # Bumped on every loss of all leases: a grant made before it is lost too.
        self._epoch = 0
        self._watch = session_watch(client)
        self._orphans: set[str] = set()
        self._reaper: threading.Thread | None = None

    def _call(self, what: str, async_result: Any, budget: float | None = None) -> Any:
        wait = self.op_timeout if budget is None else max(min(budget, self.op_timeout), 0.001)
        try:
            return async_result.get(timeout=wait)
        except self.client.handler.timeout_exception as exc:
            raise BackendUnavailableError(
                f"ZooKeeper did not answer {what} on {self.path!r} within {wait:.3g}s"
            ) from exc
        except (ConnectionLoss, SessionExpiredError, OperationTimeoutError) as exc:
            raise BackendUnavailableError(
                f"ZooKeeper {what} on {self.path!r} failed: {exc!r}"
            ) from exc

    # -- session watch ------------------------------------------------------
    def _on_state(self, state: str) -> None:
        """Kazoo's connection listener: must not block."""
        timer = self._suspended_timer
        if state == KazooState.CONNECTED:
            if timer is not None:
                timer.cancel()
                self._suspended_timer = None
        elif state == KazooState.SUSPENDED:
            grace = self.suspended_grace
            if timer is None and grace is not None:
                timer = threading.Timer(grace, self._lose_all)
                timer.daemon = True
                self._suspended_timer = timer
                timer.start()
        elif state == KazooState.LOST:
            if timer is not None:
                timer.cancel()
                self._suspended_timer = None
            self._lose_all()

    def _lose_all(self) -> None:
        self._suspended_timer = None
        with self._live_lock:
            self._epoch += 1
            leases = list(self._live)
        for lease in leases:
            self._mark_lost(lease, "session_lost")

    # -- the backend --------------------------------------------------------
    def _new_attempt(self, owner: str) -> Any:
        return _Attempt(owner)

    def _find_own(self, attempt: Any, deadline: float | None) -> None:
        """Adopt our node after a create whose reply was lost (it may exist)."""
        mine = f"{self._node_prefix}{attempt.owner}-"
        try:
            children = self._call(
                "get_children", self.client.get_children_async(self.path), self._budget(deadline)
            )
        except NoNodeError:  # the lost create never made the lock's path: nothing to adopt
            children = []
        for child in children:
            if child.startswith(mine):
                node = f"{self.path}/{child}"
                stat = self._call("exists", self.client.exists_async(node), self._budget(deadline))
                if stat is not None:
                    attempt.node, attempt.czxid = node, int(stat.czxid)
        attempt.maybe_created = False

    def _budget(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock()

    def _do_acquire(self, attempt: Any, blocking: bool, deadline: float | None) -> Grant | None:
        if attempt.node is None and attempt.maybe_created:
            self._find_own(attempt, deadline)
        synced = None
        if attempt.node is None:
            # The owner token in the name lets us find the node if the reply is lost.
            attempt.maybe_created = True
            sent_at = time.monotonic()  # a create goes through the leader: it proves the session
            node, czxid = self._create(attempt, deadline)
            attempt.node, attempt.czxid, attempt.maybe_created = node, czxid, False
        else:
            # A follower answers get_children by itself, even cut from its leader: a sync
            # (answered first, requests being answered in order) proves the session.
            sent_at = time.monotonic()
            synced = self.client.sync_async("/")
        children = self._call(
            "get_children", self.client.get_children_async(self.path), self._budget(deadline)
        )
        contenders = sorted(
            (c for c in children if c.startswith(self._family)), key=lambda c: c[-10:]
        )
        mine = attempt.node.rsplit("/", 1)[1]
        if mine not in contenders:
            # Our node vanished with an expired session: start over in a new one.
            attempt.node = None
            return None
        ahead = self._blocking(contenders[: contenders.index(mine)])
        if len(ahead) < self._limit:
            if synced is not None:
                self._call("sync", synced, self._budget(deadline))
            self._watch.heard(sent_at)  # the leader answered: the session was alive then
            with self._live_lock:
                attempt.epoch = self._epoch
            self._watch.subscribe(self)
            self._nodes[attempt.czxid] = attempt.node
            self._node_epochs[attempt.czxid] = attempt.epoch
            return int(attempt.czxid), None
        if not blocking:
            return None
        attempt.wake.clear()
        if self._limit == 1:
            # Only the last blocker before ours can let us in: watch it alone.
            predecessor = f"{self.path}/{ahead[-1]}"
            stat = self._call(
                "exists",
                self.client.exists_async(predecessor, watch=lambda _event: attempt.wake.set()),
                self._budget(deadline),
            )
            if stat is None:
                attempt.wake.set()
        else:
            # Any of the nodes ahead may leave: watch the children (a semaphore's herd).
            watched = self._call(
                "get_children",
                self.client.get_children_async(self.path, watch=lambda _event: attempt.wake.set()),
                self._budget(deadline),
            )
            before = sorted(
                (c for c in watched if c.startswith(self._family) and c[-10:] < mine[-10:]),
                key=lambda c: c[-10:],
            )
            if len(self._blocking(before)) < self._limit:
                attempt.wake.set()
        return None

    def _create(self, attempt: Any, deadline: float | None) -> tuple[str, int]:
        """Create the attempt's sequential node; its path and `czxid`."""
        pending = self.client.create_async(
            f"{self.path}/{self._node_prefix}{attempt.owner}-",
            b"",
            ephemeral=True,
            sequence=True,
            makepath=True,
            include_data=True,
        )
        pending.rawlink(lambda result, a=attempt: self._created_late(a, result))
        node, stat = self._call("create", pending, self._budget(deadline))
        return node, int(stat.czxid)

    def _wait(self, attempt: Any, timeout: float | None) -> None:
        if attempt.node is not None:
            attempt.wake.wait(timeout)

    def _abandon(self, attempt: Any, budget: float) -> None:
        attempt.abandoned = True
        if attempt.node is None:
            if attempt.maybe_created:
                self._orphan(attempt.owner)  # our node may exist: the reaper finds it
            return
        try:
            with contextlib.suppress(NoNodeError):
                self._call("delete", self.client.delete_async(attempt.node), budget)
        except BackendUnavailableError:
            # A node left behind would block every other client for the whole session.
            self._orphan(attempt.owner)
            raise

    def _created_late(self, attempt: Any, result: Any) -> None:
        """Kazoo callback: a create that completed after its attempt was given up."""
        if attempt.abandoned and result.successful():
            self._orphan(attempt.owner)

    def _orphan(self, owner: str) -> None:
        """Delete the nodes of *owner* in the background, retrying until ZooKeeper answers."""
        with self._live_lock:
            self._orphans.add(owner)
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, daemon=True, name=f"scalekit-zk-reaper:{self.path}"
                )
                self._reaper.start()

    def _reap(self) -> None:
        while True:
            with self._live_lock:
                owners = set(self._orphans)
                if not owners:
                    self._reaper = None
                    return
            try:
                children = self._call("get_children", self.client.get_children_async(self.path))
                for child in children:
                    if any(child.startswith(f"{self._node_prefix}{o}-") for o in owners):
                        with contextlib.suppress(NoNodeError):
                            node = f"{self.path}/{child}"
                            self._call("delete", self.client.delete_async(node))
                with self._live_lock:
                    self._orphans -= owners
                    # Released leases whose release failed: their nodes are gone now.
                    self._live -= {lease for lease in self._live if lease.owner in owners}
            except (BackendUnavailableError, NoNodeError):
                time.sleep(0.2)

    def _granted(self, attempt: Any, lease: Lease) -> None:
        lease.lost._due = self._watch.past_due  # read on every is_set(): see LeaseLostEvent
        with self._live_lock:
            self._live.add(lease)
            # Lost between the grant and now (the session, or its deadline): lost too.
            lost = attempt.epoch != self._epoch
        if lost or time.monotonic() >= self._watch.lost_at():
            self._mark_lost(lease, "session_lost")
        else:
            self._watch.subscribe(self)  # the watch must not sleep on a live lease

    def _do_release(self, lease: Lease) -> bool:
        node = self._nodes.pop(lease.token, None)
        epoch = self._node_epochs.pop(lease.token, None)
        if node is None:
            return False
        try:
            self._call("delete", self.client.delete_async(node))
        except NoNodeError:
            return False
        except BackendUnavailableError as exc:
            if isinstance(exc.__cause__, SessionExpiredError):
                return False  # the session, and the node with it, is gone: lost
            # Whether the node is still there is known only once the session is: keep
            # the lease watched, so a session found lost tells it, until the reaper
            # deletes the node. A loss of every lease since the grant (LOST while this
            # call ran, the lease already out of the watch) means it is gone.
            with self._live_lock:
                lost = epoch != self._epoch
                if not lost:
                    self._live.add(lease)
            self._orphan(lease.owner)  # the reaper deletes the node if it is still there
            if lost:
                return False
            raise
        return True

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        node = self._nodes.get(lease.token)
        if node is None:
            return False
        return self._call("exists", self.client.exists_async(node)) is not None

    def locked(self) -> bool:
        """True when every place is taken (the lock: when someone holds it). One get_children."""
        try:
            children = self._call("get_children", self.client.get_children_async(self.path))
        except NoNodeError:
            return False
        return sum(1 for c in children if c.startswith(self._family)) >= self._limit
