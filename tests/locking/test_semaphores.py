"""Counting semaphores on Redis and ZooKeeper: n holders, FIFO, tokens, bounded concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.exceptions import ArgumentTypeError, ConfigurationError, LockLostError
from scalekit.locking import BaseLock, Lease

from .conftest import unique

pytest.importorskip("redis")
pytest.importorskip("kazoo")

SemaphoreFactory = Callable[[str, int], BaseLock]


@pytest.fixture(params=["redis", "zookeeper"])
def make_semaphore(request: pytest.FixtureRequest) -> SemaphoreFactory:
    if request.param == "redis":
        from scalekit.locking import RedisSemaphore

        client = request.getfixturevalue("redis_client")
        return lambda name, n, **kw: RedisSemaphore(client, name, n, **kw)
    from scalekit.locking import ZooKeeperSemaphore

    zk = request.getfixturevalue("kazoo_client")
    return lambda name, n, **kw: ZooKeeperSemaphore(zk, "/scalekit-tests/" + name, n, **kw)


def test_n_holders_and_no_more(make_semaphore: SemaphoreFactory) -> None:
    name = unique("sem")
    leases = [make_semaphore(name, 3).acquire(blocking=False) for _ in range(3)]
    assert all(lease is not None for lease in leases)
    tokens = [lease.token for lease in leases if lease is not None]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    assert make_semaphore(name, 3).acquire(blocking=False) is None
    assert make_semaphore(name, 3).locked()  # type: ignore[attr-defined]
    first = leases[0]
    assert first is not None
    first.release()
    fourth = make_semaphore(name, 3).acquire(blocking=False)
    assert fourth is not None and fourth.token > tokens[-1]
    for lease in [*leases[1:], fourth]:
        assert lease is not None
        lease.release()


def test_a_release_lets_the_first_waiter_in(make_semaphore: SemaphoreFactory) -> None:
    name = unique("sem")
    holders = [make_semaphore(name, 2).acquire() for _ in range(2)]
    got: list[int] = []

    def wait(i: int) -> None:
        with make_semaphore(name, 2).acquire(timeout=10) as lease:  # type: ignore[union-attr]
            got.append(i)
            assert lease.token > 0
            time.sleep(0.05)

    first = threading.Thread(target=wait, args=(1,))
    first.start()
    time.sleep(0.3)
    second = threading.Thread(target=wait, args=(2,))
    second.start()
    time.sleep(0.3)
    assert got == []
    holder = holders[0]
    assert holder is not None
    holder.release()
    first.join(10)
    second.join(10)
    assert got == [1, 2]
    last = holders[1]
    assert last is not None
    last.release()


def test_eight_workers_never_exceed_n(make_semaphore: SemaphoreFactory) -> None:
    name = unique("sem")
    inside = 0
    most = 0
    guard = threading.Lock()
    done = [0]

    def work() -> None:
        nonlocal inside, most
        sem = make_semaphore(name, 3)
        for _ in range(8):
            with sem:
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1
            done[0] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done[0] == 64
    assert most == 3


def test_expired_redis_semaphore_lease_is_lost(redis_client: Any) -> None:
    from scalekit.locking import RedisSemaphore

    name = unique("sem")
    seen: list[Lease] = []
    stale = RedisSemaphore(redis_client, name, 1, ttl=0.3, on_lost=seen.append).acquire()
    assert stale is not None
    fresh = RedisSemaphore(redis_client, name, 1, ttl=5).acquire(timeout=3)
    assert fresh is not None and fresh.token > stale.token
    assert stale.lost.is_set()
    with pytest.raises(LockLostError):
        stale.release()
    deadline = time.monotonic() + 3  # on_lost runs on a notifier thread
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    assert seen == [stale]
    fresh.release()


def test_n_must_be_a_positive_integer(make_semaphore: SemaphoreFactory) -> None:
    """A non-positive n is a bad value; a float or a bool is a wrong type."""
    for bad, error in (
        (0, ConfigurationError),
        (-1, ConfigurationError),
        (1.5, ArgumentTypeError),
        (True, ArgumentTypeError),
    ):
        with pytest.raises(error, match="n must be a positive integer"):
            make_semaphore(unique("sem"), bad)  # type: ignore[arg-type]
