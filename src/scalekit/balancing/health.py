"""Health for any balancer: outlier ejection, active checks, slow start, panic.

Pass one `HealthPolicy` as `health=` to a balancer (one policy per
balancer). The rules are Envoy's (`outlier.rst`, `health_checking.rst`
and the load-balancing docs on slow start and the panic threshold):

* **Consecutive failures**: `consecutive_failures` failed releases in a
  row eject the endpoint for `base_ejection_time` times its ejection
  multiplier, at most `max_ejection_time` (which may not be below the
  base). Each ejection raises the multiplier by one while `multiplier *
  base < max + base`, as Envoy does.
* **Success rate**: every `interval`, among the endpoints with at least
  `success_rate_request_volume` requests in that interval (and only if
  there are `success_rate_minimum_hosts` of them), those whose success
  rate is below `mean - success_rate_stdev_factor * stdev` are ejected.
* An ejection is refused when it would take the ejected share above
  `max_ejection_percent` (one endpoint may always be ejected). Ejected
  endpoints return at the first `interval` tick after their time is up;
  at each tick an endpoint not ejected sees its multiplier drop by one.
* **Active checks** (`ActiveHealthChecker`): `unhealthy_threshold`
  failed checks in a row take an endpoint out, `healthy_threshold`
  passes bring it back; one pass un-ejects an outlier.
* **Slow start**: an endpoint added at run time, or back from failing
  checks, has its weight scaled by `max(min_weight_percent / 100,
  (max(elapsed, 1) / window) ** (1 / aggression))` during `window` seconds.
* **Panic**: when fewer than `panic_threshold` percent are available,
  the balancer ignores health and uses every endpoint.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._validation import non_negative_number, positive_int, positive_number
from ..exceptions import ConfigurationError, InvalidStateError
from ..observability import _emit

if TYPE_CHECKING:
    from .base import Balancer

__all__ = ["HealthPolicy", "OutlierDetection", "SlowStart"]


def _percent(name: str, value: float) -> float:
    value = non_negative_number(name, value)
    if value > 100:
        raise ConfigurationError(f"{name} must be a percentage in [0, 100], got {value!r}")
    return value


@dataclass(frozen=True)
class OutlierDetection:
    """Passive outlier detection settings (Envoy's names and defaults).

    `consecutive_failures=None` or `success_rate_stdev_factor=None`
    turns that detector off.

    Raises:
        ConfigurationError: a setting out of range.
    """

    consecutive_failures: int | None = 5
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 10.0
    interval: float = 10.0
    success_rate_stdev_factor: float | None = 1.9
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100

    def __post_init__(self) -> None:
        if self.consecutive_failures is not None:
            positive_int("consecutive_failures", self.consecutive_failures)
        positive_number("base_ejection_time", self.base_ejection_time)
        positive_number("max_ejection_time", self.max_ejection_time)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigurationError(
                f"max_ejection_time must be >= base_ejection_time ({self.base_ejection_time!r}), "
                f"got {self.max_ejection_time!r}"
            )
        _percent("max_ejection_percent", self.max_ejection_percent)
        positive_number("interval", self.interval)
        if self.success_rate_stdev_factor is not None:
            non_negative_number("success_rate_stdev_factor", self.success_rate_stdev_factor)
        positive_int("success_rate_minimum_hosts", self.success_rate_minimum_hosts)
        positive_int("success_rate_request_volume", self.success_rate_request_volume)


@dataclass(frozen=True)
class SlowStart:
    """Slow-start settings (Envoy's `slow_start_config`).

    Raises:
        ConfigurationError: a setting out of range.
    """

    window: float
    aggression: float = 1.0
    min_weight_percent: float = 10.0

    def __post_init__(self) -> None:
        positive_number("window", self.window)
        positive_number("aggression", self.aggression)
        _percent("min_weight_percent", self.min_weight_percent)

    def factor(self, elapsed: float) -> float:
        """The weight factor *elapsed* seconds into the window, in (0, 1].

        Envoy's `max(min_weight_percent / 100, time_factor ** (1 / aggression))`
        with `time_factor = max(elapsed, 1) / window`: the first second counts
        as one second.
        """
        if elapsed >= self.window:
            return 1.0
        fraction = min(max(elapsed, 1.0) / self.window, 1.0)
        if self.aggression != 1.0:
            fraction = fraction ** (1.0 / self.aggression)
        return max(fraction, self.min_weight_percent / 100.0)


class _State:
    __slots__ = (
        "ejected_until",
        "ejections",
        "failing_checks",
        "failures",
        "ok",
        "reason",
        "total",
    )

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed releases
        self.ejections = 0  # Envoy's ejection multiplier
        self.ejected_until: float | None = None
        self.reason = ""
        self.failing_checks = False
        self.ok = 0  # successes in the current interval
        self.total = 0  # requests in the current interval


class HealthPolicy:
    """Which endpoints a balancer may use, and how much, as time goes on.

    Args:
        outlier: passive ejection settings, or `None` for none.
        slow_start: slow-start settings, or `None` for none.
        panic_threshold: percent (0..100, default 50); below this share of
            available endpoints the balancer uses all of them. 0 disables panic,
            so picks fail with `NoAvailableEndpointError`
            when nothing is available.

    Raises:
        ConfigurationError: a setting out of range.

    Thread-safety: shares the lock of the balancer it is given to.

    Runtime complexity: O(1) per pick and release, O(n) per ejection and
    per `interval` tick.
    """

    def __init__(
        self,
        *,
        outlier: OutlierDetection | None = None,
        slow_start: SlowStart | None = None,
        panic_threshold: float = 50.0,
    ) -> None:
        if outlier is not None and not isinstance(outlier, OutlierDetection):
            raise ConfigurationError(f"outlier must be an OutlierDetection, got {outlier!r}")
        if slow_start is not None and not isinstance(slow_start, SlowStart):
            raise ConfigurationError(f"slow_start must be a SlowStart, got {slow_start!r}")
        self.outlier = outlier
        self.slow_start = slow_start
        self.panic_threshold = _percent("panic_threshold", panic_threshold)
        self._balancer: Balancer[Any] | None = None
        self._lock: threading.Lock | None = None
        self._states: dict[Hashable, _State] = {}
        self._excluded_set: frozenset[Hashable] = frozenset()
        self._next_tick = math.inf
        self._slow: dict[Hashable, float] = {}  # endpoint -> slow start began
        self._slow_check = math.inf  # the earliest time a slow start ends

    # ------------------------------------------------------------ public view

    def ejected(self) -> dict[Hashable, float]:
        """Ejected endpoints and the time their ejection is up.

        Runtime complexity: O(n).
        """
        with self._locked():
            self._catch_up()
            return {
                ep: s.ejected_until for ep, s in self._states.items() if s.ejected_until is not None
            }

    def available(self) -> list[Hashable]:
        """Endpoints neither ejected nor failing active checks, in order.

        Runtime complexity: O(n).
        """
        with self._locked():
            excluded = self._catch_up()
            return [ep for ep in self._states if ep not in excluded]

    def _catch_up(self) -> frozenset[Hashable]:
        assert self._balancer is not None
        return self._excluded(self._balancer.clock())

    def ejection_count(self, endpoint: Hashable) -> int:
        """Envoy's ejection multiplier of *endpoint* (0 when never ejected)."""
        with self._locked():
            self._catch_up()
            return self._states[endpoint].ejections

    def slow_start_factor(self, endpoint: Hashable) -> float:
        """The weight factor *endpoint* has now (1.0 outside slow start)."""
        with self._locked():
            assert self._balancer is not None
            return self._factor(endpoint, self._balancer.clock())

    def set_check_result(self, endpoint: Hashable, healthy: bool) -> None:
        """Mark *endpoint* passing (True) or failing (False) active health checks.

        `ActiveHealthChecker` calls this once its thresholds are met;
        call it yourself to drive health from elsewhere.

        Raises:
            ValueError: *endpoint* is not in the balancer.

        Runtime complexity: O(n) (the set of excluded endpoints is rebuilt).
        """
        with self._locked():
            assert self._balancer is not None
            state = self._states.get(endpoint)
            if state is None:
                raise ConfigurationError(f"unknown endpoint {endpoint!r}")
            now = self._balancer.clock()
            if healthy:
                if state.failing_checks and self.slow_start is not None:
                    self._begin_slow_start(endpoint, now)
                if state.failing_checks and state.ejected_until is None:
                    _emit.unejected(self._balancer, endpoint)
                state.failing_checks = False
                if state.ejected_until is not None:  # a passing check un-ejects
                    self._uneject(endpoint, state)
                state.failures = 0
            else:
                if not state.failing_checks:
                    _emit.ejected(self._balancer, endpoint, "active_check", None)
                state.failing_checks = True
            self._refresh()
        _emit.flush_events()  # its events, logged with the lock free

    def _locked(self) -> threading.Lock:
        if self._lock is None:
            raise InvalidStateError("this HealthPolicy is not attached to a balancer yet")
        return self._lock

    # ------------------------------------------- hooks the balancer calls (locked)

    def _bind(self, balancer: Balancer[Any], endpoints: list[Hashable], now: float) -> None:
        if self._balancer is not None:
            raise ConfigurationError("health: a HealthPolicy serves one balancer; make another")
        self._balancer = balancer
        self._lock = balancer._lock
        self._states = {ep: _State() for ep in endpoints}
        if self.outlier is not None:
            self._next_tick = now + self.outlier.interval

    def _added(self, endpoint: Hashable, now: float) -> None:
        self._states[endpoint] = _State()
        if self.slow_start is not None:
            self._begin_slow_start(endpoint, now)
        self._panic_check()

    def _begin_slow_start(self, endpoint: Hashable, now: float) -> None:
        assert self.slow_start is not None
        self._slow[endpoint] = now
        self._slow_check = min(self._slow_check, now + self.slow_start.window)

    def _check_status(self, endpoint: Hashable) -> tuple[bool, bool] | None:
        """(failing active checks, ejected) for *endpoint*, None if unknown; locked."""
        with self._locked():
            state = self._states.get(endpoint)
            if state is None:
                return None
            return state.failing_checks, state.ejected_until is not None

    def _removed(self, endpoint: Hashable) -> None:
        del self._states[endpoint]
        self._slow.pop(endpoint, None)
        if endpoint in self._excluded_set:
            self._refresh()
        self._panic_check()

    def _excluded(self, now: float) -> frozenset[Hashable]:
        if now >= self._next_tick:
            self._tick(now)
        if now >= self._slow_check:
            self._end_slow_starts(now)
        return self._excluded_set

    def _end_slow_starts(self, now: float) -> None:
        assert self.slow_start is not None
        window = self.slow_start.window
        self._slow = {ep: began for ep, began in self._slow.items() if now - began < window}
        self._slow_check = min(self._slow.values(), default=math.inf) + window

    def _panicking(self, total: int, excluded: int) -> bool:
        return (total - excluded) * 100.0 < self.panic_threshold * total

    _in_panic = False  # as last logged

    def _panic_check(self) -> None:
        # Panic depends only on how many endpoints there are and how many are out,
        # so it is followed where those change, never on the pick path.
        out = len(self._excluded_set)
        active = bool(out) and self._panicking(len(self._states), out)
        if active is not self._in_panic:
            self._in_panic = active
            _emit.panic(self._balancer, active)

    def _record(self, endpoint: Hashable, ok: bool, now: float) -> None:
        outlier = self.outlier
        if outlier is None:
            return
        if now >= self._next_tick:
            self._tick(now)
        state = self._states[endpoint]
        state.total += 1
        if ok:
            state.ok += 1
            state.failures = 0
            return
        state.failures += 1
        threshold = outlier.consecutive_failures
        if threshold is not None and state.failures >= threshold:
            state.failures = 0
            if state.ejected_until is None:
                self._eject(endpoint, state, now, f"{threshold} consecutive failures")

    def _any_slow_start(self) -> bool:
        return bool(self._slow)

    def _factor(self, endpoint: Hashable, now: float) -> float:
        began = self._slow.get(endpoint)
        if began is None:
            return 1.0
        assert self.slow_start is not None
        factor = self.slow_start.factor(now - began)
        if factor >= 1.0:
            del self._slow[endpoint]
        return factor

    def _why_none(self, now: float) -> str:
        reasons = []
        for ep, state in self._states.items():
            if state.ejected_until is not None:
                reasons.append(f"{ep!r} ejected until {state.ejected_until:g} ({state.reason})")
            elif state.failing_checks:
                reasons.append(f"{ep!r} failing active health checks")
        return (
            f"no endpoint available at {now:g}: all {len(self._states)} are out and the "
            f"panic threshold is {self.panic_threshold:g}%: " + "; ".join(reasons)
        )

    # ----------------------------------------------------------------- internals

    def _refresh(self) -> None:
        self._excluded_set = frozenset(
            ep for ep, s in self._states.items() if s.ejected_until is not None or s.failing_checks
        )
        self._panic_check()

    def _eject(self, endpoint: Hashable, state: _State, now: float, reason: str) -> bool:
        outlier = self.outlier
        assert outlier is not None
        ejected = sum(1 for s in self._states.values() if s.ejected_until is not None)
        if ejected and 100.0 * (ejected + 1) / len(self._states) > outlier.max_ejection_percent:
            return False
        base, most = outlier.base_ejection_time, outlier.max_ejection_time
        # Envoy raises the multiplier only while multiplier * base < max + base,
        # so after a long run of ejections it falls back to max within a few ticks.
        if state.ejections * base < most + base:
            state.ejections += 1
        span = min(base * state.ejections, most)
        state.ejected_until = now + span
        state.reason = reason
        _emit.ejected(self._balancer, endpoint, reason, state.ejected_until)
        self._refresh()
        return True

    def _uneject(self, endpoint: Hashable, state: _State) -> None:
        _emit.unejected(self._balancer, endpoint)
        state.ejected_until = None
        state.reason = ""
        state.failures = 0

    def _tick(self, now: float) -> None:
        outlier = self.outlier
        assert outlier is not None
        # Envoy's interval timer: time-outs end, multipliers fall, success rates are judged.
        if now - self._next_tick > 1000 * outlier.interval:
            self._next_tick = now - (now - self._next_tick) % outlier.interval
        while now >= self._next_tick:
            tick = self._next_tick
            self._next_tick = tick + outlier.interval
            for endpoint, state in self._states.items():
                if state.ejected_until is not None:
                    if tick >= state.ejected_until:
                        self._uneject(endpoint, state)
                elif state.ejections > 0:
                    state.ejections -= 1
            if outlier.success_rate_stdev_factor is not None:
                self._success_rate(tick, outlier.success_rate_stdev_factor)
            for state in self._states.values():
                state.ok = state.total = 0
        self._refresh()

    def _success_rate(self, now: float, factor: float) -> None:
        outlier = self.outlier
        assert outlier is not None
        volume = outlier.success_rate_request_volume
        rates = {
            ep: 100.0 * s.ok / s.total
            for ep, s in self._states.items()
            if s.total >= volume and s.ejected_until is None
        }
        if len(rates) < outlier.success_rate_minimum_hosts:
            return
        mean = sum(rates.values()) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
        threshold = mean - factor * stdev
        for ep, rate in rates.items():
            if rate < threshold:
                reason = f"success rate {rate:.1f}% below {threshold:.1f}%"
                self._eject(ep, self._states[ep], now, reason)
