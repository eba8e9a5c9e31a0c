"""Shared pieces of the Redis-tier tests: backends and process workers.

Worker functions live here (not in the test modules) so ``spawn``-started
processes can import them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis")
import redis
import redis.cluster

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache

# ("standalone", url) or ("cluster", host, port): picklable, so workers can rebuild a client.
Spec = tuple[Any, ...]

TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def make_client(spec: Spec, **kwargs: Any) -> Any:
    """A redis-py client for *spec*."""
    options = {**TIMEOUTS, **kwargs}
    if spec[0] == "standalone":
        return redis.Redis.from_url(spec[1], **options)
    return redis.cluster.RedisCluster(host=spec[1], port=spec[2], **options)


def unique_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["standalone", "cluster"])
def spec(request: pytest.FixtureRequest) -> Spec:
    """Each test that takes ``spec`` runs on the standalone server and on the 3-master cluster."""
    if request.param == "standalone":
        server = request.getfixturevalue("redis_server")
        return ("standalone", server.url)
    cluster = request.getfixturevalue("redis_cluster")
    return ("cluster", cluster.host, cluster.port)


@pytest.fixture
def client(spec: Spec) -> Iterator[Any]:
    c = make_client(spec)
    yield c
    c.close()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll *predicate* until true or *timeout*; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- process workers -------------------------------------------------------
def stampede_worker(
    spec: Spec, namespace: str, key: str, threads: int, ready: Any, go: Any, results: Any
) -> None:
    """Run *threads* threads that all call get_or_load(key) when *go* is set."""
    client = make_client(spec)
    cache = RedisCache(client, namespace=namespace, ttl=60, lease_ttl=10)
    counter = f"{namespace}-loads"

    def loader() -> dict[str, Any]:
        client.incr(counter)  # counted in Redis, so every process's loads add up
        time.sleep(0.3)
        return {"id": key, "price": 1999}

    out: list[Any] = []
    barrier = threading.Barrier(threads + 1)

    def run() -> None:
        barrier.wait()
        go.wait()
        out.append(cache.get_or_load(key, loader))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    ready.put(True)
    for w in workers:
        w.join()
    results.put(out)
    client.close()


def near_reader_worker(
    spec: Spec,
    namespace: str,
    key: str,
    rounds: int,
    max_staleness: float,
    ready: Any,
    results: Any,
) -> None:
    """Read *key* through a NearCache until each round's value shows; report when it did."""
    near = NearCache(
        LRUCache(100),
        RedisCache(make_client(spec), namespace=namespace, ttl=60),
        max_staleness=max_staleness,
    )
    client = make_client(spec)
    seen: list[tuple[int, float]] = []
    local_hits = 0
    ready.put(True)
    expected = 0
    while expected < rounds:
        value = near.get(key)
        if value == expected:
            seen.append((expected, time.time()))
            client.set(f"{namespace}-ack", expected)
            expected += 1
        elif value is not None and value > expected:
            seen.append((-1, float(value)))  # skipped a round: reported as a failure
            break
        local_hits = near.stats().local_hits
    results.put((seen, local_hits))
    near.close()
    client.close()
