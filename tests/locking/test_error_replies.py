"""Error replies (OOM, READONLY) from a Redis server, on the real servers.

A master that refuses writes is an outage of that master, not a verdict
on the lock: Redlock still acquires on the healthy majority, a failed
round leaves no grant behind, and a single-server lock reports
`BackendUnavailableError`. Each test takes about a second.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking import AsyncRedisLock, RedisLock  # noqa: E402
from scalekit.locking.redlock import Redlock  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def masters() -> Iterator[list[Any]]:
    """Clients of three redis-servers of this test's own, to make refuse writes."""
    servers: list[RedisServer] = []
    clients: list[Any] = []
    try:
        for _ in range(3):
            server = RedisServer()
            servers.append(server)
            server.start()
            clients.append(redis.Redis.from_url(server.url, socket_timeout=5))
        yield clients
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.close()


@pytest.fixture
def thread_errors() -> Iterator[list[BaseException]]:
    """Exceptions that end any thread during the test."""
    seen: list[BaseException] = []
    previous = threading.excepthook

    def hook(args: Any) -> None:
        seen.append(args.exc_value)

    threading.excepthook = hook
    try:
        yield seen
    finally:
        threading.excepthook = previous


def _refuse_writes(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # every denyoom command answers -OOM


def test_redlock_acquires_with_one_master_answering_oom(
    masters: list[Any], thread_errors: list[BaseException]
) -> None:
    _refuse_writes(masters[2])
    lock = Redlock(masters, unique("oom"), ttl=5, instance_timeout=0.1)
    lease = lock.acquire(timeout=1)
    assert not lease.lost.is_set()
    assert [bool(c.exists(lock._keys[0])) for c in masters[:2]] == [True, True]
    lock.release(lease)
    assert [c.exists(lock._keys[0]) for c in masters[:2]] == [0, 0]
    assert lock.acquire(blocking=False) is not None
    assert thread_errors == []


def test_redlock_acquires_with_one_master_readonly(masters: list[Any]) -> None:
    port = masters[0].connection_pool.connection_kwargs["port"]
    masters[2].execute_command("REPLICAOF", "127.0.0.1", str(port))
    try:
        lock = Redlock(masters, unique("readonly"), ttl=5, instance_timeout=0.1)
        lease = lock.acquire(timeout=1)
        assert not lease.lost.is_set()
        lock.release(lease)
    finally:
        masters[2].execute_command("REPLICAOF", "NO", "ONE")


def test_redlock_failed_round_leaves_no_grant(
    masters: list[Any], thread_errors: list[BaseException]
) -> None:
    # Two masters refuse: no quorum, so the healthy master's grant must be released.
    _refuse_writes(masters[1])
    _refuse_writes(masters[2])
    lock = Redlock(masters, unique("orphan"), ttl=5, instance_timeout=0.1)
    with pytest.raises(BackendUnavailableError):
        lock.acquire(blocking=False)
    assert masters[0].exists(lock._keys[0]) == 0
    for client in masters[1:]:
        client.config_set("maxmemory", "0")
    lease = lock.acquire(timeout=1)  # not dead for a ttl
    lock.release(lease)
    assert lock._cleaner is None or lock._cleaner.is_alive()
    assert thread_errors == []


def test_redis_lock_oom_is_unavailable(
    masters: list[Any], thread_errors: list[BaseException]
) -> None:
    holder = RedisLock(masters[0], unique("oom1"), ttl=5, op_timeout=0.5)
    lease = holder.acquire()
    _refuse_writes(masters[0])
    started = time.monotonic()
    # A waiter's clean-up meets OOM too: the caller still gets its own outcome.
    with pytest.raises((BackendUnavailableError, LockTimeoutError)) as info:
        RedisLock(masters[0], holder.name, ttl=5, op_timeout=0.5).acquire(timeout=0.3)
    assert time.monotonic() - started < 0.3 + 0.5 + 0.1
    assert isinstance(info.value, BackendUnavailableError | LockTimeoutError)
    with pytest.raises(BackendUnavailableError):
        RedisLock(masters[0], unique("oom2"), ttl=5, op_timeout=0.5).acquire(blocking=False)
    masters[0].config_set("maxmemory", "0")
    holder.release(lease)
    assert thread_errors == []


def test_async_redis_lock_oom_is_unavailable(masters: list[Any]) -> None:
    aioredis = pytest.importorskip("redis.asyncio")
    _refuse_writes(masters[0])
    port = masters[0].connection_pool.connection_kwargs["port"]

    async def main() -> None:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            lock = AsyncRedisLock(client, unique("aoom"), ttl=5, op_timeout=0.5)
            with pytest.raises(BackendUnavailableError):
                await lock.acquire(blocking=False)
        finally:
            await client.aclose()

    asyncio.run(main())
