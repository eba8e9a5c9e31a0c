"""Guarantees that mutation testing found unguarded, each pinned by a test on a real server.

Mutants of `scalekit.locking.base`, `lease`, `memory`, `redis_lock` and
`fencing` that the rest of the suite let live (see the "Mutation testing"
note in docs/locking.md). Each test takes well under a second unless it says so.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import LockTimeoutError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis


def _poll(condition: Any, timeout: float) -> float:
    """Wait for *condition*; return how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_timed_out_waiter_leaves_the_queue_even_when_its_clean_up_fails(
    redis_server: RedisServer,
) -> None:
    """A clean-up that fails (partition) is retried in the background once the network heals.

    The waiter is cut off by a blackholed proxy while it waits, so its
    timed-out acquire cannot leave the queue. Once the proxy passes again
    the background clean-up must remove it within its next tries (each
    bounded by 1 s), long before a hand-over would have to skip it.
    """
    name = unique("cleanup")
    direct = redis.Redis.from_url(redis_server.url)
    holder = RedisLock(direct, name, ttl=10).acquire()
    assert holder is not None
    queue = f"scalekit:lock:{{{name}}}:queue"
    with TCPProxy(*redis_server.address) as proxy:
        waiter = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), name, ttl=10)
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                waiter.acquire(timeout=0.6)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        _poll(lambda: direct.llen(queue) == 1, 5)
        proxy.blackhole()
        thread.join(5)
        assert len(errors) == 1 and isinstance(errors[0], LockTimeoutError), errors
        time.sleep(0.3)
        assert direct.llen(queue) == 1  # cut off: the clean-up could not run
        proxy.pass_through()
        _poll(lambda: direct.llen(queue) == 0, 2.5)
    holder.release()
    assert not RedisLock(direct, name, ttl=10).locked()


def test_a_memory_waiter_gets_a_lease_that_expires_without_release() -> None:
    """The waiter wakes at the holder's expiry, not only when someone releases."""
    from scalekit.locking import MemoryLock

    name = unique("memory-expiry")
    holder = MemoryLock(name, ttl=0.2).acquire()
    assert holder is not None
    started = time.monotonic()
    lease = MemoryLock(name, ttl=5).acquire(timeout=3)
    waited = time.monotonic() - started
    assert lease is not None and lease.token > holder.token
    assert 0.15 <= waited <= 0.2 + 0.1  # the remaining ttl, plus 0.1 s of scheduling
    lease.release()


def test_a_redis_waiter_keeps_its_place_while_it_waits_longer_than_waiter_ttl(
    redis_server: RedisServer,
) -> None:
    """A waiter refreshes its place every waiter_ttl / 3: release hands the lock to it at once."""
    name = unique("place")
    client = redis.Redis.from_url(redis_server.url)
    holder = RedisLock(client, name, ttl=10).acquire()
    assert holder is not None
    got: list[tuple[Any, float]] = []
    waiter = RedisLock(client, name, ttl=10, waiter_ttl=0.3)

    def wait() -> None:
        lease = waiter.acquire(timeout=5)
        got.append((lease, time.monotonic()))  # when acquire returned

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(1.5)  # five waiter_ttl: the place expires unless refreshed
    released = time.monotonic()
    holder.release()
    thread.join(5)
    assert got and got[0][0] is not None
    delay = got[0][1] - released
    assert 0 <= delay <= 0.1, f"handed over after {delay:.3f}s"
    got[0][0].release()


def test_nested_with_on_a_reentrant_lock_releases_at_the_outer_exit() -> None:
    from scalekit.exceptions import LockNotOwnedError
    from scalekit.locking import MemoryLock

    lock = MemoryLock(unique("nested"), ttl=5, reentrant=True)
    with lock as outer:
        with lock as inner:
            assert inner is outer
        assert lock.locked() and not outer.released
    assert outer.released and not lock.locked()
    with pytest.raises(LockNotOwnedError) as info:
        lock.__exit__(None, None, None)
    assert str(info.value) == f"lock {lock.name!r} is not held by the caller"
    assert info.value.name == lock.name


def test_a_lease_used_as_a_context_manager_is_released_on_exit() -> None:
    from scalekit.locking import MemoryLock

    lock = MemoryLock(unique("exit"), ttl=5)
    with lock.acquire(timeout=1) as lease:
        assert lock.locked()
    assert lease.released and not lock.locked()
    with lease:  # exiting a released lease again is a no-op
        pass


def test_extend_of_a_lease_whose_key_vanished_marks_it_lost_and_tells(
    redis_server: RedisServer,
) -> None:
    """A key gone before the local deadline (evicted, flushed): extend raises, the holder knows."""
    from scalekit.exceptions import LockLostError, LockNotOwnedError

    client = redis.Redis.from_url(redis_server.url)
    told: list[Any] = []
    lock = RedisLock(client, unique("vanished"), ttl=10, on_lost=told.append)
    lease = lock.acquire()
    assert lease is not None
    client.delete(f"scalekit:lock:{{{lock.name}}}")
    with pytest.raises(LockLostError) as info:
        lease.extend()
    assert str(info.value) == f"lease {lease.token} of {lock.name!r} is lost"
    assert info.value.name == lock.name
    assert lease.lost.is_set()
    _poll(lambda: told == [lease], 2)
    with pytest.raises(LockLostError) as again:
        lease.extend()  # refused before any round trip
    assert str(again.value) == f"lease {lease.token} of {lock.name!r} is lost"
    assert again.value.name == lock.name
    with pytest.raises(LockLostError):
        lease.release()
    with pytest.raises(LockNotOwnedError) as released:
        lease.extend()
    assert str(released.value) == f"lease {lease.token} of {lock.name!r} was released"
    assert released.value.name == lock.name


def test_extend_with_a_bad_ttl_names_the_argument() -> None:
    from scalekit.exceptions import ConfigurationError
    from scalekit.locking import MemoryLock

    lease = MemoryLock(unique("bad-ttl"), ttl=5).acquire()
    assert lease is not None
    with pytest.raises(ConfigurationError) as info:
        lease.extend(0)
    assert str(info.value) == "ttl must be a positive finite number, got 0"
    lease.release()


def test_a_lock_reprs_with_its_class_name_and_ttl() -> None:
    from scalekit.locking import MemoryLock

    assert repr(MemoryLock("stock:42", ttl=5)) == "MemoryLock('stock:42', ttl=5.0)"
