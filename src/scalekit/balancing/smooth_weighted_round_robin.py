"""nginx's smooth weighted round robin (``ngx_http_upstream_get_peer``)."""

from __future__ import annotations

import math
from collections.abc import Hashable
from operator import add

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
    Runtime complexity: O(n) per pick, like nginx (in C loops: map, max,
    index); O(n) per membership change.
    """

    def _init_state(self) -> None:
        # Parallel lists in insertion order, so the hot path runs in C (map, max, index).
        self._ids: list[Hashable] = []
        self._w: list[int] = []
        self._cur: list[int] = []
        self._total = 0

    def _on_add(self, endpoint: Hashable, weight: int) -> None:
        self._ids.append(endpoint)
        self._w.append(weight)
        self._cur.append(0)
        self._total += weight

    def _on_remove(self, endpoint: Hashable, weight: int) -> None:
        index = self._ids.index(endpoint)
        del self._ids[index], self._w[index], self._cur[index]
        self._total -= weight

    def _on_reweight(self, endpoint: Hashable, old: int, new: int) -> None:
        self._w[self._ids.index(endpoint)] = new
        self._total += new - old

    def current_weights(self) -> dict[Hashable, int]:
        """A copy of every endpoint's ``current_weight`` (nginx's name)."""
        with self._lock:
            return dict(zip(self._ids, self._cur, strict=True))

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> Hashable:
        if not excluded and not self._slow_starting():
            # current_weight += weight for all; the first maximum wins; it pays the total.
            current = list(map(add, self._cur, self._w))
            best = max(current)
            index = current.index(best)
            current[index] = best - self._total
            self._cur = current
            return self._ids[index]
        now = self._clock()
        current = self._cur
        total = 0
        index = -1
        best = 0
        for i, endpoint in enumerate(self._ids):
            if endpoint in excluded:
                continue  # nginx skips peers that are down: no weight added
            effective = math.ceil(self._w[i] * self._factor(endpoint, now))
            value = current[i] + effective
            current[i] = value
            total += effective
            if index < 0 or value > best:
                index, best = i, value
        current[index] = best - total
        return self._ids[index]
