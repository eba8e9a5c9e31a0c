"""An `async def` on_lost of AsyncRedisLock is awaited (about 1 s).

A lease left to expire on the real server (ttl 0.3 s, no renewal) is lost
at its deadline. A coroutine callback runs as a task on the event loop
that acquired the lease; once that loop has closed, it runs to completion
on a notifier thread (in a loop of its own). Either way it runs within the
notice bound: the lease's deadline plus `BOUND_MARGIN`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from scalekit.locking import Lease
from scalekit.testing import RedisServer

from .conftest import BOUND_MARGIN, unique

redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

TTL = 0.3


def test_an_async_on_lost_runs_on_the_loop_that_acquired(redis_server: RedisServer) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        told = asyncio.Event()
        ran_on: list[Any] = []

        async def on_lost(lease: Lease) -> None:
            await asyncio.sleep(0)  # a real coroutine: it must be awaited to get here
            ran_on.append(asyncio.get_running_loop())
            told.set()

        client = redis_asyncio.Redis.from_url(redis_server.url)
        lock = AsyncRedisLock(client, unique("async-lost"), ttl=TTL, on_lost=on_lost)
        acquired = time.monotonic()
        lease = await lock.acquire()
        assert lease is not None
        await asyncio.wait_for(told.wait(), TTL + 1)
        assert ran_on == [loop] and lease.lost.is_set()
        await client.aclose()
        return acquired, time.monotonic()

    acquired, told_at = asyncio.run(main())
    assert told_at - acquired <= TTL + BOUND_MARGIN


def test_an_async_on_lost_runs_after_its_loop_closed(redis_server: RedisServer) -> None:
    told = threading.Event()

    async def on_lost(lease: Lease) -> None:
        await asyncio.sleep(0)
        told.set()

    async def main() -> tuple[float, Any]:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        lock = AsyncRedisLock(client, unique("async-lost"), ttl=TTL, on_lost=on_lost)
        acquired = time.monotonic()
        lease = await lock.acquire()
        assert lease is not None
        await client.aclose()
        return acquired, lease  # the loop closes with the lease still held

    acquired, lease = asyncio.run(main())
    assert told.wait(TTL + 1) and lease.lost.is_set()
    assert time.monotonic() - acquired <= TTL + BOUND_MARGIN
