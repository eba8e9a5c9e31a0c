"""Finagle's Peak EWMA: latency that jumps to peaks and decays, times load."""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from .._validation import positive_number
from ..exceptions import ConfigurationError
from .base import MAX_WEIGHT, Balancer, E, Endpoints, unknown_endpoint

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["PeakEWMA"]

# Finagle's penalty for an endpoint with requests out and no latency seen yet:
# Long.MaxValue >> 16 nanoseconds, kept in the same unit as our seconds.
PENALTY = float((2**63 - 1) >> 16) / 1e9

# The last part of a slow-start factor's rise (0.8 to 1) over which equal
# weights blend from the ramp's rule into plain P2C.
BLEND = 0.2


def _is_weight(weight: object) -> bool:
    """Whether *weight* is a valid weight (else `Balancer` raises its own error)."""
    return isinstance(weight, int) and not isinstance(weight, bool) and 1 <= weight <= MAX_WEIGHT


def _check_total(total: int, change: str) -> None:
    """Refuse a pool whose total weight passes 2**53 (the float draw's exact range)."""
    if total > MAX_WEIGHT:
        raise ConfigurationError(
            f"PeakEWMA's total weight must be at most 2**53, got {total}{change}: "
            "its weighted draw keeps running sums of the weights as floats"
        )


class PeakEWMA(Balancer[E]):
    """Prefer the endpoint with the lowest peak-sensitive latency times load.

    Each endpoint keeps `cost`, a moving average of its latency that
    jumps straight to any higher observation and otherwise decays with
    time constant *decay* (weight `exp(-elapsed / decay)`, taking the
    time between observations into account). Its load is
    `cost * (in_flight + 1)`, or a large penalty plus `in_flight` while
    it has requests out and `cost` is still 0. Each pick draws two
    distinct endpoints at random and keeps the one with the lower load
    (Finagle `PeakEwma.scala` with `P2C`; Linkerd's "Beyond Round
    Robin"). Reading the load first decays `cost` toward 0, as Finagle
    does.

    Unequal weights (with equal weights the rule above is Finagle's,
    exactly): both endpoints are drawn with probability proportional to
    their weight (the second among the others), as Finagle's weighted P2C
    draws them. Finagle then keeps the lower `load / weight`; scalekit
    compares the load of one unit of each weight, `cost * (in_flight /
    weight + 1)` (an endpoint of weight w counts as w endpoints sharing its
    requests), so that one request at a time the heavier endpoint does not
    win every comparison. The first is kept if its
    unit load is not higher, else with probability `theirs / its`, else the
    second is picked. Endpoints whose latencies match get shares near
    their weights' only while the weights are close: light endpoints are
    over-served (measured, 2:1 and 3:1:1: up to 1.25x their weight share;
    10:1: up to 2.2x; 100:1:1: up to 6x; see docs/balancing.md); a slower
    or busier one gets less. A ramping
    endpoint (slow start) is drawn with `weight * factor` instead, which
    reaches its weight exactly when its ramp ends: its share does not step
    there.

    Slow start with equal weights scales the selection probability and
    stays load-aware: while an endpoint ramps, it is drawn as a candidate with probability
    `weight * factor / sum(weight * factor)` (Envoy's ramp, as weighted
    random would give it), and that candidate is then compared, by
    `load / weight` as in P2C, with an endpoint at full weight drawn at
    random; the ramping one is kept with probability
    `min(1, peer_load / its_load)`, else the peer is picked (an endpoint
    that has neither latency nor requests out has load 0 and is kept). The
    endpoints at full weight share the rest by P2C. When every available
    endpoint ramps (all were replaced, or the only old one is ejected), both
    candidates are drawn by `weight * factor` and compared as unequal weights
    are below, so endpoints ramping together share the picks evenly (as in
    Envoy, where a factor that applies to every host skews nothing). So a ramping endpoint
    with the latency and in-flight count of its peers gets its ramp share,
    and one whose `load / weight` is r times a peer's keeps at most 1/r of
    it: a new endpoint 200 times slower than its peers gets well under 1%
    of the picks while it ramps (Envoy's least request likewise divides a
    ramping host's weight by its in-flight count). Dividing
    the load by the factor instead would starve it: P2C compares loads, and
    a load ten times higher loses every comparison until the factor
    reaches 1. Over the last fifth of the factor's rise (from 0.8, for the
    slowest-rising endpoint when several ramp) a growing part of the picks,
    all of them at factor 1, is plain P2C over every endpoint, so the share
    of a new endpoint faster or slower than its peers reaches P2C's without
    a step when the ramp ends (a faster one gets more than its ramp share
    there).

    A release without `latency` lowers the in-flight count but teaches
    the average nothing; `request()` always measures it.

    Args:
        endpoints: ids (weight 1) or a mapping id -> positive `int` weight.
        decay: the time constant tau in seconds (Finagle's default 10 s).
        clock: see [Balancer][scalekit.balancing.Balancer].
        rng: see [Balancer][scalekit.balancing.Balancer].
        health: see [Balancer][scalekit.balancing.Balancer].

    Raises:
        ConfigurationError: see [Balancer][scalekit.balancing.Balancer];
            *decay* not > 0; the total weight above `2**53` (the weighted
            draw keeps running sums of the weights as floats), here or on
            `add` or `reweight`.

    Thread-safety: see [Balancer][scalekit.balancing.Balancer].

    Runtime complexity: O(1) per pick and release with equal weights,
    O(log n) with unequal ones; O(n) while endpoints are ejected or ramp.
    """

    def __init__(
        self,
        endpoints: Endpoints[E],
        *,
        decay: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        self._tau = positive_number("decay", decay)
        super().__init__(endpoints, clock=clock, rng=rng, health=health)
        _check_total(sum(self._weights.values()), "")

    def add(self, endpoint: E, weight: int = 1) -> None:
        """Add *endpoint* with *weight*; see [Balancer][scalekit.balancing.Balancer].

        Raises:
            ConfigurationError: as `Balancer.add`; or the total weight would
                pass `2**53`.
            ArgumentTypeError: as `Balancer.add`.
        """
        if _is_weight(weight):
            with self._lock:
                total = sum(self._weights.values()) + weight
            _check_total(total, f" (adding {endpoint!r} with weight {weight})")
        super().add(endpoint, weight)

    def reweight(self, endpoint: E, weight: int) -> None:
        """Change *endpoint*'s weight; see [Balancer][scalekit.balancing.Balancer].

        Raises:
            ConfigurationError: as `Balancer.reweight`; or the total weight
                would pass `2**53`.
        """
        if _is_weight(weight):
            with self._lock:
                total = sum(self._weights.values()) - self._weights.get(endpoint, 0) + weight
            _check_total(total, f" (giving {endpoint!r} weight {weight})")
        super().reweight(endpoint, weight)

    def _init_state(self) -> None:
        self._ids: list[E] = []
        self._metric: dict[E, list[float]] = {}  # endpoint -> [cost, stamp]
        self._uniform = True
        self._cumulative: list[float] | None = None  # running sums of the weights of _ids

    def _on_add(self, endpoint: E, weight: int) -> None:
        if self._ids and weight != self._weights[self._ids[0]]:
            self._uniform = False
        self._ids.append(endpoint)
        self._metric[endpoint] = [0.0, self._clock()]
        self._cumulative = None

    def _on_remove(self, endpoint: E, weight: int) -> None:
        self._ids.remove(endpoint)
        del self._metric[endpoint]
        self._uniform = len(set(self._weights.values())) <= 1
        self._cumulative = None

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._uniform = len(set(self._weights.values())) <= 1
        self._cumulative = None

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

    def cost(self, endpoint: E) -> float:
        """The endpoint's current latency estimate in seconds, decayed to now.

        Raises:
            ConfigurationError: *endpoint* is not in the pool.
        """
        with self._lock:
            metric = self._metric.get(endpoint)
            if metric is None:
                raise unknown_endpoint("cost", endpoint)
            self._observe(metric, 0.0, self._clock())
            return metric[0]

    def _on_release(self, endpoint: E, latency: float | None, ok: bool) -> None:
        if latency is not None:
            self._observe(self._metric[endpoint], latency, self._clock())

    def _ramp(self, hosts: list[E], now: float) -> E | list[E]:
        """During slow start: a ramping endpoint drawn by its share, or the hosts for P2C.

        A ramping endpoint is the candidate for `weight * factor /
        sum(weight * factor)` of the picks, as a weighted random choice
        would give it, and keeps each with probability `min(1, peer_load /
        its_load)` against a peer at full weight drawn at random (loads
        per unit weight); the endpoints at full weight share the rest by
        P2C. When no available endpoint is at full weight, the weighted
        draw of `_weighted` picks among the ramping ones.
        """
        weights = self._weights
        full: list[E] = []
        ramping: list[tuple[E, float]] = []
        total = 0.0
        lowest = 1.0
        for ep in hosts:
            factor = self._factor(ep, now)
            share = weights[ep] * factor
            total += share
            if factor < 1.0:
                ramping.append((ep, share))
                lowest = min(lowest, factor)
            else:
                full.append(ep)
        if not ramping:
            return hosts
        # Over the last BLEND of the factor's rise, a growing part of the picks
        # (all of them at factor 1) is plain P2C over every endpoint, so that
        # the share of an endpoint faster or slower than its peers reaches what
        # P2C gives it continuously instead of stepping when the ramp ends.
        blend = (lowest - (1.0 - BLEND)) / BLEND
        if blend > 0.0 and self._rng.random() < blend:
            return hosts
        if not full:
            # Every available endpoint ramps (all were replaced, or the only old
            # one is ejected): the factors apply to all of them, so draw both
            # candidates by `weight * factor` and compare their loads.
            return self._weighted(hosts, now, ramping=True)
        u = self._rng.random() * total
        for ep, share in ramping:
            if u < share:
                # Load-aware: the ramping candidate against a peer at full weight.
                peer = full[int(self._rng.random() * len(full))]
                mine, theirs = self._load(ep, now), self._load(peer, now)
                if mine <= theirs or self._rng.random() * mine < theirs:
                    return ep
                return peer
            u -= share
        return full

    def _load(self, endpoint: E, now: float) -> float:
        """`load / weight` of *endpoint* at *now*, decaying its cost as a pick does."""
        m = self._metric[endpoint]
        cost, stamp = m
        if cost and now > stamp:
            cost *= math.exp((stamp - now) / self._tau)
            m[0] = cost
        m[1] = now
        pending = self._in_flight[endpoint]
        load = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        return load / self._weights[endpoint]

    def _weighted(self, hosts: list[E], now: float, ramping: bool) -> E:
        """Unequal weights: a candidate drawn by weight, kept against a second by load.

        Both are drawn with probability proportional to `weight * factor`
        (the factor of a ramping endpoint, else 1), the second among the
        others; the first is kept if its load per unit of weight
        (`_unit_load`) is not higher, else with probability `theirs / its`.
        So endpoints whose latency and in-flight count per unit of weight
        are alike get shares proportional to their weights, and a ramping
        endpoint's draw probability reaches its full weight's exactly when
        its ramp ends.
        """
        size = len(hosts)
        if size == 1:
            return hosts[0]
        weights = self._weights
        cumulative = self._cumulative
        if ramping or hosts is not self._ids or cumulative is None:
            shares = (
                [weights[ep] * self._factor(ep, now) for ep in hosts]
                if ramping
                else [float(weights[ep]) for ep in hosts]
            )
            cumulative = list(itertools.accumulate(shares))
            if not ramping and hosts is self._ids:
                self._cumulative = cumulative
        total = cumulative[-1]
        random_ = self._rng.random
        bisect_right = bisect.bisect_right
        a = bisect_right(cumulative, random_() * total)
        if a >= size:
            a = size - 1
        start = cumulative[a - 1] if a else 0.0
        share = cumulative[a] - start
        u = random_() * (total - share)
        if u >= start:
            u += share  # skip the first candidate's interval
        b = bisect_right(cumulative, u)
        if b >= size:
            b = size - 1
        if b == a:  # rounding at an interval's edge
            b = a + 1 if a + 1 < size else a - 1
        first, second = hosts[a], hosts[b]
        # _unit_load of both, inlined: this is the hot path of unequal weights.
        metric, in_flight, tau, exp = self._metric, self._in_flight, self._tau, math.exp
        m = metric[first]
        cost, stamp = m
        if cost and now > stamp:
            cost *= exp((stamp - now) / tau)
            m[0] = cost
        m[1] = now
        pending = in_flight[first] / weights[first]
        mine = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        m = metric[second]
        cost, stamp = m
        if cost and now > stamp:
            cost *= exp((stamp - now) / tau)
            m[0] = cost
        m[1] = now
        pending = in_flight[second] / weights[second]
        theirs = PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)
        if mine <= theirs or random_() * mine < theirs:
            return first
        return second

    def _unit_load(self, endpoint: E, now: float) -> float:
        """The load of one unit of *endpoint*'s weight: `cost * (in_flight / weight + 1)`.

        An endpoint of weight w counts as w endpoints of weight 1 sharing its
        requests, each with Finagle's load; it decays the cost as a pick does.
        """
        m = self._metric[endpoint]
        cost, stamp = m
        if cost and now > stamp:
            cost *= math.exp((stamp - now) / self._tau)
            m[0] = cost
        m[1] = now
        pending = self._in_flight[endpoint] / self._weights[endpoint]
        return PENALTY + pending if cost == 0.0 and pending != 0 else cost * (pending + 1)

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        hosts = self._ids if not excluded else [ep for ep in self._ids if ep not in excluded]
        now = self._clock()
        health = self._health
        if not self._uniform:
            return self._weighted(hosts, now, health is not None and health._any_slow_start())
        if health is not None and health._any_slow_start():
            drawn = self._ramp(hosts, now)
            if not isinstance(drawn, list):
                return drawn
            hosts = drawn
        size = len(hosts)
        if size == 1:
            return hosts[0]
        random_ = self._rng.random
        a = int(random_() * size)
        b = int(random_() * (size - 1))
        if b >= a:
            b += 1
        node_a, node_b = hosts[a], hosts[b]
        # Finagle's observe(0.0) (decay toward zero for the time since the last
        # look), then the load; inlined for both candidates: this is the hot path.
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
        return node_a if load_a < load_b else node_b
