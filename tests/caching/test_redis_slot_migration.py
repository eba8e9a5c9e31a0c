"""The Redis tier while a Cluster slot migrates to a master that joined after the client started.

redis-py follows the `ASK` redirect to a node missing from its map and fails
inside its own code (`AttributeError`); the cache tier reports it as the
outage it is. About 3 s: a fourth master joins the session's cluster, takes
one slot half-way, and leaves again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis")
import redis
import redis.cluster

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from scalekit.exceptions import BackendUnavailableError
from scalekit.sharding.placement import key_slot
from scalekit.testing import RedisClusterServers, RedisServer
from scalekit.testing.process import find_free_port
from tests.caching._redis_helpers import unique_namespace, wait_until

pytestmark = pytest.mark.redis  # the Redis tier has no compiled twin: run once


def _slot_owner(cluster: RedisClusterServers, slot: int) -> RedisServer:
    client = redis.Redis(host=cluster.host, port=cluster.port, socket_timeout=2)
    try:
        for start, end, (_, port, *_rest), *_ in client.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return next(n for n in cluster.nodes if n.port == port)
    finally:
        client.close()
    raise AssertionError(f"no owner for slot {slot}")


def _run(node: RedisServer, *args: str | int) -> Any:
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


@pytest.fixture
def joined(redis_cluster: RedisClusterServers) -> Iterator[tuple[RedisServer, str]]:
    """A fourth, empty master met by the cluster; forgotten and stopped afterwards."""
    node = RedisServer(
        find_free_port(also_free=(10000,)),
        extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
    )
    node.start()
    node_id = str(_run(node, "CLUSTER", "MYID"), "ascii")

    def met() -> bool:
        known = all(node_id.encode() in _run(n, "CLUSTER", "NODES") for n in redis_cluster.nodes)
        return known and b"cluster_state:ok" in _run(node, "CLUSTER", "INFO")

    try:
        _run(node, "CLUSTER", "MEET", redis_cluster.host, redis_cluster.port)
        assert wait_until(met, timeout=10)
        yield node, node_id
    finally:
        node.stop()
        for n in redis_cluster.nodes:
            _run(n, "CLUSTER", "FORGET", node_id)
        redis_cluster.wait_ok(10)


def test_calls_on_a_slot_migrating_to_an_unknown_master_are_unavailable_not_a_crash(
    redis_cluster: RedisClusterServers, joined: tuple[RedisServer, str]
) -> None:
    target, target_id = joined
    namespace = unique_namespace()

    def client() -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(
            host=redis_cluster.host, port=redis_cluster.port, socket_timeout=1
        )

    writer_client, reader_client = client(), client()
    writer = RedisCache(writer_client, namespace=namespace, ttl=300)
    reader = RedisCache(reader_client, namespace=namespace, ttl=300)
    fallback = RedisCache(reader_client, namespace=namespace, ttl=300, fallback=True)
    near = NearCache(LRUCache(100), reader, max_staleness=0.5)
    slot = key_slot(f"{namespace}:{{k}}".encode())
    owner = _slot_owner(redis_cluster, slot)
    owner_id = str(_run(owner, "CLUSTER", "MYID"), "ascii")
    try:
        writer.set("k", 1)
        _run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id)
        _run(owner, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = [f"{namespace}:{{k}}", f"{namespace}:{{k}}:ver"]
        _run(owner, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        with pytest.raises(BackendUnavailableError, match="node the client does not know"):
            reader.get("k")
        with pytest.raises(BackendUnavailableError):
            reader.get_or_load("k", lambda: 99)
        with pytest.raises(BackendUnavailableError):
            near.get("k")
        with pytest.raises(BackendUnavailableError):
            writer.set("k", 2)
        assert fallback.get_or_load("k", lambda: 99) == 99  # served by the loader
        assert reader.get("other") is None  # every other slot serves as before
    finally:
        near.close()
        for node in (owner, target):
            _run(node, "CLUSTER", "SETSLOT", slot, "STABLE")
        writer_client.close()
        reader_client.close()
