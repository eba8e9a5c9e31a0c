"""A timed-out acquire ends with one round trip: its last try leaves the queue itself.

The last try before the caller's deadline goes out one reply's time early.
It used to be followed by a clean-up (leave the queue) in a round trip of
its own, each with a short budget; on a loaded host a reply later than
either budget dropped the connection, and the next call had to reconnect
(tests/locking/test_bounds.py saw that in 3 runs of 36). The try now
leaves the queue in the same script, with both budgets for one reply.
Here every reply is 50 ms late (a `TCPProxy` delaying each way by 25 ms),
more than the old budget of either round trip and less than the two
together. About 1.5 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import LockTimeoutError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking import RedisLock  # noqa: E402
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

# The caller's timeout: one try (a 50 ms reply), then the last try, sent 20 ms
# before the deadline; its reply is due 30 ms after it, within the bound.
TIMEOUT = 0.15
ONE_WAY = 0.025


def _connections_received(server: RedisServer) -> int:
    info = server.execute("INFO", "stats").decode()
    return int(info.split("total_connections_received:")[1].split()[0])


@pytest.fixture
def slow_redis() -> Iterator[tuple[RedisServer, TCPProxy]]:
    """A server of this test's own (no other test's connections in its counters)
    behind a proxy that holds every chunk `ONE_WAY` seconds."""
    with RedisServer() as server, TCPProxy(*server.address) as proxy:
        yield server, proxy


def _queue(client: Any, name: str) -> list[bytes]:
    return list(client.lrange(f"scalekit:lock:{{{name}}}:queue", 0, -1))


def test_a_timed_out_acquire_keeps_its_connection_and_leaves_the_queue(
    slow_redis: tuple[RedisServer, TCPProxy],
) -> None:
    server, proxy = slow_redis
    direct = redis.Redis.from_url(server.url)
    name = unique()
    holder = RedisLock(direct, name, ttl=30).acquire()
    assert holder is not None
    lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), name, ttl=30)
    assert lock.acquire(blocking=False) is None  # pooled, the server's clock measured
    proxy.delay(ONE_WAY)
    assert _queue(direct, name) == []  # the checks' own connection, opened before counting
    before = _connections_received(server) + 1  # +1: the probe's own connection
    started = time.monotonic()
    with pytest.raises(LockTimeoutError):
        lock.acquire(timeout=TIMEOUT)
    took = time.monotonic() - started
    assert _queue(direct, name) == []  # left at once, not by a background clean-up
    assert _connections_received(server) == before  # no reply cut: no reconnect
    assert TIMEOUT <= took <= TIMEOUT + BOUND_MARGIN
    holder.release()


def test_the_async_lock_ends_a_timed_out_acquire_the_same_way(
    slow_redis: tuple[RedisServer, TCPProxy],
) -> None:
    server, proxy = slow_redis
    direct = redis.Redis.from_url(server.url)
    name = unique("async")
    holder = RedisLock(direct, name, ttl=30).acquire()
    assert holder is not None

    async def scenario() -> tuple[float, int]:
        client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
        lock = AsyncRedisLock(client, name, ttl=30)
        assert await lock.acquire(blocking=False) is None  # connected, clock measured
        proxy.delay(ONE_WAY)
        assert _queue(direct, name) == []
        before = _connections_received(server) + 1
        started = time.monotonic()
        with pytest.raises(LockTimeoutError):
            await lock.acquire(timeout=TIMEOUT)
        took = time.monotonic() - started
        assert _queue(direct, name) == []
        opened = _connections_received(server) - before
        proxy.pass_through()
        await client.aclose()
        return took, opened

    took, opened = asyncio.run(scenario())
    assert opened == 0
    assert TIMEOUT <= took <= TIMEOUT + BOUND_MARGIN
    holder.release()
