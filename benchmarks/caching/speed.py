"""Throughput and memory of scalekit's caches against cachetools, cachebox, theine and lru_cache.

The workload is a Zipf(1.0) stream of keys; each operation is a `get` and,
on a miss, a `set`: the way a read-through cache is used. Every contender
replays the same stream in the same run, timed in turn; the figure reported
is the ratio of median times, peer time / scalekit time (> 1 means scalekit
is faster, < 1 that the peer is).

The peers: cachetools (pure Python, the drop-in namesakes), cachebox (Rust;
its LRUCache, FIFOCache, LFUCache, RRCache and TTLCache against ours) and
theine (W-TinyLFU with a Rust core, against TinyLFUCache, built with
`nolock=True` since scalekit's caches take no lock either; cachebox always
locks internally). Their hit ratios on the same stream are printed beside
the speed.
"""

from __future__ import annotations

import functools
import gc
import itertools
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import cachebox
import cachetools
import theine

import scalekit.caching as sk
from benchmarks._common import format_table, progress
from scalekit._compiled import implementation

__all__ = [
    "bytes_per_entry",
    "cpu_time",
    "interleaved_medians",
    "results_name",
    "run_speed",
    "zipf_keys",
]


def cpu_time(fn: Callable[[], Any]) -> float:
    """CPU seconds this process spends in one call of *fn*, collected first, then GC paused.

    CPU time (`time.process_time`, every thread of the process) rather
    than wall time: on a shared machine, the time the process waits for a
    core is not the cache's, and it varies from one pass to the next.
    """
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        fn()
        return time.process_time() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def interleaved_medians(
    fns: list[Callable[[], Any]],
    repeat: int,
    *,
    warmup: bool = True,
    tick: Callable[[], None] | None = None,
) -> list[float]:
    """Median seconds of each function, timing them in turn (ABCABC...).

    On a shared machine, load comes and goes; interleaving exposes every
    contender to the same load, so the ratios stay meaningful. Each runs
    once untimed first unless *warmup* is false; *tick* is called after
    every timed run, for a progress bar.
    """
    if warmup:
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            samples[i].append(cpu_time(fn))
            if tick is not None:
                tick()
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


def _theine(capacity: int) -> theine.Cache:
    return theine.Cache(capacity, nolock=True)


def _get_set_theine(keys: list[int], capacity: int) -> Callable[[], None]:
    # theine's get returns (value, found) and its writes go through set().
    def run() -> None:
        cache = _theine(capacity)
        get, put = cache.get, cache.set
        for key in keys:
            if not get(key)[1]:
                put(key, key)
        cache.close()

    return run


def _hit_ratio(factory: Callable[[], Any], keys: list[int], *, found_pair: bool = False) -> float:
    """Percent of *keys* found, replayed once (insert on miss) outside any timing."""
    cache = factory()
    hits = 0
    for key in keys:
        value = cache.get(key)
        if value[1] if found_pair else value is not None:
            hits += 1
        elif found_pair:
            cache.set(key, key)
        else:
            cache[key] = key
    if found_pair:
        cache.close()
    return 100.0 * hits / len(keys)


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


PAIRS = [  # (name, scalekit factory, cachetools factory or None, cachebox factory or None)
    ("LRUCache", sk.LRUCache, cachetools.LRUCache, cachebox.LRUCache),
    ("FIFOCache", sk.FIFOCache, cachetools.FIFOCache, cachebox.FIFOCache),
    ("LFUCache", sk.LFUCache, cachetools.LFUCache, cachebox.LFUCache),
    (
        "RRCache",
        lambda n: sk.RRCache(n, rng=random.Random(1)),
        cachetools.RRCache,
        cachebox.RRCache,
    ),
    (
        "TTLCache",
        lambda n: sk.TTLCache(n, ttl=3600),
        lambda n: cachetools.TTLCache(n, ttl=3600),
        lambda n: cachebox.TTLCache(n, 3600),
    ),
    ("SIEVECache", sk.SIEVECache, None, None),
    ("S3FIFOCache", sk.S3FIFOCache, None, None),
    ("TinyLFUCache", lambda n: sk.TinyLFUCache(n, rng=random.Random(1)), None, None),
]
# TinyLFUCache's peer is theine's W-TinyLFU, timed with its own (value, found) API.
THEINE_PEER = "TinyLFUCache"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _ns(seconds: float, operations: int) -> str:
    """Whole nanoseconds per operation, grouped by thousands: every time this benchmark prints.

    Whole nanoseconds because, run to run, a figure moves by more than one.
    """
    return f"{round(1e9 * seconds / operations):,}"


def _count(cell: str) -> int:
    """The number a `_ns` cell shows."""
    return int(cell.replace(",", ""))


def _ratio(peer: float, ours: float) -> str:
    return f"{peer / ours:.2f}x"


def _implementation_tag() -> str:
    """`compiled` or `pure`: which implementation of scalekit's hot paths this process runs."""
    return "pure" if implementation().startswith("pure Python") else "compiled"


def results_name(*, quick: bool, record: bool) -> str:
    """The results file a speed run writes (without `.txt`), named after the implementation.

    Only a full run (the default stream, or any run given `--record`) writes
    the committed `caching-speed-compiled` / `caching-speed-pure`; a
    `--quick` run, or one with a shorter stream or fewer repeats and no
    `--record`, writes the same name with `-quick`, never over them.
    """
    name = f"caching-speed-{_implementation_tag()}"
    return name if record and not quick else f"{name}-quick"


def run_speed(
    *,
    n_keys: int,
    n_ops: int,
    capacity: int,
    repeat: int,
    seed: int,
    memory_entries: int,
    runs: int = 1,
) -> str:
    """Measure every pair *runs* times and return the report text.

    Each run times scalekit and its peers in turn on the same stream and
    gives its own ratios; with several runs, a last table gives the median
    of each ratio over the runs (each ratio still from one run). A progress
    bar on stderr counts the timed passes; after the warm-up the time left
    is printed, estimated from it.
    """
    keys = zipf_keys(n_keys, n_ops, seed)
    lru_fn = _lru_cache(capacity, keys)
    plans = []
    for name, ours, theirs, rust in PAIRS:
        fns = [_get_set(lambda f=ours: f(capacity), keys), lru_fn]
        if theirs is not None:
            fns.append(_get_set(lambda f=theirs: f(capacity), keys))
        if rust is not None:
            fns.append(_get_set(lambda f=rust: f(capacity), keys))
        elif name == THEINE_PEER:
            fns.append(_get_set_theine(keys, capacity))
        plans.append(fns)
    # One untimed warm-up pass of every contender, which also tells how long the rest takes.
    started = time.perf_counter()
    for fns in progress(plans, total=len(plans), desc="speed warm-up"):
        for fn in fns:
            fn()
    warm = time.perf_counter() - started
    total = sum(len(fns) for fns in plans) * repeat * runs
    print(
        f"caching speed: warm-up took {_duration(warm)}; {total} timed passes of "
        f"{n_ops:,} operations take about {_duration(warm * repeat * runs)} more at that pace "
        "(longer if the machine gets busier), then memory and the decorator",
        file=sys.stderr,
    )
    bar = iter(progress(range(total), total=total, desc="speed"))

    def tick() -> None:
        next(bar, None)

    # Hit ratios do not depend on timing: replayed once, outside the timed passes.
    hits = {name: _hit_ratio(lambda f=ours: f(capacity), keys) for name, ours, _, _ in PAIRS}
    peer_hits = {
        name: (
            _hit_ratio(lambda f=rust: f(capacity), keys)
            if rust is not None
            else _hit_ratio(lambda: _theine(capacity), keys, found_pair=True)
        )
        for name, _, _, rust in PAIRS
        if rust is not None or name == THEINE_PEER
    }
    blocks = []
    all_rows = []
    decorators = []
    for run in range(runs):
        rows = _throughput_rows(plans, repeat, n_ops, hits, peer_hits, tick)
        decorator = _decorator_hit_path(repeat)
        all_rows.append(rows)
        decorators.append(decorator)
        title = f"Run {run + 1} of {runs}: " if runs > 1 else ""
        blocks.append(
            f"{title}Throughput: Zipf(1.0), {n_ops:,} get/set-on-miss operations over "
            f"{n_keys:,} keys, capacity {capacity:,}; median of {repeat}. speed-up = the peer's "
            "time / scalekit's (scalekit ops/s over the peer's; > 1: scalekit faster, < 1: the "
            "peer faster). theine runs with nolock=True; cachebox always locks. Times are the "
            "process's CPU time (time.process_time), so waiting for a core on a busy machine is "
            f"not counted.\n{format_table(THROUGHPUT_HEADERS, rows)}\n\n"
            f"{_decorator_table(decorator)}"
        )
    for _ in bar:  # close the bar
        pass
    memory = _memory_table(memory_entries)
    summary = ""
    if runs > 1:
        summary = f"\n\n{_median_table(all_rows, decorators, runs)}"
    return (
        f"scalekit's hot paths: {implementation()}\n\n"
        + "\n\n".join(blocks)
        + summary
        + f"\n\nMemory: tracemalloc bytes per entry at {memory_entries:,} int entries "
        "(cachebox and theine keep entries in Rust memory, which tracemalloc does not see, "
        f"so they are not listed)\n{memory}"
    )


THROUGHPUT_HEADERS = [
    "cache",
    "scalekit ns/op",
    "hit ratio",
    "cachetools ns/op",
    "speed-up vs cachetools",
    "Rust peer",
    "peer ns/op",
    "peer hit ratio",
    "speed-up vs peer",
    "vs functools.lru_cache",
]


def _throughput_rows(
    plans: list[list[Callable[[], None]]],
    repeat: int,
    n_ops: int,
    hits: dict[str, float],
    peer_hits: dict[str, float],
    tick: Callable[[], None],
) -> list[list[Any]]:
    rows = []
    for (name, _, theirs, rust), fns in zip(PAIRS, plans, strict=True):
        times = interleaved_medians(fns, repeat, warmup=False, tick=tick)
        t_ours, t_lru = times[0], times[1]
        row: list[Any] = [name, _ns(t_ours, n_ops), f"{hits[name]:.1f}%"]
        column = 2
        if theirs is not None:
            row += [_ns(times[column], n_ops), _ratio(times[column], t_ours)]
            column += 1
        else:
            row += ["-", "-"]
        if name in peer_hits:
            label = f"cachebox.{name}" if rust is not None else "theine.Cache"
            row += [
                label,
                _ns(times[column], n_ops),
                f"{peer_hits[name]:.1f}%",
                _ratio(times[column], t_ours),
            ]
        else:
            row += ["-", "-", "-", "-"]
        row.append(_ratio(t_lru, t_ours))
        rows.append(row)
    return rows


def _median_table(
    all_rows: list[list[list[Any]]], decorators: list[dict[str, float]], runs: int
) -> str:
    def med(values: list[str]) -> str:
        return _ratio(statistics.median(float(v.rstrip("x")) for v in values), 1.0)

    def spread(values: list[str]) -> str:
        # The lowest and highest of the runs: how far one run's ratio can be trusted.
        figures = sorted(float(v.rstrip("x")) for v in values)
        return f"{figures[0]:.2f}-{figures[-1]:.2f}x"

    rows = []
    for i, first in enumerate(all_rows[0]):
        per_run = [r[i] for r in all_rows]
        row = [first[0], f"{round(statistics.median(_count(r[1]) for r in per_run)):,}", first[2]]
        row.append("-" if first[4] == "-" else med([r[4] for r in per_run]))
        row += [first[5], "-" if first[8] == "-" else med([r[8] for r in per_run])]
        row.append(med([r[9] for r in per_run]))
        row.append("-" if first[8] == "-" else spread([r[8] for r in per_run]))
        row.append(spread([r[9] for r in per_run]))
        rows.append(row)
    ours = [d["scalekit cached(LRUCache)"] for d in decorators]
    lru = [d["functools.lru_cache"] for d in decorators]
    ratios = [f"{b / a:.2f}x" for a, b in zip(ours, lru, strict=True)]
    return (
        f"Median over the {runs} runs (each ratio from one run)\n"
        + format_table(
            [
                "cache",
                "scalekit ns/op",
                "hit ratio",
                "speed-up vs cachetools",
                "Rust peer",
                "speed-up vs peer",
                "vs functools.lru_cache",
                "peer, runs' range",
                "lru_cache, runs' range",
            ],
            rows,
        )
        + "\n\n"
        + format_table(
            ["decorator", "scalekit ns/call", "vs functools.lru_cache", "per run"],
            [
                [
                    "scalekit cached(LRUCache) hit",
                    _ns(statistics.median(ours), DECORATOR_CALLS),
                    med(ratios),
                    " ".join(ratios),
                ]
            ],
        )
    )


def _memory_table(memory_entries: int) -> str:
    base = bytes_per_entry(lambda: cachetools.LRUCache(memory_entries), memory_entries)
    mem_rows = []
    for name, ours, theirs, _ in PAIRS:
        b_ours = bytes_per_entry(lambda f=ours: f(memory_entries), memory_entries)
        row = [name, b_ours, f"{b_ours / base:.2f}x"]
        if theirs is not None:
            b_theirs = bytes_per_entry(lambda f=theirs: f(memory_entries), memory_entries)
            row += [b_theirs, f"{b_ours / b_theirs:.2f}x"]
        else:
            row += ["-", "-"]
        mem_rows.append(row)
    return format_table(
        [
            "cache",
            "scalekit B/entry",
            "vs cachetools.LRUCache",
            "cachetools B/entry",
            "vs namesake",
        ],
        mem_rows,
    )


DECORATOR_CALLS = 200_000


def _decorator_table(times: dict[str, float]) -> str:
    ours = times["scalekit cached(LRUCache)"]
    rows = [[name, _ns(t, DECORATOR_CALLS), f"{t / ours:.2f}x"] for name, t in times.items()]
    return f"Decorator hit path (the same argument, {DECORATOR_CALLS:,} calls)\n" + format_table(
        ["decorator", "ns/call", "time vs scalekit"], rows
    )


def _decorator_hit_path(repeat: int) -> dict[str, float]:
    """Median seconds of `DECORATOR_CALLS` hits of each memoizer, timed in turn."""

    def loop(f: Callable[[int], int]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(DECORATOR_CALLS):
                f(1)

        return run

    contenders = {
        "scalekit cached(LRUCache)": sk.cached(sk.LRUCache(1000))(int),
        "cachetools.cached(LRUCache)": cachetools.cached(cachetools.LRUCache(1000))(int),
        "functools.lru_cache": functools.lru_cache(maxsize=1000)(int),
    }
    medians = interleaved_medians([loop(f) for f in contenders.values()], max(repeat, 5))
    return dict(zip(contenders, medians, strict=True))
