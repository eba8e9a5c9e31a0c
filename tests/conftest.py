"""Fixtures that start real servers for the backend tests.

Each fixture starts its servers on free loopback ports in temporary
directories, waits until they answer and stops the processes it started.

With ``SCALEKIT_REQUIRE_SERVERS=1`` (set by ``./scripts/test``, hence by
CI) a missing server program is an error; otherwise the tests that need it
are skipped with a message naming what to install.

Session-scoped servers are shared: a test that stops, pauses or kills one
must leave it running again, or use the ``fresh_*`` fixture instead.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from scalekit.testing import (
    RedisClusterServers,
    RedisServer,
    ServerNotFoundError,
    ZooKeeperEnsemble,
    ZooKeeperServer,
)

T = TypeVar("T")

#: The modules that take longest (tens of seconds each on two cores), longest
#: first. Under pytest-xdist, `./scripts/test` hands out whole modules in the
#: order collected (`--dist loadfile --no-loadscope-reorder`): these go
#: first, then the rest, most tests first, so the run does not end on one worker
#: still busy with a long module while the other idles. The order changes no
#: test, only when it runs; a module missing here merely starts later.
SLOWEST_MODULES = (
    "tests/examples/test_shop_faults.py",
    "tests/locking/test_fenced_store.py",
    "tests/test_build.py",
    "tests/examples/test_shop_hostile.py",
    "tests/caching/test_benchmark_quick.py",
    "tests/examples/test_shop_data_dir.py",
    "tests/locking/test_fault_schedules.py",
    "tests/caching/test_tinylfu.py",
    "tests/sharding/test_sqlite_store.py",
    "tests/caching/test_tinylfu_memory.py",
    "tests/locking/test_zookeeper_faults.py",
    "tests/examples/test_shop.py",
    "tests/locking/test_benchmark_quick.py",
    "tests/balancing/test_balancing_benchmark.py",
    "tests/caching/test_redis_tier_state.py",
    "tests/caching/test_redis_tier_soak.py",
    "tests/caching/test_redis_call_deadline.py",
    "tests/test_exceptions.py",
    "tests/observability/test_bounds.py",
    "tests/observability/test_benchmark_quick.py",
    "tests/docs/test_snippets.py",
    "tests/sharding/test_benchmark.py",
)

REQUIRE_SERVERS = os.environ.get("SCALEKIT_REQUIRE_SERVERS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, put the modules of `SLOWEST_MODULES` first, the rest by size."""
    if not hasattr(config, "workerinput"):
        return  # one process: the order collected
    rank = {module: index for index, module in enumerate(SLOWEST_MODULES)}
    counts = Counter(item.nodeid.split("::", 1)[0] for item in items)

    def order(item: pytest.Item) -> tuple[int, int]:
        module = item.nodeid.split("::", 1)[0]
        return rank.get(module, len(rank)), -counts[module]

    items.sort(key=order)  # stable: each module's tests keep their order


def _create(factory: Callable[[], T]) -> T:
    try:
        return factory()
    except ServerNotFoundError as exc:
        if REQUIRE_SERVERS:
            pytest.fail(f"SCALEKIT_REQUIRE_SERVERS=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))


def _serve(factory: Callable[[], T]) -> Iterator[T]:
    server = _create(factory)
    server.start()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server shared by the whole session."""
    yield from _serve(RedisServer)


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server of this test's own, for fault tests."""
    yield from _serve(RedisServer)


@pytest.fixture
def fresh_redis_server_aof() -> Iterator[RedisServer]:
    """A redis-server with ``appendonly yes`` (fsync always), for restart tests."""
    yield from _serve(lambda: RedisServer(appendonly=True))


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[object]:
    """A redis-py client on the shared server, its database flushed before the test."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of 3 masters shared by the whole session."""
    yield from _serve(RedisClusterServers)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper shared by the whole session."""
    yield from _serve(ZooKeeperServer)


@pytest.fixture
def fresh_zookeeper_server() -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper of this test's own, for fault tests."""
    yield from _serve(ZooKeeperServer)


@pytest.fixture(scope="session")
def zookeeper_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """A 3-node ZooKeeper ensemble shared by the whole session."""
    yield from _serve(ZooKeeperEnsemble)


@pytest.fixture
def fresh_zookeeper_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """A 3-node ZooKeeper ensemble of this test's own, for leader-kill tests."""
    yield from _serve(ZooKeeperEnsemble)
