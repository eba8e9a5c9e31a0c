"""What instrumentation costs: the caches' and balancers' hot paths, bare and exported.

Each workload runs three ways in the same process, interleaved: bare (no
hub subscriber, nothing watched), watched by the hub with nobody
subscribed, and with a `PrometheusCollector` attached and scraped every
100,000 operations. Ratios are medians against the bare run (1.00 = no
cost); the scrape itself is timed separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from benchmarks._common import base_parser
from benchmarks.caching.speed import interleaved_medians, zipf_keys
from scalekit.balancing import PeakEWMA, RoundRobin
from scalekit.caching import LRUCache, TinyLFUCache
from scalekit.observability import PrometheusCollector, Telemetry, watch_balancer, watch_cache

SCRAPE_EVERY = 100_000


def _cache_run(factory: Callable[[], Any], keys: list[int], mode: str) -> Callable[[], None]:
    def run() -> None:
        hub = Telemetry()
        cache = factory()
        registry = CollectorRegistry()
        collector = None
        if mode != "bare":
            watch_cache(cache, "bench", telemetry=hub)
        if mode == "exported":
            collector = PrometheusCollector(hub).register(registry)
        get = cache.get
        for start in range(0, len(keys), SCRAPE_EVERY):
            for key in keys[start : start + SCRAPE_EVERY]:
                if get(key) is None:
                    cache[key] = key
            if collector is not None:
                generate_latest(registry)
        if collector is not None:
            collector.close()

    return run


def _balancer_run(factory: Callable[[], Any], n_ops: int, mode: str) -> Callable[[], None]:
    def run() -> None:
        hub = Telemetry()
        lb = factory()
        registry = CollectorRegistry()
        collector = None
        if mode != "bare":
            watch_balancer(lb, "bench", telemetry=hub)
        if mode == "exported":
            collector = PrometheusCollector(hub).register(registry)
        pick, release = lb.pick, lb.release
        for start in range(0, n_ops, SCRAPE_EVERY):
            for _ in range(min(SCRAPE_EVERY, n_ops - start)):
                release(pick(), latency=0.001)
            if collector is not None:
                generate_latest(registry)
        if collector is not None:
            collector.close()

    return run


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    n_ops = 50_000 if args.quick else 1_000_000
    repeat = 3 if args.quick else args.repeat
    keys = zipf_keys(100_000, n_ops, args.seed)
    endpoints = [f"10.0.0.{i}" for i in range(10)]
    rows: list[tuple[str, float, float]] = []
    workloads: list[tuple[str, Callable[[str], Callable[[], None]]]] = [
        ("LRUCache get/set", lambda m: _cache_run(lambda: LRUCache(maxsize=10_000), keys, m)),
        (
            "TinyLFUCache get/set",
            lambda m: _cache_run(lambda: TinyLFUCache(maxsize=10_000), keys[: n_ops // 4], m),
        ),
        (
            "RoundRobin pick+release",
            lambda m: _balancer_run(lambda: RoundRobin(endpoints), n_ops, m),
        ),
        (
            "PeakEWMA pick+release",
            lambda m: _balancer_run(lambda: PeakEWMA(endpoints), n_ops, m),
        ),
    ]
    for name, make in workloads:
        bare, watched, exported = interleaved_medians(
            [make("bare"), make("watched"), make("exported")], repeat
        )
        rows.append((name, watched / bare, exported / bare))
    print(f"{'workload':<26} {'watched/bare':>13} {'exported/bare':>14}   (time ratios, medians)")
    for name, w, e in rows:
        print(f"{name:<26} {w:>13.3f} {e:>14.3f}")
    # the scrape: 100 watched caches and balancers
    hub = Telemetry()
    caches = [LRUCache(maxsize=100) for _ in range(100)]
    lbs = [RoundRobin(endpoints) for _ in range(100)]
    for i, c in enumerate(caches):
        watch_cache(c, f"c{i}", telemetry=hub)
    for i, lb in enumerate(lbs):
        watch_balancer(lb, f"b{i}", telemetry=hub)
    registry = CollectorRegistry()
    PrometheusCollector(hub).register(registry)
    t0 = time.perf_counter()
    for _ in range(20):
        generate_latest(registry)
    per_scrape = (time.perf_counter() - t0) / 20
    print(
        f"one scrape of 100 caches + 100 balancers (10 endpoints each): {per_scrape * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
