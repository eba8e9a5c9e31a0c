"""A ZooKeeper acquire on a new lock path survives a connection reset during its create.

The create's reply is lost, so the retry looks for a node of its own under
the lock path; when the create never reached the server the path does not
exist yet, and kazoo's `NoNodeError` must not escape: nothing was created,
so the retry creates. About 5 s (five acquires through a resetting proxy).
"""

from __future__ import annotations

import threading
import uuid

import pytest

from scalekit.testing import TCPProxy, ZooKeeperServer

pytest.importorskip("kazoo")


def test_a_reset_during_the_first_create_on_a_new_path_still_acquires(
    zookeeper_server: ZooKeeperServer,
) -> None:
    from kazoo.client import KazooClient

    from scalekit.locking import ZooKeeperLock

    outcomes: list[str] = []
    with TCPProxy(zookeeper_server.host, zookeeper_server.port) as proxy:
        for trial in range(5):
            client = KazooClient(hosts=f"{proxy.host}:{proxy.port}", timeout=10.0)
            client.start(timeout=10)
            try:
                lock = ZooKeeperLock(client, f"/fresh-{uuid.uuid4().hex[:8]}/stock/hot-0")
                result: list[str] = []

                def go(lock: ZooKeeperLock = lock, result: list[str] = result) -> None:
                    try:
                        lock.acquire(timeout=6).release()
                        result.append("acquired")
                    except Exception as exc:  # the outcome under test, whatever it is
                        result.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")

                proxy.reset()
                thread = threading.Thread(target=go)
                thread.start()
                threading.Event().wait(0.05 * trial)  # the reset lasts this long
                proxy.pass_through()
                thread.join(20)
                outcomes.append(result[0] if result else "hung")
            finally:
                client.stop()
                client.close()
    assert outcomes == ["acquired"] * 5
