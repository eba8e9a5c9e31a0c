"""A request delivered after its attempt gave up and cleaned up grants nothing.

A partition holds an acquire's bytes; the caller gives up within its
bound, and its clean-up runs once the partition heals. TCP delivers the
held request too, and in either order. When the clean-up runs first, the
late request used to take the lock for a full ttl on behalf of an owner
that is gone, so nobody could take it until that ttl ran out.

Real redis-servers behind `TCPProxy`. The order "clean-up first, then the
held request" is made certain by delivering the request again, byte for
byte as it was sent (same owner, same arguments, same deadline), once the
clean-up has run: that is exactly the late delivery. It is refused by the
clean-up's marker while its deadline is ahead, by the deadline itself after
that (then no marker is left). About 6 s in all.
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

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from scalekit.locking import (  # noqa: E402
    RedisLock,
    RedisReadWriteLock,
    RedisSemaphore,
    Redlock,
)
from scalekit.locking import _redis_calls as redis_calls  # noqa: E402
from scalekit.locking._redis_calls import LATE_SLACK, server_clock  # noqa: E402
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402
from scalekit.locking.redis_lock import _ACQUIRE as ASYNC_ACQUIRE  # noqa: E402
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


Request = tuple[Any, list[str], list[Any]]


def _record_requests(calls: Any) -> list[Request]:
    """Record every script request *calls* (a lock's `RedisCalls`) sends, as sent."""
    sent: list[Request] = []
    run = calls._script

    def recording(script: Any, keys: list[str], args: list[Any], end: float, on_send: Any) -> Any:
        sent.append((script, list(keys), list(args)))
        return run(script, keys, args, end, on_send)

    calls._script = recording
    return sent


def _deliver(client: Any, request: Request) -> Any:
    """Deliver *request* again, unchanged, straight to the server (the late copy)."""
    script, keys, args = request
    return client.eval(script.source, len(keys), *keys, *args)


def _server_ms(client: Any) -> int:
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000


def _refused(client: Any, request: Request) -> str:
    """How the server refuses *request* now: "marker" (a zero reply) or "late"."""
    try:
        reply = _deliver(client, request)
    except redis.ResponseError as exc:
        assert str(exc).startswith("LATE"), exc
        return "late"
    assert int(reply[0]) == 0, f"a late request was granted: {reply!r}"
    return "marker"


def _cleanups_done(lock: Any, seconds: float = 5.0) -> None:
    """Wait until no background clean-up of *lock* is pending or running.

    A lock's clean-up thread is started off the caller's path, so it may not
    be listed yet when the call returns: its count on the lock says so.
    """
    end = time.monotonic() + seconds
    name = lock.name
    while getattr(lock, "_cleanups", 0) or any(
        t.name.endswith(name) and "cleanup" in t.name for t in threading.enumerate()
    ):
        assert time.monotonic() < end, "the clean-up did not end"
        time.sleep(0.01)


def _give_up_in_a_partition(lock: Any, proxy: TCPProxy, call: Callable[[], Any]) -> Any:
    attempts = _spy_attempts(lock)
    proxy.blackhole()
    with pytest.raises((BackendUnavailableError, LockTimeoutError)):
        call()
    proxy.pass_through()
    _cleanups_done(lock)
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
        lock.acquire(blocking=False).release()  # a pooled connection, the clock's offset
        sent = _record_requests(lock._calls)
        if blocking:
            _give_up_in_a_partition(lock, proxy, lambda: lock.acquire(timeout=0.15))
        else:
            _give_up_in_a_partition(lock, proxy, lambda: lock.acquire(blocking=False))
        acquires = [r for r in sent if r[0] is lock._SCRIPTS["acquire"]]
        assert acquires, "the attempt sent no request"
        # The held request arrives now, after the clean-up: it must grant and queue nothing.
        assert _refused(redis_client, acquires[-1]) in ("marker", "late")
        other = MAKERS[kind](redis_client, name)
        lease = other.acquire(blocking=False)
        assert lease is not None, "the late request of an attempt that gave up took the lock"
        lease.release()
        queue = lock._keys[2]
        assert redis_client.llen(queue) == 0


@pytest.mark.parametrize("kind", ["lock", "semaphore", "rwlock-write", "rwlock-read"])
def test_a_late_request_is_refused_by_the_marker_then_by_its_deadline(
    redis_client: Any, kind: str
) -> None:
    """The marker covers a request until its deadline; past it the script refuses it
    itself, whatever the delay (TCP may hold a request for minutes), and no
    marker is left. About 0.6 s each."""
    name = unique(kind)
    holder = MAKERS["rwlock-write" if kind == "rwlock-read" else kind](redis_client, name)
    lease = holder.acquire(blocking=False)
    lock = MAKERS[kind](redis_client, name)
    lock.op_timeout = lock._calls.op_timeout = 0.5
    sent = _record_requests(lock._calls)
    attempt = lock._new_attempt(lock._new_owner_token())
    assert lock._do_acquire(attempt, True, None) is None  # queued behind the holder
    lock._abandon(attempt, 1.0)  # the attempt gave up; its request may still arrive
    lease.release()  # the lock is free: a late request would take it
    request = [r for r in sent if r[0] is lock._SCRIPTS["acquire"]][-1]
    deadline = int(request[2][-1])
    assert deadline == attempt.until_ms
    # Its own deadline (op_timeout + LATE_SLACK on the server's clock), no later; the
    # offset of that clock may be overestimated by its measurement's round trip, and
    # 3 ms more come from the roundings to whole ms (offset, deadline, reading).
    rtt = server_clock(redis_client).rtt_ms
    assert deadline - _server_ms(redis_client) <= (0.5 + LATE_SLACK) * 1000 + rtt + 3
    assert _refused(redis_client, request) == "marker"
    gone = lock._keys[0] + ":gone"
    assert redis_client.zscore(gone, attempt.owner) == deadline
    end = time.monotonic() + 0.5 + LATE_SLACK + BOUND_MARGIN
    while _server_ms(redis_client) <= deadline:
        assert time.monotonic() < end
        time.sleep(0.01)
    assert _refused(redis_client, request) == "late"
    assert redis_client.exists(gone) == 0, "the marker outlived its request's deadline"
    assert redis_client.llen(lock._keys[2]) == 0
    other = MAKERS[kind](redis_client, name).acquire(blocking=False)
    assert other is not None, "the late request took the lock"
    other.release()


def test_a_server_clock_that_stepped_ahead_is_measured_again(redis_client: Any) -> None:
    """A request refused as late although it came back in time (the server's clock
    stepped ahead since its offset was measured) is tried again once the offset
    is measured again; an offset older than 30 s is measured again before the
    request goes out."""
    lock = RedisLock(redis_client, unique("clock"), ttl=5)
    lock.acquire(blocking=False).release()  # type: ignore[union-attr]
    clock = server_clock(redis_client)
    clock.offset_ms -= 10_000  # as if the server's clock jumped 10 s ahead since
    sent = _record_requests(lock._calls)
    lease = lock.acquire(blocking=False)
    assert lease is not None, "a request on time was refused for good"
    lease.release()
    acquires = [r for r in sent if r[0] is lock._SCRIPTS["acquire"]]
    assert len(acquires) == 2  # refused as late, then granted after the new measurement
    clock.offset_ms -= 10_000
    clock.measured -= 31  # the offset is stale: measured again first, no late refusal
    sent.clear()
    lease = lock.acquire(blocking=False)
    assert lease is not None
    lease.release()
    assert [r[0] is lock._SCRIPTS["acquire"] for r in sent][:2] == [False, True]
    assert len([r for r in sent if r[0] is lock._SCRIPTS["acquire"]]) == 1


def test_each_failed_redlock_round_is_marked_until_its_deadline_on_each_master(
    redlock_servers: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up of a round no master answered marks the round's value gone on
    each master until the deadline of the request that master was sent (on its
    own clock), and the held request is then refused by that marker. The slack
    added to deadlines is widened to 5 s so the clean-up lands well within it
    (with 0.05 s it usually lands after, and the deadline alone refuses)."""
    monkeypatch.setattr(redis_calls, "LATE_SLACK", 5.0)
    name = unique("redlock-marks")
    proxies = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        lock = Redlock([redis.Redis(host=p.host, port=p.port) for p in proxies], name, ttl=5)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]
        sent = [_record_requests(master) for master in lock._masters]
        for proxy in proxies:
            proxy.blackhole()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(blocking=False)
        for proxy in proxies:
            proxy.pass_through()
        _cleanups_done(lock)
        direct = [redis.Redis.from_url(s.url) for s in redlock_servers]
        for client, requests in zip(direct, sent, strict=True):
            request = [r for r in requests if r[0] is REDLOCK_ACQUIRE][-1]
            value, deadline = request[2][0], int(request[2][-1])
            assert client.zscore(lock._keys[0] + ":gone", value) == deadline
            assert _refused(client, request) == "marker"
    finally:
        for proxy in proxies:
            proxy.close()


def test_an_async_attempt_that_gave_up_is_marked_until_its_deadline(
    redis_server: RedisServer, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the sync locks: the async clean-up marks the owner until the last
    deadline of its requests (the slack widened as above), and the held request
    is refused by that marker."""
    monkeypatch.setattr(redis_calls, "LATE_SLACK", 5.0)
    name = unique("async-marks")

    async def scenario() -> None:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis_asyncio.Redis(host=proxy.host, port=proxy.port)
            lock = AsyncRedisLock(client, name, ttl=5, op_timeout=0.2)
            await (await lock.acquire()).release()  # a pooled connection, the clock's offset
            sent: list[Request] = []
            run = lock._run

            async def recording(script: Any, args: list[Any], *rest: Any) -> Any:
                sent.append((script, list(lock._keys), list(args)))
                return await run(script, args, *rest)

            lock._run = recording  # type: ignore[method-assign]
            proxy.blackhole()
            with pytest.raises((BackendUnavailableError, LockTimeoutError)):
                await lock.acquire(timeout=0.15)
            proxy.pass_through()
            request = [r for r in sent if r[0] is ASYNC_ACQUIRE][-1]
            owner, deadline = request[2][0], int(request[2][-1])
            gone = lock._keys[0] + ":gone"
            end = time.monotonic() + 5
            while redis_client.zscore(gone, owner) is None:  # the clean-up task
                assert time.monotonic() < end, "the attempt was not marked"
                await asyncio.sleep(0.01)
            assert redis_client.zscore(gone, owner) == deadline
            assert _refused(redis_client, request) == "marker"
            await client.aclose()

    asyncio.run(scenario())


def test_a_redlock_round_delivered_after_its_release_takes_nothing(
    redlock_servers: list[RedisServer],
) -> None:
    name = unique("redlock")
    proxies = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        lock = Redlock([redis.Redis(host=p.host, port=p.port) for p in proxies], name, ttl=5)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]
        sent = [_record_requests(master) for master in lock._masters]
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
        # The round's held requests reach every master after its clean-up released them.
        direct = [redis.Redis.from_url(s.url) for s in redlock_servers]
        for client, requests in zip(direct, sent, strict=True):
            acquires = [r for r in requests if r[0] is REDLOCK_ACQUIRE]
            assert acquires, "the round sent no request to a master"
            assert _refused(client, acquires[-1]) in ("marker", "late")
        lease = Redlock(direct, name, ttl=5).acquire(blocking=False)
        assert lease is not None, "a late round took a master's key"
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
