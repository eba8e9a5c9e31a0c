"""Leases: the fencing token, the lost flag, and the watchdog that announces a loss."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import BaseLock

__all__ = ["Lease", "LeaseLostEvent", "OnLost"]

OnLost = Callable[["Lease"], None]
"""Signature of an ``on_lost`` callback: it receives the lease that was lost."""


class LeaseLostEvent:
    """A ``threading.Event``-like flag that is set once a lease is lost.

    It is set explicitly when a backend reports the loss (failed renewal,
    session lost, release found another owner) and is also set implicitly
    once the lease's local deadline passes: past that instant another
    client may hold the lock, so the holder must not act as if it did.

    Thread-safe. ``is_set`` costs O(1); ``wait`` blocks at most *timeout*.
    """

    __slots__ = ("_clock", "_deadline", "_event")

    def __init__(self, clock: Callable[[], float], deadline: float | None) -> None:
        self._clock = clock
        self._deadline = deadline
        self._event = threading.Event()

    def is_set(self) -> bool:
        """True once the lease is lost, or its deadline has passed."""
        if self._event.is_set():
            return True
        deadline = self._deadline
        return deadline is not None and self._clock() >= deadline

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the lease is lost or *timeout* seconds pass; return :meth:`is_set`."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            step = None if end is None else end - time.monotonic()
            if step is not None and step <= 0:
                break
            deadline = self._deadline
            if deadline is not None:
                until = max(deadline - self._clock(), 0.0) + 0.001
                step = until if step is None else min(step, until)
            self._event.wait(step)
        return self.is_set()

    def _set(self) -> bool:
        """Set the flag; return True if this call set it first."""
        if self._event.is_set():
            return False
        self._event.set()
        return True

    def __repr__(self) -> str:
        return f"LeaseLostEvent(set={self.is_set()})"


class Lease:
    """Proof of holding a lock: its fencing ``token`` and its ``lost`` flag.

    ``token`` strictly increases per lock name across all holders and
    processes: hand it to storage that rejects a token older than the last
    one it saw (Kleppmann's fencing). ``lost`` is a :class:`LeaseLostEvent`.
    Use it as a context manager to release on exit.

    Not meant to be shared between owners; reading ``token`` and ``lost``
    from any thread is safe.
    """

    __slots__ = (
        "__weakref__",
        "_deadline",
        "_depth",
        "_done",
        "_holder",
        "_lock",
        "_released",
        "lost",
        "name",
        "owner",
        "token",
        "ttl",
    )

    def __init__(
        self, lock: BaseLock, token: int, owner: str, ttl: float | None, deadline: float | None
    ) -> None:
        self._lock = lock
        self.name = lock.name
        self.token = token
        self.owner = owner
        self.ttl = ttl
        self._deadline = deadline
        self.lost = LeaseLostEvent(lock._clock, deadline)
        self._done: threading.Event | None = None  # set on release; made for auto-renewal
        self._holder: object = None
        self._released = False
        self._depth = 1

    @property
    def deadline(self) -> float | None:
        """The lock clock's time after which the lease is lost unless extended."""
        return self._deadline

    @property
    def released(self) -> bool:
        return self._released

    def remaining(self) -> float | None:
        """Seconds left before the deadline (<= 0 when past), or None without a ttl."""
        if self._deadline is None:
            return None
        return self._deadline - self._lock._clock()

    def _set_deadline(self, deadline: float | None) -> None:
        self._deadline = deadline
        self.lost._deadline = deadline

    def release(self) -> None:
        """Release this lease; see :meth:`BaseLock.release`."""
        self._lock.release(self)

    def extend(self, ttl: float | None = None) -> None:
        """Push the deadline to *ttl* (default: the lock's ttl) from now.

        See :meth:`BaseLock.extend`.
        """
        self._lock.extend(self, ttl)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._released:
            self._lock.release(self)

    def __repr__(self) -> str:
        state = "released" if self._released else "lost" if self.lost.is_set() else "held"
        return f"Lease(name={self.name!r}, token={self.token}, {state})"


class _Watchdog:
    """One daemon thread that fires ``on_lost`` when a lease's deadline passes.

    Separate from renewal, so a renewal stuck on an unreachable backend
    cannot delay the notice. Leases are re-checked at their deadline and
    re-queued if it moved (extended). O(log n) per scheduled lease.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Lease]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, lease: Lease) -> None:
        remaining = lease.remaining()
        if remaining is None:
            return
        with self._cond:
            when = time.monotonic() + max(remaining, 0.0)
            heapq.heappush(self._heap, (when, next(self._seq), lease))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="scalekit-lease-watchdog"
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, _, lease = self._heap[0]
                now = time.monotonic()
                if when > now:
                    self._cond.wait(when - now)
                    continue
                heapq.heappop(self._heap)
            if lease._released or lease.lost._event.is_set():
                continue
            remaining = lease.remaining()
            if remaining is None:
                continue
            if remaining <= 0:
                lease._lock._mark_lost(lease)
            else:
                self.watch(lease)


_WATCHDOG = _Watchdog()
