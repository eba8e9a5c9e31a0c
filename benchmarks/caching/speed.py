"""Throughput and memory of scalekit's caches against cachetools and functools.lru_cache.

The workload is a Zipf(1.0) stream of keys; each operation is a ``get`` and,
on a miss, a ``set`` -- the way a read-through cache is used. Every
contender replays the same stream in the same run; the figure reported is
the ratio of median times (> 1 means scalekit is faster).
"""

from __future__ import annotations

import functools
import gc
import itertools
import random
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

import cachetools

import scalekit.caching as sk
from benchmarks._common import format_table, median_time

__all__ = ["bytes_per_entry", "interleaved_medians", "run_speed", "zipf_keys"]


def interleaved_medians(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median seconds of each function, timing them in turn (ABCABC...).

    On a shared machine, load comes and goes; interleaving exposes every
    contender to the same load, so the ratios stay meaningful.
    """
    for fn in fns:
        fn()  # warm-up
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            samples[i].append(median_time(fn, repeat=1, warmup=0))
    return [statistics.median(s) for s in samples]


def zipf_keys(n_keys: int, n_ops: int, seed: int, s: float = 1.0) -> list[int]:
    """*n_ops* keys drawn from 0..n_keys-1 with P(rank k) proportional to 1/k**s."""
    rng = random.Random(seed)
    weights = itertools.accumulate(1.0 / (rank**s) for rank in range(1, n_keys + 1))
    population = list(range(n_keys))
    rng.shuffle(population)  # popularity is not correlated with the key's value
    return rng.choices(population, cum_weights=list(weights), k=n_ops)


def _get_set(factory: Callable[[], Any], keys: list[int]) -> Callable[[], None]:
    def run() -> None:
        cache = factory()
        get = cache.get
        for key in keys:
            if get(key) is None:
                cache[key] = key

    return run


def _lru_cache(maxsize: int, keys: list[int]) -> Callable[[], None]:
    def run() -> None:
        f = functools.lru_cache(maxsize=maxsize)(int)
        for key in keys:
            f(key)

    return run


def bytes_per_entry(factory: Callable[[], Any], n: int) -> float:
    """Bytes tracemalloc attributes to a cache holding *n* int -> int entries, per entry."""
    keys = list(range(n))  # allocated outside the measurement
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = factory()
    for key in keys:
        cache[key] = key
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del cache
    return (after - before) / n


PAIRS = [  # (name, scalekit factory, cachetools factory or None)
    ("LRUCache", sk.LRUCache, cachetools.LRUCache),
    ("FIFOCache", sk.FIFOCache, cachetools.FIFOCache),
    ("LFUCache", sk.LFUCache, cachetools.LFUCache),
    ("RRCache", lambda n: sk.RRCache(n, rng=random.Random(1)), cachetools.RRCache),
    ("TTLCache", lambda n: sk.TTLCache(n, ttl=3600), lambda n: cachetools.TTLCache(n, ttl=3600)),
    ("SIEVECache", sk.SIEVECache, None),
    ("S3FIFOCache", sk.S3FIFOCache, None),
    ("TinyLFUCache", lambda n: sk.TinyLFUCache(n, rng=random.Random(1)), None),
]


def run_speed(
    *, n_keys: int, n_ops: int, capacity: int, repeat: int, seed: int, memory_entries: int
) -> str:
    """Measure every pair and return the report text."""
    keys = zipf_keys(n_keys, n_ops, seed)
    rows = []
    lru_fn = _lru_cache(capacity, keys)
    lru_times = []
    for name, ours, theirs in PAIRS:
        fns = [_get_set(lambda f=ours: f(capacity), keys), lru_fn]
        if theirs is not None:
            fns.append(_get_set(lambda f=theirs: f(capacity), keys))
        times = interleaved_medians(fns, repeat)
        t_ours, t_lru = times[0], times[1]
        lru_times.append(t_lru)
        hit = ours(capacity)
        _get_set(lambda h=hit: h, keys)()
        row: list[Any] = [name, 1e9 * t_ours / n_ops, f"{100 * hit.stats().hit_ratio:.1f}%"]
        if theirs is not None:
            row += [1e9 * times[2] / n_ops, f"{times[2] / t_ours:.2f}x"]
        else:
            row += ["-", "-"]
        row.append(f"{t_lru / t_ours:.2f}x")
        rows.append(row)
    lru_time = statistics.median(lru_times)
    throughput = format_table(
        [
            "cache",
            "scalekit ns/op",
            "hit ratio",
            "cachetools ns/op",
            "speed-up vs cachetools",
            "vs functools.lru_cache",
        ],
        rows,
    )
    lru_line = (
        f"functools.lru_cache (calls of a memoized function): {1e9 * lru_time / n_ops:.0f} ns/op"
    )

    base = bytes_per_entry(lambda: cachetools.LRUCache(memory_entries), memory_entries)
    mem_rows = []
    for name, ours, theirs in PAIRS:
        b_ours = bytes_per_entry(lambda f=ours: f(memory_entries), memory_entries)
        row = [name, b_ours, f"{b_ours / base:.2f}x"]
        if theirs is not None:
            b_theirs = bytes_per_entry(lambda f=theirs: f(memory_entries), memory_entries)
            row += [b_theirs, f"{b_ours / b_theirs:.2f}x"]
        else:
            row += ["-", "-"]
        mem_rows.append(row)
    memory = format_table(
        [
            "cache",
            "scalekit B/entry",
            "vs cachetools.LRUCache",
            "cachetools B/entry",
            "vs namesake",
        ],
        mem_rows,
    )
    decorator = _decorator_hit_path(repeat)
    return (
        f"Throughput: Zipf(1.0), {n_ops:,} get/set-on-miss operations over {n_keys:,} keys, "
        f"capacity {capacity:,}; median of {repeat}\n{throughput}\n{lru_line}\n\n"
        f"Memory: tracemalloc bytes per entry at {memory_entries:,} int entries\n{memory}\n\n"
        f"{decorator}"
    )


def _decorator_hit_path(repeat: int) -> str:
    calls = 200_000

    def loop(f: Callable[[int], int]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                f(1)

        return run

    contenders = {
        "scalekit cached(LRUCache)": sk.cached(sk.LRUCache(1000))(int),
        "cachetools.cached(LRUCache)": cachetools.cached(cachetools.LRUCache(1000))(int),
        "functools.lru_cache": functools.lru_cache(maxsize=1000)(int),
    }
    medians = interleaved_medians([loop(f) for f in contenders.values()], max(repeat, 5))
    times = dict(zip(contenders, medians, strict=True))
    ours = times["scalekit cached(LRUCache)"]
    rows = [[name, 1e9 * t / calls, f"{t / ours:.2f}x"] for name, t in times.items()]
    return "Decorator hit path (the same argument, 200,000 calls)\n" + format_table(
        ["decorator", "ns/call", "time vs scalekit"], rows
    )
