"""AsyncRedisLock on a `redis.asyncio` client its owner has closed (`aclose()`).

redis.asyncio reopens a closed client's pool on its next command, and a
connection nobody closes warns `unclosed Connection` (a `ResourceWarning`)
when it is collected. The lock's calls after the owner closed the client
(the renewal task's, the `async with` exit's release) used to reopen a
connection and leave it open. They now do their work and close what they
opened, leaving the client closed as they found it; against a silent
server they fail in bounded time, as on an open client. About 2 s.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

TTL = 1.5  # renewed every 0.5 s


def _clients(server: RedisServer) -> int:
    return int(server.execute("INFO", "clients").decode().split("connected_clients:")[1].split()[0])


def test_renewals_and_release_after_the_client_closed_leave_it_closed(
    redis_server: RedisServer, redis_client: Any
) -> None:
    name = unique("async-closed")
    key = f"scalekit:lock:{{{name}}}"

    async def main() -> float:
        client = redis_asyncio.Redis.from_url(redis_server.url)
        lock = AsyncRedisLock(client, name, ttl=TTL, auto_renew=True)
        async with lock as lease:
            await client.aclose()
            closed = _clients(redis_server)
            # Renewals go on while the lease is held: the key's ttl goes up again.
            deadline = time.monotonic() + TTL
            pttl = redis_client.pttl(key)
            while (now := redis_client.pttl(key)) <= pttl:
                pttl = now
                assert not lease.lost.is_set() and time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await _until_closed(redis_server, closed)  # the renewal's connection too
            started = time.monotonic()
        took = time.monotonic() - started  # the release, on the closed client
        assert redis_client.exists(key) == 0  # released, not left to expire
        await _until_closed(redis_server, closed)
        return took

    gc.collect()  # earlier tests' garbage warns now, not inside the record
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        took = asyncio.run(main())
        gc.collect()
    assert took <= 2.0 + BOUND_MARGIN  # op_timeout
    # Only the lock's connections count: a file another thread of the
    # worker leaves to the collector may warn in the same window.
    unclosed = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "unclosed file" not in str(w.message)
    ]
    assert unclosed == []


async def _until_closed(server: RedisServer, clients: int) -> None:
    """Wait (at most 1 s) for the server to count no more than *clients* connections."""
    deadline = time.monotonic() + 1.0
    while _clients(server) > clients:
        assert time.monotonic() < deadline, "a connection of the closed client stayed open"
        await asyncio.sleep(0.01)


def test_a_release_on_a_closed_client_of_a_silent_server_fails_in_bounded_time(
    redis_server: RedisServer,
) -> None:
    """Closed, then the server falls silent: the reopening release cannot get through.

    It raises `BackendUnavailableError` within `op_timeout` (plus the margin),
    and leaves nothing open behind it.
    """
    name = unique("async-closed")

    async def main() -> float:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            lock = AsyncRedisLock(client, name, ttl=5, op_timeout=0.3)
            lease = await lock.acquire()
            assert lease is not None
            await client.aclose()
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                await lease.release()
            took = time.monotonic() - started
            await asyncio.sleep(0)  # the call's cancelled request ends
        return took

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        took = asyncio.run(main())
        gc.collect()
    assert took <= 0.3 + BOUND_MARGIN
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
