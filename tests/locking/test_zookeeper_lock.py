"""ZooKeeperLock on a real ZooKeeper: czxid tokens, predecessor watches, session loss."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import LockLostError
from scalekit.locking import Lease

from .conftest import unique

kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

pytestmark = pytest.mark.zookeeper


def _poll(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def expire_session(client: Any, hosts: str) -> None:
    """Expire *client*'s session the way kazoo's own harness does.

    A second client joins the same session (id and password) and closes
    it: the server ends the session, and *client* learns so on reconnect.
    """
    session_id, password = client.client_id
    twin = kazoo_client.KazooClient(hosts=hosts, client_id=(session_id, password), timeout=5)
    twin.start(timeout=10)
    twin.stop()
    twin.close()


def test_token_is_the_czxid_of_the_lock_node(kazoo_client: Any) -> None:
    path = "/scalekit-tests/" + unique()
    lease = ZooKeeperLock(kazoo_client, path).acquire()
    assert lease is not None
    (child,) = kazoo_client.get_children(path)
    assert child.startswith("lock-")
    _data, stat = kazoo_client.get(f"{path}/{child}")
    assert stat.czxid == lease.token
    assert stat.ephemeralOwner == kazoo_client.client_id[0]
    lease.release()
    assert kazoo_client.get_children(path) == []


def test_tokens_keep_growing_after_the_sequence_restarts(kazoo_client: Any) -> None:
    path = "/scalekit-tests/" + unique()
    first = ZooKeeperLock(kazoo_client, path).acquire()
    assert first is not None
    first.release()
    # Recreating the parent restarts the sequence suffix at 0; czxid does not restart.
    kazoo_client.delete(path, recursive=True)
    second = ZooKeeperLock(kazoo_client, path).acquire()
    assert second is not None
    (child,) = kazoo_client.get_children(path)
    assert child == f"lock-{second.owner}-0000000000"
    assert second.token > first.token
    second.release()


def test_each_waiter_watches_only_its_predecessor(kazoo_client: Any, zookeeper_server: Any) -> None:
    path = "/scalekit-tests/" + unique()
    holder = ZooKeeperLock(kazoo_client, path).acquire()
    assert holder is not None
    got: list[int] = []

    def take() -> None:
        with ZooKeeperLock(kazoo_client, path).acquire(timeout=10) as lease:  # type: ignore[union-attr]
            got.append(lease.token)

    threads = [threading.Thread(target=take) for _ in range(3)]
    for thread in threads:
        thread.start()

    def watched() -> list[str]:
        text = zookeeper_server.four_letter("wchp")
        return sorted(line for line in text.splitlines() if line.startswith(path + "/"))

    _poll(lambda: len(watched()) == 3)
    nodes = sorted(kazoo_client.get_children(path), key=lambda n: n[-10:])
    # One watch on each of the first three nodes; the last waiter's node is unwatched.
    assert watched() == sorted(f"{path}/{n}" for n in nodes[:3])
    holder.release()
    for thread in threads:
        thread.join(10)
    assert len(got) == 3
    assert got == sorted(got) and got[0] > holder.token


def test_session_expiry_tells_the_holder_and_lets_the_next_in(zookeeper_server: Any) -> None:
    path = "/scalekit-tests/" + unique()
    holder_client = kazoo_client.KazooClient(hosts=zookeeper_server.hosts, timeout=4)
    other_client = kazoo_client.KazooClient(hosts=zookeeper_server.hosts, timeout=4)
    holder_client.start(timeout=15)
    other_client.start(timeout=15)
    try:
        seen: list[Lease] = []
        lock = ZooKeeperLock(holder_client, path, on_lost=seen.append)
        lease = lock.acquire()
        assert lease is not None
        got: list[Lease] = []
        waiter = threading.Thread(
            target=lambda: got.append(ZooKeeperLock(other_client, path).acquire(timeout=20))
        )
        waiter.start()
        _poll(lambda: len(other_client.get_children(path)) == 2)
        expire_session(holder_client, zookeeper_server.hosts)
        assert lease.lost.wait(15)
        _poll(lambda: seen == [lease])  # on_lost runs on a notifier thread
        waiter.join(20)
        assert got and got[0].token > lease.token
        with pytest.raises(LockLostError):
            lease.release()
        got[0].release()
    finally:
        for client in (holder_client, other_client):
            client.stop()
            client.close()
