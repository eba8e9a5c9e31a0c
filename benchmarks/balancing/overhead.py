"""Overhead of one pick+release for every strategy at 10 and 1000 endpoints."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from benchmarks._common import median_time
from scalekit.balancing import (
    Balancer,
    HealthPolicy,
    LeastRequest,
    OutlierDetection,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)

STRATEGIES: list[type[Balancer]] = [
    RoundRobin,
    RandomBalancer,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
    LeastRequest,
    PeakEWMA,
]
TARGET_US = 2.0


def _loop(lb: Balancer, ops: int) -> Callable[[], None]:
    pick, release = lb.pick, lb.release

    def run() -> None:
        for _ in range(ops):
            ep = pick()
            release(ep, latency=0.001, ok=True)

    return run


def _baseline(n: int, ops: int) -> Callable[[], None]:
    """The floor: ``next()`` on an itertools.cycle and a dict count up and down."""
    ids = [f"e{i}" for i in range(n)]
    cycle = itertools.cycle(ids)
    counts = dict.fromkeys(ids, 0)

    def run() -> None:
        for _ in range(ops):
            ep = next(cycle)
            counts[ep] += 1
            counts[ep] -= 1

    return run


def measure(
    sizes: tuple[int, ...], ops: int, repeat: int, seed: int
) -> list[tuple[str, int, str, float, float]]:
    """Rows of (strategy, endpoints, weights, microseconds per pick+release, ratio to floor)."""
    rows: list[tuple[str, int, str, float, float]] = []
    for n in sizes:
        floor = median_time(_baseline(n, ops), repeat=repeat) / ops * 1e6
        rows.append(("itertools.cycle + dict (floor)", n, "-", floor, 1.0))
        for cls in STRATEGIES:
            for weighted in (False, True):
                weights = {f"e{i}": (1 + i % 5 if weighted else 1) for i in range(n)}
                lb = cls(weights, rng=random.Random(seed))
                # nginx's SWRR is O(n) per pick: fewer ops keep the run short.
                count = ops if cls is not SmoothWeightedRoundRobin else max(50, ops * 10 // n)
                us = median_time(_loop(lb, count), repeat=repeat) / count * 1e6
                rows.append((cls.__name__, n, "1..5" if weighted else "equal", us, us / floor))
        policy = HealthPolicy(outlier=OutlierDetection())
        lb = RoundRobin([f"e{i}" for i in range(n)], health=policy)
        us = median_time(_loop(lb, ops), repeat=repeat) / ops * 1e6
        rows.append(("RoundRobin + HealthPolicy", n, "equal", us, us / floor))
    return rows
