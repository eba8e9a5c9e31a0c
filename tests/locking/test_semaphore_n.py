"""Clients that disagree on a semaphore's `n` are refused, not silently admitted (about 1 s).

The semaphore stores its `n` with it. While it is in use (a holder or a
waiter), an acquire with another `n` raises `ConfigurationError` naming
both values; once it is idle, a new `n` takes over.
"""

from __future__ import annotations

from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError

from .conftest import unique


def _redis(client: Any, name: str, n: int) -> Any:
    from scalekit.locking import RedisSemaphore

    return RedisSemaphore(client, name, n, ttl=5)


def _zookeeper(client: Any, name: str, n: int) -> Any:
    from scalekit.locking import ZooKeeperSemaphore

    return ZooKeeperSemaphore(client, "/scalekit-tests/" + name, n)


@pytest.fixture(params=["redis", "zookeeper"])
def semaphore(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        pytest.importorskip("redis")
        client = request.getfixturevalue("redis_client")
        return lambda name, n: _redis(client, name, n)
    client = request.getfixturevalue("kazoo_client")
    return lambda name, n: _zookeeper(client, name, n)


def test_a_client_with_another_n_is_refused_while_the_semaphore_is_in_use(semaphore: Any) -> None:
    name = unique("sem-n")
    one = semaphore(name, 1)
    held = one.acquire(blocking=False)
    assert held is not None
    five = semaphore(name, 5)
    with pytest.raises(ConfigurationError, match=r"n=5.*n=1") as caught:
        five.acquire(blocking=False)
    assert "n" in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"n=5.*n=1"):
        five.acquire(timeout=0.5)
    assert one.acquire(blocking=False) is None  # n=1 still holds: the place is taken
    held.release()

    # Idle now: the new n takes over, and the old one is refused in turn.
    leases = [five.acquire(blocking=False) for _ in range(5)]
    assert all(lease is not None for lease in leases)
    with pytest.raises(ConfigurationError, match=r"n=1.*n=5"):
        one.acquire(blocking=False)
    for lease in leases:
        lease.release()
