"""NearCache: a local layer kept coherent through Redis pub/sub, on both backends."""

# ruff: noqa: F811 - pytest fixtures imported from tests.caching._redis_helpers are redefined as arguments

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import random
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import cachetools
import pytest

from scalekit.caching import LRUCache, TinyLFUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from scalekit.exceptions import ArgumentTypeError, BackendUnavailableError, ConfigurationError
from scalekit.testing import FakeClock
from tests.caching._redis_helpers import (  # noqa: F401 - fixtures
    client,
    make_client,
    near_reader_worker,
    spec,
    unique_namespace,
    wait_until,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(spec: Any) -> Iterator[tuple[NearCache, NearCache]]:
    """Two NearCaches on one namespace, each with its own client, as two processes would be."""
    namespace = unique_namespace()
    caches = [
        NearCache(
            LRUCache(100), RedisCache(make_client(spec), namespace=namespace), max_staleness=0.5
        )
        for _ in range(2)
    ]
    assert all(c.connected for c in caches)
    yield caches[0], caches[1]
    for c in caches:
        c.close()


def test_bad_arguments(redis_server: Any) -> None:
    remote = RedisCache(make_client(("standalone", redis_server.url)), namespace="n")
    with pytest.raises(ArgumentTypeError, match="local must be a MutableMapping"):
        NearCache([], remote)  # type: ignore[arg-type]
    # with client tracking (Redis >= 6) the server reports writes: publishing is optional
    with NearCache({}, RedisCache(remote.client, namespace="n", notify=False)) as quiet:
        assert quiet.tracking and quiet.connected
    with pytest.raises(ConfigurationError, match="max_staleness must be a positive"):
        NearCache({}, remote, max_staleness=0)


@pytest.mark.parametrize(
    "local", [lambda: LRUCache(4), lambda: TinyLFUCache(4), lambda: cachetools.LRUCache(4)]
)
def test_local_hits_skip_redis(redis_server: Any, local: Any) -> None:
    remote = RedisCache(make_client(("standalone", redis_server.url)), namespace=unique_namespace())
    with NearCache(local(), remote, max_staleness=0.5) as near:
        assert wait_until(lambda: near.connected)
        remote.set("k", {"v": 1})
        # the own write's invalidation may still be in flight: wait for a local hit
        assert wait_until(lambda: near.get("k") == {"v": 1} and near.stats().local_hits > 0)
        reads = near.stats().remote_reads
        for _ in range(100):
            assert near.get("k") == {"v": 1}
        assert near.stats().remote_reads == reads
        for i in range(10):  # the local layer's own bound applies
            remote.set(f"x{i}", i)
            near.get(f"x{i}")
        assert len(near._local) <= 4


def test_write_in_one_is_seen_by_the_other(pair: tuple[NearCache, NearCache]) -> None:
    a, b = pair
    a.set("k", 1)
    assert wait_until(lambda: b.get("k") == 1 and b.stats().local_hits > 0)
    a.set("k", 2)
    assert wait_until(lambda: b.get("k") == 2, timeout=b.max_staleness)
    a.delete("k")
    assert wait_until(lambda: b.get("k") is None, timeout=b.max_staleness)
    b.get_or_load("k", lambda: 3)
    assert wait_until(lambda: a.get("k") == 3, timeout=a.max_staleness)


def test_fill_racing_an_invalidation_is_dropped(pair: tuple[NearCache, NearCache]) -> None:
    a, b = pair
    a.set("k", "old")
    started, release = threading.Event(), threading.Event()
    real_get = b.remote._get_with_deadline

    def slow_get(key: str, default: Any) -> Any:
        value = real_get(key, default)  # reads "old" ...
        started.set()
        assert release.wait(5)  # ... and is delayed past the invalidation
        return value

    b.remote._get_with_deadline = slow_get  # type: ignore[method-assign]
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(b.get("k")))
    t.start()
    assert started.wait(5)
    a.set("k", "new")
    assert wait_until(lambda: b._seq > 0 and "k" in b._dirty)
    release.set()
    t.join()
    b.remote._get_with_deadline = real_get  # type: ignore[method-assign]
    assert out == ["old"]
    assert b.get("k") == "new"  # "old" was not put in the local layer


def test_coherence_across_two_processes(spec: Any, client: Any) -> None:
    """One process writes 40 versions; the other, reading through its local layer,
    must see each within max_staleness of the write completing."""
    ctx = multiprocessing.get_context("spawn")
    namespace, rounds, bound = unique_namespace(), 40, 0.5
    writer = RedisCache(client, namespace=namespace, ttl=60)
    writer.set("k", 0)
    ready, results = ctx.Queue(), ctx.Queue()
    reader = ctx.Process(
        target=near_reader_worker, args=(spec, namespace, "k", rounds, bound, ready, results)
    )
    reader.start()
    try:
        assert ready.get(timeout=60)
        rng = random.Random(3)
        written: list[float] = [0.0]
        for i in range(1, rounds):
            assert wait_until(
                lambda i=i: client.get(f"{namespace}-ack") == b"%d" % (i - 1), timeout=10
            )
            time.sleep(rng.random() * 0.02)  # let the reader serve from its local layer
            writer.set("k", i)
            written.append(time.time())
        seen, local_hits = results.get(timeout=30)
    finally:
        reader.join(10)
    assert [r for r, _ in seen] == list(range(rounds))
    staleness = [max(0.0, t - written[r]) for r, t in seen[1:]]
    assert local_hits > rounds  # the reader really served from its local layer
    assert max(staleness) < bound, staleness
    print(
        f"\nstaleness over {rounds - 1} writes: median "
        f"{statistics.median(staleness) * 1e3:.2f} ms, max {max(staleness) * 1e3:.2f} ms"
    )


def test_channel_drop_clears_local_and_recovers(fresh_redis_server: Any) -> None:
    spec_ = ("standalone", fresh_redis_server.url)
    fast = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    namespace = unique_namespace()
    near = NearCache(
        LRUCache(10), RedisCache(make_client(spec_, **fast), namespace=namespace), max_staleness=0.4
    )
    other = NearCache(
        LRUCache(10), RedisCache(make_client(spec_, **fast), namespace=namespace), max_staleness=0.4
    )
    try:
        other.set("k", 1)
        assert wait_until(lambda: near.get("k") == 1 and len(near._local) == 1)

        fresh_redis_server.stop()
        assert wait_until(lambda: not near.connected and len(near._local) == 0, timeout=2)
        with pytest.raises(BackendUnavailableError):
            near.get("k")  # the local copy is not trusted without the channel

        fresh_redis_server.start()  # comes back empty (no persistence)
        assert wait_until(lambda: near.connected and other.connected, timeout=10)
        other.set("k", 2)
        assert wait_until(lambda: near.get("k") == 2, timeout=near.max_staleness)

        fresh_redis_server.pause()  # silent: the socket stays open, nothing answers
        try:
            # neither served nor kept once no heartbeat came back within max_staleness
            assert wait_until(
                lambda: not near.connected and len(near._local) == 0,
                timeout=near.max_staleness + 0.2,
            )
        finally:
            fresh_redis_server.resume()
        assert wait_until(lambda: near.connected, timeout=10)
        other.set("k", 3)
        assert wait_until(lambda: near.get("k") == 3, timeout=near.max_staleness)
    finally:
        near.close()
        other.close()


def test_cluster_channel_node_restart(redis_cluster: Any) -> None:
    spec_ = ("cluster", redis_cluster.host, redis_cluster.port)
    fast = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    namespace = unique_namespace()
    near, other = (
        NearCache(
            LRUCache(10),
            RedisCache(make_client(spec_, **fast), namespace=namespace),
            max_staleness=0.4,
        )
        for _ in range(2)
    )
    try:
        other.set("k", 1)
        assert wait_until(lambda: near.get("k") == 1 and len(near._local) == 1)
        owner = near.remote.client.get_node_from_key(near.remote.channel)
        node = next(n for n in redis_cluster.nodes if n.port == owner.port)
        node.stop()  # the node the subscription is on
        try:
            assert wait_until(lambda: not near.connected and len(near._local) == 0, timeout=2)
        finally:
            node.start()
            redis_cluster.wait_ok()
        assert wait_until(lambda: near.connected and other.connected, timeout=15)
        other.set("k", 2)
        assert wait_until(lambda: near.get("k") == 2, timeout=near.max_staleness)
    finally:
        near.close()
        other.close()


# -- the staleness bound on a Cluster with a cluster-bus link down ------------------
@pytest.fixture(scope="module")
def debug_cluster() -> Iterator[Any]:
    """A 3-master cluster whose nodes accept DEBUG (off by default since Redis 7.0)."""
    from scalekit.testing import RedisClusterServers

    cluster = RedisClusterServers()
    for node in cluster.nodes:
        node.extra_args += ["--enable-debug-command", "yes"]
    cluster.start()
    yield cluster
    cluster.close()


def test_cluster_bus_link_down_staleness_bound_holds(debug_cluster: Any) -> None:
    """`DEBUG CLUSTERLINK KILL` from the value's node, then a write: within max_staleness
    the other process stops serving the old value, although a PUBLISH would be lost."""
    spec_ = ("cluster", debug_cluster.host, debug_cluster.port)
    namespace = unique_namespace()
    near = NearCache(
        LRUCache(10), RedisCache(make_client(spec_), namespace=namespace), max_staleness=0.5
    )
    writer = RedisCache(make_client(spec_), namespace=namespace)
    try:
        channel_port = writer.client.get_node_from_key(writer.channel).port
        key = next(
            f"k{i}"
            for i in range(100)
            if writer.client.get_node_from_key(writer._name(f"k{i}")).port != channel_port
        )
        port = writer.client.get_node_from_key(writer._name(key)).port
        owner = next(n for n in debug_cluster.nodes if n.port == port)
        others = [
            n.execute("CLUSTER", "MYID").split(b"\r\n")[1]
            for n in debug_cluster.nodes
            if n.port != port
        ]
        for round_ in range(5):
            writer.set(key, round_)
            assert wait_until(lambda r=round_: near.get(key) == r and key in near._local)
            # Redis 7.0 crashes killing a link that is still reconnecting: wait for both
            # directions to every other node first.
            assert wait_until(
                lambda: all(owner.execute("CLUSTER", "LINKS").count(i) >= 2 for i in others)
            )
            for node_id in others:
                assert owner.execute("DEBUG", "CLUSTERLINK", "KILL", "ALL", node_id) == b"+OK\r\n"
            writer.set(key, -round_ - 1)
            acked = time.monotonic()
            margin = 0.2  # scheduling on a loaded machine
            assert wait_until(
                lambda r=round_: near.get(key) == -r - 1, timeout=near.max_staleness + margin
            ), f"old value still served {time.monotonic() - acked:.2f} s after the write"
    finally:
        near.close()


# -- writes that bypass scalekit -----------------------------------------------------
def test_direct_del_set_and_expiry_in_redis_invalidate_the_local_copy(
    fresh_redis_server: Any,
) -> None:
    spec_ = ("standalone", fresh_redis_server.url)
    raw = make_client(spec_)
    remote = RedisCache(make_client(spec_), namespace=unique_namespace(), ttl=60)
    name = remote._name("k")
    margin = 0.2  # scheduling on a loaded machine
    with NearCache(LRUCache(10), remote, max_staleness=0.5) as near:
        assert near.tracking and near.connected

        def cached_locally(value: Any) -> bool:
            return near.get("k") == value and "k" in near._local

        remote.set("k", 1)
        assert wait_until(lambda: cached_locally(1))
        raw.delete(name)
        assert wait_until(lambda: near.get("k") is None, timeout=near.max_staleness + margin)

        remote.set("k", 2)
        assert wait_until(lambda: cached_locally(2))
        raw.set(name, b"v" + b"0" * 32 + b":0:3")
        assert wait_until(lambda: near.get("k") == 3, timeout=near.max_staleness + margin)

        remote.set("k", 4)
        assert wait_until(lambda: cached_locally(4))
        raw.pexpire(name, 50)
        # Redis deletes an expired key within one active-expire cycle (100 ms at hz 10).
        assert wait_until(
            lambda: near.get("k") is None, timeout=0.05 + 0.1 + near.max_staleness + margin
        )
    raw.close()


# -- stale-while-revalidate ---------------------------------------------------------
def test_stale_value_is_not_kept_and_write_back_invalidates(spec: Any) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    namespace = unique_namespace()
    a, b = (
        NearCache(
            LRUCache(10),
            RedisCache(
                make_client(spec), namespace=namespace, ttl=10, stale_ttl=60, jitter=0, clock=clock
            ),
            max_staleness=0.5,
        )
        for _ in range(2)
    )
    margin = 0.2  # scheduling on a loaded machine
    try:
        a.set("k", "v1")
        assert wait_until(lambda: b.get("k") == "v1" and "k" in b._local)
        clock.advance(11)  # v1 is now stale in Redis; b's local copy is still v1
        started, release = threading.Event(), threading.Event()

        def slow_v2() -> str:
            started.set()
            assert release.wait(10)
            return "v2"

        loader = threading.Thread(target=lambda: a.get_or_load("k", slow_v2))
        loader.start()
        assert started.wait(10)
        b.clear_local()
        assert b.get_or_load("k", lambda: pytest.fail("second loader ran")) == "v1"  # stale
        assert "k" not in b._local  # a value served stale is not kept
        release.set()
        loader.join()
        assert a.remote.get("k") == "v2"
        assert wait_until(lambda: b.get("k") == "v2", timeout=b.max_staleness + margin)
        # b holds v2 locally now; the next write-back must reach it too
        assert wait_until(lambda: "k" in b._local)
        clock.advance(11)
        assert a.remote.get_or_load("k", lambda: "v3") == "v3"
        assert wait_until(lambda: b.get("k") == "v3", timeout=b.max_staleness + margin)
    finally:
        a.close()
        b.close()


# -- no silent degradation -----------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 3])
def test_acl_user_without_rights_fails_loudly(fresh_redis_server: Any, protocol: int) -> None:
    """Redis 7's default `acl-pubsub-default resetchannels` leaves a new user no channels."""
    admin = make_client(("standalone", fresh_redis_server.url))
    spec_ = ("standalone", fresh_redis_server.url)
    namespace = unique_namespace()
    # RESP2 needs SUBSCRIBE to __redis__:invalidate; RESP3 needs CLIENT TRACKING.
    denied = ["+@all"] if protocol == 2 else ["+@all", "-client|tracking"]
    channel = f"{namespace}:__invalidations__"  # the cache's own channel, to publish on
    admin.acl_setuser(
        "cacher", enabled=True, passwords=["+pw"], keys=["*"], commands=denied, channels=[channel]
    )
    user = {"username": "cacher", "password": "pw", "protocol": protocol}
    remote = RedisCache(make_client(spec_, **user), namespace=namespace)
    remote.set("k", 1)  # the user may use the cache itself
    refused = "SUBSCRIBE __redis__:invalidate" if protocol == 2 else "CLIENT TRACKING ON"
    with pytest.raises(ConfigurationError, match="cannot listen for invalidations") as info:
        NearCache(LRUCache(10), remote, max_staleness=0.5)
    assert f"{refused}" in str(info.value) and "was refused" in str(info.value)

    granted = ["+@all"]
    admin.acl_setuser(
        "cacher",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=granted,
        channels=["__redis__:invalidate", channel],
        reset_channels=True,
    )
    near = NearCache(LRUCache(10), RedisCache(make_client(spec_, **user), namespace=namespace))
    try:
        assert near.state == "trusted"
        assert wait_until(lambda: near.get("k") == 1 and "k" in near._local)
        # rights revoked later: logged, exposed as the state, and nothing served locally
        admin.acl_setuser(
            "cacher",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            commands=denied,
            reset_channels=True,
        )
        admin.execute_command("CLIENT", "KILL", "USER", "cacher")
        assert wait_until(lambda: near.state == "permission denied", timeout=5)
        assert near.get("k") == 1 and "k" not in near._local
    finally:
        near.close()
        admin.close()


def test_cluster_slot_moved_to_a_new_primary_is_listened_to(tmp_path: Any) -> None:
    """A fourth primary joins and takes over the value's slot: NearCache starts listening
    to it, so a write there still reaches the local layer within max_staleness."""
    from scalekit.sharding import key_slot
    from scalekit.testing import RedisClusterServers, RedisServer
    from scalekit.testing.process import find_free_port

    cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    port = find_free_port(also_free=(10000,))  # the cluster bus port must be free too
    with (
        RedisClusterServers(workdir=tmp_path / "c") as cluster,
        RedisServer(port, extra_args=cluster_args, workdir=tmp_path / "n") as extra,
    ):
        spec_ = ("cluster", cluster.host, cluster.port)
        namespace = unique_namespace()
        near = NearCache(
            LRUCache(10), RedisCache(make_client(spec_), namespace=namespace), max_staleness=0.5
        )
        writer = RedisCache(make_client(spec_), namespace=namespace)
        try:
            writer.set("k", 1)
            assert wait_until(lambda: near.get("k") == 1 and "k" in near._local)
            extra.execute("CLUSTER", "MEET", cluster.host, cluster.port)
            node_id = extra.execute("CLUSTER", "MYID").split(b"\r\n")[1]
            assert wait_until(
                lambda: (
                    all(node_id in n.execute("CLUSTER", "NODES") for n in cluster.nodes)
                    and b"cluster_state:ok" in extra.execute("CLUSTER", "INFO")
                )
            )
            name = writer._name("k")
            slot = key_slot(name.encode())
            owner = next(
                n for n in cluster.nodes if n.port == writer.client.get_node_from_key(name).port
            )
            owner_id = owner.execute("CLUSTER", "MYID").split(b"\r\n")[1]
            extra.execute("CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id)
            owner.execute("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id)
            moved = owner.execute(
                "MIGRATE", extra.host, extra.port, "", 0, 5000, "KEYS", name, name + ":ver"
            )
            assert moved == b"+OK\r\n", moved
            for n in [*cluster.nodes, extra]:
                n.execute("CLUSTER", "SETSLOT", slot, "NODE", node_id)
            # this process learns the move from a MOVED reply and fills from the new node
            assert wait_until(lambda: near.get("k") == 1 and "k" in near._local, timeout=10)
            writer.set("k", 2)
            margin = 0.2  # scheduling on a loaded machine
            assert wait_until(lambda: near.get("k") == 2, timeout=near.max_staleness + margin)
        finally:
            near.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_client_command_disabled_is_refused_at_construction(protocol: int) -> None:
    """Managed services often run `rename-command CLIENT ""`: no silent switch to a mode
    that cannot see direct writes, and no cache that stays untrusted forever."""
    from scalekit.testing import RedisServer

    with RedisServer(extra_args=["--rename-command", "CLIENT", ""]) as server:
        spec_ = ("standalone", server.url)
        remote = RedisCache(make_client(spec_, protocol=protocol), namespace=unique_namespace())
        start = time.monotonic()
        refused = "CLIENT ID" if protocol == 2 else "CLIENT TRACKING ON"
        with pytest.raises(ConfigurationError, match=f"{refused}.* was refused"):
            NearCache(LRUCache(10), remote, max_staleness=0.5, connect_timeout=5)
        assert time.monotonic() - start < 5  # refused at once, not after connect_timeout
        # Asked for explicitly, the channel mode works (and says it cannot see direct writes).
        with NearCache(LRUCache(10), remote, max_staleness=0.5, invalidation="channel") as near:
            assert near.state == "trusted" and near.tracking is False
            remote.set("k", 1)
            assert wait_until(lambda: near.get("k") == 1 and "k" in near._local)
            remote.set("k", 2)
            assert wait_until(lambda: near.get("k") == 2, timeout=near.max_staleness)
        with pytest.raises(ConfigurationError, match="notify=True"):
            NearCache(
                {}, RedisCache(remote.client, namespace="q", notify=False), invalidation="channel"
            )


def test_local_entry_never_outlives_the_remote_freshness(spec: Any) -> None:
    """With `stale_ttl` Redis keeps a value past its ttl (no expiry, so no invalidation):
    a local copy filled late must still stop at the value's fresh-until, not at fill +
    local_ttl. Without `stale_ttl` the key's remaining PTTL bounds it the same way."""
    wall = FakeClock(start=1_700_000_000.0)
    remote = RedisCache(
        make_client(spec), namespace=unique_namespace(), ttl=2, stale_ttl=30, jitter=0, clock=wall
    )
    margin = 0.2  # scheduling on a loaded machine
    with NearCache(LRUCache(10), remote, max_staleness=0.5) as near:
        remote.set("k", "v1")
        wall.advance(1.9)  # 0.1 s of freshness left when the local layer is filled
        assert wait_until(lambda: near.get("k") == "v1" and "k" in near._local)
        wall.advance(1.6)  # v1 is stale in Redis now
        assert remote.get("k") is None
        loads: list[str] = []
        assert wait_until(
            lambda: near.get_or_load("k", lambda: loads.append("v2") or "v2") == "v2",
            timeout=0.1 + margin,
        )
        assert loads == ["v2"]

    plain = RedisCache(make_client(spec), namespace=unique_namespace(), ttl=60, jitter=0)
    with NearCache(LRUCache(10), plain, max_staleness=0.5, local_ttl=60) as near:
        plain.set("k", "short", ttl=0.3)
        assert wait_until(lambda: near.get("k") == "short" and "k" in near._local)
        _, deadline = near._local["k"]
        assert deadline <= near._clock() + 0.3


def test_listeners_leave_a_bounded_pool_to_the_caller(redis_server: Any) -> None:
    """A listener holds its connection for as long as it runs: it opens its own, so a
    one-connection BlockingConnectionPool still serves the caller's reads at once."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pool = redis.BlockingConnectionPool.from_url(
        redis_server.url, max_connections=1, timeout=5, socket_timeout=0.5,
        socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1),
    )  # fmt: skip
    remote = RedisCache(redis.Redis(connection_pool=pool), namespace=unique_namespace())
    with NearCache(LRUCache(10), remote, max_staleness=0.5) as near:
        assert near.state == "trusted"
        start = time.monotonic()
        near.set("k", 1)
        assert near.get("k") == 1
        assert time.monotonic() - start < 1.0  # no wait for the pool's only connection
    pool.disconnect()


def test_values_are_shared_unless_copy_is_asked_for(redis_server: Any) -> None:
    remote = RedisCache(make_client(("standalone", redis_server.url)), namespace=unique_namespace())
    remote.set("k", {"tags": ["a"]})
    with NearCache(LRUCache(10), remote, max_staleness=0.5, copy=True) as near:
        assert wait_until(lambda: near.get("k") is not None and "k" in near._local)
        first = near.get("k")  # a local hit
        assert first == {"tags": ["a"]}
        first["tags"].append("mutated by a caller")
        assert near.get("k") == {"tags": ["a"]}  # a local hit, unchanged
    with NearCache(LRUCache(10), remote, max_staleness=0.5) as near:
        assert wait_until(lambda: near.get("k") is not None and "k" in near._local)
        assert near.get("k") is near.get("k")  # the documented default: one shared object


def test_cluster_graceful_failover_moves_the_listener_to_the_new_primary() -> None:
    """`CLUSTER FAILOVER`: the demoted primary keeps answering pings but no longer takes
    writes. The listener asks ROLE with every ping, so it moves to the new primary and a
    write there reaches the local layer within max_staleness even while the demoted node
    stalls (CLIENT PAUSE WRITE holds its replication). About 4 s (a cluster of six)."""
    from scalekit.testing import RedisClusterServers

    with RedisClusterServers(3, replicas=1) as cluster:
        spec_ = ("cluster", cluster.host, cluster.port)
        namespace = unique_namespace()
        writer = RedisCache(make_client(spec_), namespace=namespace)
        name = writer._name("k")
        owner = next(
            n for n in cluster.nodes if n.port == writer.client.get_node_from_key(name).port
        )
        replica = cluster.replicas[cluster.nodes.index(owner)]
        near = NearCache(
            LRUCache(10), RedisCache(make_client(spec_), namespace=namespace), max_staleness=0.5
        )
        try:
            writer.set("k", "old")
            assert wait_until(lambda: near.get("k") == "old" and "k" in near._local)
            assert replica.execute("CLUSTER", "FAILOVER") == b"+OK\r\n"
            assert cluster.wait_failover(owner, timeout=10) is replica
            assert wait_until(lambda: b"role:slave" in owner.execute("INFO", "replication"))
            owner.execute("CLIENT", "PAUSE", "3000", "WRITE")  # its replication stalls
            promoted = RedisCache(
                make_client(("cluster", cluster.host, replica.port)), namespace=namespace
            )
            promoted.set("k", "new")
            margin = 0.2  # scheduling on a loaded machine
            assert wait_until(lambda: near.get("k") == "new", timeout=near.max_staleness + margin)
        finally:
            near.close()
            with contextlib.suppress(Exception):
                owner.execute("CLIENT", "UNPAUSE")


def _replicated(master: Any, replica: Any, timeout: float = 2.0) -> bool:
    """Whether *replica* applies, within *timeout*, all *master* had written when called."""

    def offset(node: Any, field: bytes) -> int:
        info = node.execute("INFO", "replication")
        return int(info.split(field + b":", 1)[1].split(b"\r\n", 1)[0])

    written = offset(master, b"master_repl_offset")
    return wait_until(lambda: offset(replica, b"slave_repl_offset") >= written, timeout)


def test_cluster_master_killed_the_staleness_bound_holds_through_the_failover() -> None:
    """kill -9 of the value's master: its replica is promoted (automatic failover,
    `cluster-node-timeout` 500 ms) while a writer and a reader run. No read returns a
    value older than the newest write acknowledged more than `max_staleness` before
    it, and the local layer serves again from the new master's node. About 6 s: a
    6-node cluster starts (2 s), the failover (about 2 s), 1 s of traffic after it."""
    from scalekit.testing import RedisClusterServers

    with RedisClusterServers(3, replicas=1, node_timeout_ms=500) as cluster:
        spec_ = ("cluster", cluster.host, cluster.port)
        namespace = unique_namespace()
        writer = RedisCache(make_client(spec_), namespace=namespace)
        # A key whose master is not the one the clients were pointed at.
        key = next(
            f"k{i}"
            for i in range(100)
            if writer.client.get_node_from_key(writer._name(f"k{i}")).port != cluster.port
        )
        port = writer.client.get_node_from_key(writer._name(key)).port
        owner = next(n for n in cluster.nodes if n.port == port)
        replica = cluster.replicas[cluster.nodes.index(owner)]
        near = NearCache(
            LRUCache(10), RedisCache(make_client(spec_), namespace=namespace), max_staleness=0.5
        )
        acked: list[tuple[float, int]] = [(0.0, 0)]  # (acknowledged at, value)
        reads: list[tuple[float, int]] = []  # (sent at, value returned)
        stop = threading.Event()
        try:
            writer.set(key, 0)
            assert wait_until(lambda: near.get(key) == 0 and key in near._local)
            # Redis replicates asynchronously: a write the replica never got would be
            # lost by the failover itself, whatever the near layer does.
            assert _replicated(owner, replica)

            def write() -> None:
                value = 0
                while not stop.is_set():
                    value += 1
                    with contextlib.suppress(BackendUnavailableError):
                        writer.set(key, value)
                        acked.append((time.monotonic(), value))
                    time.sleep(0.01)  # the writer's pace

            def read() -> None:
                while not stop.is_set():
                    sent = time.monotonic()
                    with contextlib.suppress(BackendUnavailableError):
                        reads.append((sent, near.get(key)))
                    time.sleep(0.001)  # the reader's pace

            threads = [threading.Thread(target=write), threading.Thread(target=read)]
            for thread in threads:
                thread.start()
            assert wait_until(lambda: len(acked) > 5)
            owner.kill()
            killed = time.monotonic()
            assert cluster.wait_failover(owner, timeout=10) is replica
            promoted = f"{cluster.host}:{replica.port}"
            assert wait_until(lambda: acked[-1][0] > killed, timeout=5)  # the new master writes
            assert wait_until(lambda: promoted in {lst.node for lst in near._listeners})
            resumed = time.monotonic()
            assert wait_until(lambda: time.monotonic() > resumed + 1.0, timeout=2)
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            last = acked[-1][1]
            # Served from the local layer again, filled through the new master's node.
            assert wait_until(lambda: near.get(key) == last and key in near._local)
            hits = near.stats().local_hits
            assert near.get(key) == last and near.stats().local_hits == hits + 1
        finally:
            stop.set()
            near.close()
        assert near.stats().clears >= 1
        lost = [v for t, v in acked if t < killed and v > acked[-1][1]]
        assert lost == []
        # The checker: every read returned at least the newest value acknowledged
        # more than max_staleness (plus a scheduling margin) before it was sent.
        margin = 0.2
        times = [t for t, _ in acked]
        stale = []
        for sent, value in reads:
            i = bisect.bisect_left(times, sent - near.max_staleness - margin) - 1
            if i >= 0 and value < acked[i][1]:
                stale.append((round(sent - killed, 3), value, acked[i][1]))
        assert stale == [], (
            f"reads older than the bound (s after the kill, got, expected): {stale[:5]}"
        )
        before = max(v for t, v in acked if t < killed)
        after = [v for t, v in reads if t > killed]
        assert len(reads) > 100 and max(after) > before  # it read the new master's writes


def test_refused_heartbeat_is_named_ping(fresh_redis_server: Any) -> None:
    admin = make_client(("standalone", fresh_redis_server.url))
    namespace = unique_namespace()
    admin.acl_setuser(
        "noping", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-ping"],
        channels=["__redis__:invalidate", f"{namespace}:__invalidations__"],
    )  # fmt: skip
    user = make_client(("standalone", fresh_redis_server.url), username="noping", password="pw")
    with pytest.raises(ConfigurationError, match="PING was refused"):
        NearCache(LRUCache(10), RedisCache(user, namespace=namespace), max_staleness=0.5)
    admin.close()


def _forked_child(near: NearCache, writer: RedisCache, results: Any) -> None:
    trusted = near.sync(timeout=10)  # a heartbeat answered in the child itself
    filled = wait_until(lambda: near.get("k") == 1 and near._local["k"][0] == 1)
    hits = near.stats().local_hits
    served_locally = near.get("k") == 1 and near.stats().local_hits == hits + 1
    writer.set("k", 2)  # a write from the child's side reaches its own local layer
    seen = wait_until(lambda: near.get("k") == 2 and near._local["k"][0] == 2, timeout=5)
    results.put((trusted, filled, served_locally, seen))
    near.close()


def test_near_cache_created_before_fork_works_in_the_child(redis_server: Any) -> None:
    """gunicorn --preload, multiprocessing 'fork': the child gets listeners of its own."""
    spec_ = ("standalone", redis_server.url)
    namespace = unique_namespace()
    near = NearCache(
        LRUCache(10), RedisCache(make_client(spec_), namespace=namespace), max_staleness=0.5
    )
    writer = RedisCache(make_client(spec_), namespace=namespace)
    try:
        writer.set("k", 1)
        assert wait_until(lambda: near.get("k") == 1 and "k" in near._local)
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        child = ctx.Process(target=_forked_child, args=(near, writer, results))
        child.start()
        assert results.get(timeout=30) == (True, True, True, True)
        child.join(10)
        assert child.exitcode == 0
        assert wait_until(lambda: near.get("k") == 2, timeout=near.max_staleness + 0.2)
    finally:
        near.close()


def test_swapdb_is_not_reported_and_clear_local_recovers(fresh_redis_server: Any) -> None:
    """SWAPDB changes no key name, so client tracking reports nothing (documented).

    The local copy keeps the swapped-out value (until `local_ttl` or the key's
    remote freshness); `clear_local()` in each process after a SWAPDB is the remedy.
    """
    namespace = unique_namespace()
    url = fresh_redis_server.url
    other_db = RedisCache(
        make_client(("standalone", url.rsplit("/", 1)[0] + "/1")), namespace=namespace, notify=False
    )
    other_db.set("k", "new-in-db1")
    cache = RedisCache(make_client(("standalone", url)), namespace=namespace)
    # a wide bound, so a late heartbeat on a loaded machine does not clear the local layer
    with NearCache(LRUCache(10), cache, max_staleness=5.0) as near:
        assert near.tracking
        cache.set("k", "old")
        assert near.get("k") == "old"
        assert near.sync(5)
        heard, clears = near.stats().invalidations, near.stats().clears
        make_client(("standalone", url)).swapdb(0, 1)
        assert cache.get("k") == "new-in-db1"
        assert near.sync(5)  # every message the node sent before now is in
        assert near.stats().invalidations == heard
        assert near.stats().clears == clears
        # Not reported: the local copy may still answer "old" here, until its
        # remote freshness or local_ttl runs out (how soon depends on timing,
        # so the test asserts only the remedy).
        near.clear_local()
        assert near.get("k") == "new-in-db1"
