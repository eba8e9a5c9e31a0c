"""Today's hot paths without instrumentation, kept to measure what it costs.

Copies of `Balancer.pick` / `Balancer.release` and `BaseLock.acquire` as
they were before the primitives pushed measurements; the benchmark puts
them on subclasses and times them against the instrumented classes in the
same run. Nothing else uses this module.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable
from typing import Any

from scalekit._validation import non_negative_number
from scalekit.balancing.base import _INF, _NOTHING, Balancer
from scalekit.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    LockTimeoutError,
    NoAvailableEndpointError,
)
from scalekit.locking.base import _WATCHDOG, BaseLock, Lease, _Outage, _renew

__all__ = ["bare_balancer", "bare_lock"]

E = Any
Grant = Any


class _BareBalancerMixin:
    def pick(self, key: Hashable | None = None) -> E:
        with self._lock:
            if not self._weights:
                raise NoAvailableEndpointError("cannot pick: the balancer has no endpoints")
            health = self._health
            if health is None:
                endpoint = self._select(_NOTHING, key)
            else:
                now = self._clock()
                excluded = health._excluded(now)
                if excluded and not health._panicking(len(self._weights), len(excluded)):
                    if len(excluded) >= len(self._weights):
                        raise NoAvailableEndpointError(health._why_none(now))
                else:
                    excluded = _NOTHING
                endpoint = self._select(excluded, key)
            self._in_flight[endpoint] += 1
            return endpoint

    def release(self, endpoint: E, *, latency: float | None = None, ok: bool = True) -> None:
        """End one request on *endpoint*, picked before by `pick`.

        Args:
            endpoint: the endpoint `pick` returned.
            latency: seconds the request took; latency-aware strategies
                learn from it, `None` means not measured.
            ok: whether the request succeeded; feeds outlier detection.

        Raises:
            ConfigurationError: *endpoint* is unknown or has nothing in flight.
            ConfigurationError: *latency* is not a finite number >= 0; the
                request is released all the same, as if no latency was given.

        Runtime complexity: O(1).
        """
        if latency is not None and not (latency.__class__ is float and 0.0 <= latency < _INF):
            self._release_checked(endpoint, latency, ok)
            return
        with self._lock:
            count = self._in_flight.get(endpoint)
            if count is None:
                draining = self._draining.get(endpoint)
                if draining is None:
                    raise ConfigurationError(f"cannot release unknown endpoint {endpoint!r}")
                if draining == 1:
                    del self._draining[endpoint]
                else:
                    self._draining[endpoint] = draining - 1
                return
            if count == 0:
                raise ConfigurationError(
                    f"cannot release endpoint {endpoint!r}: it has nothing in flight"
                )
            self._in_flight[endpoint] = count - 1
            self._on_release(endpoint, latency, ok)
            if self._health is not None:
                self._health._record(endpoint, ok, self._clock())


class _BareLockMixin:
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Lease | None:
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
                held._depth += 1
                return held
        deadline = None if timeout is None else self._clock() + timeout
        owner = self._new_owner_token()
        attempt = self._new_attempt(owner)
        grant: Grant | None = None
        silent = False  # the backend just failed to answer: clean up in the background
        retry = _Outage(self._clock, deadline, self._call_bound(), self.name)
        try:
            while True:
                started = self._clock()  # before the request whose reply may be the grant
                try:
                    grant = self._do_acquire(attempt, blocking, deadline)
                except BackendUnavailableError as exc:
                    silent = True
                    if not blocking:
                        raise
                    if retry.again(exc):
                        # Same attempt, same owner token: a grant whose reply was lost is
                        # recognised as ours by the next try (or given back by the clean-up).
                        continue
                    if retry.cut_short(started):
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
                try:
                    self._wait(attempt, remaining)
                except BackendUnavailableError as exc:
                    silent = True
                    if not retry.again(exc) and not retry.cut_short(started):
                        raise
        finally:
            if grant is None:
                self._give_up(attempt, silent)
        if grant is None:
            return None
        token, validity = grant
        sent_at = self._sent_at(attempt)
        if sent_at is not None:
            started = sent_at  # later than the loop's reading, still before the grant
        lease = Lease(
            self, token, owner, self.ttl, None if validity is None else started + validity
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
                args=(weakref.ref(lease), lease._done, self.ttl / 3, self.ttl / 10),
                daemon=True,
                name=f"scalekit-lease:{self.name}",
            ).start()
        return lease


def bare_balancer(cls: type[Balancer[Any]]) -> type[Balancer[Any]]:
    """*cls* with today's uninstrumented `pick` and `release`."""
    return type(f"Bare{cls.__name__}", (_BareBalancerMixin, cls), {})


def bare_lock(cls: type[BaseLock]) -> type[BaseLock]:
    """*cls* with today's uninstrumented `acquire`."""
    return type(f"Bare{cls.__name__}", (_BareLockMixin, cls), {})
