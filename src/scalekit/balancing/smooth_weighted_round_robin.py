"""nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`)."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from operator import add

from .base import Balancer, E

__all__ = ["SLOW_START_SCALE", "SmoothWeightedRoundRobin"]

#: During slow start weights count in thousandths, so a weight-1 endpoint ramps too.
SLOW_START_SCALE = 1000


class SmoothWeightedRoundRobin(Balancer[E]):
    """Weighted rotation that spreads each endpoint's turns evenly, as nginx does.

    On every pick each eligible endpoint's `current_weight` grows by its
    effective weight, the endpoint with the largest `current_weight` wins
    (the first in insertion order on a tie) and loses the total of the
    effective weights (nginx `src/http/ngx_http_upstream_round_robin.c`,
    `ngx_http_upstream_get_peer`; commit 52327e0627f4). Weights 5, 1, 1
    give `a a b a c a a` rather than `a a a a a b c`:

    ```pycon
    >>> lb = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    >>> "".join(lb.pick() for _ in range(7))
    'aabacaa'

    ```

    Over every run of `total weight` picks from the start each endpoint
    is chosen exactly `weight` times. Ejected endpoints are skipped, as
    nginx skips peers that are down; an added endpoint starts with
    `current_weight` 0 and the others keep theirs. During slow start the
    weights are counted in thousandths (`SLOW_START_SCALE`) and a ramping
    endpoint's effective weight is `round(1000 * weight * factor)` (at
    least 1), so even weight 1 ramps as Envoy's formula says.

    Thread-safety: see `Balancer`.

    Runtime complexity: O(k + log n) per pick for k distinct weights (up to
    `GROUPED_MAX_WEIGHTS`), else O(n) like nginx (in C loops: map,
    max, index); O(n) per membership change, ejection or slow-start pick.

    Same picks, fewer steps: between two picks every `current_weight`
    grows by its weight, so endpoints of equal weight keep their order and
    only the front of each weight's queue can win. With few distinct
    weights the fast path keeps one heap per weight, ordered by
    `current_weight` and then insertion order, and compares the heads;
    the result is the very sequence nginx's loop gives.
    """

    #: The most distinct weights for which the per-weight heaps are used.
    GROUPED_MAX_WEIGHTS = 16

    def _init_state(self) -> None:
        # Parallel lists in insertion order, so the hot path runs in C (map, max, index).
        self._ids: list[E] = []
        self._w: list[int] = []
        self._cur: list[int] = []
        self._total = 0
        # The grouped fast path: weight -> heap of (-base, index), where an
        # endpoint's current_weight is base + tick * weight. None: use _cur.
        self._heaps: list[tuple[int, list[tuple[int, int]]]] | None = None
        self._tick = 0
        self._ungroupable = False  # too many distinct weights: skip trying until a change
        self._scale = 1  # weights count in units of 1 / _scale (1000 after a slow start)

    def _sync(self) -> None:
        """Fold the fast path's state back into `_cur` (before any change)."""
        heaps = self._heaps
        if heaps is None:
            return
        tick, cur = self._tick, self._cur
        for weight, heap in heaps:
            for neg_base, index in heap:
                cur[index] = tick * weight - neg_base
        self._heaps = None
        self._tick = 0

    def _grouped(self) -> list[tuple[int, list[tuple[int, int]]]] | None:
        """Build the per-weight heaps from `_cur`, or None if there are too many weights."""
        groups: dict[int, list[tuple[int, int]]] = {}
        for index, (current, weight) in enumerate(zip(self._cur, self._w, strict=True)):
            groups.setdefault(weight, []).append((-current, index))
            if len(groups) > self.GROUPED_MAX_WEIGHTS:
                self._ungroupable = True
                return None
        for heap in groups.values():
            heapq.heapify(heap)
        self._tick = 0
        self._heaps = list(groups.items())
        return self._heaps

    def _on_add(self, endpoint: E, weight: int) -> None:
        self._sync()
        self._ungroupable = False
        weight *= self._scale
        self._ids.append(endpoint)
        self._w.append(weight)
        self._cur.append(0)
        self._total += weight

    def _on_remove(self, endpoint: E, weight: int) -> None:
        self._sync()
        self._ungroupable = False
        index = self._ids.index(endpoint)
        self._total -= self._w[index]
        del self._ids[index], self._w[index], self._cur[index]

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._sync()
        self._ungroupable = False
        new *= self._scale
        index = self._ids.index(endpoint)
        self._total += new - self._w[index]
        self._w[index] = new

    def current_weights(self) -> dict[E, int]:
        """A copy of every endpoint's `current_weight` (nginx's name)."""
        with self._lock:
            self._sync()
            scale = self._scale
            return {ep: round(c / scale) for ep, c in zip(self._ids, self._cur, strict=True)}

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        if not excluded and not self._slow_starting():
            heaps = self._heaps
            if (
                heaps is None
                and not self._ungroupable
                and len(self._ids) > 2 * self.GROUPED_MAX_WEIGHTS
            ):
                heaps = self._grouped()
            if heaps is not None:
                return self._select_grouped(heaps)
            # current_weight += weight for all; the first maximum wins; it pays the total.
            current = list(map(add, self._cur, self._w))
            best = max(current)
            index = current.index(best)
            current[index] = best - self._total
            self._cur = current
            return self._ids[index]
        self._sync()
        now = self._clock()
        ids, weights = self._ids, self._w
        factors = [1.0 if ep in excluded else self._factor(ep, now) for ep in ids]
        ramping = any(f < 1.0 for f in factors)
        if ramping and self._scale == 1:
            self._rescale()
        current = self._cur
        total = 0
        index = -1
        best = 0
        for i, endpoint in enumerate(ids):
            if endpoint in excluded:
                continue  # nginx skips peers that are down: no weight added
            factor = factors[i]
            # Fixed point: weight 1 at factor 0.1 is 100 of 1000, not ceil(0.1) = 1.
            effective = weights[i]
            if factor < 1.0:
                effective = max(1, round(effective * factor))
            value = current[i] + effective
            current[i] = value
            total += effective
            if index < 0 or value > best:
                index, best = i, value
        current[index] = best - total
        return ids[index]

    def _rescale(self) -> None:
        """Count weights in thousandths from now on (the first slow start).

        Every `weight` and `current_weight` is multiplied by the same
        factor, so the sequence of picks is unchanged; the scale stays, so
        the hot path never checks for it.
        """
        scale = SLOW_START_SCALE
        self._cur = [c * scale for c in self._cur]
        self._w = [w * scale for w in self._w]
        self._total *= scale
        self._scale = scale

    def _select_grouped(self, heaps: list[tuple[int, list[tuple[int, int]]]]) -> E:
        tick = self._tick = self._tick + 1
        best_heap = heaps[0][1]
        best_value = tick * heaps[0][0] - best_heap[0][0]
        best_index = best_heap[0][1]
        for weight, heap in heaps:
            neg_base, index = heap[0]
            value = tick * weight - neg_base
            if value > best_value or (value == best_value and index < best_index):
                best_heap, best_value, best_index = heap, value, index
        neg_base, index = best_heap[0]
        heapq.heapreplace(best_heap, (neg_base + self._total, index))
        return self._ids[index]
