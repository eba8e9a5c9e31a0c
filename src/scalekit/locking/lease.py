"""Leases: the fencing token, the lost flag, and the watchdog that announces a loss."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from ..observability import _emit

if TYPE_CHECKING:
    from .base import BaseLock

__all__ = ["Lease", "LeaseLostEvent", "OnLost"]

OnLost = Callable[["Lease"], None]
"""Signature of an ``on_lost`` callback: it receives the lease that was lost."""


_SET_LOCK = threading.Lock()  # makes "set first" exact: one notice per lease

# How many forks this process is from the one that imported this module. A lease
# made in another generation belongs to the parent process: never to this one.
_GENERATION = [0]


class LeaseLostEvent:
    """A `threading.Event`-like flag that is set once a lease is lost.

    It is set explicitly when a backend reports the loss (failed renewal,
    session lost, release found another owner) and is also set implicitly
    once the lease's local deadline passes: past that instant another
    client may hold the lock, so the holder must not act as if it did.

    A lease without a ttl (ZooKeeper) has a session deadline instead: `is_set`
    asks the backend whether it has passed, so the first read after a pause
    (SIGSTOP, a long GC) already says lost, before any thread of the
    backend has run.

    Thread-safe. `is_set` costs O(1); `wait` blocks at most *timeout*.
    """

    __slots__ = ("_clock", "_deadline", "_due", "_event", "_generation")

    def __init__(self, clock: Callable[[], float], deadline: float | None) -> None:
        self._generation = _GENERATION[0]
        self._clock = clock
        self._deadline = deadline
        self._event = threading.Event()
        # The backend's own deadline check (a ZooKeeper session's); it declares the loss.
        self._due: Callable[[], bool] | None = None

    def is_set(self) -> bool:
        """True once the lease is lost, or its deadline has passed.

        In a process forked while the lease was held it is always True: the
        lease belongs to the parent, and the child must not act as its holder.
        """
        if self._event.is_set() or self._generation != _GENERATION[0]:
            return True
        deadline = self._deadline
        if deadline is not None and self._clock() >= deadline:
            return True
        due = self._due
        return due is not None and due()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the lease is lost or *timeout* seconds pass; return `is_set()`."""
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
        """Set the flag; return True if this call set it first (exactly one caller does)."""
        with _SET_LOCK:
            if self._event.is_set():
                return False
            self._event.set()
            return True

    def __repr__(self) -> str:
        return f"LeaseLostEvent(set={self.is_set()})"


class Lease:
    """Proof of holding a lock: its fencing `token` and its `lost` flag.

    `token` strictly increases per lock name across all holders and
    processes: hand it to storage that rejects a token older than the last
    one it saw (Kleppmann's fencing). `lost` is a `LeaseLostEvent`.
    Use it as a context manager to release on exit.

    Not meant to be shared between owners; reading `token` and `lost`
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
        "_watched",
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
        self._watched = False  # has an entry in the watchdog's heap
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
        """Release this lease; see `BaseLock.release()`."""
        self._lock.release(self)

    def extend(self, ttl: float | None = None) -> None:
        """Push the deadline to *ttl* (default: the lock's ttl) from now.

        See `BaseLock.extend()`.
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


_log = logging.getLogger("scalekit.locking")


def _run_on_lost(callback: OnLost, lease: Lease) -> None:
    """Run one `on_lost` callback; what it raises is logged with the lock's name."""
    try:
        callback(lease)
    except Exception as exc:
        _log.exception("on_lost callback of lock %r raised", lease.name)
        _emit.callback_failed(lease, exc)


class _Notifier:
    """Daemon threads that run `on_lost` callbacks off the watchdog's timing path.

    A notice goes to an idle thread or, when every thread is busy, to a new
    one: it never waits behind callbacks that block (each blocked callback
    holds one thread for as long as it blocks). When a notice takes the
    last idle thread, a spare one is started for the next: creating a
    thread on a loaded host can take longer than the notice's margin, so it
    is kept off the path of a notice whenever one thread's start has passed
    since the last notice. Up to `keep` threads stay for later notices; the
    others end after `linger` idle seconds.
    """

    def __init__(self, keep: int = 16, linger: float = 10.0) -> None:
        self._keep = keep
        self._linger = linger
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[OnLost, Lease]] = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._starting = 0  # threads counted but not yet running their loop

    def _reset(self) -> None:
        """After a fork: the parent's threads do not exist in the child."""
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._starting = 0

    def starting(self) -> int:
        """How many of the notifier's threads are being started (for tests and diagnostics)."""
        with self._lock:
            return self._starting

    def submit(self, callback: OnLost, lease: Lease) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread (or a spare still starting) takes this job
                self._jobs.put((callback, lease))
                job: tuple[OnLost, Lease] | None = None
            else:
                self._threads += 1
                self._starting += 1
                job = (callback, lease)
            spare = self._idle == 0
            if spare:
                self._threads += 1
                self._starting += 1
                self._idle += 1  # counted idle at once: jobs wait in the queue for it
        if job is not None:
            threading.Thread(
                target=self._work, args=(job,), daemon=True, name="scalekit-on-lost"
            ).start()
        if spare:
            threading.Thread(
                target=self._work, args=(None,), daemon=True, name="scalekit-on-lost"
            ).start()

    def _work(self, job: tuple[OnLost, Lease] | None) -> None:
        with self._lock:
            self._starting -= 1
        while True:
            if job is not None:
                _run_on_lost(*job)
                job = None
                with self._lock:
                    self._idle += 1
            job = self._next()
            if job is None:
                return

    def _next(self) -> tuple[OnLost, Lease] | None:
        """The next job for an idle thread, or None when the thread should end."""
        while True:
            try:
                return self._jobs.get(timeout=self._linger)
            except queue.Empty:
                with self._lock:
                    try:
                        return self._jobs.get_nowait()  # handed to us as we timed out
                    except queue.Empty:
                        pass
                    if self._threads > self._keep:
                        self._idle -= 1
                        self._threads -= 1
                        return None


_NOTIFIER = _Notifier()


class _Watchdog:
    """One daemon thread that marks a lease lost when its deadline passes.

    Separate from renewal, so a renewal stuck on an unreachable backend
    cannot delay the notice; callbacks run on the notifier's threads, so a
    slow or failing callback cannot either. Leases are re-checked at their
    deadline and re-queued if it moved (extended). The heap holds weak
    references, and released leases are dropped from it (lazily, with a
    compaction once they outnumber the live ones), so its size is bounded
    by the leases still held. A loop that fails logs and goes on; a thread
    that died anyway is restarted by the next `watch()`. O(log n) per
    scheduled lease.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, weakref.ref[Lease]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stale = 0

    def _reset(self) -> None:
        """After a fork: no thread, and none of the parent's leases to watch."""
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None
        self._stale = 0

    def watch(self, lease: Lease) -> None:
        remaining = lease.remaining()
        if remaining is None:
            return
        with self._cond:
            when = time.monotonic() + max(remaining, 0.0)
            heapq.heappush(self._heap, (when, next(self._seq), weakref.ref(lease)))
            lease._watched = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="scalekit-lease-watchdog"
                )
                self._thread.start()
            self._cond.notify()

    def discard(self, lease: Lease) -> None:
        """Forget a released lease: it no longer counts against the heap's size."""
        with self._cond:
            if not lease._watched:
                return
            lease._watched = False
            self._stale += 1
            if self._stale > 1024 and self._stale * 2 > len(self._heap):
                self._heap = [e for e in self._heap if _wanted(e[2]())]
                heapq.heapify(self._heap)
                self._stale = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # never let one bad lease silence every other notice
                _log.exception("lease watchdog failed on one lease; it keeps running")

    def _step(self) -> None:
        with self._cond:
            while not self._heap:
                self._cond.wait()
            when, _, ref = self._heap[0]
            now = time.monotonic()
            if when > now:
                self._cond.wait(when - now)
                return
            heapq.heappop(self._heap)
            lease = ref()
            if lease is None or not _wanted(lease):
                if lease is not None:
                    if not lease._watched and self._stale > 0:
                        self._stale -= 1  # discarded on release: counted as stale
                    lease._watched = False
                return
            lease._watched = False
        remaining = lease.remaining()
        if remaining is None:
            return
        if remaining <= 0:
            lease._lock._mark_lost(lease)
        else:
            self.watch(lease)


def _wanted(lease: Lease | None) -> bool:
    return lease is not None and not lease._released and not lease.lost._event.is_set()


_WATCHDOG = _Watchdog()


def _after_fork_in_child() -> None:
    """Reset the process-wide lease state in a forked child.

    Threads do not survive `fork()`: the watchdog and notifier start afresh
    (their counts of idle threads and their heap were the parent's), and
    every lease made before the fork becomes the parent's alone (see
    `LeaseLostEvent.is_set`).
    """
    global _SET_LOCK
    _SET_LOCK = threading.Lock()
    _GENERATION[0] += 1
    _NOTIFIER._reset()
    _WATCHDOG._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
