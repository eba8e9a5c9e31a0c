"""The lock protocol every backend implements: leases, fencing tokens, lost-lease notice.

Users code against `BaseLock`; a backend subclasses it and provides
`_new_attempt / _do_acquire / _wait / _abandon / _do_release / _do_extend`.
The blocking loop with its timeout, re-entrancy, auto-renewal and the
lost-lease bookkeeping live here, once, as redis-py's `Lock` owns its
`acquire()` loop and leaves `do_acquire` to the storage.
"""

from __future__ import annotations

import _thread
import abc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._validation import (
    flag,
    non_empty_str,
    non_negative_number,
    positive_number,
    wrong_type,
)
from ..exceptions import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    LockLostError,
    LockNotOwnedError,
    LockTimeoutError,
)
from ..observability import _emit
from . import lease as _lease_mod
from .lease import _NOTIFIER, _WATCHDOG, Lease, LeaseLostEvent, OnLost

__all__ = ["CLEANUP_BUDGET", "BaseLock", "Grant", "Lease", "LeaseLostEvent", "OnLost"]

_log = logging.getLogger("scalekit.locking")

Grant = tuple[int, float | None]
"""What a backend's acquire step returns: the token and the validity the server reported."""

CLEANUP_BUDGET = 0.05
"""Seconds a failed acquire spends cleaning up before it raises; the rest runs in the background."""


def _start_in_background(thread: threading.Thread) -> None:
    """Start *thread* without waiting for it to run.

    `Thread.start()` returns only once the new thread has been scheduled and
    runs: on a loaded host that took up to 0.2 s, longer than the slack of a
    call's bound. A bare thread whose only work is that start waits in the
    caller's place (`_thread.start_new_thread` returns once the OS thread is
    created).
    """
    _thread.start_new_thread(thread.start, ())


class _ThreadOwner:
    """Identifies one thread for as long as it lives (and only that thread)."""

    __slots__ = ("__weakref__",)


_THREAD_OWNER = threading.local()


def _new_thread_owners() -> None:
    """In a forked child, every thread (its main one too) is a new owner."""
    global _THREAD_OWNER
    _THREAD_OWNER = threading.local()


os.register_at_fork(after_in_child=_new_thread_owners)


def _foreign(lease: Lease) -> bool:
    """True for a lease made before this process was forked (the parent's)."""
    return lease.lost._generation != _lease_mod._GENERATION[0]


class BaseLock(abc.ABC):
    """A named mutual-exclusion lock whose leases carry fencing tokens.

    Args:
        name: the lock's name, shared by every client that contends for it.
        ttl: seconds a lease lasts unless extended; None for backends whose
            leases end with a session (ZooKeeper).
        reentrant: let the owner that holds the lock acquire it again,
            counted; the lease is released when the count drops to zero.
        auto_renew: extend the lease every `ttl / 3` while it is held and the
            thread that acquired it lives.
        on_lost: called with the lease, once, when it is found lost.
        clock: monotonic seconds; inject a FakeClock in tests.

    Raises:
        ConfigurationError: empty *name*, *ttl* <= 0.

    Thread-safe: one lock object may be shared by threads; the owner of a
    lease is the thread that acquired it (see `_owner_id()`).
    """

    _track_live = False

    def __init__(
        self,
        name: str,
        *,
        ttl: float | None,
        reentrant: bool = False,
        auto_renew: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = non_empty_str("name", name)
        self.ttl = None if ttl is None else positive_number("ttl", ttl)
        self.reentrant = flag("reentrant", reentrant)
        self.auto_renew = flag("auto_renew", auto_renew)
        if on_lost is not None and not callable(on_lost):
            raise wrong_type("on_lost", on_lost, "a callable taking the lost lease, or None")
        self.on_lost = on_lost
        if not callable(clock):
            raise wrong_type("clock", clock, "a callable returning monotonic seconds")
        self._clock = clock
        self._held: dict[Any, Lease] = {}
        self._stacks: dict[Any, list[Lease]] = {}
        # Leases not yet released or lost; kept only for backends that lose
        # every lease at once (a ZooKeeper session), as _track_live says.
        self._live: set[Lease] = set()
        self._live_lock = threading.Lock()
        # Clean-ups of failed attempts handed to the background and not yet ended.
        self._cleanups = 0

    # -- what backends provide ------------------------------------------------
    @abc.abstractmethod
    def _new_attempt(self, owner: str) -> Any:
        """State of one acquire call (a queue ticket, a znode), kept across retries."""

    @abc.abstractmethod
    def _do_acquire(self, attempt: Any, blocking: bool, deadline: float | None) -> Grant | None:
        """Try once; on success return the grant the server confirmed in this step.

        A grant is `(token, validity)`: the fencing token and how many
        seconds the lease is valid counted from a clock reading taken before
        this request (the server's reported ttl; None without a ttl). On
        failure return None (and queue if *blocking*). Every request must
        return by *deadline* (the lock clock's time; None: `op_timeout`
        alone bounds it) or raise `BackendUnavailableError`.
        """

    @abc.abstractmethod
    def _wait(self, attempt: Any, timeout: float | None) -> None:
        """Block until a retry may succeed (a wake-up) or *timeout* seconds pass.

        A wake-up is only a hint to try again: whatever it carries, the lock
        is held only once `_do_acquire` returns the server's grant.
        """

    @abc.abstractmethod
    def _abandon(self, attempt: Any, budget: float) -> None:
        """Undo what a failed attempt left behind (leave the queue, delete the znode).

        Bounded by *budget* seconds; raise `BackendUnavailableError` if the
        backend did not answer in it (the clean-up then goes on in the
        background, see `_cleanup_window`).
        """

    def _cleanup_window(self) -> float | None:
        """How long to keep retrying a failed clean-up in the background (None: do not)."""
        return None

    @abc.abstractmethod
    def _do_release(self, lease: Lease) -> bool:
        """Release if this lease still owns the lock; return whether it did."""

    @abc.abstractmethod
    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        """Reset the lease to *ttl* from now if it still owns the lock; return whether it did."""

    @abc.abstractmethod
    def locked(self) -> bool:
        """True while the lock is held by someone (for a semaphore: while it is full)."""

    def _granted(self, attempt: Any, lease: Lease) -> None:
        """Record a new lease (backends that lose every lease at once track them)."""
        if self._track_live:
            with self._live_lock:
                self._live.add(lease)

    def _lease_ttl(self, ttl: float | None) -> float | None:
        """How long a lease granted with *ttl* may be trusted locally (Redlock subtracts drift)."""
        return ttl

    def _sent_at(self, attempt: Any) -> float | None:
        """The lock clock's reading right before the request that got the grant went out.

        Backends that know it (after connecting, after a script reload)
        return it; None counts the validity from before `_do_acquire`.
        """
        return None

    def _call_bound(self) -> float:
        """The most one backend request may take (`op_timeout`); how long `acquire()`
        without a timeout keeps retrying a run of backend failures."""
        return float(getattr(self, "op_timeout", 1.0))

    def _owner_id(self) -> Any:
        """Who owns a lease for re-entrancy and `with lock:`: the current thread.

        A per-thread object rather than the thread's ident, which the OS hands
        to a new thread once the old one has ended: a lease left by a dead
        thread is never inherited.
        """
        owner = getattr(_THREAD_OWNER, "owner", None)
        if owner is None:
            owner = _THREAD_OWNER.owner = _ThreadOwner()
        return owner

    def _lease_owner(self, attempt: Any, owner: str) -> str:
        """The owner value the granted lease carries (Redlock: the granted round's)."""
        return owner

    def _new_owner_token(self) -> str:
        return os.urandom(16).hex()

    # -- the protocol ---------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Lease | None:
        """Acquire the lock and return its `Lease`.

        Args:
            blocking: wait for the lock; with False, try once and return
                None if another owner holds it.
            timeout: with *blocking*, give up after this many seconds
                (None waits forever) and raise `LockTimeoutError`, so
                `with lock.acquire(timeout=2) as lease:` never runs unlocked.

        Raises:
            ArgumentTypeError: *blocking* is not a bool, or *timeout* not a number.
            ConfigurationError: *timeout* < 0, or a timeout without blocking.
            LockTimeoutError: the lock was not acquired within *timeout*.
            BackendUnavailableError: the backend did not answer in bounded time.

        Thread-safe. Cost: one backend round trip per try; waiters are woken
        by the backend, they do not poll.
        """
        blocking = flag("blocking", blocking)
        if timeout is not None:
            timeout = non_negative_number("timeout", timeout)
            if not blocking:
                raise ConfigurationError(
                    f"timeout must be None when blocking is False, got {timeout!r}"
                )
        owner_id = self._owner_id()
        if self.reentrant:
            held = self._held.get(owner_id)
            if held is not None and not held._released and not held.lost.is_set():
                # (a lease of the parent process reads as lost in a forked child)
                held._depth += 1
                return held
        deadline = None if timeout is None else self._clock() + timeout
        begun, waited, failed = self._clock(), False, None
        owner = self._new_owner_token()
        attempt = self._new_attempt(owner)
        grant: Grant | None = None
        silent = False  # the backend just failed to answer: clean up in the background
        retry = _Outage(self._clock, deadline, self._call_bound(), self.name)
        try:
            while True:
                started = self._clock()  # before the request whose reply may be the grant
                try:
                    # After a failure without a caller's deadline, the retries end with
                    # their window: no try may run past it (`_Outage.window`).
                    grant = self._do_acquire(attempt, blocking, retry.window())
                except BackendUnavailableError as exc:
                    silent = True
                    if not blocking:
                        raise
                    if retry.again(exc):
                        # Same attempt, same owner token: a grant whose reply was lost is
                        # recognised as ours by the next try (or given back by the clean-up).
                        continue
                    if retry.cut_short(started):
                        # Too little of the timeout was left to ask the backend again (a
                        # reply could not come in time): the caller still waits it out, as
                        # a timed acquire never gives up before its timeout.
                        _sleep_until(self._clock, deadline)
                        raise LockTimeoutError(
                            f"lock {self.name!r} was not acquired within {timeout}s: {exc}",
                            self.name,
                        ) from exc
                    raise
                retry.answered()
                silent = False
                if grant is not None or not blocking:
                    break
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    raise LockTimeoutError(
                        f"lock {self.name!r} was not acquired within {timeout}s", self.name
                    )
                waited = True
                try:
                    self._wait(attempt, remaining)
                except BackendUnavailableError as exc:
                    silent = True
                    if deadline is not None and self._clock() >= deadline:
                        # The backend answered that the lock is held, then fell silent as the
                        # caller's deadline passed: a timeout. No last try after the deadline
                        # (a silent backend would not answer it; it only overran the bound).
                        raise LockTimeoutError(
                            f"lock {self.name!r} was not acquired within {timeout}s: {exc}",
                            self.name,
                        ) from exc
                    if not retry.again(exc) and not retry.cut_short(started):
                        raise
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if grant is None:
                self._give_up(attempt, silent)
                if _emit.on:
                    _emit.acquired(self, begun, _emit.acquire_outcome(failed), waited)
        if grant is None:
            return None
        token, validity = grant
        sent_at = self._sent_at(attempt)
        if sent_at is not None:
            started = sent_at  # later than the loop's reading, still before the grant
        lease = Lease(
            self,
            token,
            self._lease_owner(attempt, owner),
            self.ttl,
            None if validity is None else started + validity,
        )
        lease._holder = owner_id
        self._held[owner_id] = lease
        self._granted(attempt, lease)
        if self.ttl is not None and (self.auto_renew or self.on_lost is not None):
            _WATCHDOG.watch(lease)
        if self.ttl is not None and self.auto_renew:
            lease._done = threading.Event()
            threading.Thread(
                target=_renew,
                args=(
                    weakref.ref(lease),
                    weakref.ref(threading.current_thread()),
                    lease._done,
                    self.ttl / 3,
                    self.ttl / 10,
                ),
                daemon=True,
                name=f"scalekit-lease:{self.name}",
            ).start()
        if _emit.on:
            _emit.acquired(self, begun, "acquired", waited)
        return lease

    def release(self, lease: Lease | None = None) -> None:
        """Release *lease* (default: the one the calling owner holds).

        Raises:
            LockNotOwnedError: the caller holds no lease, or it was released already.
            LockLostError: the lease was lost before this call; the lock
                may have been held by someone else meanwhile.
            BackendUnavailableError: the backend did not answer; the lease
                then ends at its deadline.

        Thread-safe. Cost: one backend round trip.
        """
        owner_id = self._owner_id()
        if lease is None:
            lease = self._held.get(owner_id)
            if lease is None or lease._released:
                raise LockNotOwnedError(f"lock {self.name!r} is not held by the caller", self.name)
        if not isinstance(lease, Lease):
            raise wrong_type("lease", lease, "a Lease from this lock's acquire() or None")
        if lease._lock is not self:
            raise LockNotOwnedError(
                f"lease of {lease.name!r} does not belong to this lock object", self.name
            )
        if lease._released:
            raise LockNotOwnedError(
                f"lease {lease.token} of {self.name!r} was already released", self.name
            )
        if _foreign(lease):
            raise LockNotOwnedError(
                f"lease {lease.token} of {self.name!r} was acquired by the parent of this "
                "forked process; only the parent may release it",
                self.name,
            )
        if lease._depth > 1:
            lease._depth -= 1
            return
        lease._released = True
        _WATCHDOG.discard(lease)
        if lease._done is not None:
            lease._done.set()
        if self._held.get(lease._holder) is lease:
            del self._held[lease._holder]
        if self._track_live:
            with self._live_lock:
                self._live.discard(lease)
        was_lost = lease.lost.is_set()
        try:
            released = self._do_release(lease)
        except BackendUnavailableError:
            if not was_lost:
                if _emit.on:
                    _emit.release_failed(self)
                raise
            released = False
        if was_lost or not released:
            self._mark_lost(lease, "release_refused")
            raise LockLostError(
                f"lease {lease.token} of {self.name!r} was lost before release", self.name
            )

    @staticmethod
    def _duration(name: str, value: Any) -> float:
        """*value* as a duration this lock's backend keeps (any positive finite number here)."""
        return positive_number(name, value)

    def extend(self, lease: Lease, ttl: float | None = None) -> None:
        """Reset *lease* to expire *ttl* seconds (default: the lock's ttl) from now.

        Without a ttl (ZooKeeper: the session bounds the lease) this only
        checks that the lease is still held.

        Raises:
            ConfigurationError: *ttl* <= 0, or a *ttl* for a lock without one.
            LockNotOwnedError: the lease was released.
            LockLostError: the lease was lost; it is not revived.
            BackendUnavailableError: the backend did not answer.

        Thread-safe. Cost: one backend round trip.
        """
        if ttl is not None and self.ttl is None:
            raise ConfigurationError(
                f"ttl must be None for {type(self).__name__} {self.name!r}, got {ttl!r}: its "
                "leases have no ttl, they last as long as the client's session"
            )
        if not isinstance(lease, Lease):
            raise wrong_type("lease", lease, "a Lease from this lock's acquire()")
        new_ttl = self.ttl if ttl is None else self._duration("ttl", ttl)
        if lease._released:
            raise LockNotOwnedError(f"lease {lease.token} of {self.name!r} was released", self.name)
        if _foreign(lease):
            raise LockNotOwnedError(
                f"lease {lease.token} of {self.name!r} was acquired by the parent of this "
                "forked process; only the parent may extend it",
                self.name,
            )
        if lease.lost.is_set():
            raise LockLostError(f"lease {lease.token} of {self.name!r} is lost", self.name)
        started = self._clock()
        try:
            extended = self._do_extend(lease, new_ttl)
        except Exception:
            if _emit.on:  # the backend did not answer: a failed renewal all the same
                _emit.renewed(self, False)
            raise
        if not extended:
            if _emit.on:
                _emit.renewed(self, False)
            self._mark_lost(lease, "extend_refused")
            raise LockLostError(f"lease {lease.token} of {self.name!r} is lost", self.name)
        if _emit.on:
            _emit.renewed(self, True)
        trusted = self._lease_ttl(new_ttl)
        lease._set_deadline(None if trusted is None else started + trusted)

    def _give_up(self, attempt: Any, silent: bool) -> None:
        """Clean up a failed attempt within `CLEANUP_BUDGET`; finish in the background.

        After the backend failed to answer (*silent*), straight to the background
        when the backend has one (`_cleanup_window`).
        """
        window = self._cleanup_window()
        try:
            if silent and window is not None:
                raise BackendUnavailableError("the backend did not answer the attempt")
            self._abandon(attempt, CLEANUP_BUDGET)
        except BackendError as exc:
            # Any backend error, not only silence (an OOM reply too): it never
            # replaces the caller's outcome, and the clean-up goes on in the background.
            if window is None:
                _log.debug("could not clean up a failed attempt on %r: %r", self.name, exc)
                return
            with self._live_lock:
                self._cleanups += 1
            # Not on the caller's path: its bound has no room for a thread start.
            _start_in_background(
                threading.Thread(
                    target=self._abandon_later,
                    args=(attempt, window),
                    daemon=True,
                    name=f"scalekit-cleanup:{self.name}",
                )
            )

    def _abandon_later(self, attempt: Any, window: float) -> None:
        """Retry the clean-up until it succeeds or *window* ends.

        Each try may take all the time left: over a slow link a new
        connection's handshake alone is several round trips, and a try cut
        at a short budget would fail every time and leave its lock held for
        a full ttl. Nobody waits for it; a try that fails fast (a reset
        connection) is retried.
        """
        try:
            end = time.monotonic() + window
            while time.monotonic() < end:
                try:
                    self._abandon(attempt, max(end - time.monotonic(), 0.001))
                    return
                except BackendError:  # silent, or an error reply: try again
                    time.sleep(0.1)
            _log.debug("gave up cleaning up a failed attempt on %r", self.name)
        finally:
            with self._live_lock:
                self._cleanups -= 1

    def _mark_lost(self, lease: Lease, cause: str = "expired") -> None:
        """Set `lease.lost` and fire `on_lost` once; *cause* names why, for metrics and logs."""
        if lease.lost._set():
            _emit.lease_lost(self, lease, cause)
            if self._track_live:
                with self._live_lock:
                    self._live.discard(lease)
            if lease._done is not None:
                lease._done.set()
            if self.on_lost is not None:
                # Off the caller's thread: a slow or failing callback delays no other notice.
                _NOTIFIER.submit(self.on_lost, lease)

    # -- conveniences -----------------------------------------------------------
    def __enter__(self) -> Lease:
        lease = self.acquire()
        assert lease is not None
        self._stacks.setdefault(self._owner_id(), []).append(lease)
        return lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        owner_id = self._owner_id()
        stack = self._stacks.get(owner_id)
        if not stack:
            raise LockNotOwnedError(f"lock {self.name!r} is not held by the caller", self.name)
        lease = stack.pop()
        if not stack:
            del self._stacks[owner_id]
        self.release(lease)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, ttl={self.ttl})"


RETRY_BACKOFF = (0.02, 0.25)
"""First and longest pause, in seconds, between the retries of a blocking acquire."""


def _sleep_until(clock: Callable[[], float], deadline: float | None) -> None:
    """Sleep until *deadline* on *clock*, at most `_LAST_WAIT` seconds (nothing if None or past)."""
    if deadline is not None:
        left = deadline - clock()
        if left > 0:
            time.sleep(min(left, _LAST_WAIT))


# The longest `_sleep_until` waits: what a backend's shortest call leaves of a timeout.
_LAST_WAIT = 0.05


class _Outage:
    """When a blocking acquire retries a backend failure, and when it stops.

    With a deadline, every `BackendUnavailableError` is retried after a short
    exponential back-off until the deadline; past it, the last failure is
    raised. Without a deadline, a run of failures is retried for one call
    bound (`_call_bound`) from its first failure, so a backend that stays
    down is reported rather than waited for without end. It never sleeps
    itself (`next_pause` says how long), so the threaded and the asyncio
    acquire loops share it.
    """

    __slots__ = (
        "_bound",
        "_clock",
        "_deadline",
        "_end",
        "_ever_answered",
        "_failures",
        "_name",
        "_pause",
        "_until",
    )

    def __init__(
        self, clock: Callable[[], float], deadline: float | None, bound: float, name: str
    ) -> None:
        self._clock = clock
        self._deadline = deadline
        self._bound = bound
        self._name = name
        self._until: float | None = None
        self._end = 0.0
        self._pause = RETRY_BACKOFF[0]
        self._failures = 0
        self._ever_answered = False

    def answered(self) -> None:
        """The backend answered: a later failure starts a new run."""
        self._ever_answered = True
        self._until = None
        self._pause = RETRY_BACKOFF[0]
        self._failures = 0

    def cut_short(self, started: float) -> bool:
        """Whether the one failure since the backend last answered was the caller's deadline.

        A try begun with less than one call bound left, that failed as the
        deadline passed, after the backend had answered (that the lock is
        held) earlier in this acquire, says nothing about the backend: the
        acquire timed out. A backend that never answered in this acquire is
        reported as unavailable, whatever cut its last try short.
        """
        end = self._deadline
        return (
            end is not None
            and self._ever_answered
            and self._failures == 1
            and end - started < self._bound
            and self._clock() >= end - 0.001
        )

    def next_pause(self, exc: BackendUnavailableError) -> float | None:
        """Seconds to pause before trying the failed call again, or None to give up."""
        self._failures += 1
        now = self._clock()
        end = self._deadline
        if end is None:
            if self._until is None:
                self._until = now + self._bound
            end = self._until
        self._end = end
        left = end - now
        if left <= 0.001:
            return None
        _log.debug("acquire of %r failed, retrying: %s", self._name, exc)
        pause = min(self._pause, left)
        self._pause = min(self._pause * 2, RETRY_BACKOFF[1])
        return pause

    def window(self) -> float | None:
        """The deadline a try must keep: the caller's, or during a run of failures
        without one, the end of its retry window (one call bound after the first
        failure), so that a try started just before that end is cut there instead
        of running a whole call bound past it."""
        if self._deadline is not None:
            return self._deadline
        return self._until

    def in_time(self) -> bool:
        """After the pause: whether there is time left for the next try."""
        return self._clock() < self._end

    def again(self, exc: BackendUnavailableError) -> bool:
        """Pause and return True if the failed call should be tried again, else False."""
        pause = self.next_pause(exc)
        if pause is None:
            return False
        time.sleep(pause)
        return self.in_time()


def _renew(
    ref: weakref.ref[Lease],
    thread: weakref.ref[threading.Thread],
    done: threading.Event,
    period: float,
    retry: float,
) -> None:
    """Extend the lease every *period* until it is released or lost, while *thread*
    (the one that acquired it) lives.

    Any error but a definitive "not the owner" (a connection error, a
    timeout, a `BUSY` reply) is retried every *retry* seconds until the
    lease's deadline; past it the watchdog announces the loss. Only a weak
    reference is held between renewals: a lease that nobody references any
    more (neither the caller nor its lock object) is not renewed and ends
    at its ttl. Nor is a lease whose thread ended without releasing it (an
    exception it did not handle): it ends at its ttl, and the watchdog
    announces the loss.

    A renewal is due one *period* after the lease's validity began (its
    deadline less the validity a grant or extension gives), not one period
    after this thread last woke: an acquire that spent part of the validity
    on its rounds (Redlock waiting out a dead master), or a thread started
    late on a loaded host, would otherwise renew late, and a failed
    renewal would have too little time left for its retries.
    """
    wait: float | None = None  # None: the next renewal is due on schedule
    while True:
        lease = ref()
        if lease is None or lease._deadline is None:
            return
        lock = lease._lock
        left = max(lease._deadline - lock._clock(), 0.0)
        if wait is None:
            trusted = lock._lease_ttl(lock.ttl)
            pause = left - (trusted - period) if trusted is not None else period
        else:
            pause = wait
        del lease, lock
        if done.wait(max(min(pause, left), 0.0)):
            return
        lease = ref()
        if lease is None:
            return
        lock = lease._lock
        if lease.lost.is_set():
            lock._mark_lost(lease)
            return
        owner = thread()
        if owner is None or not owner.is_alive():
            _log.warning(
                "lock %r: the thread that acquired its lease ended without releasing it; "
                "the lease is no longer renewed and ends at its ttl",
                lock.name,
            )
            return
        del owner
        try:
            lock.extend(lease)
            wait = None
        except (LockLostError, LockNotOwnedError):
            return
        except Exception as exc:  # transient until proven otherwise: retry until the deadline
            _log.debug("renewal of %r failed, retrying: %r", lock.name, exc)
            wait = max(min(retry, left), 0.01)
        del lease, lock
