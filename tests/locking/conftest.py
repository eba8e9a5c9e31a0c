"""Fixtures of the locking tests: lock factories per backend and a fencing store."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scalekit.locking import BaseLock, MemoryLock
from scalekit.testing import PostgresServer, RedisServer

from ..conftest import _serve

_names = itertools.count()

# The slack docs/locking.md allows on every time bound: the clean-up of a
# failed attempt (at most 0.05 s), the last reply's round trip, scheduling.
# Tests hold calls to the documented bound plus exactly this, nothing more.
DOCUMENTED_SLACK = 0.1
BOUND_MARGIN = DOCUMENTED_SLACK


def unique(prefix: str = "lock") -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="session")
def redlock_servers() -> Iterator[list[RedisServer]]:
    """Three independent redis-servers shared by the session, for Redlock."""
    servers: list[RedisServer] = []
    try:
        for _ in range(3):
            server = RedisServer()
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster shared by the session (initdb takes a few seconds)."""
    yield from _serve(PostgresServer)


@pytest.fixture
def redlock_clients(redlock_servers: list[RedisServer]) -> Iterator[list[Any]]:
    redis = pytest.importorskip("redis")
    clients = [redis.Redis.from_url(s.url, socket_timeout=5) for s in redlock_servers]
    for client in clients:
        client.flushall()
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def kazoo_client(zookeeper_server: Any) -> Iterator[Any]:
    kazoo_client_mod = pytest.importorskip("kazoo.client")
    client = kazoo_client_mod.KazooClient(hosts=zookeeper_server.hosts, timeout=5)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


LockFactory = Callable[..., BaseLock]

BACKENDS = ["memory", "redis", "redlock", "zookeeper", "redis-semaphore-1", "zookeeper-semaphore-1"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_lock(backend: str, request: pytest.FixtureRequest) -> LockFactory:
    """A factory of locks of the parametrized backend: ``make_lock(name, **options)``."""
    return _factory(backend, request)


@pytest.fixture(params=["memory", "redis", "redlock", "redis-semaphore-1"])
def make_ttl_lock(request: pytest.FixtureRequest) -> LockFactory:
    """Like ``make_lock`` for the backends whose leases have a ttl."""
    return _factory(str(request.param), request)


def _factory(backend: str, request: pytest.FixtureRequest) -> LockFactory:
    if backend == "memory":
        return lambda name, **kw: MemoryLock(name, **kw)
    if backend == "redis":
        from scalekit.locking import RedisLock

        client = request.getfixturevalue("redis_client")
        return lambda name, **kw: RedisLock(client, name, **kw)
    if backend == "redis-semaphore-1":
        from scalekit.locking import RedisSemaphore

        client = request.getfixturevalue("redis_client")
        return lambda name, **kw: RedisSemaphore(client, name, 1, **kw)
    if backend == "redlock":
        from scalekit.locking import Redlock

        clients = request.getfixturevalue("redlock_clients")
        return lambda name, **kw: Redlock(clients, name, **kw)
    from scalekit.locking import ZooKeeperLock, ZooKeeperSemaphore

    client = request.getfixturevalue("kazoo_client")

    def make_zk(name: str, **kw: Any) -> BaseLock:
        kw.pop("ttl", None)
        kw.pop("auto_renew", None)
        path = "/scalekit-tests/" + name if isinstance(name, str) and name else name
        if backend == "zookeeper-semaphore-1":
            return ZooKeeperSemaphore(client, path, 1, **kw)
        return ZooKeeperLock(client, path, **kw)

    return make_zk
