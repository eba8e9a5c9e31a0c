"""A Redis Cluster that is down says "not now", not "never" (about 10 s: its own cluster).

redis-py turns the server's ``CLUSTERDOWN`` reply into `ClusterDownError`
with the text "The cluster is down", without the prefix; a lock must treat
it as the transient outage it is (`BackendUnavailableError`): a blocking
acquire retries it until its deadline, within the acquire's bound.
"""

from __future__ import annotations

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
