"""Hand-over on the Redis locks: a wake-up grants nothing, the server confirms every grant.

Real redis-server, real waiter processes frozen with SIGSTOP or killed
with SIGKILL. Each test takes 1-3 s.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scalekit.locking import BaseLock, Lease
from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking import RedisLock, RedisReadWriteLock, RedisSemaphore  # noqa: E402
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402

pytestmark = pytest.mark.redis

HERE = Path(__file__).resolve().parent
KINDS = ["lock", "async", "semaphore", "rw-write"]
PREFIX = {
    "lock": "scalekit:lock:",
    "async": "scalekit:lock:",
    "semaphore": "scalekit:semaphore:",
    "rw-write": "scalekit:rwlock:",
}
# PTTL is reported in whole milliseconds.
PTTL_RESOLUTION = 0.001
# Redis fires blocking-command timeouts on its event loop, which an idle
# server wakes every 1/hz seconds (hz 10 by default).
REDIS_TICK = 0.1


def _lock(kind: str, client: Any, name: str, **options: Any) -> BaseLock:
    """A sync lock of *kind* (the async kind shares the keys of RedisLock)."""
    if kind in ("lock", "async"):
        return RedisLock(client, name, **options)
    if kind == "semaphore":
        return RedisSemaphore(client, name, 1, **options)
    return RedisReadWriteLock(client, name, **options).write


def _poll(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _take(lock: BaseLock, timeout: float = 10.0) -> Lease:
    """Poll a non-blocking acquire until it succeeds."""
    got: list[Lease] = []

    def try_once() -> bool:
        lease = lock.acquire(blocking=False)
        if lease is not None:
            got.append(lease)
        return bool(got)

    _poll(try_once, timeout)
    return got[0]


def _spawn(kind: str, url: str, name: str, ttl: float, waiter_ttl: float, claim: float) -> Any:
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_waiter.py"),
            kind,
            url,
            name,
            *map(str, (ttl, waiter_ttl, claim)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(child: Any, timeout: float) -> str | None:
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    return child.stdout.readline().strip() if ready else None


@pytest.mark.parametrize("kind", KINDS)
def test_a_paused_waiter_never_gets_a_lock_another_client_holds(
    kind: str, redis_server: RedisServer
) -> None:
    """Frozen in BLPOP past the claim window: the offer lapses, C gets in, the waiter waits."""
    client = redis.Redis.from_url(redis_server.url)
    name = unique(kind)
    queue = f"{PREFIX[kind]}{{{name}}}:queue"
    # The holder's ttl outlasts the waiter's start-up on a loaded host: it must queue.
    holder = _lock(kind, client, name, ttl=10.0).acquire()
    assert holder is not None
    waiter = _spawn(kind, redis_server.url, name, ttl=1.0, waiter_ttl=3.0, claim=0.3)
    try:
        _poll(lambda: client.llen(queue) == 1)
        os.kill(waiter.pid, signal.SIGSTOP)
        try:
            holder.release()  # offered to the frozen waiter
            other = _take(_lock(kind, client, name, ttl=5.0))  # once the offer lapsed
        finally:
            os.kill(waiter.pid, signal.SIGCONT)
        early = _line(waiter, 0.5)  # time to act on what it was sent while frozen
        assert early is None, f"the waiter got the lock while another client held it: {early}"
        other.release()
        line = _line(waiter, 10)
        assert line is not None
        _, token, lost, is_owner, remaining, pttl = line.split()
        assert (lost, is_owner) == ("0", "1")
        assert int(token) > other.token
        assert float(remaining) <= float(pttl) + PTTL_RESOLUTION
    finally:
        waiter.kill()
        waiter.wait(10)


def _enqueue(kind: str, client: Any, name: str, owner: str, ttl_ms: int) -> None:
    """Put *owner* in the queue as a live waiter would (its heartbeat a minute ahead)."""
    base = f"{PREFIX[kind]}{{{name}}}"
    now_s, _ = client.time()
    client.rpush(base + ":queue", owner)
    client.zadd(base + ":waiters", {owner: (now_s + 60) * 1000})
    client.hset(base + ":ttls", owner, ttl_ms)
    if kind == "rw-write":
        client.hset(base + ":modes", owner, "w")


@pytest.mark.parametrize("kind", KINDS)
def test_a_handed_over_lease_ends_locally_no_later_than_on_the_server(
    kind: str, redis_server: RedisServer
) -> None:
    """A waiter that resumes 0.5 s after it was offered the lock: its deadline follows the claim."""
    client = redis.Redis.from_url(redis_server.url)
    name = unique(kind)
    key = f"{PREFIX[kind]}{{{name}}}"
    ttl = 3.0
    holder = _lock(kind, client, name, ttl=ttl).acquire()
    assert holder is not None
    _enqueue(kind, client, name, "paused-waiter", int(ttl * 1000))
    holder.release()  # offered to the waiter, which is not listening
    time.sleep(0.5)  # the waiter's pause
    if kind == "async":
        import asyncio

        redis_asyncio = pytest.importorskip("redis.asyncio")

        async def resume() -> Lease | None:
            aclient = redis_asyncio.Redis.from_url(redis_server.url)
            lock = AsyncRedisLock(aclient, name, ttl=ttl, claim_window=2.0)
            lock._new_owner_token = lambda: "paused-waiter"  # type: ignore[method-assign]
            lease = await lock.acquire(blocking=False)
            await aclient.aclose()
            return lease

        lease = asyncio.run(resume())
    else:
        lock = _lock(kind, client, name, ttl=ttl, claim_window=2.0)
        lock._new_owner_token = lambda: "paused-waiter"  # type: ignore[method-assign]
        lease = lock.acquire(blocking=False)
    assert lease is not None and lease.token > holder.token
    if kind == "semaphore":
        now_s, now_us = client.time()
        server_left = client.zscore(key, "paused-waiter") / 1000 - (now_s + now_us / 1e6)
    else:
        server_left = client.pttl(key) / 1000
    assert lease.remaining() <= server_left + PTTL_RESOLUTION  # type: ignore[operator]
    assert server_left > ttl - 0.2  # the claim gave the full ttl on the server too


@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_waiter_holds_the_lock_up_for_the_claim_window_only(
    kind: str, redis_server: RedisServer
) -> None:
    """The first waiter is killed (SIGKILL) while queued: the next gets in a claim window later."""
    client = redis.Redis.from_url(redis_server.url)
    name = unique(kind)
    queue = f"{PREFIX[kind]}{{{name}}}:queue"
    claim = 0.3  # the window of the client that releases
    holder = _lock(kind, client, name, ttl=10.0, claim_window=claim).acquire()
    assert holder is not None
    dead = _spawn(kind, redis_server.url, name, ttl=10.0, waiter_ttl=3.0, claim=claim)
    _poll(lambda: client.llen(queue) == 1)
    got: list[tuple[float, Lease | None]] = []
    nxt = _lock(kind, client, name, ttl=10.0, claim_window=claim)
    second = threading.Thread(target=lambda: got.append((0, nxt.acquire(timeout=5))))
    second.start()
    _poll(lambda: client.llen(queue) == 2)
    dead.kill()
    dead.wait(10)
    released_at = time.monotonic()
    holder.release()  # offered to the dead waiter first
    second.join(10)
    waited = time.monotonic() - released_at
    assert got and got[0][1] is not None and got[0][1].token > holder.token
    # The documented bound: the claim window, plus Redis's timer granularity
    # (1/hz: 0.1 s) for the next waiter's BLPOP timeout.
    assert waited <= claim + REDIS_TICK
    got[0][1].release()
