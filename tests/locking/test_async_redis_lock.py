"""AsyncRedisLock on redis.asyncio: per-task owners, FIFO, fencing shared with RedisLock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from scalekit.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    LockLostError,
    LockNotOwnedError,
    LockTimeoutError,
)
from scalekit.locking import Lease
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_acquire_release_and_tokens_shared_with_the_sync_lock(
    redis_server: RedisServer, redis_client: Any
) -> None:
    name = unique("async")

    async def main() -> list[int]:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        lock = AsyncRedisLock(client, name, ttl=5)
        tokens = []
        async with lock as lease:
            tokens.append(lease.token)
            # The sync lock of the same name is excluded and shares the counter.
            assert RedisLock(redis_client, name).acquire(blocking=False) is None
        sync_lease = RedisLock(redis_client, name).acquire(blocking=False)
        assert sync_lease is not None
        tokens.append(sync_lease.token)
        sync_lease.release()
        lease2 = await lock.acquire()
        assert lease2 is not None
        tokens.append(lease2.token)
        await lease2.release()
        with pytest.raises(LockNotOwnedError):
            await lease2.release()
        await client.aclose()
        return tokens

    first, second, third = run(main())
    assert first < second < third


def test_owner_is_the_task(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        lock = AsyncRedisLock(client, unique("async"), reentrant=True)
        outer = await lock.acquire()
        assert await lock.acquire() is outer  # same task: re-entered

        async def other_task() -> Any:
            return await lock.acquire(blocking=False)

        assert await asyncio.create_task(other_task()) is None  # another task: excluded

        async def release_elsewhere() -> None:
            await lock.release()

        with pytest.raises(LockNotOwnedError):
            await asyncio.create_task(release_elsewhere())
        await lock.release()
        assert await lock.locked()
        await lock.release()
        assert not await lock.locked()
        await client.aclose()

    run(main())


def test_tasks_are_served_in_arrival_order_and_timeouts_raise(redis_server: RedisServer) -> None:
    async def main() -> list[int]:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        name = unique("async")
        holder = await AsyncRedisLock(client, name).acquire()
        assert holder is not None
        order: list[int] = []

        async def take(i: int) -> None:
            async with AsyncRedisLock(client, name) as lease:
                assert lease.token > holder.token
                order.append(i)

        tasks = []
        for i in range(4):
            tasks.append(asyncio.create_task(take(i)))
            while await client.llen(f"scalekit:lock:{{{name}}}:queue") < i + 1:
                await asyncio.sleep(0.005)
        started = time.monotonic()
        with pytest.raises(LockTimeoutError):
            await AsyncRedisLock(client, name).acquire(timeout=0.2)
        assert time.monotonic() - started <= 0.2 + BOUND_MARGIN
        await holder.release()
        await asyncio.gather(*tasks)
        await client.aclose()
        return order

    assert run(main()) == [0, 1, 2, 3]


def test_expired_lease_is_lost_and_on_lost_runs_on_the_loop(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        name = unique("async")
        seen: list[Lease] = []
        loop = asyncio.get_running_loop()
        on_loop: list[bool] = []

        def on_lost(lease: Lease) -> None:
            seen.append(lease)
            on_loop.append(asyncio.get_running_loop() is loop)

        stale = await AsyncRedisLock(client, name, ttl=0.3, on_lost=on_lost).acquire()
        assert stale is not None
        fresh = await AsyncRedisLock(client, name).acquire(timeout=3)
        assert fresh is not None and fresh.token > stale.token
        assert stale.lost.is_set()
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [stale] and on_loop == [True]
        with pytest.raises(LockLostError):
            await stale.release()
        await fresh.release()
        await client.aclose()

    run(main())


def test_auto_renew_keeps_the_lease(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        name = unique("async")
        lease = await AsyncRedisLock(client, name, ttl=0.3, auto_renew=True).acquire()
        assert lease is not None
        await asyncio.sleep(0.8)
        assert not lease.lost.is_set()
        assert await AsyncRedisLock(client, name).acquire(blocking=False) is None
        await lease.release()
        await client.aclose()

    run(main())


def test_blackholed_server_is_unavailable_within_op_timeout(redis_server: RedisServer) -> None:
    async def main() -> float:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            lock = AsyncRedisLock(client, unique("async"), op_timeout=0.3)
            async with lock:
                pass
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                await lock.acquire(blocking=False)
            return time.monotonic() - started

    assert run(main()) <= 0.3 + BOUND_MARGIN


def test_bad_input(redis_server: RedisServer) -> None:
    client = redis_asyncio.Redis.from_url(redis_server.url)
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        AsyncRedisLock(client, "")
    with pytest.raises(ConfigurationError, match="ttl must be a positive"):
        AsyncRedisLock(client, "x", ttl=0)
    lock = AsyncRedisLock(client, "x")
    with pytest.raises(ConfigurationError, match="timeout must be a non-negative"):
        run(lock.acquire(timeout=-1))


def test_a_cancelled_waiter_leaves_the_queue(redis_server: RedisServer) -> None:
    async def main() -> None:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        name = unique("async")
        queue = f"scalekit:lock:{{{name}}}:queue"
        holder = await AsyncRedisLock(client, name).acquire()
        assert holder is not None
        waiter = asyncio.create_task(AsyncRedisLock(client, name).acquire())
        while await client.llen(queue) < 1:
            await asyncio.sleep(0.005)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await client.llen(queue) == 0
        await holder.release()
        # Nobody was handed the lock on the cancelled waiter's behalf.
        assert not await AsyncRedisLock(client, name).locked()
        await client.aclose()

    run(main())


def test_async_renewal_outlasts_busy_replies(fresh_redis_server: RedisServer) -> None:
    """A script keeps Redis busy for 0.6 s: the renewal task retries; the lease is never lost."""
    from .test_redis_lock import _busy_for

    async def main() -> None:
        client = redis_asyncio.Redis.from_url(fresh_redis_server.url)
        seen: list[Lease] = []
        lock = AsyncRedisLock(
            client, unique("async"), ttl=1.5, auto_renew=True, on_lost=seen.append
        )
        lease = await lock.acquire()
        assert lease is not None
        busy = _busy_for(fresh_redis_server, 0.6)  # over the renewal due at 0.5 s
        await asyncio.sleep(2.5)  # past the ttl a dead renewal would have left
        busy.join(5)
        assert not lease.lost.is_set() and not seen
        await lease.release()
        await client.aclose()

    run(main())
