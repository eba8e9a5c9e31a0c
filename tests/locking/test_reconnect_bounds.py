"""A reconnect's handshake counts in the call's bound (about 3 s).

A pooled connection that the network reset is replaced before the
command is sent; redis-py's handshake on the new connection (CLIENT
SETNAME, two CLIENT SETINFO, SELECT) is a round trip each. Over a slow
link (a proxy delaying every chunk 0.1 s each way: 0.2 s a round trip,
0.8 s of handshake) each round trip fits in `op_timeout` but together
they do not: the call still returns or raises within `op_timeout` +
`BOUND_MARGIN`, and once the link is fast again the lock works.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis

OP_TIMEOUT = 0.5


def _after_reset(proxy: TCPProxy, call: Callable[[], Any]) -> float:
    proxy.reset()  # every pooled connection is at end-of-file now
    proxy.delay(0.1)
    started = time.monotonic()
    with contextlib.suppress(BackendUnavailableError, LockTimeoutError):
        call()
    took = time.monotonic() - started
    proxy.pass_through()
    return took


def test_a_reconnect_over_a_slow_link_keeps_the_call_bounds(redis_server: RedisServer) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port, db=1, client_name="shop")
        lock = RedisLock(client, unique(), ttl=1, op_timeout=OP_TIMEOUT)
        lock.acquire(blocking=False).release()  # type: ignore[union-attr]

        assert (
            _after_reset(proxy, lambda: lock.acquire(blocking=False)) <= OP_TIMEOUT + BOUND_MARGIN
        )
        assert _after_reset(proxy, lambda: lock.acquire(timeout=0.3)) <= 0.3 + BOUND_MARGIN
        lease = lock.acquire(timeout=2)
        assert lease is not None
        assert _after_reset(proxy, lease.release) <= OP_TIMEOUT + BOUND_MARGIN
        assert lock.acquire(timeout=2) is not None  # released, or expired if the release was cut
        client.close()


def test_a_short_call_is_not_cut_in_its_first_half() -> None:
    """A call's sockets are cut 0.04 s before its deadline, or half way if it is shorter.

    A lock's last try and its clean-up reconnect within 0.04-0.05 s: cut
    0.04 s early, their handshake was cut at the deadline watchdog's first
    tick (0.02 s), whatever the server's speed, and the clean-up of a
    timed-out acquire dropped one new connection after another on a loaded
    host (tests/locking/test_bounds.py counts them).
    """
    from scalekit._redis_deadline import _Call

    for timeout in (0.02, 0.04, 0.05, 0.08):
        call = _Call(100.0 + timeout, timeout, timeout)
        assert call.cut_at - 100.0 >= timeout / 2 - 1e-9
        assert call.cut_at < call.deadline
    assert _Call(102.0, 2.0, 2.0).cut_at == pytest.approx(102.0 - 0.04)
