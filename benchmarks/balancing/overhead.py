"""Overhead of one pick+release for every strategy at 10 and 1000 endpoints."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable

from benchmarks._common import median_time, progress
from scalekit.balancing import (
    Balancer,
    ConsistentHashBalancer,
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


def _keyed_loop(lb: Balancer, ops: int, keys: list[str]) -> Callable[[], None]:
    pick, release = lb.pick, lb.release
    chosen = [keys[i % len(keys)] for i in range(ops)]

    def run() -> None:
        for key in chosen:
            ep = pick(key)
            release(ep, latency=0.001, ok=True)

    return run


def build_times(repeat: int) -> list[tuple[str, float]]:
    """Seconds to build the consistent-hash tables for 100 endpoints (median of *repeat*)."""
    endpoints = [f"e{i}" for i in range(100)]
    rows = []
    for table in ("maglev", "ring"):
        seconds = median_time(
            lambda t=table: ConsistentHashBalancer(endpoints, table=t), repeat=repeat, warmup=0
        )
        size = "65,537 entries" if table == "maglev" else "16,000 points"
        rows.append((f"ConsistentHashBalancer {table} build, 100 endpoints ({size})", seconds))
    return rows


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
    """Rows of (strategy, endpoints, weights, microseconds per pick+release, ratio to floor).

    Contenders take turns, one timed run each per round, so a burst of load
    from a neighbour on the shared machine spreads over all of them; each
    figure is the median of *repeat* rounds.
    """
    contenders: list[tuple[str, int, str, Callable[[], None], int]] = []
    for n in sizes:
        contenders.append(("itertools.cycle + dict (floor)", n, "-", _baseline(n, ops), ops))
        for cls in STRATEGIES:
            for weighted in (False, True):
                weights = {f"e{i}": (1 + i % 5 if weighted else 1) for i in range(n)}
                lb = cls(weights, rng=random.Random(seed))
                count = ops
                label = "1..5" if weighted else "equal"
                contenders.append((cls.__name__, n, label, _loop(lb, count), count))
        keys = [f"user:{i}" for i in range(1000)]
        for table, factor in (("ring", None), ("maglev", None), ("ring", 1.25)):
            lb = ConsistentHashBalancer(
                [f"e{i}" for i in range(n)], table=table, balance_factor=factor
            )
            label = f"key, {table}" + ("" if factor is None else f", bound {factor}")
            contenders.append(("ConsistentHashBalancer", n, label, _keyed_loop(lb, ops, keys), ops))
        policy = HealthPolicy(outlier=OutlierDetection())
        lb = RoundRobin([f"e{i}" for i in range(n)], health=policy)
        contenders.append(("RoundRobin + HealthPolicy", n, "equal", _loop(lb, ops), ops))
    samples: list[list[float]] = [[] for _ in contenders]
    for round_ in progress(range(repeat), total=repeat, desc="overhead"):
        for i, (_, _, _, fn, count) in enumerate(contenders):
            samples[i].append(median_time(fn, repeat=1, warmup=int(round_ == 0)) / count * 1e6)
    rows: list[tuple[str, int, str, float, float]] = []
    floor = 1.0
    for (name, n, label, _, _), times in zip(contenders, samples, strict=True):
        us = statistics.median(times)
        if "floor" in name:
            floor = us
        rows.append((name, n, label, us, us / floor))
    return rows
