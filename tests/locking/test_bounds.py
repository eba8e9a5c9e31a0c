"""Every call returns within its documented bound or raises, on a blackholed network.

The bounds are those of docs/locking.md: ``acquire(timeout=t)`` within
``t`` plus ``BOUND_MARGIN``; a non-blocking acquire, release and extend
within ``op_timeout`` plus ``BOUND_MARGIN``. Real redis-servers behind
``TCPProxy``; about 6 s in all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking import RedisLock, Redlock  # noqa: E402
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

BOUNDED = (BackendUnavailableError, LockTimeoutError)


def _timed(call: Any) -> float:
    started = time.monotonic()
    with pytest.raises(BOUNDED):
        call()
    return time.monotonic() - started


def test_acquire_with_a_timeout_returns_within_it_on_a_blackholed_server(
    redis_server: RedisServer,
) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        proxy.blackhole()  # before the first connection: the handshake hangs too
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), unique(), op_timeout=2)
        assert _timed(lambda: lock.acquire(timeout=0.3)) <= 0.3 + BOUND_MARGIN


def test_a_non_blocking_acquire_returns_within_op_timeout(redis_server: RedisServer) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), unique(), op_timeout=0.5)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(blocking=False)
        assert time.monotonic() - started <= 0.5 + BOUND_MARGIN


@pytest.mark.parametrize("thread_start", ["fast", "slow"])
def test_a_waiter_blackholed_in_blpop_returns_within_its_timeout(
    redis_server: RedisServer, redis_client: Any, monkeypatch: pytest.MonkeyPatch, thread_start: str
) -> None:
    """With "slow", every thread start takes 0.25 s, as on a loaded host.

    The clean-up a silent server leaves goes on in a background thread; its
    start used to be on the caller's path (`Thread.start()` waits for the new
    thread to run), up to 0.2 s past the bound on a loaded 2-core host.
    """
    name = unique()
    holder = RedisLock(redis_client, name, ttl=30).acquire()
    assert holder is not None
    with TCPProxy(*redis_server.address) as proxy:
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), name, op_timeout=2)
        assert lock.acquire(blocking=False) is None  # connected: the proxy's threads run
        queue = f"scalekit:lock:{{{name}}}:queue"

        done = threading.Event()

        def cut_when_queued() -> None:
            while redis_client.llen(queue) == 0 and not done.is_set():
                time.sleep(0.002)
            proxy.blackhole()

        cutter = threading.Thread(target=cut_when_queued)
        cutter.start()
        if thread_start == "slow":
            start = threading.Thread.start

            def slow_start(self: threading.Thread) -> None:
                time.sleep(0.25)
                start(self)

            monkeypatch.setattr(threading.Thread, "start", slow_start)
        try:
            assert _timed(lambda: lock.acquire(timeout=1.0)) <= 1.0 + BOUND_MARGIN
        finally:
            monkeypatch.undo()
            done.set()
            cutter.join(5)
    holder.release()


def test_async_calls_return_within_their_bounds(
    redis_server: RedisServer, redis_client: Any
) -> None:
    name = unique("async")
    holder = RedisLock(redis_client, name, ttl=30).acquire()
    assert holder is not None

    async def main() -> tuple[float, float]:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            lock = AsyncRedisLock(client, name, op_timeout=2)
            assert await lock.acquire(blocking=False) is None  # connected, not queued

            async def timed_wait() -> float:
                started = time.monotonic()
                with pytest.raises(BOUNDED):
                    await lock.acquire(timeout=1.0)
                return time.monotonic() - started

            waiting = asyncio.ensure_future(timed_wait())
            queue = f"scalekit:lock:{{{name}}}:queue"
            while not waiting.done() and redis_client.llen(queue) == 0:
                await asyncio.sleep(0.002)
            proxy.blackhole()
            in_blpop = await waiting
            started = time.monotonic()
            with pytest.raises(BOUNDED):
                await lock.acquire(timeout=0.3)
            short = time.monotonic() - started
            return in_blpop, short

    in_blpop, short = asyncio.run(main())
    assert in_blpop <= 1.0 + BOUND_MARGIN
    assert short <= 0.3 + BOUND_MARGIN
    holder.release()


def test_redlock_with_every_master_blackholed_raises_instead_of_spinning(
    redlock_servers: list[RedisServer],
) -> None:
    proxies = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        for proxy in proxies:
            proxy.blackhole()
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        lock = Redlock(clients, unique(), ttl=5, instance_timeout=0.1)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="only 0 of 3"):
            lock.acquire()  # blocking, no timeout: one round, then retried for one more
        assert time.monotonic() - started <= 2 * 3 * 0.1 + BOUND_MARGIN
        assert _timed(lambda: lock.acquire(timeout=0.2)) <= 0.2 + BOUND_MARGIN
    finally:
        for proxy in proxies:
            proxy.close()


def test_redlock_first_blocking_acquire_after_a_blackhole_keeps_its_bound(
    redlock_servers: list[RedisServer],
) -> None:
    """The first call meets the pooled connections the partition left dead, and its
    retries used to start a round just before the retry window ended and run a
    whole round past it (0.73-0.80 s against 0.70 s). About 1.5 s."""
    proxies = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        lock = Redlock(clients, unique(), ttl=5, instance_timeout=0.1)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]  # pooled
        for proxy in proxies:
            proxy.blackhole()
        for _ in range(2):  # the first call (dead pooled connections), then a later one
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="only 0 of 3"):
                lock.acquire()
            assert time.monotonic() - started <= 2 * 3 * 0.1 + BOUND_MARGIN
    finally:
        for proxy in proxies:
            proxy.close()


def test_redis_lock_blocking_acquire_retries_within_one_more_op_timeout(
    redis_server: RedisServer,
) -> None:
    """Without a timeout, the retries after the first failure stop at one more
    `op_timeout`: the last try is cut at that window's end. About 0.6 s."""
    with TCPProxy(*redis_server.address) as proxy:
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), unique(), op_timeout=0.25)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]  # pooled
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            lock.acquire()
        assert time.monotonic() - started <= 2 * 0.25 + BOUND_MARGIN


def _connections_received(server: RedisServer) -> int:
    info = server.execute("INFO", "stats").decode()
    return int(info.split("total_connections_received:")[1].split()[0])


@pytest.fixture
def own_redis() -> Any:
    """A server of this test's own: no other test's connections in its counters."""
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("timeout", [0.25, 0.33, 0.05])
def test_a_timed_out_acquire_ends_on_time_without_dropping_its_connection(
    own_redis: RedisServer, timeout: float
) -> None:
    """Redis fires a BLPOP's timeout on its timer tick, up to 0.1 s late (hz 10).

    The waiter used to listen for its whole remaining time, cut the late
    reply at its deadline and drop the connection, then reconnect for a last
    try and the clean-up: past the bound on a loaded host. It now listens one
    tick less and waits out the rest itself, so its connection stays pooled.
    """
    client = redis.Redis.from_url(own_redis.url)
    name = unique()
    holder = RedisLock(client, name, ttl=30).acquire()
    assert holder is not None
    lock = RedisLock(client, name, ttl=30)
    with pytest.raises(LockTimeoutError):
        lock.acquire(timeout=timeout)  # warms the lock's pool
    before = _connections_received(own_redis) + 1  # +1: the probe's own connection
    took = []
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError):
            lock.acquire(timeout=timeout)
        took.append(time.monotonic() - started)
    assert _connections_received(own_redis) == before
    assert all(timeout <= t <= timeout + BOUND_MARGIN for t in took), took
    holder.release()


def test_the_async_lock_ends_a_timed_out_acquire_without_dropping_its_connection(
    own_redis: RedisServer,
) -> None:
    async def scenario() -> list[float]:
        client = redis_asyncio.Redis.from_url(own_redis.url)
        name = unique()
        holder = await AsyncRedisLock(client, name, ttl=30).acquire()
        lock = AsyncRedisLock(client, name, ttl=30)
        with pytest.raises(LockTimeoutError):
            await lock.acquire(timeout=0.25)
        took = []
        before = _connections_received(own_redis) + 1
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(LockTimeoutError):
                await lock.acquire(timeout=0.25)
            took.append(time.monotonic() - started)
        assert _connections_received(own_redis) == before
        await holder.release()
        await client.aclose()
        return took

    took = asyncio.run(scenario())
    assert all(0.25 <= t <= 0.25 + BOUND_MARGIN for t in took), took
