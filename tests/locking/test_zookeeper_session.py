"""A ZooKeeper holder is told before the server can expire its session, busy or idle.

Real ZooKeeper behind ``TCPProxy`` blackholes; the first test starts its
own server with a 6 s session cap and takes about 8 s, the others 3-4 s.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.locking import Lease
from scalekit.testing import TCPProxy, ZooKeeperServer

from .conftest import unique
from .test_zookeeper_lock import expire_session

kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking import ZooKeeperReadWriteLock, ZooKeeperSemaphore  # noqa: E402
from scalekit.locking._zk_session import LOST_AFTER  # noqa: E402
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

pytestmark = pytest.mark.zookeeper

# The watch pings every sixth of the timeout; the notice runs on a notifier
# thread. Both are small next to the third of the timeout kept in reserve.
NOTICE_MARGIN = 0.2


def _poll(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _partition(
    server_address: tuple[str, int],
    hosts: str,
    requested: float,
    busy: bool,
) -> tuple[float, float, float]:
    """Hold a lock through a proxy, cut it off; return (cut at, told at, successor in at)."""
    told: list[float] = []
    with TCPProxy(*server_address) as proxy:
        cut = kazoo_client.KazooClient(hosts=f"{proxy.host}:{proxy.port}", timeout=requested)
        other = kazoo_client.KazooClient(hosts=hosts, timeout=5)
        cut.start(timeout=15)
        other.start(timeout=15)
        stop = threading.Event()
        try:
            path = "/" + unique("session")
            lock = ZooKeeperLock(
                cut, path, op_timeout=1, on_lost=lambda _l: told.append(time.monotonic())
            )
            lease = lock.acquire()
            assert lease is not None

            def keep_calling() -> None:  # a holder that talks to ZooKeeper every 0.5 s
                while not stop.is_set():
                    cut.exists_async("/")
                    stop.wait(0.5)

            caller = threading.Thread(target=keep_calling, daemon=True)
            if busy:
                caller.start()
            time.sleep(0.3)  # a few pings answered
            proxy.blackhole()
            cut_at = time.monotonic()
            successor = ZooKeeperLock(other, path).acquire(timeout=30)
            got_at = time.monotonic()
            assert successor is not None and successor.token > lease.token
            _poll(lambda: bool(told), 5)
            successor.release()
            return cut_at, told[0], got_at
        finally:
            stop.set()
            proxy.reset()  # so that stopping the cut-off client need not wait for it
            for client in (cut, other):
                client.stop()
                client.close()


def test_the_grace_follows_the_negotiated_session_timeout() -> None:
    """Asked for 20 s, capped at 6 s by the server: told within 2/3 of 6 s."""
    with ZooKeeperServer(tick_time_ms=50) as server:  # maxSessionTimeout = 120 ticks = 6 s
        cut_at, told_at, got_at = _partition(server.address, server.hosts, 20.0, busy=False)
    assert told_at - cut_at <= LOST_AFTER * 6.0 + NOTICE_MARGIN
    assert told_at < got_at


def test_a_busy_holder_is_told_before_its_successor_gets_in(zookeeper_server: Any) -> None:
    """A holder calling ZooKeeper every 0.5 s during the partition (kazoo sees no silence)."""
    cut_at, told_at, got_at = _partition(
        zookeeper_server.address, zookeeper_server.hosts, 3.0, busy=True
    )
    assert told_at - cut_at <= LOST_AFTER * 3.0 + NOTICE_MARGIN
    assert told_at < got_at


@pytest.mark.parametrize("kind", ["semaphore", "read side"])
def test_a_lease_granted_while_another_is_released_learns_of_session_loss(
    kind: str, zookeeper_server: Any
) -> None:
    """A release racing a grant must not leave the granted lease deaf to the session."""
    holder = kazoo_client.KazooClient(hosts=zookeeper_server.hosts, timeout=4)
    holder.start(timeout=15)
    try:
        seen: list[Lease] = []
        path = "/" + unique("race")
        sem = (
            ZooKeeperSemaphore(holder, path, 2, on_lost=seen.append)
            if kind == "semaphore"
            else ZooKeeperReadWriteLock(holder, path, on_lost=seen.append).read
        )
        first = sem.acquire()
        assert first is not None
        real = sem._do_acquire

        def grant_then_release(*args: Any) -> Any:
            grant = real(*args)
            if grant is not None:
                first.release()  # lands between the server's grant and the new lease
            return grant

        sem._do_acquire = grant_then_release  # type: ignore[method-assign]
        second = sem.acquire()
        assert second is not None
        expire_session(holder, zookeeper_server.hosts)
        assert second.lost.wait(10)
        _poll(lambda: seen == [second], 5)
    finally:
        holder.stop()
        holder.close()
