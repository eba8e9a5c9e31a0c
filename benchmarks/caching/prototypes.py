"""The compiled paths' speed next to the pure code they stand in for, and their peers.

Two tables of `python -m benchmarks.caching speed`, on the throughput
table's Zipf stream, left out when the extension is not built or
`SCALEKIT_PURE_PYTHON` is set:

* `TinyLFUCache` with the compiled sketch, with the pure one, and theine's
  W-TinyLFU, timed in turn in one process: the same-run ratio of the one
  compiled path in use;
* the prototypes of `scalekit.caching._prototypes` (an LRU over a dict and
  an intrusive linked list, and a compiled `cached` hit path, used by no
  public class yet) timed in turn with `LRUCache`, `cached`,
  `cachebox.LRUCache` and `functools.lru_cache`.
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


def _tinylfu_with(sketch_class: Any, capacity: int) -> Callable[[], Any]:
    def make() -> Any:
        cache = sk.TinyLFUCache(capacity)
        cache._sketch = sketch_class(16)  # as TinyLFUCache.__init__ builds it
        return cache

    return make


def prototype_section(
    keys: list[int],
    capacity: int,
    repeat: int,
    get_set: Callable[[Callable[[], Any], list[int]], Callable[[], None]],
    lru_cache: Callable[[int, list[int]], Callable[[], None]],
    medians: Callable[[list[Callable[[], Any]], int], list[float]],
    theine_get_set: Callable[[list[int], int], Callable[[], None]],
) -> str:
    """The report text, or `""` when the prototypes are not importable."""
    prototypes = _load()
    if prototypes is None:
        return ""
    from scalekit.caching._csketch import FrequencySketch as CompiledSketch
    from scalekit.caching._sketch import FrequencySketch as PureSketch

    sketches = {
        "TinyLFUCache, compiled sketch": get_set(_tinylfu_with(CompiledSketch, capacity), keys),
        "TinyLFUCache, pure-Python sketch": get_set(_tinylfu_with(PureSketch, capacity), keys),
        "theine.Cache": theine_get_set(keys, capacity),
    }
    sketch_times = dict(zip(sketches, medians(list(sketches.values()), repeat), strict=True))
    compiled = sketch_times["TinyLFUCache, compiled sketch"]
    sketch_rows = [
        [name, 1e9 * t / len(keys), f"{t / compiled:.2f}x"] for name, t in sketch_times.items()
    ]
    tinylfu = format_table(["cache", "ns/op", "speed-up of the compiled sketch"], sketch_rows)
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
        "TinyLFU's sketch, compiled and pure, in one interleaved run (the same stream, "
        f"median of {repeat}; speed-up = the row's time / the compiled sketch's)\n"
        f"{tinylfu}\n\n"
        "Compiled prototypes (scalekit.caching._prototypes, used by no public class yet): "
        f"the same stream, median of {repeat}; speed-up = the row's time / the prototype's\n"
        f"{throughput}\n\n"
        "Compiled hit path of cached (the same argument, 200,000 calls; over LRUCache "
        "the prototype counts hits in C, not in the cache's stats; over LRUPrototype the "
        "whole hit is compiled)\n"
        f"{decorator}"
    )
