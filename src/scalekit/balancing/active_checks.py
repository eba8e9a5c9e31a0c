"""Active health checks: a user-supplied check run on an interval."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from .._validation import positive_int, positive_number, wrong_type
from ..exceptions import ArgumentTypeError, ConfigurationError, InvalidStateError
from ..observability import _emit

if TYPE_CHECKING:
    from .base import Balancer

__all__ = ["ActiveHealthChecker"]

Check = Callable[[Hashable], bool | Awaitable[bool]]


class ActiveHealthChecker:
    """Run a user-supplied check against every endpoint on an interval.

    `check(endpoint)` returns (or, for `async def`, resolves to) true when
    healthy; an exception counts as a failure. After `unhealthy_threshold`
    failures in a row the endpoint is taken out, after `healthy_threshold`
    passes in a row it comes back (Envoy's thresholds).

    Run it in a background thread (`start()` / `stop()`), as an
    asyncio task (`asyncio.create_task(checker.run())`), or one round at a
    time (`run_once()`, `run_once_async()`), as tests do.

    Args:
        balancer: a balancer built with `health=HealthPolicy(...)`.
        interval: seconds between rounds.
        timeout: seconds an `async` check may take (a thread cannot
            cancel a blocking check: make a sync check bound its own time).

    Raises:
        ConfigurationError: no health policy on *balancer*, bad numbers.

    Thread-safety: results go through the balancer's lock.
    """

    def __init__(
        self,
        balancer: Balancer[Any],
        check: Check,
        *,
        interval: float = 10.0,
        timeout: float = 5.0,
        unhealthy_threshold: int = 3,
        healthy_threshold: int = 2,
    ) -> None:
        from .base import Balancer

        if not isinstance(balancer, Balancer):
            raise wrong_type("balancer", balancer, "a scalekit.balancing Balancer")
        if balancer.health is None:
            raise ConfigurationError(
                "balancer must be built with health=HealthPolicy(...) for active checks"
            )
        if not callable(check):
            raise ArgumentTypeError(f"check must be callable, got {check!r}")
        self._balancer = balancer
        self._policy = balancer.health
        self._check = check
        self._interval = positive_number("interval", interval)
        self._timeout = positive_number("timeout", timeout)
        self._unhealthy = positive_int("unhealthy_threshold", unhealthy_threshold)
        self._healthy = positive_int("healthy_threshold", healthy_threshold)
        self._fail_streak: dict[Hashable, int] = {}
        self._pass_streak: dict[Hashable, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _result(self, endpoint: Hashable, healthy: bool) -> None:
        status = self._policy._check_status(endpoint)
        if status is None:
            return
        failing_checks, ejected = status
        if _emit.on:
            _emit.checked(self._balancer, endpoint, healthy)
        if healthy:
            self._fail_streak[endpoint] = 0
            passes = self._pass_streak.get(endpoint, 0) + 1
            self._pass_streak[endpoint] = passes
            # healthy_threshold passes end a check failure; one pass un-ejects an outlier.
            if (failing_checks and passes >= self._healthy) or (not failing_checks and ejected):
                self._policy.set_check_result(endpoint, True)
        else:
            self._pass_streak[endpoint] = 0
            fails = self._fail_streak.get(endpoint, 0) + 1
            self._fail_streak[endpoint] = fails
            if fails >= self._unhealthy:
                self._policy.set_check_result(endpoint, False)

    def run_once(self) -> None:
        """Check every endpoint once, synchronously, and apply the results."""
        for endpoint in list(self._balancer.endpoints):
            try:
                result = self._check(endpoint)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise ConfigurationError("check is async: use run() or run_once_async()")
                healthy = bool(result)
            except ConfigurationError:
                raise
            except Exception:
                healthy = False
            self._result(endpoint, healthy)

    async def run_once_async(self) -> None:
        """Check every endpoint once, awaiting async checks with the timeout."""
        for endpoint in list(self._balancer.endpoints):
            try:
                result = self._check(endpoint)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, self._timeout)
                healthy = bool(result)
            except Exception:
                healthy = False
            self._result(endpoint, healthy)

    async def run(self) -> None:
        """Check forever, one round per interval; cancel the task to stop."""
        while True:
            await self.run_once_async()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Start checking in a daemon thread; `stop()` ends it."""
        if self._thread is not None:
            raise InvalidStateError("the checker is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scalekit-health", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread and wait for it (at most *timeout* s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._interval)
