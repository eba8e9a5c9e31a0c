"""Random choice, uniform or in proportion to weight."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from itertools import accumulate

from .base import Balancer, E

__all__ = ["RandomBalancer"]


class RandomBalancer(Balancer[E]):
    """Pick an endpoint at random, with probability weight / total weight.

    Ejected endpoints are left out of the draw; during slow start an
    endpoint's weight is scaled by its slow-start factor.

    Thread-safety: see `Balancer`.

    Runtime complexity: O(1) per pick with equal weights, O(log n) with
    unequal ones (O(n) while endpoints are ejected or slow-starting);
    O(n) per membership change.
    """

    def _init_state(self) -> None:
        self._ids: list[E] = []
        self._cumulative: list[int] = []
        self._uniform = True

    def _on_add(self, endpoint: E, weight: int) -> None:
        if self._ids and weight != self._weights[self._ids[0]]:
            self._uniform = False
        self._ids.append(endpoint)
        self._cumulative.append((self._cumulative[-1] if self._cumulative else 0) + weight)

    def _on_remove(self, endpoint: E, weight: int) -> None:
        self._rebuild()

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        self._ids = list(self._weights)
        weights = list(self._weights.values())
        self._uniform = len(set(weights)) <= 1
        self._cumulative = list(accumulate(weights))

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        rng = self._rng
        if not excluded and not self._slow_starting():
            if self._uniform:
                return self._ids[int(rng.random() * len(self._ids))]
            cumulative = self._cumulative
            return self._ids[bisect_right(cumulative, rng.random() * cumulative[-1])]
        now = self._clock()
        ids = [ep for ep in self._ids if ep not in excluded]
        scaled = list(accumulate(self._weights[ep] * self._factor(ep, now) for ep in ids))
        index = bisect_right(scaled, rng.random() * scaled[-1])
        return ids[min(index, len(ids) - 1)]
