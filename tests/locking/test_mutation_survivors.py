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
