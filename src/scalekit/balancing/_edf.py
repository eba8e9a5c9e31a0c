"""Envoy's earliest-deadline-first scheduler, shared by two strategies.

Each entry is due at `current time + 1 / weight` from when it was last
added; a pick takes the earliest deadline, ties going to the entry added
first, and moves the scheduler's time to that deadline (Envoy
`source/common/upstream/edf_scheduler.h`). Deadlines are plain numbers:
`WeightedRoundRobin` passes exact integers and
fractions, `LeastRequest` floats, as Envoy does.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from fractions import Fraction
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["EdfScheduler", "refresh_interval"]


def refresh_interval(health: HealthPolicy | None) -> float:
    """How often ramping deadlines are brought forward: a thousandth of the window."""
    slow = health.slow_start if health is not None else None
    return slow.window / 1000.0 if slow is not None else 0.0


E = TypeVar("E", bound=Hashable)

Number = int | float | Fraction


class EdfScheduler(Generic[E]):
    """A min-heap of `(deadline, order, endpoint)` with lazy removal.

    Not thread-safe on its own: the owning balancer holds its lock.

    Runtime complexity: O(log n) per add and pick.
    """

    __slots__ = ("_heap", "_live", "now", "order")

    def __init__(self) -> None:
        self.now: Number = 0
        self.order = 0
        self._heap: list[tuple[Number, int, E]] = []
        # endpoint -> order of its one live heap entry; others are stale.
        self._live: dict[E, int] = {}

    @classmethod
    def with_picks(cls, weights: dict[E, int], unit: int, picks: int) -> EdfScheduler[E]:
        """Envoy's `createWithPicks` in exact arithmetic.

        A scheduler over *weights* (time in units of `1 / unit`, *unit* a
        multiple of every weight) in the state it would reach after *picks*
        picks: each entry is first given `floor(picks * w / W)` emulated
        picks (one fewer when that lands exactly on `picks / W`, Envoy's
        guard), time is set to the latest emulated pick, and the few picks
        left over are made one by one. Envoy reduces *picks* modulo
        429496729 first, and so does this.

        Runtime complexity: O(n log n).
        """
        picks %= 429496729
        total = sum(weights.values())
        scheduler: EdfScheduler[E] = cls()
        steps: dict[E, Number] = {}
        heap: list[tuple[Number, int, E]] = []
        picked = 0
        now = 0
        for index, (endpoint, weight) in enumerate(weights.items()):
            floor = weight * picks // total
            if floor > 0 and floor * total >= picks * weight:
                floor -= 1
            step = unit // weight
            steps[endpoint] = step
            now = max(now, floor * step)
            heap.append(((floor + 1) * step, index, endpoint))
            scheduler._live[endpoint] = index
            picked += floor
        heapq.heapify(heap)
        scheduler._heap = heap
        scheduler.now = now
        scheduler.order = len(heap)
        for _ in range(picks - picked):
            scheduler.pick_fixed(steps)
        return scheduler

    @classmethod
    def with_picks_float(
        cls,
        weights: dict[E, float],
        picks: int,
        increment: Callable[[E], Number],
    ) -> EdfScheduler[E]:
        """Envoy's `createWithPicks` in doubles, epsilon included, as Envoy runs it.

        *weights* are the initial weights; the leftover picks requeue with
        *increment* (1 / the weight at that moment).
        """
        picks %= 429496729
        augmented = {ep: w + 1e-13 for ep, w in weights.items()}
        total = sum(augmented.values())
        scheduler: EdfScheduler[E] = cls()
        heap: list[tuple[Number, int, E]] = []
        picked = 0
        now = 0.0
        for index, (endpoint, weight) in enumerate(augmented.items()):
            floor = int(weight * picks / total)
            if floor > 0 and floor / weight >= picks / total:
                floor -= 1
            now = max(now, floor / weight)
            heap.append(((floor + 1) / weight, index, endpoint))
            scheduler._live[endpoint] = index
            picked += floor
        heapq.heapify(heap)
        scheduler._heap = heap
        scheduler.now = now
        scheduler.order = len(heap)
        for _ in range(picks - picked):
            scheduler.pick_and_add(increment)
        return scheduler

    def add(self, endpoint: E, increment: Number) -> None:
        """Queue *endpoint* due at `now + increment` (`increment` = 1 / weight)."""
        deadline = self.now + increment
        if isinstance(deadline, Fraction) and deadline.denominator == 1:
            deadline = deadline.numerator
        heapq.heappush(self._heap, (deadline, self.order, endpoint))
        self._live[endpoint] = self.order
        self.order += 1

    def bring_forward(
        self,
        ramping: dict[E, tuple[Number, Number, float]],
        increment_at: Callable[[E, float], Number],
        now: float,
    ) -> None:
        """Move ramping endpoints' deadlines earlier as their slow-start factor grows.

        *ramping* maps an endpoint queued during its ramp to `(base,
        deadline, queued_at)`: the scheduler time it was queued at, the
        deadline it got then and the clock's time then. Each is due again at
        `base + increment_at(endpoint, t)`, with `t` halfway between
        `queued_at` and *now* (the factor over that span, on average), if
        that is earlier (never before the scheduler's time): a factor that
        starts near 0 would otherwise queue the endpoint past the end of its
        ramp. Endpoints no longer queued are dropped.
        """
        live = self._live
        for endpoint, (base, deadline, queued_at) in list(ramping.items()):
            if endpoint not in live:
                del ramping[endpoint]
                continue
            due = base + increment_at(endpoint, (queued_at + now) / 2)
            if due < self.now:
                due = self.now
            if due < deadline:
                if isinstance(due, Fraction) and due.denominator == 1:
                    due = due.numerator
                heapq.heappush(self._heap, (due, self.order, endpoint))
                live[endpoint] = self.order
                self.order += 1
                ramping[endpoint] = (base, due, queued_at)

    def discard(self, endpoint: E) -> None:
        """Forget *endpoint*; its queued entry is skipped when it surfaces."""
        self._live.pop(endpoint, None)

    def pop(self) -> E:
        """Take the entry with the earliest deadline and advance time to it.

        The caller adds it back. Raises IndexError when nothing is queued.
        """
        heap = self._heap
        live = self._live
        while True:
            deadline, order, endpoint = heapq.heappop(heap)
            if live.get(endpoint) == order:
                del live[endpoint]
                self.now = deadline
                return endpoint

    def pick_fixed(self, steps: dict[E, Number]) -> E:
        """Pop the earliest entry and requeue it `steps[endpoint]` later, in one sift."""
        heap = self._heap
        live = self._live
        while True:
            deadline, order, endpoint = heap[0]
            if live.get(endpoint) == order:
                self.now = deadline
                order = self.order
                self.order = order + 1
                live[endpoint] = order
                heapq.heapreplace(heap, (deadline + steps[endpoint], order, endpoint))
                return endpoint
            heapq.heappop(heap)

    def pick_and_add(self, increment: Callable[[E], Number]) -> E:
        """Pop the earliest entry and requeue it `increment(endpoint)` later.

        *increment* is evaluated after the pop, as Envoy's `pickAndAdd`
        evaluates `calculate_weight`.
        """
        heap = self._heap
        live = self._live
        while True:
            deadline, order, endpoint = heap[0]
            if live.get(endpoint) == order:
                self.now = deadline
                step = increment(endpoint)
                order = self.order
                self.order = order + 1
                live[endpoint] = order
                heapq.heapreplace(heap, (deadline + step, order, endpoint))
                return endpoint
            heapq.heappop(heap)

    def scale(self, factor: int) -> None:
        """Multiply every deadline and the time by *factor* (> 0): order is kept."""
        self.now = self.now * factor
        self._heap = [(deadline * factor, order, ep) for deadline, order, ep in self._heap]

    def compact(self) -> None:
        """Drop stale entries once they outnumber live ones (bounds memory)."""
        if len(self._heap) > 2 * len(self._live) + 16:
            live = self._live
            self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
            heapq.heapify(self._heap)

    def deadlines(self) -> dict[E, Number]:
        """Each live endpoint's next deadline (for tests and introspection)."""
        live = self._live
        return {ep: d for d, order, ep in self._heap if live.get(ep) == order}

    def __len__(self) -> int:
        return len(self._live)
