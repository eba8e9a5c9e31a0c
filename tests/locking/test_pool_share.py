"""The lock's waiters never take the connection its holder needs (about 3 s).

A lock runs its calls on a private pool of the client's `max_connections`.
A waiter listening on its wake list (BLPOP) holds a connection for as
long as it listens, so waiters may hold all but one of them: the holder's
`extend()` and `release()` always find a connection (waiting for one
within their budget), and waiters beyond that share poll instead of
listening, still served in order.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError
from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking._redis_calls import _private_pool  # noqa: E402
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis


def _poll(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


@pytest.mark.parametrize("pool_class", ["ConnectionPool", "BlockingConnectionPool"])
def test_waiters_filling_the_pool_leave_the_holder_a_connection(
    redis_server: RedisServer, redis_client: Any, pool_class: str
) -> None:
    pool = getattr(redis, pool_class).from_url(redis_server.url, max_connections=4)
    client = redis.Redis(connection_pool=pool)
    name = unique()
    holder = RedisLock(client, name, ttl=30).acquire()
    assert holder is not None
    got: list[int] = []

    def wait_for_it() -> None:
        with RedisLock(client, name, ttl=30).acquire(timeout=10) as lease:  # type: ignore[union-attr]
            got.append(lease.token)

    waiters = [threading.Thread(target=wait_for_it) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    _poll(lambda: redis_client.llen(f"scalekit:lock:{{{name}}}:queue") == 4)
    holder.extend()
    holder.release()
    for waiter in waiters:
        waiter.join(12)
    assert len(got) == 4  # none waited out a dead lock: each got it in turn
    assert sorted(got) == got and got[0] > holder.token
    client.close()


def test_an_exhausted_pool_is_named_as_the_cause(fresh_redis_server: RedisServer) -> None:
    """max_connections=1: a call stuck on a frozen server holds the one connection; another
    call waits for it within its own budget, then says the pool is exhausted."""
    client = redis.Redis.from_url(fresh_redis_server.url, max_connections=1)
    slow = RedisLock(client, unique(), ttl=30, op_timeout=1.5)
    quick = RedisLock(client, unique(), ttl=30, op_timeout=0.3)
    quick.acquire(blocking=False).release()  # type: ignore[union-attr]
    fresh_redis_server.pause()
    stuck = threading.Thread(target=lambda: _unavailable(slow))
    try:
        stuck.start()
        pool = _private_pool(client)
        _poll(lambda: pool._created == 1 and not pool._free)  # the stuck call holds it
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"pool is exhausted, all 1 connections"):
            quick.acquire(blocking=False)
        assert 0.3 - 0.02 <= time.monotonic() - started <= 0.3 + 0.1
    finally:
        fresh_redis_server.resume()
        stuck.join(5)
    client.close()


def _unavailable(lock: RedisLock) -> None:
    """Hold the pool's one connection in a call to the frozen server. The server is
    resumed once the test has seen the pool exhausted, which may be before this
    call's `op_timeout`: then it is answered, and the lease is released."""
    try:
        lease = lock.acquire(blocking=False)
    except BackendUnavailableError:
        return
    if lease is not None:
        lease.release()
