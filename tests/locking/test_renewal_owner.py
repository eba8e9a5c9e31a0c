"""Auto-renewal ends with the thread that acquired the lease (about 2 s).

A thread that acquires on a shared lock object with `auto_renew=True` and
dies without releasing (an exception it did not handle) leaves a lease no
one can release. It is no longer renewed: it expires on the server within
its ttl, another client gets the lock, and `on_lost` says it was lost.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from scalekit.locking import Lease

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis

TTL = 1.0


def test_a_dead_threads_auto_renewed_lease_expires_at_its_ttl(redis_client: Any) -> None:
    name = unique()
    lost = threading.Event()
    lock = RedisLock(
        redis_client, name, ttl=TTL, auto_renew=True, on_lost=lambda _lease: lost.set()
    )
    leases: list[Lease] = []

    def crash_while_holding() -> None:
        leases.append(lock.acquire(timeout=1))  # type: ignore[arg-type]
        raise RuntimeError("the worker fails before it releases")

    worker = threading.Thread(target=crash_while_holding)
    excepthook, threading.excepthook = threading.excepthook, lambda _args: None
    try:
        worker.start()
        worker.join(5)
    finally:
        threading.excepthook = excepthook
    assert leases and not worker.is_alive()
    ended = time.monotonic()
    # The history of the server's PTTL from here until the key is gone. A
    # renewal that checked the thread just before it ended may still land (at
    # most one rise); any later rise is a renewal of a dead thread's lease.
    key = f"scalekit:lock:{{{name}}}"
    history: list[tuple[float, int]] = []
    while time.monotonic() - ended < 4 * TTL:
        sent = time.monotonic()
        history.append((sent, redis_client.pttl(key)))
        if history[-1][1] < 0:
            break
        time.sleep(0.01)
    assert history[-1][1] == -2, f"still held {4 * TTL} s after its thread ended"
    assert all(pttl <= TTL * 1000 for _, pttl in history)
    rises = [
        seen for (_, before), (seen, pttl) in itertools.pairwise(history) if 0 <= before < pttl
    ]
    assert len(rises) <= 1, f"renewed {len(rises)} times after its thread ended"
    # It ends within its ttl of the last renewal (or of the thread's end).
    last = rises[-1] if rises else ended
    assert history[-1][0] - last <= TTL + BOUND_MARGIN

    other = RedisLock(redis_client, name, ttl=TTL)
    lease = other.acquire(timeout=BOUND_MARGIN)  # raises LockTimeoutError if held
    assert lost.wait(BOUND_MARGIN)  # the dead thread's lease said it was lost
    assert leases[0].lost.is_set()
    lease.release()


def test_a_living_threads_auto_renewed_lease_keeps_being_renewed(redis_client: Any) -> None:
    name = unique()
    lock = RedisLock(redis_client, name, ttl=0.5, auto_renew=True)
    with lock as lease:
        deadline = time.monotonic() + 1.5  # three ttls
        while time.monotonic() < deadline:
            assert not lease.lost.is_set()
            time.sleep(0.05)
        assert redis_client.pttl(f"scalekit:lock:{{{name}}}") > 0
