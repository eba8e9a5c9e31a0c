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

REQUIRE_SERVERS = os.environ.get("SCALEKIT_REQUIRE_SERVERS") == "1"


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
