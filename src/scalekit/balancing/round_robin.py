"""Plain round robin: each endpoint in turn, weights ignored."""

from __future__ import annotations

from collections.abc import Hashable

from .base import Balancer, E

__all__ = ["RoundRobin"]


class RoundRobin(Balancer[E]):
    """Hand out the endpoints in turn, in the order they were added.

    Weights are accepted but ignored (use `SmoothWeightedRoundRobin`
    or `WeightedRoundRobin` for weighted rotation); a `HealthPolicy` with a
    slow start is refused, as there is no weight to ramp. Ejected endpoints
    are skipped without losing the rotation.

    ```pycon
    >>> lb = RoundRobin(["a", "b", "c"])
    >>> "".join(lb.pick() for _ in range(4))
    'abca'

    ```

    Thread-safety: see `Balancer`.

    Runtime complexity: O(1) per pick (O(k) when the next k are ejected);
    O(n) per removal.
    """

    _ramps = False

    def _init_state(self) -> None:
        self._ring: list[E] = []
        self._next = 0

    def _on_add(self, endpoint: E, weight: int) -> None:
        self._ring.append(endpoint)

    def _on_remove(self, endpoint: E, weight: int) -> None:
        index = self._ring.index(endpoint)
        del self._ring[index]
        if index < self._next:
            self._next -= 1
        if self._next >= len(self._ring):
            self._next = 0

    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        ring = self._ring
        n = len(ring)
        index = self._next
        while True:
            endpoint = ring[index]
            index += 1
            if index == n:
                index = 0
            if endpoint not in excluded:
                self._next = index
                return endpoint
