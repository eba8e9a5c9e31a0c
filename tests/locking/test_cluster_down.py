"""A Redis Cluster that is down says "not now", not "never" (about 10 s: its own cluster).

redis-py turns the server's ``CLUSTERDOWN`` reply into `ClusterDownError`
with the text "The cluster is down", without the prefix; a lock must treat
it as the transient outage it is (`BackendUnavailableError`): a blocking
acquire retries it until its deadline, within the acquire's bound.
"""

from __future__ import annotations

import threading
import time

import pytest

from scalekit import BackendUnavailableError, LockTimeoutError
from scalekit.locking import RedisLock
from scalekit.testing import RedisClusterServers

from .conftest import BOUND_MARGIN

pytest.importorskip("redis")


def test_a_lock_on_a_cluster_that_is_down_is_unavailable_not_broken() -> None:
    from redis.cluster import RedisCluster

    with RedisClusterServers() as cluster:
        client = RedisCluster(host=cluster.host, port=cluster.port, socket_timeout=0.5)
        try:
            victim = cluster.nodes[0]
            # A lock whose slot a surviving master serves: that master answers CLUSTERDOWN.
            name = next(
                f"down-{i}"
                for i in range(100)
                if client.get_node_from_key(f"scalekit:lock:{{down-{i}}}").port != victim.port
            )
            lock = RedisLock(client, name, ttl=5.0)
            lock.acquire(timeout=1.0).release()
            survivor = next(n for n in cluster.nodes if n is not victim)
            victim.kill()
            deadline = time.monotonic() + 30
            while b"cluster_state:fail" not in survivor.execute("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "the cluster never noticed the dead master"
                time.sleep(0.1)
            # Retried as an outage until the deadline, not raised at once as a broken server:
            # the outage outlasted the acquire, which says so (a timeout if its one try
            # was cut short by the deadline).
            started = time.monotonic()
            with pytest.raises(
                (BackendUnavailableError, LockTimeoutError), match="cluster is down"
            ):
                lock.acquire(timeout=1.0)
            assert 1.0 <= time.monotonic() - started <= 1.0 + BOUND_MARGIN
        finally:
            client.close()


def test_closing_the_client_under_a_background_clean_up_raises_nothing_in_its_thread() -> None:
    """A user closing their `RedisCluster` (at shutdown, or to drop its connections)
    while a failed acquire's clean-up still runs in the background: the clean-up's read,
    torn down under it, is an outage it retries, never an exception in its thread
    (redis-py raises `ValueError` or `AttributeError` from its closed socket buffer, and
    `AttributeError` from a closed client). About 6 s: its own cluster."""
    from redis.cluster import RedisCluster

    from scalekit import _redis_deadline

    died: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    try:
        with RedisClusterServers() as cluster:
            client = RedisCluster(host=cluster.host, port=cluster.port, socket_timeout=2.0)
            try:
                lock = RedisLock(client, "closed-under", ttl=2.0, waiter_ttl=2.0, op_timeout=1.0)
                lock.acquire(timeout=1.0).release()
                queue = lock._keys[2]
                node = next(
                    n for n in cluster.nodes if n.port == client.get_node_from_key(queue).port
                )
                node.pause()  # the acquire's reply never comes: its clean-up goes on behind
                try:
                    with pytest.raises((BackendUnavailableError, LockTimeoutError)):
                        lock.acquire(timeout=0.3)
                    name = "scalekit-cleanup:closed-under"
                    deadline = time.monotonic() + 2.0
                    # The clean-up thread is started off the caller's path: it may
                    # not be running yet when the acquire has returned.
                    while not (found := [t for t in threading.enumerate() if t.name == name]):
                        assert lock._cleanups, "no clean-up went to the background"
                        assert time.monotonic() < deadline, "the clean-up never started"
                        time.sleep(0.005)
                    cleanup = found[0]
                    # Until the clean-up's own call is blocked on the paused node's reply.
                    while not (
                        (call := _redis_deadline._inflight.get(cleanup.ident or -1)) is not None
                        and call.conns
                    ):
                        assert time.monotonic() < deadline, "the clean-up never called Redis"
                        time.sleep(0.005)
                    client.close()
                finally:
                    node.resume()
                # A closed client cannot serve it any more: the clean-up retries that
                # outage until its window (max(ttl, waiter_ttl)) ends, quietly.
                cleanup.join(timeout=2.0 + BOUND_MARGIN)
                assert died == [], [f"{d.thread.name}: {d.exc_value!r}" for d in died]
                assert not cleanup.is_alive()
            finally:
                client.close()
    finally:
        threading.excepthook = previous
