"""The clean-up markers of attempts that gave up, and scripts under a full memory.

Every blocking `acquire(timeout=t)` that times out leaves a marker so that
a request of that attempt still on the way takes nothing. The markers
used to be one key each, kept 60 s: a burst of short timeouts filled a
`maxmemory` + `noeviction` Redis, and every lock on it then failed for a
minute. A marker now lasts only as long as its attempt's last request may
still run (its deadline, see `LUA_GONE`), in one zset per lock.

The scripts carry a `#!lua` shebang, so under OOM a script that may add
data is refused before it runs. Without it Redis refuses only a script's
first write, and lets every write after a first one that needs no memory
(the acquire script now prunes the markers first) through, past the
limit. A release, which frees the lock, is never refused.

Real redis-servers; a private one for each OOM test. About 5 s in all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
from scalekit.locking import RedisLock  # noqa: E402
from scalekit.locking._redis_calls import LATE_SLACK, server_clock  # noqa: E402

pytestmark = pytest.mark.redis

# The least wait a request is sent with (`_REPLY_SLACK` of redis_lock): the
# deadline of a request of `acquire(timeout=0.001)`.
REPLY_SLACK = 0.02


@pytest.fixture
def own_client() -> Iterator[Any]:
    """A client of a redis-server of this test's own (its memory limit is changed)."""
    server = RedisServer()
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()
        server.close()


def _spin(lock: RedisLock, seconds: float) -> list[float]:
    """Time out `acquire(timeout=0.001)` for *seconds*; when each attempt ended.

    A request gets 0.02 s (`REPLY_SLACK`) at such a deadline: on a loaded host
    some replies come later, and that try ends with `BackendUnavailableError`
    for a slow reply (never for memory).
    """
    ends: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        with pytest.raises((LockTimeoutError, BackendUnavailableError)) as caught:
            lock.acquire(timeout=0.001)
        assert "maxmemory" not in str(caught.value)
        ends.append(time.monotonic())
    return ends


def _server_ms(client: Any) -> int:
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000


def test_a_burst_of_timed_out_acquires_leaves_bounded_state(redis_client: Any) -> None:
    name = unique("burst")
    lease = RedisLock(redis_client, name, ttl=30).acquire()
    spinner = RedisLock(redis_client, name, ttl=30, op_timeout=0.5)
    ends = _spin(spinner, 1.0)
    assert len(ends) > 50
    now = time.monotonic()
    pattern = f"scalekit:lock:{{{name}}}:gone*"
    # One key for all markers, holding only the attempts whose requests may still run:
    # those that ended within a request's wait (+ LATE_SLACK and the margin) of now.
    assert [k.decode() for k in redis_client.scan_iter(match=pattern, count=1000)] == [
        f"scalekit:lock:{{{name}}}:gone"
    ]
    recent = sum(1 for end in ends if now - end <= REPLY_SLACK + LATE_SLACK + BOUND_MARGIN)
    gone = spinner._keys[0] + ":gone"
    assert redis_client.zcard(gone) <= recent
    last = max(score for _, score in redis_client.zrange(gone, 0, -1, withscores=True))
    # The offset of the server's clock is overestimated by at most its measurement's
    # round trip; 3 ms more for the roundings to whole ms (offset, deadline, reading).
    rtt = server_clock(redis_client).rtt_ms
    assert last - _server_ms(redis_client) <= (REPLY_SLACK + LATE_SLACK) * 1000 + rtt + 3
    # Once the burst is over, nothing of it is left after its last deadline.
    end = time.monotonic() + REPLY_SLACK + LATE_SLACK + BOUND_MARGIN
    while redis_client.exists(gone):
        assert time.monotonic() < end, "markers outlived their requests' deadlines"
        time.sleep(0.01)
    assert redis_client.llen(spinner._keys[2]) == 0
    lease.release()


def test_timed_out_acquires_do_not_fill_a_noeviction_redis(own_client: Any) -> None:
    name = unique("fill")
    lease = RedisLock(own_client, name, ttl=30).acquire()
    spinner = RedisLock(own_client, name, ttl=30, op_timeout=0.5)
    _spin(spinner, 0.05)  # the scripts loaded, the pool's connection made
    used = int(own_client.info("memory")["used_memory"])
    own_client.config_set("maxmemory-policy", "noeviction")
    # About 190 B a marker used to stay 60 s: this limit was full within a second.
    own_client.config_set("maxmemory", str(used + 192 * 1024))
    ends = _spin(spinner, 1.5)  # only LockTimeoutError, never OOM
    assert len(ends) > 300
    other = RedisLock(own_client, unique("other"), ttl=5).acquire(blocking=False)
    assert other is not None, "an uncontended lock on the same server could not be taken"
    other.release()
    lease.release()


def _queue_behind(holder_ttl: float, client: Any) -> tuple[RedisLock, Any, Any]:
    """A lock whose holder's lease has expired with a waiter still queued."""
    name = unique("oom")
    holder = RedisLock(client, name, ttl=holder_ttl)
    lease = holder.acquire()
    waiter = RedisLock(client, name, ttl=5)
    attempt = waiter._new_attempt(waiter._new_owner_token())
    assert waiter._do_acquire(attempt, True, None) is None  # queued
    return waiter, attempt, lease


def test_a_waiter_refused_for_memory_adds_nothing(own_client: Any) -> None:
    holder = RedisLock(own_client, unique("oom"), ttl=30)
    lease = holder.acquire()
    own_client.config_set("maxmemory-policy", "noeviction")
    own_client.config_set("maxmemory", "1")
    waiter = RedisLock(own_client, holder.name, ttl=5)
    with pytest.raises(BackendUnavailableError, match="maxmemory"):
        waiter.acquire(timeout=0.3)
    assert own_client.llen(holder._keys[2]) == 0, "a waiter was queued past maxmemory"
    assert own_client.zcard(holder._keys[3]) == 0
    own_client.config_set("maxmemory", "0")
    lease.release()


def test_an_acquire_refused_for_memory_writes_nothing(own_client: Any) -> None:
    waiter, attempt, _ = _queue_behind(0.2, own_client)
    end = time.monotonic() + 0.2 + BOUND_MARGIN
    while own_client.exists(waiter._keys[0]):  # expired without release
        assert time.monotonic() < end
        time.sleep(0.01)
    own_client.config_set("maxmemory-policy", "noeviction")
    own_client.config_set("maxmemory", "1")
    newcomer = RedisLock(own_client, waiter.name, ttl=5)
    with pytest.raises(BackendUnavailableError, match="maxmemory"):
        newcomer.acquire(blocking=False)
    # Refused as a whole: the waiter was not taken off the queue by a half-run hand-over.
    assert own_client.lrange(waiter._keys[2], 0, -1) == [attempt.owner.encode()]
    assert own_client.zscore(waiter._keys[3], attempt.owner) is not None
    own_client.config_set("maxmemory", "0")
    grant = waiter._do_acquire(attempt, True, None)
    assert grant is not None, "the queued waiter lost its turn"


def test_a_release_under_oom_frees_the_lock_and_offers_it_on(own_client: Any) -> None:
    waiter, attempt, lease = _queue_behind(30, own_client)
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment]
    try:
        own_client.config_set("maxmemory-policy", "noeviction")
        own_client.config_set("maxmemory", "1")
        lease.release()  # never refused: it frees more than it adds
        assert own_client.get(waiter._keys[0]) == attempt.owner.encode()  # offered on
        assert own_client.llen(waiter._keys[2]) == 0
    finally:
        threading.excepthook = previous
        own_client.config_set("maxmemory", "0")
    assert errors == []
