"""A backend that never answers is reported as unavailable, never as a held lock.

`LockTimeoutError` tells the caller "the backend answered that the lock is
held"; a total outage used to surface as one when the acquire had a
timeout (Redlock with every or most masters down; RedisLock with a timeout
shorter than `op_timeout`), so a caller alerting on
`BackendUnavailableError` missed it. Real redis-servers behind `TCPProxy`;
about 5 s in all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from scalekit.exceptions import BackendUnavailableError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
from scalekit.locking import RedisLock, Redlock  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def proxies(redlock_servers: list[RedisServer]) -> Iterator[list[TCPProxy]]:
    made = [TCPProxy(*server.address) for server in redlock_servers]
    try:
        yield made
    finally:
        for proxy in made:
            proxy.close()


@pytest.mark.parametrize("timeout", [0.7, 1.2])
def test_redlock_with_every_master_down_raises_unavailable_within_its_timeout(
    proxies: list[TCPProxy], timeout: float
) -> None:
    lock = Redlock(
        [redis.Redis(host=p.host, port=p.port) for p in proxies],
        unique("redlock"),
        ttl=5,
        instance_timeout=0.2,
    )
    lock.acquire(blocking=False).release()  # type: ignore[union-attr]  # pooled connections
    for proxy in proxies:
        proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        lock.acquire(timeout=timeout)
    assert time.monotonic() - started <= timeout + BOUND_MARGIN


def test_redlock_with_a_majority_down_raises_unavailable(proxies: list[TCPProxy]) -> None:
    lock = Redlock(
        [redis.Redis(host=p.host, port=p.port) for p in proxies],
        unique("redlock"),
        ttl=5,
        instance_timeout=0.2,
    )
    lock.acquire(blocking=False).release()  # type: ignore[union-attr]
    proxies[0].blackhole()
    proxies[1].blackhole()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="only 1 of 3"):
        lock.acquire(timeout=1)
    assert time.monotonic() - started <= 1 + BOUND_MARGIN


def test_a_timeout_shorter_than_op_timeout_on_a_blackholed_server_raises_unavailable(
    redis_server: RedisServer,
) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        lock = RedisLock(redis.Redis(host=proxy.host, port=proxy.port), unique(), op_timeout=2)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(timeout=0.3)
        assert time.monotonic() - started <= 0.3 + BOUND_MARGIN
