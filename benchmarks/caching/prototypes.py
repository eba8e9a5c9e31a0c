"""The compiled prototypes' speed next to the classes they would speed up, and their peers.

`scalekit.caching._prototypes` holds an LRU over a dict and an intrusive
linked list and a compiled `cached` hit path; no public class uses them
yet. This section of `python -m benchmarks.caching speed` measures what
they reach on the same Zipf stream as the throughput table, timed in turn
with `LRUCache`, `cachebox.LRUCache` and `functools.lru_cache`; it is left
out when the extension is not built or `SCALEKIT_PURE_PYTHON` is set.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import cachebox

import scalekit.caching as sk
from benchmarks._common import format_table
from scalekit._compiled import pure_python_requested

__all__ = ["prototype_section"]


def _load() -> Any:
    if pure_python_requested():
        return None
    try:
        return importlib.import_module("scalekit.caching._prototypes")
    except ImportError:
        return None


def prototype_section(
    keys: list[int],
    capacity: int,
    repeat: int,
    get_set: Callable[[Callable[[], Any], list[int]], Callable[[], None]],
    lru_cache: Callable[[int, list[int]], Callable[[], None]],
    medians: Callable[[list[Callable[[], Any]], int], list[float]],
) -> str:
    """The report text, or `""` when the prototypes are not importable."""
    prototypes = _load()
    if prototypes is None:
        return ""
    lru = prototypes.LRUPrototype
    contenders = {
        "LRUCache": get_set(lambda: sk.LRUCache(capacity), keys),
        "LRUPrototype (compiled)": get_set(lambda: lru(capacity), keys),
        "cachebox.LRUCache": get_set(lambda: cachebox.LRUCache(capacity), keys),
        "functools.lru_cache": lru_cache(capacity, keys),
    }
    times = dict(zip(contenders, medians(list(contenders.values()), repeat), strict=True))
    proto = times["LRUPrototype (compiled)"]
    rows = [[name, 1e9 * t / len(keys), f"{t / proto:.2f}x"] for name, t in times.items()]
    throughput = format_table(["cache", "ns/op", "speed-up of the prototype"], rows)

    calls = 200_000

    def loop(f: Callable[[int], int]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                f(1)

        return run

    wrappers = {
        "scalekit cached(LRUCache)": sk.cached(sk.LRUCache(1000))(int),
        "CachedPrototype(LRUCache) (compiled)": prototypes.CachedPrototype(int, sk.LRUCache(1000)),
        "CachedPrototype(LRUPrototype) (compiled)": prototypes.CachedPrototype(int, lru(1000)),
        "functools.lru_cache": functools.lru_cache(maxsize=1000)(int),
    }
    calls_times = medians([loop(f) for f in wrappers.values()], max(repeat, 5))
    hit = dict(zip(wrappers, calls_times, strict=True))
    proto_hit = hit["CachedPrototype(LRUCache) (compiled)"]
    hit_rows = [[name, 1e9 * t / calls, f"{t / proto_hit:.2f}x"] for name, t in hit.items()]
    decorator = format_table(["decorator", "ns/call", "speed-up of the prototype"], hit_rows)
    return (
        "Compiled prototypes (scalekit.caching._prototypes, used by no public class yet): "
        f"the same stream, median of {repeat}; speed-up = the row's time / the prototype's\n"
        f"{throughput}\n\n"
        "Compiled hit path of cached (the same argument, 200,000 calls; over LRUCache "
        "the prototype counts hits in C, not in the cache's stats; over LRUPrototype the "
        "whole hit is compiled)\n"
        f"{decorator}"
    )
