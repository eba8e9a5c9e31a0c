"""What stays bounded while nobody scrapes, and which series go when their object does."""

from __future__ import annotations

import time
from typing import Any

from scalekit.balancing import RoundRobin
from scalekit.observability import MemoryRecorder, Telemetry, watch_balancer
from scalekit.observability._emit import DRAIN_INTERVAL, BalancerProbe

LATENCY = "scalekit_balancer_request_duration_seconds"


def poll(condition: Any, within: float) -> bool:
    """Whether *condition()* became true within *within* seconds (checked every 1 ms)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_latency_buffers_stay_bounded_without_a_scrape() -> None:
    # A release only appends; the drain thread hands a full buffer to the hub
    # within DRAIN_INTERVAL, so memory stays bounded when nobody collects.
    hub, memory = Telemetry(), MemoryRecorder()
    hub.subscribe(memory)
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    probe = lb._probe
    assert isinstance(probe, BalancerProbe)
    n = 3 * BalancerProbe.BATCH
    for _ in range(n):
        lb.release(lb.pick(), latency=0.002)
    series = (LATENCY, (("balancer", "pay"), ("endpoint", "a"), ("outcome", "ok")))

    def drained() -> int:
        state = memory.snapshot()[2].get(series)
        return 0 if state is None else state.count

    # The documented bound (a drain every DRAIN_INTERVAL), plus a margin for a busy machine.
    assert poll(lambda: drained() >= n - BalancerProbe.BATCH, within=DRAIN_INTERVAL + 2.0)
    assert probe.buffered() <= BalancerProbe.BATCH
    # Nothing is lost or counted twice: a collection hands over the rest.
    list(hub.collect())
    assert memory.histograms[series].count == n
    picks = {s.labels["endpoint"]: s.value for s in hub.collect() if s.metric.endswith("picks")}
    assert picks == {"a": n}
    hub.unsubscribe(memory)


def _lines(registry: Any, prefix: str) -> list[str]:
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_series_of_removed_shards_go_after_one_last_scrape() -> None:
    from prometheus_client import CollectorRegistry

    from scalekit.observability import PrometheusCollector, watch_router
    from scalekit.sharding import HashRouter

    hub = Telemetry()
    registry = CollectorRegistry()
    collector = PrometheusCollector(hub).register(registry)
    router = HashRouter(["s0", "s1"])
    watch_router(router, "users", telemetry=hub)
    try:
        for generation in range(2, 60):
            router.add_shard(f"s{generation}")
            router.remove_shard(f"s{generation - 2}")
            for i in range(20):
                router.route(f"k{generation}:{i}")
            lines = _lines(registry, "scalekit_router_routes_total")
            # The 2 live shards, the one removed now (its last count), none older.
            assert len(lines) <= 3, lines
        live = {f's{g}"' for g in (58, 59)}
        shards = {line.split('shard="')[1].split()[0].rstrip("}") for line in lines}
        assert {s for s in shards if s in live} == live
        # Counts of a live shard never went backwards across the churn.
        lines = _lines(registry, "scalekit_router_routes_total")
        assert len(lines) == 2
    finally:
        collector.close()


def test_series_of_collected_objects_go_once_no_object_of_the_name_is_left() -> None:
    import gc
    import weakref

    from prometheus_client import CollectorRegistry

    from scalekit.caching import LRUCache
    from scalekit.observability import PrometheusCollector, watch_cache

    hub = Telemetry()
    registry = CollectorRegistry()
    collector = PrometheusCollector(hub).register(registry)
    balancer_refs = []
    try:
        for generation in range(40):
            cache: LRUCache[int, int] = LRUCache(maxsize=4)
            watch_cache(cache, f"c{generation}", telemetry=hub)
            cache[1] = 1
            cache.get(1)
            lb = RoundRobin(["a", "b"])
            watch_balancer(lb, f"b{generation}", telemetry=hub)
            lb.release(lb.pick(), latency=0.001)
            balancer_refs.append(weakref.ref(lb))
            assert _lines(registry, f'scalekit_cache_hits_total{{cache="c{generation}"}}') == [
                f'scalekit_cache_hits_total{{cache="c{generation}"}} 1.0'
            ]
            del cache, lb
            gc.collect()
        assert all(ref() is None for ref in balancer_refs)
        _lines(registry, "scalekit_")  # the last generation's final values, once more
        left = [line for line in _lines(registry, "scalekit_") if 'cache="c' in line]
        left += [line for line in _lines(registry, "scalekit_") if 'balancer="b' in line]
        assert left == []

        # A name with a live object keeps its total when another object of it goes.
        keep: LRUCache[int, int] = LRUCache(maxsize=4)
        gone: LRUCache[int, int] = LRUCache(maxsize=4)
        for each in (keep, gone):
            watch_cache(each, "products", telemetry=hub)
            each[1] = 1
            each.get(1)
        del each
        hits = 'scalekit_cache_hits_total{cache="products"}'
        assert _lines(registry, hits) == [f"{hits} 2.0"]
        del gone
        gc.collect()
        for _ in range(3):
            assert _lines(registry, hits) == [f"{hits} 2.0"]
        del keep
        gc.collect()
        assert _lines(registry, hits) == [f"{hits} 2.0"]  # reported once more
        assert _lines(registry, hits) == []
    finally:
        collector.close()


def test_a_renamed_object_starts_its_new_name_at_zero_and_the_old_name_goes() -> None:
    from scalekit.caching import LRUCache
    from scalekit.observability import watch_cache

    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    cache: LRUCache[int, int] = LRUCache(maxsize=4)
    watch_cache(cache, "x", telemetry=hub)
    cache[1] = 1

    def hits() -> dict[str, float]:
        return {
            s.labels["cache"]: s.value for s in hub.collect() if s.metric == "scalekit_cache_hits"
        }

    for _ in range(4):
        cache.get(1)
    assert hits() == {"x": 4}
    cache.get(1)  # counted after the last collection: still the old name's
    watch_cache(cache, "y", telemetry=hub)
    cache.get(1)
    assert hits() == {"x": 5, "y": 1}  # x's final value, reported once more
    assert hits() == {"y": 1}
    cache.get(1)
    assert hits() == {"y": 2}
