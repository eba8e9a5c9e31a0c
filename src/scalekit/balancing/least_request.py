"""Envoy's least request: power of d choices, or weights over active requests."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from .._validation import non_negative_int, non_negative_number, positive_int
from ._edf import EdfScheduler, Number
from ._edf import refresh_interval as _refresh_interval
from .base import Balancer, E, Endpoints

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["LeastRequest"]


class LeastRequest(Balancer[E]):
    """Send each request where fewest are in flight, as Envoy's least request does.

    With equal weights: draw *choice_count* endpoints at random (with
    replacement) and keep the one with the fewest requests in flight, the
    first drawn on a tie (Envoy's `unweightedHostPick`; Azar et al.'s
    power of d choices). With unequal weights, or while an endpoint is in
    slow start: Envoy's earliest-deadline-first schedule in which each
    endpoint's weight, recomputed whenever it is scheduled, is
    `weight * slow_start_factor / (active + 1) ** active_request_bias`.
    Unlike Envoy, a ramping endpoint's deadline is also brought forward as
    its factor grows, at most every thousandth of the window (to its last
    turn plus `1 / weight` at the factor
    halfway since then): with a factor that starts near 0
    (`min_weight_percent=0`), Envoy's first deadline lies past the end of
    the ramp, and the endpoint would get nothing until then.

    Args:
        choice_count: d, the endpoints drawn per pick (>= 1, default 2).
        active_request_bias: the exponent on `active + 1` (>= 0,
            default 1.0; 0 turns the weighted case into weighted round robin).
        offset: picks the weighted schedule starts past, by Envoy's
            `createWithPicks` in doubles (`None`: a seed drawn from *rng*).

    Raises:
        ConfigurationError: see `Balancer`; bad *choice_count*
            or *active_request_bias*.

    Thread-safety: see `Balancer`.

    Runtime complexity: O(d) per pick with equal weights, O(log n) with
    unequal ones; O(n) when ejections change the candidate set.
    """

    def __init__(
        self,
        endpoints: Endpoints[E],
        *,
        choice_count: int = 2,
        active_request_bias: float = 1.0,
        offset: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        self._choice_count = positive_int("choice_count", choice_count)
        self._bias = non_negative_number("active_request_bias", active_request_bias)
        self._offset = None if offset is None else non_negative_int("offset", offset)
        super().__init__(endpoints, clock=clock, rng=rng, health=health)

    def _init_state(self) -> None:
        self._ids: list[E] = []
        self._weight_counts: Counter[int] = Counter()
        self._edf: EdfScheduler[E] | None = None
        # endpoints queued during their ramp -> (time queued at, deadline, clock then)
        self._ramping: dict[E, tuple[Number, Number, float]] = {}
        self._refreshed = -math.inf  # the clock when ramping deadlines were last brought forward

    def _on_add(self, endpoint: E, weight: int) -> None:
        self._ids.append(endpoint)
        self._weight_counts[weight] += 1
        if self._edf is not None:
            self._edf.add(endpoint, 1.0 / self._dynamic_weight(endpoint))
            if self._slow_starting():
                self._track(self._edf, endpoint)

    def _on_remove(self, endpoint: E, weight: int) -> None:
        self._ids.remove(endpoint)
        self._uncount(weight)
        if self._edf is not None:
            self._edf.discard(endpoint)
            self._edf.compact()
        self._ramping.pop(endpoint, None)

    def _uncount(self, weight: int) -> None:
        self._weight_counts[weight] -= 1
        if not self._weight_counts[weight]:
            del self._weight_counts[weight]

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._uncount(old)
        self._weight_counts[new] += 1

    def _dynamic_weight(self, endpoint: E, when: float | None = None) -> float:
        weight = float(self._weights[endpoint])
        if self._slow_starting():
            weight *= self._factor(endpoint, self._clock() if when is None else when)
        active = self._in_flight[endpoint]
        if self._bias == 1.0:
            return weight / (active + 1)
        if self._bias == 0.0:
            return weight
        return float(weight / (active + 1) ** self._bias)

    def _increment(self, endpoint: E) -> float:
        return 1.0 / self._dynamic_weight(endpoint)

    def _increment_at(self, endpoint: E, when: float) -> float:
        return 1.0 / self._dynamic_weight(endpoint, when)

    def _track_built(self, edf: EdfScheduler[E]) -> None:
        """Track the endpoints that ramp in a schedule just built."""
        self._ramping.clear()
        if not self._slow_starting():
            return
        now = self._clock()
        base = float(edf.now)
        for endpoint, deadline in edf.deadlines().items():
            if self._factor(endpoint, now) < 1.0:
                self._ramping[endpoint] = (base, float(deadline), now)

    def _track(self, edf: EdfScheduler[E], endpoint: E) -> None:
        """Remember when a ramping endpoint was queued, to bring it forward later."""
        now = self._clock()
        if self._factor(endpoint, now) < 1.0:
            base = float(edf.now)
            self._ramping[endpoint] = (base, base + self._increment(endpoint), now)
        else:
            self._ramping.pop(endpoint, None)

    def _build_edf(self) -> EdfScheduler[E]:
        weights = {ep: self._dynamic_weight(ep) for ep in self._ids}
        offset = self._offset if self._offset is not None else self._rng.getrandbits(32)
        return EdfScheduler.with_picks_float(weights, offset, self._increment)

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        if len(self._weight_counts) > 1 or self._slow_starting():
            edf = self._edf
            if edf is None:
                edf = self._edf = self._build_edf()
                self._track_built(edf)
            increment = self._increment
            ramping = self._ramping
            slow = self._slow_starting()
            if ramping:
                now = self._clock()
                if not now - self._refreshed < _refresh_interval(self._health):
                    self._refreshed = now
                    edf.bring_forward(ramping, self._increment_at, now)
            while True:
                endpoint = edf.pick_and_add(increment)
                if slow:
                    self._track(edf, endpoint)
                if endpoint not in excluded:
                    return endpoint
        self._edf = None
        self._ramping.clear()
        hosts = self._ids if not excluded else [ep for ep in self._ids if ep not in excluded]
        in_flight = self._in_flight
        random_ = self._rng.random
        size = len(hosts)
        candidate = hosts[int(random_() * size)]
        least = in_flight[candidate]
        for _ in range(self._choice_count - 1):
            sampled = hosts[int(random_() * size)]
            active = in_flight[sampled]
            if active < least:
                candidate, least = sampled, active
        return candidate
