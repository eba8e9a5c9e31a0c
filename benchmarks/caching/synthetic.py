"""Synthetic workload kinds that no trace folder holds, replayed through every policy.

Each kind is a seeded generator of integer keys (the same keys for the same
`seed` on every machine and Python version that keeps `random.Random`'s
documented sequence). Every policy replays it at a few capacities: the
small ones where the kind is hardest, and 1% and 10% of its unique keys.
TinyLFU is replayed once per seed of its admission RNG (`SEEDS`) and its
worst seed is compared with the best of the other policies scalekit has
(LRU, FIFO, LFU, SIEVE, S3-FIFO): the target is to be within one point.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from benchmarks._common import format_table
from benchmarks.caching.replay import SEEDS, replay
from scalekit.caching import (
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    S3FIFOCache,
    SIEVECache,
    TinyLFUCache,
)

__all__ = ["KINDS", "OTHERS", "generate", "run_synthetic", "synthetic_row"]

OTHERS: dict[str, Callable[[int], Cache[Any, Any]]] = {
    "LRU": LRUCache,
    "FIFO": FIFOCache,
    "LFU": LFUCache,
    "SIEVE": SIEVECache,
    "S3-FIFO": S3FIFOCache,
}


def _zipf(n: int, alpha: float, count: int, rng: random.Random, offset: int = 0) -> list[int]:
    cum = list(itertools.accumulate(1.0 / (i + 1) ** alpha for i in range(n)))
    return [offset + k for k in rng.choices(range(n), cum_weights=cum, k=count)]


def _recency(rng: random.Random) -> list[int]:
    # 200,000 requests: a new key with probability 0.3, else the key at a
    # stack distance drawn from an exponential of mean 300 (LRU's best case).
    out: list[int] = []
    fresh = 0
    for _ in range(200_000):
        if not out or rng.random() < 0.3:
            out.append(fresh)
            fresh += 1
        else:
            out.append(out[-1 - min(int(rng.expovariate(1 / 300)), len(out) - 1)])
    return out


def _twice(gap: int) -> Callable[[random.Random], list[int]]:
    # 100,000 keys, each requested twice, the second time U[1, gap] requests later.
    def generate(rng: random.Random) -> list[int]:
        out: list[int] = []
        due: list[tuple[int, int]] = []
        for key in range(100_000):
            out.append(key)
            heapq.heappush(due, (len(out) + rng.randint(1, gap), key))
            while due and due[0][0] <= len(out):
                out.append(heapq.heappop(due)[1])
        out.extend(key for _, key in sorted(due))
        return out

    return generate


def _phases(rng: random.Random) -> list[int]:
    # 10 phases of 20,000 requests, each Zipf(1.0) over 5,000 keys of its own.
    return [k for p in range(10) for k in _zipf(5_000, 1.0, 20_000, rng, offset=p * 10**6)]


def _hot_scan(rng: random.Random) -> list[int]:
    # Zipf(0.9) over 2,000 hot keys, each request followed with probability
    # 0.5 by a key never seen before (one-hit wonders).
    out: list[int] = []
    fresh = 10**7
    for key in _zipf(2_000, 0.9, 100_000, rng):
        out.append(key)
        if rng.random() < 0.5:
            out.append(fresh)
            fresh += 1
    return out


def _drift(rng: random.Random) -> list[int]:
    # Zipf(1.0) over 5,000 ranks whose keys shift by one every 20 requests.
    return [k + t // 20 for t, k in enumerate(_zipf(5_000, 1.0, 200_000, rng))]


def _zipf08(rng: random.Random) -> list[int]:
    return _zipf(50_000, 0.8, 200_000, rng)


# name -> (generator, the small capacities where the kind is hardest)
KINDS: dict[str, tuple[Callable[[random.Random], list[int]], tuple[int, ...]]] = {
    "recency": (_recency, (100,)),
    "twice-gap50": (_twice(50), (20,)),
    "twice-gap500": (_twice(500), (100,)),
    "phases": (_phases, (50, 500)),
    "hot+scan": (_hot_scan, (20,)),
    "drift": (_drift, (50,)),
    "zipf0.8": (_zipf08, ()),
}


def generate(kind: str, seed: int = 1) -> list[int]:
    """The keys of `kind` for the generator seed `seed`."""
    return KINDS[kind][0](random.Random(seed))


def capacities(kind: str, keys: list[int]) -> list[int]:
    """The kind's small capacities, and 1% and 10% of its unique keys."""
    unique = len(set(keys))
    return sorted({*KINDS[kind][1], max(1, unique // 100), max(1, unique // 10)})


def synthetic_row(keys: list[int], capacity: int) -> tuple[dict[str, float], list[float]]:
    """The other policies' hit ratios and TinyLFU's, one per seed of `SEEDS` (percent)."""
    others = {name: replay(factory(capacity), keys) for name, factory in OTHERS.items()}
    tiny = [replay(TinyLFUCache(capacity, rng=random.Random(s)), keys) for s in SEEDS]
    return others, tiny


def run_synthetic(kinds: list[str], seed: int = 1) -> str:
    """Replay every kind at its capacities; return the report (one table)."""
    rows = []
    for kind in kinds:
        keys = generate(kind, seed)
        for cap in capacities(kind, keys):
            others, tiny = synthetic_row(keys, cap)
            best = max(others, key=others.__getitem__)
            worst = min(tiny)
            rows.append(
                [
                    f"{kind} @{cap}",
                    *others.values(),
                    worst,
                    max(tiny),
                    best,
                    worst - others[best],
                    "ok" if worst >= others[best] - 1.0 else "SHORT",
                ]
            )
    met = sum(row[-1] == "ok" for row in rows)
    table = format_table(
        [
            "kind @ capacity",
            *OTHERS,
            "TinyLFU min",
            "TinyLFU max",
            "best other",
            "min-best",
            "best-1",
        ],
        rows,
    )
    return (
        f"Synthetic workloads (generator seed {seed}; hit ratio %; TinyLFU min and max over "
        f"seeds {','.join(map(str, SEEDS))}; target: min >= best other - 1)\n{table}\n\n"
        f"{met} of {len(rows)} rows meet the target."
    )
