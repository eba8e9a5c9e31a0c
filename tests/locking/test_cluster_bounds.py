"""Calls through a `RedisCluster` client keep their bounds when the slot's master is frozen.

redis-py's cluster client retries a failed command and re-reads the slot
map from every node, each step with the client's own (possibly unbounded)
socket timeouts. On the shared 3-master cluster the master owning the
lock's slot is SIGSTOPped for less than the cluster's node timeout (so it
is never failed over), with the client's timeouts at the lock's
`op_timeout` and with redis-py's defaults (no socket timeout at all):
every call of the lock, the semaphore, the read-write lock and the fenced
store returns or raises `BackendUnavailableError` within its documented
bound (docs/locking.md, "Time bounds") plus `BOUND_MARGIN`, and the next
call after the resume succeeds. About 5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisClusterServers

from .conftest import BOUND_MARGIN, unique

redis_cluster_mod = pytest.importorskip("redis.cluster")
from scalekit.locking import RedisLock, RedisReadWriteLock, RedisSemaphore  # noqa: E402
from scalekit.locking.fencing import RedisFencedStore  # noqa: E402

pytestmark = pytest.mark.redis

OP_TIMEOUT = 0.5
BOUNDED = (BackendUnavailableError, LockTimeoutError)

SETTINGS = {
    "timeouts at op_timeout": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
    "redis-py defaults": {},
}


@pytest.fixture(params=list(SETTINGS))
def cluster_client(
    request: pytest.FixtureRequest, redis_cluster: RedisClusterServers
) -> Iterator[Any]:
    client = redis_cluster_mod.RedisCluster(
        host=redis_cluster.host, port=redis_cluster.port, **SETTINGS[str(request.param)]
    )
    yield client
    client.close()


def _master_of(cluster: RedisClusterServers, client: Any, key: str) -> Any:
    node = client.get_node_from_key(key)
    return next(s for s in cluster.nodes if s.address[1] == node.port)


def _frozen(cluster: RedisClusterServers, server: Any, call: Callable[[], Any]) -> float:
    """Seconds *call* took with *server* SIGSTOPped; it must raise a bounded error."""
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(BOUNDED):
            call()
        return time.monotonic() - started
    finally:
        server.resume()
        cluster.wait_ok(timeout=10)


def test_lock_calls_on_a_frozen_cluster_master_keep_their_bounds(
    redis_cluster: RedisClusterServers, cluster_client: Any
) -> None:
    name = unique("cluster")
    lock = RedisLock(cluster_client, name, ttl=5, op_timeout=OP_TIMEOUT)
    server = _master_of(redis_cluster, cluster_client, f"scalekit:lock:{{{name}}}")
    lock.acquire(timeout=1).release()  # connected: the slot map is known

    took = _frozen(redis_cluster, server, lambda: lock.acquire(blocking=False))
    assert took <= OP_TIMEOUT + BOUND_MARGIN
    took = _frozen(redis_cluster, server, lambda: lock.acquire(timeout=0.3))
    assert took <= 0.3 + BOUND_MARGIN

    lease = lock.acquire(timeout=1)
    took = _frozen(redis_cluster, server, lease.extend)
    assert took <= OP_TIMEOUT + BOUND_MARGIN
    lease.release()  # the frozen call left no half-read connection behind
    assert lock.acquire(blocking=False) is not None


def test_semaphore_rwlock_and_fenced_store_on_a_frozen_cluster_master_keep_their_bounds(
    redis_cluster: RedisClusterServers, cluster_client: Any
) -> None:
    name = unique("cluster")
    semaphore = RedisSemaphore(cluster_client, name, 2, ttl=5, op_timeout=OP_TIMEOUT)
    server = _master_of(redis_cluster, cluster_client, f"scalekit:lock:{{{name}}}")
    semaphore.acquire(timeout=1).release()
    took = _frozen(redis_cluster, server, lambda: semaphore.acquire(blocking=False))
    assert took <= OP_TIMEOUT + BOUND_MARGIN

    rw = RedisReadWriteLock(cluster_client, name + "-rw", ttl=5, op_timeout=OP_TIMEOUT)
    rw_server = _master_of(redis_cluster, cluster_client, f"scalekit:rwlock:{{{name}-rw}}")
    rw.read.acquire(timeout=1).release()
    took = _frozen(redis_cluster, rw_server, lambda: rw.write.acquire(timeout=0.3))
    assert took <= 0.3 + BOUND_MARGIN

    store = RedisFencedStore(cluster_client, op_timeout=OP_TIMEOUT)
    holder = RedisLock(cluster_client, name + "-fenced", ttl=5, op_timeout=OP_TIMEOUT)
    lease = holder.acquire(timeout=1)
    store.write("k", 1, lease)
    store_server = _master_of(redis_cluster, cluster_client, store.keys("k")[0])
    took = _frozen(redis_cluster, store_server, lambda: store.read("k", lease))
    assert took <= OP_TIMEOUT + BOUND_MARGIN
    assert store.read("k", lease) == b"1"  # Redis keeps the text of the value
    lease.release()
