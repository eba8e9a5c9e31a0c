"""Finagle's Peak EWMA: latency that jumps to peaks and decays, times load."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from .._validation import positive_number
from .base import Balancer, Endpoints

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["PeakEWMA"]

# Finagle's penalty for an endpoint with requests out and no latency seen yet:
# Long.MaxValue >> 16 nanoseconds, kept in the same unit as our seconds.
PENALTY = float((2**63 - 1) >> 16) / 1e9


class PeakEWMA(Balancer):
    """Prefer the endpoint with the lowest peak-sensitive latency times load.

    Each endpoint keeps ``cost``, a moving average of its latency that
    jumps straight to any higher observation and otherwise decays with
    time constant *decay* (weight ``exp(-elapsed / decay)``, taking the
    time between observations into account). Its load is
    ``cost * (in_flight + 1)``, or a large penalty plus ``in_flight`` while
    it has requests out and ``cost`` is still 0. Each pick draws two
    distinct endpoints at random and keeps the one with the lower load
    (Finagle ``PeakEwma.scala`` with ``P2C``; Linkerd's "Beyond Round
    Robin"). Reading the load first decays ``cost`` toward 0, as Finagle
    does. Unequal weights (and slow start) divide the load by
    ``weight * factor``, a scalekit extension that is Finagle's rule when
    weights are equal.

    :param decay: the time constant tau in seconds (Finagle's default 10 s).
    :raises ConfigurationError: see :class:`Balancer`; *decay* not > 0.

    A release without ``latency`` lowers the in-flight count but teaches
    the average nothing; :meth:`request` always measures it.

    Thread-safety: see :class:`Balancer`.
    Runtime complexity: O(1) per pick and release (O(n) while endpoints
    are ejected).
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        decay: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        self._tau = positive_number("decay", decay)
        super().__init__(endpoints, clock=clock, rng=rng, health=health)

    def _init_state(self) -> None:
        self._ids: list[Hashable] = []
        self._metric: dict[Hashable, list[float]] = {}  # endpoint -> [cost, stamp]
        self._uniform = True

    def _on_add(self, endpoint: Hashable, weight: int) -> None:
        if self._ids and weight != self._weights[self._ids[0]]:
            self._uniform = False
        self._ids.append(endpoint)
        self._metric[endpoint] = [0.0, self._clock()]

    def _on_remove(self, endpoint: Hashable, weight: int) -> None:
        self._ids.remove(endpoint)
        del self._metric[endpoint]
        self._uniform = len(set(self._weights.values())) <= 1

    def _on_reweight(self, endpoint: Hashable, old: int, new: int) -> None:
        self._uniform = len(set(self._weights.values())) <= 1

    def _observe(self, metric: list[float], rtt: float, now: float) -> None:
        cost, stamp = metric
        if rtt > cost:
            metric[0] = rtt
        elif now > stamp:
            w = math.exp((stamp - now) / self._tau)
            metric[0] = cost * w + rtt * (1.0 - w)
        else:  # no time has passed: weight 1, the average stays
            metric[0] = cost
        metric[1] = now

    def _load(self, endpoint: Hashable, now: float, scaled: bool) -> float:
        metric = self._metric[endpoint]
        cost, stamp = metric
        # Finagle's observe(0.0): decay toward zero for the time since the last look.
        if cost and now > stamp:
            cost *= math.exp((stamp - now) / self._tau)
            metric[0] = cost
        metric[1] = now
        pending = self._in_flight[endpoint]
        # No latency seen yet but requests out: Finagle's penalty, so it is probed once.
        load = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        if scaled:
            load /= self._weights[endpoint] * self._factor(endpoint, now)
        return load

    def cost(self, endpoint: Hashable) -> float:
        """The endpoint's current latency estimate in seconds, decayed to now."""
        with self._lock:
            metric = self._metric[endpoint]
            self._observe(metric, 0.0, self._clock())
            return metric[0]

    def _on_release(self, endpoint: Hashable, latency: float | None, ok: bool) -> None:
        if latency is not None:
            self._observe(self._metric[endpoint], latency, self._clock())

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> Hashable:
        hosts = self._ids if not excluded else [ep for ep in self._ids if ep not in excluded]
        size = len(hosts)
        if size == 1:
            return hosts[0]
        random_ = self._rng.random
        a = int(random_() * size)
        b = int(random_() * (size - 1))
        if b >= a:
            b += 1
        node_a, node_b = hosts[a], hosts[b]
        now = self._clock()
        health = self._health
        if health is not None and health._any_slow_start():
            if self._load(node_a, now, True) < self._load(node_b, now, True):
                return node_a
            return node_b
        # The same arithmetic as _load, inlined: this is the hot path.
        metric, in_flight, tau, exp = self._metric, self._in_flight, self._tau, math.exp
        m = metric[node_a]
        cost, stamp = m
        if cost and now > stamp:
            cost *= exp((stamp - now) / tau)
            m[0] = cost
        m[1] = now
        pending = in_flight[node_a]
        load_a = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        m = metric[node_b]
        cost, stamp = m
        if cost and now > stamp:
            cost *= exp((stamp - now) / tau)
            m[0] = cost
        m[1] = now
        pending = in_flight[node_b]
        load_b = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        if not self._uniform:
            weights = self._weights
            load_a /= weights[node_a]
            load_b /= weights[node_b]
        return node_a if load_a < load_b else node_b
