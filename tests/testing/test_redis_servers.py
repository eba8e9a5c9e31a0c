"""The Redis harness: real servers, real clients, real faults."""

from __future__ import annotations

import os
import time

import pytest

from scalekit.testing import RedisClusterServers, RedisServer

redis = pytest.importorskip("redis")
from redis.cluster import RedisCluster  # noqa: E402


def test_set_and_get_on_a_real_server(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.set("harness:greeting", "hello")
    assert client.get("harness:greeting") == b"hello"
    assert redis_server.pid is not None
    assert redis_server.address == ("127.0.0.1", redis_server.port)


def test_restart_then_the_next_command_succeeds(fresh_redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis_server.url, socket_timeout=5)
    client.set("before", "1")
    old_pid = fresh_redis_server.pid
    fresh_redis_server.restart()
    assert fresh_redis_server.pid != old_pid
    # redis-py reconnects on the next command; without persistence the data is gone.
    assert client.ping() is True
    assert client.get("before") is None


def test_appendonly_keeps_data_across_a_kill(fresh_redis_server_aof: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis_server_aof.url, socket_timeout=5)
    client.set("durable", "yes")
    fresh_redis_server_aof.kill()
    assert not fresh_redis_server_aof.running
    fresh_redis_server_aof.start()
    assert client.get("durable") == b"yes"


def test_pause_makes_commands_time_out_and_resume_recovers(
    fresh_redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(fresh_redis_server.url, socket_timeout=0.3)
    client.set("k", "v")
    fresh_redis_server.pause()
    assert fresh_redis_server.paused
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.get("k")
    assert time.monotonic() - started < 2.0
    fresh_redis_server.resume()
    assert not fresh_redis_server.paused
    assert client.get("k") == b"v"


def test_stop_refuses_connections_and_start_serves_again(
    fresh_redis_server: RedisServer,
) -> None:
    fresh_redis_server.stop()
    assert fresh_redis_server.pid is None
    assert not fresh_redis_server.is_ready()
    client = redis.Redis.from_url(fresh_redis_server.url, socket_connect_timeout=0.5)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    fresh_redis_server.start()
    assert client.ping() is True


def test_stop_kills_a_paused_server(fresh_redis_server: RedisServer) -> None:
    fresh_redis_server.pause()
    started = time.monotonic()
    fresh_redis_server.stop()
    assert time.monotonic() - started < 5.0
    assert not fresh_redis_server.running


def test_a_write_lands_on_each_of_the_three_masters(redis_cluster: RedisClusterServers) -> None:
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port, socket_timeout=5)
    try:
        per_node: dict[int, int] = {}
        for i in range(300):
            key = f"harness:cluster:{i}"
            client.set(key, str(i))
            node = client.get_node_from_key(key)
            per_node[node.port] = per_node.get(node.port, 0) + 1
        assert set(per_node) == {n.port for n in redis_cluster.nodes}
        # Each master holds the keys that landed on it, asked directly (other
        # tests share this cluster, so count only this test's keys).
        for node in redis_cluster.nodes:
            direct = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
            mine = list(direct.scan_iter(match="harness:cluster:*", count=1000))
            assert len(mine) == per_node[node.port]
            direct.close()
        assert client.get("harness:cluster:7") == b"7"
    finally:
        for i in range(300):
            client.delete(f"harness:cluster:{i}")
        client.close()


def test_cluster_masters_own_all_slots(redis_cluster: RedisClusterServers) -> None:
    assert redis_cluster.is_ok()
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port, socket_timeout=5)
    try:
        slots = client.cluster_slots()
        covered = sum(hi - lo + 1 for lo, hi in slots)
        assert covered == 16384
        assert len(slots) == 3
    finally:
        client.close()


def test_constructor_rejects_a_two_node_cluster() -> None:
    with pytest.raises(ValueError, match=r"masters must be an integer in \[3, 99\].*got 2"):
        RedisClusterServers(2)


def test_constructor_checks_replicas() -> None:
    with pytest.raises(ValueError, match=r"replicas must be an integer in \[0, 32\].*got -1"):
        RedisClusterServers(3, replicas=-1)
    with pytest.raises(ValueError, match=r"replicas must be an integer in \[0, 32\].*got 33"):
        RedisClusterServers(3, replicas=33)
    with pytest.raises(TypeError, match="replicas must be an integer"):
        RedisClusterServers(3, replicas=1.0)  # type: ignore[arg-type]


def _offset(node: RedisServer, field: bytes) -> int:
    info = node.execute("INFO", "replication")
    return int(info.split(field + b":", 1)[1].split(b"\r\n", 1)[0])


def _wait_replicated(master: RedisServer, replica: RedisServer, timeout: float = 2.0) -> None:
    """Poll until *replica* has applied everything *master* had written when called."""
    written = _offset(master, b"master_repl_offset")
    deadline = time.monotonic() + timeout
    while _offset(replica, b"slave_repl_offset") < written:
        assert time.monotonic() < deadline, "the replica did not catch up in time"
        time.sleep(0.01)


def test_a_replica_takes_over_from_a_killed_master() -> None:
    """About 4 s: a 6-node cluster starts (2 s), then one automatic failover."""
    with RedisClusterServers(3, replicas=1, node_timeout_ms=500) as cluster:
        assert len(cluster.members) == 6 and len({m.pid for m in cluster.members}) == 6
        assert cluster.primaries() == cluster.nodes
        client = RedisCluster(host=cluster.host, port=cluster.port, socket_timeout=2)
        try:
            for replica in cluster.replicas:
                role = replica.execute("ROLE")
                assert role.startswith(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n")
                assert f":{cluster.master_of(replica).port}\r\n".encode() in role
            client.set("{harness}:k", "v1")
            master = next(
                n for n in cluster.nodes if n.port == client.get_node_from_key("{harness}:k").port
            )
            replica = cluster.replicas[cluster.nodes.index(master)]
            _wait_replicated(master, replica)
            master.kill()
            # Redis flags the master failed after node_timeout, then its replica
            # waits 500 ms plus up to 500 ms and wins the vote: about 2 s here.
            assert cluster.wait_failover(master, timeout=10) is replica
            assert replica in cluster.primaries() and master not in cluster.primaries()
            assert client.get("{harness}:k") == b"v1"  # the client follows the new master
        finally:
            client.close()
        pids = [m.pid for m in cluster.members if m.running]
    assert len(pids) == 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped (and reaped) by its pid
