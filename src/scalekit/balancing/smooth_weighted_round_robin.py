"""nginx's smooth weighted round robin (``ngx_http_upstream_get_peer``)."""

from __future__ import annotations

import math
from collections.abc import Hashable

from .base import Balancer

__all__ = ["SmoothWeightedRoundRobin"]


class SmoothWeightedRoundRobin(Balancer):
    """Weighted rotation that spreads each endpoint's turns evenly, as nginx does.

    On every pick each eligible endpoint's ``current_weight`` grows by its
    effective weight, the endpoint with the largest ``current_weight`` wins
    (the first in insertion order on a tie) and loses the total of the
    effective weights (nginx ``src/http/ngx_http_upstream_round_robin.c``,
    ``ngx_http_upstream_get_peer``; commit 52327e0627f4). Weights 5, 1, 1
    give ``a a b a c a a`` rather than ``a a a a a b c``:

    >>> lb = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    >>> "".join(lb.pick() for _ in range(7))
    'aabacaa'

    Over every run of ``total weight`` picks from the start each endpoint
    is chosen exactly ``weight`` times. Ejected endpoints are skipped, as
    nginx skips peers that are down; an added endpoint starts with
    ``current_weight`` 0 and the others keep theirs. During slow start the
    effective weight is ``ceil(weight * factor)``.

    Thread-safety: see :class:`Balancer`.
    Runtime complexity: O(n) per pick, like nginx; O(1) per membership change.
    """

    def _init_state(self) -> None:
        self._current: dict[Hashable, int] = {}

    def _on_add(self, endpoint: Hashable, weight: int) -> None:
        self._current[endpoint] = 0

    def _on_remove(self, endpoint: Hashable, weight: int) -> None:
        del self._current[endpoint]

    def current_weights(self) -> dict[Hashable, int]:
        """A copy of every endpoint's ``current_weight`` (nginx's name)."""
        with self._lock:
            return dict(self._current)

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> Hashable:
        current = self._current
        weights = self._weights
        total = 0
        best: Hashable = None
        best_weight = 0
        found = False
        if not excluded and not self._slow_starting():
            for endpoint, weight in weights.items():
                value = current[endpoint] + weight
                current[endpoint] = value
                total += weight
                if not found or value > best_weight:
                    best, best_weight, found = endpoint, value, True
        else:
            now = self._clock()
            for endpoint, weight in weights.items():
                if endpoint in excluded:
                    continue
                effective = math.ceil(weight * self._factor(endpoint, now))
                value = current[endpoint] + effective
                current[endpoint] = value
                total += effective
                if not found or value > best_weight:
                    best, best_weight, found = endpoint, value, True
        current[best] = best_weight - total
        return best
