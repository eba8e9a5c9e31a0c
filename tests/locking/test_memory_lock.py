"""MemoryLock against a trivially correct model, on a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scalekit.exceptions import LockLostError
from scalekit.locking import Lease, MemoryLock
from scalekit.testing import FakeClock

from .conftest import unique

TTL = 10.0
CLIENTS = 3


class MemoryLockMachine(RuleBasedStateMachine):
    """Three clients share one name; the model is (owner, expiry, last token)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        name = unique("machine")
        self.locks = [MemoryLock(name, ttl=TTL, clock=self.clock) for _ in range(CLIENTS)]
        self.leases: list[Lease | None] = [None] * CLIENTS
        self.expiry: list[float] = [0.0] * CLIENTS
        self.owner: int | None = None
        self.last_token = 0

    def _holds(self, i: int) -> bool:
        return self.owner == i and self.clock() < self.expiry[i]

    @rule(i=st.integers(0, CLIENTS - 1))
    def acquire(self, i: int) -> None:
        lease = self.locks[i].acquire(blocking=False)
        if self.owner is not None and self.clock() < self.expiry[self.owner]:
            assert lease is None
            return
        assert lease is not None
        assert lease.token == self.last_token + 1
        self.last_token = lease.token
        self.owner = i
        self.expiry[i] = self.clock() + TTL
        self.leases[i] = lease

    @precondition(lambda self: any(lease is not None for lease in self.leases))
    @rule(data=st.data())
    def release(self, data: Any) -> None:
        i = data.draw(st.sampled_from([k for k, v in enumerate(self.leases) if v is not None]))
        lease = self.leases[i]
        assert lease is not None
        self.leases[i] = None
        if self._holds(i):
            lease.release()
            self.owner = None
        else:
            with pytest.raises(LockLostError):
                lease.release()
            if self.owner == i:
                self.owner = None

    @precondition(lambda self: any(lease is not None for lease in self.leases))
    @rule(data=st.data(), ttl=st.sampled_from([1.0, 5.0, 20.0]))
    def extend(self, data: Any, ttl: float) -> None:
        i = data.draw(st.sampled_from([k for k, v in enumerate(self.leases) if v is not None]))
        lease = self.leases[i]
        assert lease is not None
        if self._holds(i):
            lease.extend(ttl)
            self.expiry[i] = self.clock() + ttl
        else:
            with pytest.raises(LockLostError):
                lease.extend(ttl)

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.99, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def lost_flags_match_the_model(self) -> None:
        for i, lease in enumerate(self.leases):
            if lease is not None:
                assert lease.lost.is_set() == (not self._holds(i))

    @invariant()
    def locked_matches_the_model(self) -> None:
        held = self.owner is not None and self.clock() < self.expiry[self.owner]
        assert self.locks[0].locked() == held


MemoryLockMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestMemoryLockMachine = MemoryLockMachine.TestCase


def test_known_answer_tokens_and_expiry_on_a_fake_clock() -> None:
    clock = FakeClock(0.0)
    name = unique()
    a, b = MemoryLock(name, ttl=5, clock=clock), MemoryLock(name, ttl=5, clock=clock)
    first = a.acquire()
    assert first is not None and first.token == 1 and first.deadline == 5.0
    assert b.acquire(blocking=False) is None
    clock.advance(4.999)
    assert not first.lost.is_set()
    assert b.acquire(blocking=False) is None
    clock.advance(0.001)
    assert first.lost.is_set()
    second = b.acquire(blocking=False)
    assert second is not None and second.token == 2
    with pytest.raises(LockLostError):
        first.release()
    second.release()
    third = a.acquire(blocking=False)
    assert third is not None and third.token == 3
    third.release()


def test_waiters_are_served_in_arrival_order() -> None:
    name = unique()
    holder = MemoryLock(name).acquire()
    assert holder is not None
    order: list[int] = []
    threads = []
    for i in range(5):
        lock = MemoryLock(name)
        thread = threading.Thread(target=lambda i=i, lock=lock: _take(lock, order, i))
        thread.start()
        threads.append(thread)
        # Wait until this waiter is queued before starting the next one.
        _poll(lambda n=i + 1, lock=lock: len(lock._state.queue) == n)
    holder.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def _take(lock: MemoryLock, order: list[int], i: int) -> None:
    with lock:
        order.append(i)


def _poll(condition: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_importing_scalekit_locking_needs_no_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, scalekit, scalekit.locking; "
        "assert 'redis' not in sys.modules and 'kazoo' not in sys.modules, sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_lease_left_by_a_dead_thread_is_not_inherited_by_a_new_one() -> None:
    """The OS reuses a dead thread's ident; the reentrant lease must not pass to its heir."""
    lock = MemoryLock(unique("heir"), ttl=30, reentrant=True)
    idents: list[int] = []

    def leave_it_held() -> None:
        idents.append(threading.get_ident())
        lock.acquire()

    first = threading.Thread(target=leave_it_held)
    first.start()
    first.join()
    results: list[Any] = []

    def try_it() -> None:
        if threading.get_ident() == idents[0]:
            results.append(lock.acquire(blocking=False))

    for _ in range(200):  # until a thread gets the dead one's ident (usually the first)
        heir = threading.Thread(target=try_it)
        heir.start()
        heir.join()
        if results:
            break
    assert results, "no new thread reused the ident; cannot check"
    assert results == [None]
