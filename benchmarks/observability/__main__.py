"""What instrumentation costs on the hot paths: today's code, idle, with the hub, exported.

Each workload runs four ways in the same process, interleaved:

* **today**: the same code with its instrumentation taken out. The
  baseline is compiled from the current source with every instrumenting
  statement removed (`benchmarks/observability/_baseline.py`: the
  balancers' `pick` / `release`, the locks' `acquire`, `cached`'s
  wrapper), so that it measures exactly what instrumentation adds and
  follows every other change of those paths. Both sides of a balancer or
  lock row are subclasses of the class, so that only the method bodies
  differ. The caches' own get/set have no instrumentation at all (the
  benchmark checks it and prints the count of instrumenting statements
  per path); their rows compare identical code and show the noise floor;
* **idle**: the instrumented code, watched by a hub with no recorder (what
  a program that never exports pays);
* **hub**: watched, with an in-memory recorder subscribed;
* **prometheus**: watched, with a `PrometheusCollector` attached and
  scraped every 100,000 operations.

Each round runs the four in a shuffled order (seeded): on a shared machine
a fixed order lets periodic load favour one position. Times are this
process's CPU seconds, so that other processes' load is not billed to one
contender. A ratio is the median, over the rounds, of each round's time
against *today*'s in the same round (1.00 = no cost); the second table
gives the fastest round of each against today's fastest. The targets: the
caches' and balancers' hit paths within 1.05 idle and 1.25 exported. The
`cached` miss row calls a loader that does nothing, the worst case for
the cost of timing a load; the lock row is a `MemoryLock` (no backend
round trip), the worst case for its relative cost: with Redis or
ZooKeeper the round trip dwarfs it.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from benchmarks._common import base_parser
from benchmarks.caching.speed import zipf_keys
from benchmarks.observability._baseline import (
    bare_balancer,
    bare_lock,
    bare_sync_wrapper,
    cache_paths,
    instrumented_paths,
)
from scalekit.balancing import HealthPolicy, PeakEWMA, RoundRobin
from scalekit.caching import LRUCache, TinyLFUCache, cached
from scalekit.caching.keys import hashkey
from scalekit.locking import MemoryLock
from scalekit.observability import (
    MemoryRecorder,
    PrometheusCollector,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
)

SCRAPE_EVERY = 100_000
MODES = ("today", "idle", "hub", "prometheus")


class _Listening:
    """Builds a hub for one mode and scrapes it while the workload runs."""

    def __init__(self, mode: str) -> None:
        self.hub = Telemetry()
        self.registry = CollectorRegistry()
        self._recorder: MemoryRecorder | None = None
        self._collector: PrometheusCollector | None = None
        if mode == "hub":
            self._recorder = MemoryRecorder()
            self.hub.subscribe(self._recorder)
        elif mode == "prometheus":
            self._collector = PrometheusCollector(self.hub).register(self.registry)

    def scrape(self) -> None:
        if self._collector is not None:
            generate_latest(self.registry)
        elif self._recorder is not None:
            list(self.hub.collect())
            self._recorder.snapshot()

    def close(self) -> None:
        if self._collector is not None:
            self._collector.close()
        if self._recorder is not None:
            self.hub.unsubscribe(self._recorder)


def shuffled_times(
    fns: list[Callable[[], Any]], rounds: int, seed: int
) -> tuple[list[float], list[float]]:
    """Each function's median ratio to the first's in the same round, and fastest-round ratio.

    CPU time of this process (`time.process_time`), not wall time: on a
    machine shared with other work, waiting for a core is not the code's
    cost. The collector is paused during each timed run, as in
    `benchmarks._common.median_time`.
    """
    rng = random.Random(seed)
    for fn in fns:
        fn()  # warm-up
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        order = list(range(len(fns)))
        rng.shuffle(order)
        for i in order:
            gc.collect()
            gc.disable()
            try:
                start = time.process_time()
                fns[i]()
                samples[i].append(time.process_time() - start)
            finally:
                gc.enable()
    ratios = [
        statistics.median(t / base for t, base in zip(s, samples[0], strict=True)) for s in samples
    ]
    return ratios, [min(s) / min(samples[0]) for s in samples]


def _subclass(cls: type[Any]) -> type[Any]:
    # Today's copies live on a subclass; so do the instrumented methods, so that
    # only the methods' bodies differ between the two.
    return type(f"Instrumented{cls.__name__}", (cls,), {})


def _cache_run(factory: Callable[[], Any], keys: list[int], mode: str) -> Callable[[], None]:
    def run() -> None:
        listening = _Listening(mode)
        cache = factory()
        if mode != "today":
            watch_cache(cache, "bench", telemetry=listening.hub)
        get = cache.get
        for start in range(0, len(keys), SCRAPE_EVERY):
            for key in keys[start : start + SCRAPE_EVERY]:
                if get(key) is None:
                    cache[key] = key
            listening.scrape()
        listening.close()

    return run


def _cached_run(keys: list[int], mode: str, maxsize: int) -> Callable[[], None]:
    bare_wrapper = bare_sync_wrapper() if mode == "today" else None  # compiled once, untimed

    def run() -> None:
        listening = _Listening(mode)
        cache: LRUCache[Any, int] = LRUCache(maxsize=maxsize)
        if mode != "today":
            watch_cache(cache, "bench", telemetry=listening.hub)

        def loader(n: int) -> int:
            return n

        if bare_wrapper is not None:
            square = bare_wrapper(loader, cache, hashkey, None, False)
        else:
            square = cached(cache)(loader)
        for start in range(0, len(keys), SCRAPE_EVERY):
            for key in keys[start : start + SCRAPE_EVERY]:
                square(key)
            listening.scrape()
        listening.close()

    return run


def _balancer_run(
    cls: type[Any], endpoints: list[str], n_ops: int, mode: str
) -> Callable[[], None]:
    factory = bare_balancer(cls) if mode == "today" else _subclass(cls)

    def run() -> None:
        listening = _Listening(mode)
        lb = factory(endpoints)
        if mode != "today":
            watch_balancer(lb, "bench", telemetry=listening.hub)
        pick, release = lb.pick, lb.release
        for start in range(0, n_ops, SCRAPE_EVERY):
            for _ in range(min(SCRAPE_EVERY, n_ops - start)):
                release(pick(), latency=0.001)
            listening.scrape()
        listening.close()

    return run


class _WithHealth(RoundRobin[str]):
    """A RoundRobin with a default HealthPolicy (panic threshold, no outlier detection)."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(endpoints, health=HealthPolicy())


def _lock_run(n_ops: int, mode: str) -> Callable[[], None]:
    factory = bare_lock(MemoryLock) if mode == "today" else _subclass(MemoryLock)

    def run() -> None:
        listening = _Listening(mode)
        if mode != "today":
            watch_locks("bench", telemetry=listening.hub)
        lock = factory("bench:1", ttl=30)
        acquire, release = lock.acquire, lock.release
        for start in range(0, n_ops, SCRAPE_EVERY):
            for _ in range(min(SCRAPE_EVERY, n_ops - start)):
                release(acquire())
            listening.scrape()
        listening.close()

    return run


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help="run only the workloads whose name contains this text (default: every workload)",
    )
    args = parser.parse_args()
    # --quick is a smoke run (the test suite's): enough to print every row, not to measure.
    n_ops = 20_000 if args.quick else 300_000
    scrapes = 3 if args.quick else 20
    rounds = 3 if args.quick and not args.repeat_given else 2 * args.repeat
    keys = zipf_keys(100_000, n_ops, args.seed)
    hits = [k % 1000 for k in keys]  # a warm `cached`: 1,000 misses, the rest hits
    endpoints = [f"10.0.0.{i}" for i in range(10)]
    workloads: list[tuple[str, Callable[[str], Callable[[], None]]]] = [
        ("LRUCache get/set", lambda m: _cache_run(lambda: LRUCache(maxsize=10_000), keys, m)),
        (
            "TinyLFUCache get/set",
            lambda m: _cache_run(lambda: TinyLFUCache(maxsize=10_000), keys[: n_ops // 4], m),
        ),
        ("cached hit path", lambda m: _cached_run(hits, m, 1000)),
        ("cached miss path", lambda m: _cached_run(list(range(n_ops // 10)), m, 100)),
        ("RoundRobin pick+release", lambda m: _balancer_run(RoundRobin, endpoints, n_ops, m)),
        (
            "RoundRobin+HealthPolicy",
            lambda m: _balancer_run(_WithHealth, endpoints, n_ops // 2, m),
        ),
        (
            "PeakEWMA pick+release",
            lambda m: _balancer_run(PeakEWMA, endpoints, n_ops // 2, m),
        ),
        ("MemoryLock acquire+release", lambda m: _lock_run(n_ops // 10, m)),
    ]
    header = f"{'workload':<28} {'idle/today':>11} {'hub/today':>10} {'prom/today':>11}"
    best_rows = []
    print("instrumenting statements taken out of each path for today:")
    for path, count in {**instrumented_paths(), **cache_paths()}.items():
        print(f"  {path:<40} {count}")
    print(header + "   (medians of same-round ratios)")
    for name, make in workloads:
        if args.only not in name:
            continue
        ratios, best = shuffled_times([make(m) for m in MODES], rounds, args.seed)
        _, idle, hub, prom = ratios
        print(f"{name:<28} {idle:>11.3f} {hub:>10.3f} {prom:>11.3f}", flush=True)
        best_rows.append((name, best[1:]))
    # Interference (caches, frequency) only ever adds time: the fastest round cross-checks.
    print(header + "   (ratios of the fastest rounds)")
    for name, (idle_, hub_, prom_) in best_rows:
        print(f"{name:<28} {idle_:>11.3f} {hub_:>10.3f} {prom_:>11.3f}")
    # the scrape: 100 watched caches and balancers
    hub_ = Telemetry()
    caches = [LRUCache(maxsize=100) for _ in range(100)]
    lbs = [RoundRobin(endpoints) for _ in range(100)]
    for i, c in enumerate(caches):
        watch_cache(c, f"c{i}", telemetry=hub_)
    for i, lb in enumerate(lbs):
        watch_balancer(lb, f"b{i}", telemetry=hub_)
    registry = CollectorRegistry()
    PrometheusCollector(hub_).register(registry)
    for lb in lbs:  # every endpoint picked once: the picks series exist too
        for _ in endpoints:
            lb.release(lb.pick(), latency=0.001)
    t0 = time.perf_counter()
    for _ in range(scrapes):
        generate_latest(registry)
    per_scrape = (time.perf_counter() - t0) / scrapes
    print(
        f"one scrape of 100 caches + 100 balancers (10 endpoints each): {per_scrape * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
