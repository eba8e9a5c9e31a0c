"""A request delivered after its attempt gave up and cleaned up grants nothing.

A partition holds an acquire's bytes; the caller gives up within its
bound, and its clean-up runs once the partition heals. TCP delivers the
held request too, and in either order. When the clean-up runs first, the
late request used to take the lock for a full ttl on behalf of an owner
that is gone, so nobody could take it until that ttl ran out.

Real redis-servers behind `TCPProxy`. The order "clean-up first, then the
held request" is made certain by delivering the request again, unchanged
(same owner, same arguments), once the clean-up has run: that is exactly
the late delivery. About 4 s in all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import unique

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking import (  # noqa: E402
    RedisLock,
    RedisReadWriteLock,
    RedisSemaphore,
    Redlock,
)
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402
from scalekit.locking.redlock import _ACQUIRE as REDLOCK_ACQUIRE  # noqa: E402

pytestmark = pytest.mark.redis


def _spy_attempts(lock: Any) -> list[Any]:
    """Record the attempts *lock* makes (its own objects, not a stand-in)."""
    made: list[Any] = []
    new_attempt = lock._new_attempt

    def recording(owner: str) -> Any:
        attempt = new_attempt(owner)
        made.append(attempt)
        return attempt

    lock._new_attempt = recording
    return made


def _cleanups_done(name: str, seconds: float = 5.0) -> None:
    """Wait until no background clean-up of lock *name* is running."""
    end = time.monotonic() + seconds
    while any(t.name.endswith(name) and "cleanup" in t.name for t in threading.enumerate()):
        assert time.monotonic() < end, "the clean-up did not end"
        time.sleep(0.01)


def _give_up_in_a_partition(lock: Any, proxy: TCPProxy, call: Callable[[], Any]) -> Any:
    attempts = _spy_attempts(lock)
    proxy.blackhole()
    with pytest.raises((BackendUnavailableError, LockTimeoutError)):
        call()
    proxy.pass_through()
    _cleanups_done(lock.name)
    return attempts[-1]


MAKERS: dict[str, Callable[[Any, str], Any]] = {
    "lock": lambda c, n: RedisLock(c, n, ttl=5, op_timeout=0.2),
    "semaphore": lambda c, n: RedisSemaphore(c, n, 1, ttl=5, op_timeout=0.2),
    "rwlock-write": lambda c, n: RedisReadWriteLock(c, n, ttl=5, op_timeout=0.2).write,
    "rwlock-read": lambda c, n: RedisReadWriteLock(c, n, ttl=5, op_timeout=0.2).read,
}

# Each script (lock, semaphore, read-write lock) once blocking and once not.
CASES = [
    ("lock", False),
    ("lock", True),
    ("semaphore", False),
    ("semaphore", True),
    ("rwlock-write", False),
    ("rwlock-read", True),
]


@pytest.mark.parametrize(("kind", "blocking"), CASES)
def test_a_request_delivered_after_its_clean_up_takes_nothing(
    redis_server: RedisServer, redis_client: Any, kind: str, blocking: bool
) -> None:
    name = unique(kind)
    with TCPProxy(*redis_server.address) as proxy:
        lock = MAKERS[kind](redis.Redis(host=proxy.host, port=proxy.port), name)
        lock.acquire(blocking=False).release()  # a pooled connection
        if blocking:
            attempt = _give_up_in_a_partition(lock, proxy, lambda: lock.acquire(timeout=0.15))
        else:
            attempt = _give_up_in_a_partition(lock, proxy, lambda: lock.acquire(blocking=False))
        # The held request arrives now, after the clean-up: it must grant and queue nothing.
        assert lock._do_acquire(attempt, blocking, None) is None
        other = MAKERS[kind](redis_client, name)
        lease = other.acquire(blocking=False)
        assert lease is not None, "the late request of an attempt that gave up took the lock"
        lease.release()
        queue = lock._keys[2]
        assert redis_client.llen(queue) == 0


def test_a_redlock_round_delivered_after_its_release_takes_nothing(
    redlock_servers: list[RedisServer],
) -> None:
    name = unique("redlock")
    proxies = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        lock = Redlock([redis.Redis(host=p.host, port=p.port) for p in proxies], name, ttl=5)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]
        attempts = _spy_attempts(lock)
        for proxy in proxies:
            proxy.blackhole()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(blocking=False)
        for proxy in proxies:
            proxy.pass_through()
        end = time.monotonic() + 5
        while any(t.name.startswith(f"scalekit-cleanup:{name}") for t in threading.enumerate()):
            assert time.monotonic() < end
            time.sleep(0.01)
        attempt = attempts[-1]
        # The round's held requests reach every master after its clean-up released them.
        for master in lock._masters:
            reply = master.script(
                REDLOCK_ACQUIRE,
                lock._keys,
                [attempt.value, 5000, attempt.owner + ":", attempt.rounds],
            )
            assert int(reply[0]) == 0, "a late round took a master's key for a full ttl"
        direct = Redlock([redis.Redis.from_url(s.url) for s in redlock_servers], name, ttl=5)
        lease = direct.acquire(blocking=False)
        assert lease is not None
        lease.release()
    finally:
        for proxy in proxies:
            proxy.close()


def _evalsha_calls(server: RedisServer) -> int:
    info = server.execute("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_an_async_acquire_cancelled_on_a_slow_link_leaves_the_lock_free(
    redis_server: RedisServer, redis_client: Any
) -> None:
    """`asyncio.wait_for(lock.acquire(), t)` with a round trip longer than `t`.

    The cancelled request still reaches the server and takes the lock; the
    clean-up must then reach it too, on a new connection whose handshake
    alone is several slow round trips (it used to give every try 1 s, fail
    them all, and leave the lock held for its ttl). About 3 s.
    """
    name = unique("async")

    async def scenario() -> None:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            lock = AsyncRedisLock(client, name, ttl=10)
            await (await lock.acquire()).release()  # a pooled connection
            proxy.delay(0.2)
            before = _evalsha_calls(redis_server)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(lock.acquire(), 0.05)
            end = time.monotonic() + 2
            while _evalsha_calls(redis_server) == before:  # the cancelled request landed
                assert time.monotonic() < end
                await asyncio.sleep(0.01)
            # Free again well within the ttl of the grant the cancelled request made.
            other = RedisLock(redis_client, name, ttl=10)
            end = time.monotonic() + 4  # the handshake and one call, not the ttl of 10 s
            lease = other.acquire(blocking=False)
            while lease is None:
                assert time.monotonic() < end, "the cancelled acquire holds the lock for its ttl"
                await asyncio.sleep(0.02)
                lease = other.acquire(blocking=False)
            lease.release()
            proxy.pass_through()
            await client.aclose()

    asyncio.run(scenario())
