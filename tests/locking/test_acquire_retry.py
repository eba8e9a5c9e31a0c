"""A blocking acquire rides out a backend outage until its deadline; calls survive a restart.

Real redis-servers, frozen (SIGSTOP), killed (SIGKILL) and restarted on the
same port, or blackholed behind `TCPProxy`, or slowed by it. About 12 s in all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking import RedisLock  # noqa: E402
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

OUTAGE = 1.5


@pytest.fixture
def own_server() -> Any:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.close()


def test_a_blocking_acquire_retries_through_a_frozen_server(own_server: RedisServer) -> None:
    client = redis.Redis.from_url(own_server.url)
    name = unique()
    lock = RedisLock(client, name, ttl=5, op_timeout=1)
    lock.acquire(timeout=1).release()  # type: ignore[union-attr]  # a pooled connection
    own_server.pause()
    timer = threading.Timer(OUTAGE, own_server.resume)
    timer.start()
    started = time.monotonic()
    try:
        lease = lock.acquire(timeout=5)  # op_timeout 1 < outage 1.5 < timeout 5
    finally:
        timer.join()
    took = time.monotonic() - started
    assert lease is not None and not lease.lost.is_set()
    assert OUTAGE <= took <= 5 + BOUND_MARGIN
    # The try whose reply was lost in the outage did not leave a second owner.
    assert RedisLock(client, name).acquire(blocking=False) is None
    lease.release()
    assert client.exists(f"scalekit:lock:{{{name}}}") == 0


def test_an_async_blocking_acquire_retries_through_a_frozen_server(
    own_server: RedisServer,
) -> None:
    async def main() -> tuple[Any, float]:
        client = redis_asyncio.Redis.from_url(own_server.url)
        lock = AsyncRedisLock(client, unique("async"), ttl=5, op_timeout=1)
        await (await lock.acquire(timeout=1)).release()  # type: ignore[union-attr]
        own_server.pause()
        asyncio.get_running_loop().call_later(OUTAGE, own_server.resume)
        started = time.monotonic()
        lease = await lock.acquire(timeout=5)
        took = time.monotonic() - started
        assert lease is not None and not lease.lost.is_set()
        await lease.release()
        await client.aclose()
        return lease, took

    _lease, took = asyncio.run(main())
    assert OUTAGE <= took <= 5 + BOUND_MARGIN


def test_a_blocking_acquire_raises_backend_unavailable_at_its_deadline(
    redis_server: RedisServer,
) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), unique(), op_timeout=0.3)
        lock.acquire(timeout=1).release()  # type: ignore[union-attr]
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(timeout=1)  # three op_timeouts: retried, not given up after one
        assert 1 - BOUND_MARGIN <= time.monotonic() - started <= 1 + BOUND_MARGIN


def test_acquire_without_a_timeout_reports_a_server_that_stays_down() -> None:
    server = RedisServer()
    server.start()
    lock = RedisLock(redis.Redis.from_url(server.url), unique(), op_timeout=0.5)
    server.close()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        lock.acquire()  # retries a run of failures for one op_timeout, then says so
    assert time.monotonic() - started <= 2 * 0.5 + BOUND_MARGIN


def test_a_retry_recognises_its_own_grant_whose_reply_was_lost(redis_client: Any) -> None:
    name = unique()
    lock = RedisLock(redis_client, name, ttl=30)
    real_script = lock._calls.script
    calls: list[str] = []

    def reply_lost_once(script: Any, keys: Any, args: Any, timeout: Any = None, **kw: Any) -> Any:
        result = real_script(script, keys, args, timeout, **kw)
        calls.append(script.sha)
        if len(calls) == 1:
            raise BackendUnavailableError("reply lost (simulated)")
        return result

    lock._calls.script = reply_lost_once  # type: ignore[method-assign]
    lease = lock.acquire(timeout=2)
    assert lease is not None
    # The retry found the lock already naming its owner token: one owner, the newer token.
    assert redis_client.get(f"scalekit:lock:{{{name}}}").decode() == lease.owner
    assert RedisLock(redis_client, name).acquire(blocking=False) is None
    lease.release()


def test_a_pooled_connection_to_a_killed_and_restarted_server_is_replaced(
    own_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(own_server.url)
    lock = RedisLock(client, unique(), ttl=5, op_timeout=1)
    lock.acquire(blocking=False).release()  # type: ignore[union-attr]
    own_server.kill()
    own_server.start()  # same port: the pooled connection is dead, the server is up
    started = time.monotonic()
    lease = lock.acquire(blocking=False)  # tried once, on a fresh connection
    assert lease is not None
    assert time.monotonic() - started <= 1 + BOUND_MARGIN
    lease.release()


def test_a_closed_connection_is_not_reported_as_a_timeout(own_server: RedisServer) -> None:
    client = redis.Redis.from_url(own_server.url)
    lock = RedisLock(client, unique(), op_timeout=1)
    lock.acquire(blocking=False).release()  # type: ignore[union-attr]
    own_server.kill()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        lock.acquire(blocking=False)
    assert time.monotonic() - started <= 1 + BOUND_MARGIN
    assert "within" not in str(info.value)


def test_a_first_acquire_over_a_slow_link_returns_a_live_lease(redis_server: RedisServer) -> None:
    """The deadline counts from the request that got the grant, not from the handshake."""
    direct = redis.Redis.from_url(redis_server.url)
    direct.script_flush()  # as after a restart: EVALSHA fails, EVAL follows
    name = unique()
    with TCPProxy(*redis_server.address) as proxy:
        slow = redis.Redis(host=proxy.host, port=proxy.port)
        proxy.delay(0.15)  # each chunk 0.15 s: ~0.3 s per round trip
        lease = RedisLock(slow, name, ttl=1.2, op_timeout=5).acquire(timeout=10)
        proxy.pass_through()
        assert lease is not None
        left = lease.remaining()
        server_left = direct.pttl(f"scalekit:lock:{{{name}}}") / 1000
        # Live, with at least the ttl less the grant's reply leg (two chunks) ...
        assert not lease.lost.is_set() and left >= 1.2 - 2 * 0.15 - BOUND_MARGIN
        # ... and never later than the server's expiry.
        assert left <= server_left + 0.01
        lease.release()
        slow.close()


def test_an_async_acquire_after_a_script_flush_counts_from_the_eval(
    redis_server: RedisServer,
) -> None:
    """The NOSCRIPT round before the EVAL that got the grant is not charged to the lease."""
    direct = redis.Redis.from_url(redis_server.url)
    name = unique("async")

    async def main() -> tuple[float, float]:
        with TCPProxy(*redis_server.address) as proxy:
            slow = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            await slow.ping()  # connected: what is measured is the script's rounds
            direct.script_flush()
            proxy.delay(0.15)
            lease = await AsyncRedisLock(slow, name, ttl=1.2, op_timeout=5).acquire(timeout=10)
            proxy.pass_through()
            assert lease is not None and not lease.lost.is_set()
            left = lease.remaining()
            assert left is not None
            server_left = direct.pttl(f"scalekit:lock:{{{name}}}") / 1000
            await lease.release()
            await slow.aclose()
            return left, server_left

    left, server_left = asyncio.run(main())
    assert left >= 1.2 - 2 * 0.15 - BOUND_MARGIN  # not also the failed EVALSHA's round trip
    assert left <= server_left + 0.01
