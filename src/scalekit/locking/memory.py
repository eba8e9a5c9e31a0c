"""An in-process lock with the same leases, fencing tokens and FIFO fairness as the others."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .base import BaseLock, Grant, Lease, OnLost

__all__ = ["MemoryLock"]


class _State:
    """One lock name's state: owner, expiry, fence counter and FIFO queue."""

    __slots__ = ("cond", "expires", "fence", "owner", "queue")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.owner: str | None = None
        self.expires = 0.0
        self.fence = 0
        self.queue: deque[str] = deque()


_REGISTRY: dict[str, _State] = {}
_REGISTRY_LOCK = threading.Lock()


def _state(name: str) -> _State:
    with _REGISTRY_LOCK:
        state = _REGISTRY.get(name)
        if state is None:
            state = _REGISTRY[name] = _State()
        return state


class MemoryLock(BaseLock):
    """A lock shared by every `MemoryLock` of the same name in this process.

    The embedded default and the reference the distributed backends are
    tested against: leases expire after `ttl` on the injected `clock`,
    tokens come from a per-name counter that never goes back, and waiters
    are served first come, first served.

    Args:
        name: the lock's name; MemoryLocks with equal names exclude each other.
        ttl: seconds a lease lasts unless extended or renewed.
        reentrant: let the owning thread acquire again, counted.
        auto_renew: extend the lease every `ttl / 3` while held and the
            thread that acquired it lives.
        on_lost: called once with a lease when it is found lost.
        clock: monotonic seconds (inject a FakeClock in tests).

    Raises:
        ConfigurationError: empty *name*, *ttl* <= 0.

    ```pycon
    >>> lock = MemoryLock("doc:memory", ttl=5.0)
    >>> with lock as lease:
    ...     lease.token > 0
    True

    ```

    The per-name state (with its token counter) lives as long as the
    process, so tokens never repeat; a process that makes unboundedly many
    distinct names keeps one small record per name.

    Thread-safe. Every operation is O(1) apart from leaving the wait
    queue on timeout, O(waiters).
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        reentrant: bool = False,
        auto_renew: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            name, ttl=ttl, reentrant=reentrant, auto_renew=auto_renew, on_lost=on_lost, clock=clock
        )
        self._state = _state(self.name)

    def _expire(self, state: _State) -> None:
        if state.owner is not None and self._clock() >= state.expires:
            state.owner = None

    def _new_attempt(self, owner: str) -> Any:
        return owner

    def _do_acquire(self, attempt: Any, blocking: bool, deadline: float | None) -> Grant | None:
        state = self._state
        with state.cond:
            self._expire(state)
            head = state.queue[0] if state.queue else None
            if state.owner is None and (head is None or head == attempt):
                if head is not None:
                    state.queue.popleft()
                    # The next in line may take the lock only after us: nothing to wake.
                assert self.ttl is not None
                state.owner = attempt
                state.expires = self._clock() + self.ttl
                state.fence += 1
                return state.fence, self.ttl
            if blocking and attempt not in state.queue:
                state.queue.append(attempt)
            return None

    def _wait(self, attempt: Any, timeout: float | None) -> None:
        state = self._state
        with state.cond:
            if state.owner is not None:
                until = state.expires - self._clock()
                timeout = until if timeout is None else min(timeout, until)
            if timeout is None or timeout > 0:
                state.cond.wait(timeout)

    def _abandon(self, attempt: Any, budget: float) -> None:
        state = self._state
        with state.cond:
            try:
                state.queue.remove(attempt)
            except ValueError:
                return
            state.cond.notify_all()

    def _do_release(self, lease: Lease) -> bool:
        state = self._state
        with state.cond:
            self._expire(state)
            if state.owner != lease.owner:
                return False
            state.owner = None
            state.cond.notify_all()
            return True

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        assert ttl is not None
        state = self._state
        with state.cond:
            self._expire(state)
            if state.owner != lease.owner:
                return False
            state.expires = self._clock() + ttl
            return True

    def locked(self) -> bool:
        """True while some owner holds an unexpired lease. O(1)."""
        state = self._state
        with state.cond:
            self._expire(state)
            return state.owner is not None
