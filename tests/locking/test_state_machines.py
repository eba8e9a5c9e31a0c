"""Redis semaphores and read-write locks against trivially correct models (Hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from scalekit.locking import Lease

from .conftest import unique

pytest.importorskip("redis")
from scalekit.locking.redis_rwlock import RedisReadWriteLock
from scalekit.locking.redis_semaphore import RedisSemaphore

pytestmark = pytest.mark.redis
CLIENTS = 4
SETTINGS = settings(max_examples=20, stateful_step_count=20, deadline=None)


class SemaphoreMachine(RuleBasedStateMachine):
    """Four clients on one semaphore of 2; the model is the set of holders."""

    client: Any = None

    def __init__(self) -> None:
        super().__init__()
        name = unique("semmachine")
        self.sems = [RedisSemaphore(self.client, name, 2, ttl=60) for _ in range(CLIENTS)]
        self.leases: dict[int, Lease] = {}
        self.last_token = 0

    @rule(i=st.integers(0, CLIENTS - 1))
    def acquire(self, i: int) -> None:
        if i in self.leases:
            return
        lease = self.sems[i].acquire(blocking=False)
        if len(self.leases) >= 2:
            assert lease is None
            return
        assert lease is not None and (
            lease.token > self.last_token if self.last_token else lease.token > 0
        )
        self.last_token = lease.token
        self.leases[i] = lease

    @rule(i=st.integers(0, CLIENTS - 1))
    def release(self, i: int) -> None:
        lease = self.leases.pop(i, None)
        if lease is not None:
            lease.release()

    @invariant()
    def counts_match(self) -> None:
        assert self.sems[0].holders() == len(self.leases)  # type: ignore[attr-defined]
        assert self.sems[0].locked() == (len(self.leases) >= 2)


class ReadWriteMachine(RuleBasedStateMachine):
    """Four clients on one read-write lock; the model is (readers, writer)."""

    client: Any = None

    def __init__(self) -> None:
        super().__init__()
        name = unique("rwmachine")
        self.locks = [RedisReadWriteLock(self.client, name, ttl=60) for _ in range(CLIENTS)]
        self.readers: dict[int, Lease] = {}
        self.writer: tuple[int, Lease] | None = None
        self.last_token = 0

    def _busy(self, i: int) -> bool:
        return i in self.readers or (self.writer is not None and self.writer[0] == i)

    @rule(i=st.integers(0, CLIENTS - 1), write=st.booleans())
    def acquire(self, i: int, write: bool) -> None:
        if self._busy(i):
            return
        side = self.locks[i].write if write else self.locks[i].read
        lease = side.acquire(blocking=False)
        allowed = self.writer is None and (not write or not self.readers)
        if not allowed:
            assert lease is None
            return
        assert lease is not None and (
            lease.token > self.last_token if self.last_token else lease.token > 0
        )
        self.last_token = lease.token
        if write:
            self.writer = (i, lease)
        else:
            self.readers[i] = lease

    @rule(i=st.integers(0, CLIENTS - 1))
    def release(self, i: int) -> None:
        if i in self.readers:
            self.readers.pop(i).release()
        elif self.writer is not None and self.writer[0] == i:
            self.writer[1].release()
            self.writer = None

    @invariant()
    def sides_report_the_model(self) -> None:
        assert self.locks[0].read.locked() == (self.writer is not None)
        assert self.locks[0].write.locked() == (self.writer is not None or bool(self.readers))


def test_redis_semaphore_machine(redis_client: Any) -> None:
    SemaphoreMachine.client = redis_client
    run_state_machine_as_test(SemaphoreMachine, settings=SETTINGS)


def test_redis_read_write_machine(redis_client: Any) -> None:
    ReadWriteMachine.client = redis_client
    run_state_machine_as_test(ReadWriteMachine, settings=SETTINGS)
