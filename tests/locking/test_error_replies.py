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


def test_oom_in_the_clean_up_keeps_the_timeout(
    masters: list[Any], thread_errors: list[BaseException]
) -> None:
    """A waiter whose clean-up meets OOM gets its own outcome, never the clean-up's error.

    The waiter re-asks while it waits, so its outcome is the timeout or the
    outage its own request met (`BackendUnavailableError`), and no thread dies.
    """
    holder = RedisLock(masters[0], unique("oomwait"), ttl=5, op_timeout=0.5)
    lease = holder.acquire()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            RedisLock(masters[0], holder.name, ttl=5, op_timeout=0.5).acquire(timeout=0.8)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    queue = holder._keys[2]
    end = time.monotonic() + 0.5
    while masters[0].llen(queue) == 0 and time.monotonic() < end:
        time.sleep(0.005)
    assert masters[0].llen(queue) == 1
    _refuse_writes(masters[0])
    waiter.join(2)
    assert len(outcome) == 1
    assert type(outcome[0]) in (LockTimeoutError, BackendUnavailableError)
    masters[0].config_set("maxmemory", "0")
    # The clean-up goes on in the background and leaves the queue once Redis takes writes.
    end = time.monotonic() + 1
    while masters[0].llen(queue) and time.monotonic() < end:
        time.sleep(0.01)
    assert masters[0].llen(queue) == 0
    holder.release(lease)
    assert thread_errors == []


def test_async_oom_in_the_clean_up_keeps_the_outcome(masters: list[Any]) -> None:
    """As the sync test, on the asyncio lock: the clean-up's error never escapes."""
    aioredis = pytest.importorskip("redis.asyncio")
    port = masters[0].connection_pool.connection_kwargs["port"]
    name = unique("aoomwait")

    async def main() -> None:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            holder = AsyncRedisLock(client, name, ttl=5, op_timeout=0.5)
            lease = await holder.acquire()
            waiter = AsyncRedisLock(client, name, ttl=5, op_timeout=0.5)
            task = asyncio.create_task(waiter.acquire(timeout=0.8))
            queue = holder._keys[2]
            end = time.monotonic() + 0.5
            while masters[0].llen(queue) == 0 and time.monotonic() < end:
                await asyncio.sleep(0.005)
            assert masters[0].llen(queue) == 1
            _refuse_writes(masters[0])
            with pytest.raises((LockTimeoutError, BackendUnavailableError)) as info:
                await task
            assert type(info.value) in (LockTimeoutError, BackendUnavailableError)
            masters[0].config_set("maxmemory", "0")
            end = time.monotonic() + 1
            while masters[0].llen(queue) and time.monotonic() < end:
                await asyncio.sleep(0.01)
            assert masters[0].llen(queue) == 0
            await holder.release(lease)
        finally:
            await client.aclose()

    asyncio.run(main())
