"""Weighted round robin by Envoy's earliest-deadline-first rule, in exact arithmetic."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable
from fractions import Fraction
from typing import TYPE_CHECKING

from .._validation import non_negative_int
from ._edf import EdfScheduler, Number
from ._edf import refresh_interval as _refresh_interval
from .base import Balancer, E, Endpoints

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["WeightedRoundRobin"]

_RAMP_BITS = 20  # a ramping endpoint's increment is a multiple of 2**-_RAMP_BITS units


class WeightedRoundRobin(Balancer[E]):
    """Envoy's weighted round robin rule (earliest deadline first) in exact arithmetic.

    Each endpoint is due again `1 / weight` after its last turn; the
    earliest deadline goes next and equal deadlines go in the order the
    entries were queued (Envoy `edf_scheduler.h`). What matches Envoy is
    that rule, its tie-break and `createWithPicks`' emulation of the
    offset; the sequence itself does not always: Envoy keeps deadlines in
    `double`, and where its sums round (weights 10 and 1: ten steps of
    0.1 fall short of 1.0) it orders ties differently. Here time is counted
    in units of `1 / lcm(weights)`, so every deadline is an exact integer
    (during slow start, an exact fraction: a ramping endpoint's increment
    `1 / (weight * factor)` is rounded up to a multiple of `2**-20` units),
    and over `total weight` picks from the start each endpoint is chosen
    exactly `weight` times. Unlike Envoy, a ramping endpoint's deadline is
    brought forward as its factor grows, at most every thousandth of the
    window (to its last turn plus the
    increment at the factor halfway since then): with a factor that starts
    near 0 (`min_weight_percent=0`), Envoy's first deadline lies past the
    end of the ramp.

    ```pycon
    >>> lb = WeightedRoundRobin({"a": 5, "b": 1, "c": 1}, offset=0)
    >>> "".join(lb.pick() for _ in range(7))
    'aaaabca'

    ```

    A new weight takes effect when the endpoint is next scheduled. Envoy
    rebuilds the whole schedule when membership changes; scalekit instead
    keeps every other endpoint's deadline, queues an added endpoint at
    `now + 1 / weight` and drops a removed one when its entry surfaces,
    so a change does not reshuffle the rotation. An ejected endpoint keeps
    taking its turns in the schedule, which passes them on.

    Args:
        endpoints: ids (weight 1) or a mapping id -> positive `int` weight.
        offset: picks the schedule starts past, as Envoy's
            `EdfScheduler::createWithPicks(hosts, weight, seed)` emulates them
            so that clients do not start in step (entries tied at the start may
            come in a different order than after real picks, as in Envoy);
            `None` (the default) draws a 32-bit seed from *rng*, like Envoy.
        clock: see [Balancer][scalekit.balancing.Balancer].
        rng: see [Balancer][scalekit.balancing.Balancer].
        health: see [Balancer][scalekit.balancing.Balancer].

    Raises:
        ConfigurationError: see [Balancer][scalekit.balancing.Balancer];
            *offset* not an `int` >= 0.

    Thread-safety: see [Balancer][scalekit.balancing.Balancer].

    Runtime complexity: O(log n) per pick; O(log n) per membership change,
    O(n) when a new weight changes the lcm.
    """

    def __init__(
        self,
        endpoints: Endpoints[E],
        *,
        offset: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        if offset is not None:
            non_negative_int("offset", offset)
        super().__init__(endpoints, clock=clock, rng=rng, health=health)
        if offset is None:
            offset = self._rng.getrandbits(32)
        if offset:
            self._edf = EdfScheduler.with_picks(self._weights, self._unit, offset)

    def _init_state(self) -> None:
        self._edf = EdfScheduler()
        self._unit: int = 1  # time is counted in 1 / _unit; _unit is a multiple of every weight
        self._step: dict[E, Number] = {}  # _unit // weight: 1 / weight in our unit
        # endpoints queued during their ramp -> (time queued at, deadline)
        self._ramping: dict[E, tuple[Number, Number, float]] = {}
        self._refreshed = -math.inf  # the clock when ramping deadlines were last brought forward

    def _grow_unit(self, weight: int) -> None:
        if self._unit % weight:
            new_unit = math.lcm(self._unit, weight)
            self._edf.scale(new_unit // self._unit)
            self._unit = new_unit
            self._step = {ep: new_unit // w for ep, w in self._weights.items()}

    def _increment(self, endpoint: E) -> Number:
        return self._increment_at(endpoint, self._clock())

    def _increment_at(self, endpoint: E, when: float) -> Number:
        """`1 / (weight * factor)` in our unit, the factor taken at *when*.

        A ramping endpoint's increment is rounded up to a multiple of
        `2**-20` units, so that deadlines stay fractions of bounded size.
        """
        if self._slow_starting():
            factor = self._factor(endpoint, when)
            if factor < 1.0:
                weight = self._weights[endpoint]
                exact = Fraction(self._unit << _RAMP_BITS, weight) / Fraction(factor)
                return Fraction(math.ceil(exact), 1 << _RAMP_BITS)
        return self._step[endpoint]

    def _on_add(self, endpoint: E, weight: int) -> None:
        self._grow_unit(weight)
        self._step[endpoint] = self._unit // weight
        self._edf.add(endpoint, self._step[endpoint])
        if self._slow_starting():
            self._track(endpoint, self._step[endpoint])

    def _track(self, endpoint: E, increment: Number) -> None:
        """Remember when a ramping endpoint was queued, to bring it forward later."""
        now = self._clock()
        if self._factor(endpoint, now) < 1.0:
            base = self._edf.now
            self._ramping[endpoint] = (base, base + increment, now)
        else:
            self._ramping.pop(endpoint, None)

    def _on_remove(self, endpoint: E, weight: int) -> None:
        self._edf.discard(endpoint)
        self._edf.compact()
        del self._step[endpoint]
        self._ramping.pop(endpoint, None)

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._grow_unit(new)
        self._step[endpoint] = self._unit // new

    def deadlines(self) -> dict[E, Fraction]:
        """Each endpoint's next deadline in scheduler time (1 = one full cycle)."""
        with self._lock:
            return {ep: Fraction(d) / self._unit for ep, d in self._edf.deadlines().items()}

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        edf = self._edf
        if not excluded and not self._slow_starting():
            return edf.pick_fixed(self._step)
        ramping = self._ramping
        if ramping:
            now = self._clock()
            if not now - self._refreshed < _refresh_interval(self._health):
                self._refreshed = now
                edf.bring_forward(ramping, self._increment_at, now)
        while True:
            endpoint = edf.pop()
            increment = self._increment(endpoint)
            edf.add(endpoint, increment)
            if ramping or self._slow_starting():
                self._track(endpoint, increment)
            if endpoint not in excluded:
                return endpoint
