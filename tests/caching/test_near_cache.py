"""NearCache: a local layer kept coherent through Redis pub/sub, on both backends."""

# ruff: noqa: F811 - pytest fixtures imported from tests.caching._redis_helpers are redefined as arguments

from __future__ import annotations

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
from scalekit.exceptions import BackendUnavailableError, ConfigurationError
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
    with pytest.raises(ConfigurationError, match="local must be a MutableMapping"):
        NearCache([], remote)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="notify=True"):
        NearCache({}, RedisCache(remote.client, namespace="n", notify=False))
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
    real_get = b.remote.get

    def slow_get(key: str, default: Any = None) -> Any:
        value = real_get(key, default)  # reads "old" ...
        started.set()
        assert release.wait(5)  # ... and is delayed past the invalidation
        return value

    b.remote.get = slow_get  # type: ignore[method-assign]
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(b.get("k")))
    t.start()
    assert started.wait(5)
    a.set("k", "new")
    assert wait_until(lambda: b._seq > 0 and "k" in b._dirty)
    release.set()
    t.join()
    b.remote.get = real_get  # type: ignore[method-assign]
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
