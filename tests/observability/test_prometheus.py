"""The Prometheus exporter, scraped over HTTP and read with prometheus_client's parser."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from scalekit.balancing import RoundRobin
from scalekit.caching import LRUCache
from scalekit.locking import MemoryLock
from scalekit.observability import (
    PrometheusCollector,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scrape() -> Iterator[tuple[Telemetry, PrometheusCollector, object]]:
    hub = Telemetry()
    registry = CollectorRegistry()
    collector = PrometheusCollector(hub).register(registry)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)

    def get() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    yield hub, collector, get
    server.shutdown()
    thread.join(5)
    collector.close()


def test_cache_and_balancer_state_after_a_known_sequence(scrape) -> None:  # type: ignore[no-untyped-def]
    hub, _, get = scrape
    cache: LRUCache[str, int] = LRUCache(maxsize=2)
    watch_cache(cache, "products", telemetry=hub)
    for key in "abc":
        cache[key] = 1  # c evicts a
    cache.get("b")
    cache.get("c")
    cache.get("a")
    lb = RoundRobin(["pay-1", "pay-2"])
    watch_balancer(lb, "payments", telemetry=hub)
    held = lb.pick()
    got = get()
    products = (("cache", "products"),)
    assert got[("scalekit_cache_hits_total", products)] == 2
    assert got[("scalekit_cache_misses_total", products)] == 1
    assert got[("scalekit_cache_evictions_total", products)] == 1
    assert got[("scalekit_cache_size", products)] == 2
    assert got[("scalekit_cache_capacity", products)] == 2

    def in_flight(endpoint: str) -> float:
        key = (("balancer", "payments"), ("endpoint", endpoint))
        return got[("scalekit_balancer_in_flight", key)]

    assert in_flight(held) == 1
    assert in_flight("pay-2" if held == "pay-1" else "pay-1") == 0
    lb.release(held)
    got = get()
    assert in_flight(held) == 0


def test_pushed_counters_and_histograms(scrape) -> None:  # type: ignore[no-untyped-def]
    hub, collector, get = scrape
    hub.add("scalekit_lock_leases_lost", lock="stock", cause="expired")
    hub.add("scalekit_lock_leases_lost", lock="stock", cause="expired")
    for wait in (0.004, 0.02, 0.3, 12.0):
        hub.observe("scalekit_lock_wait_seconds", wait, lock="stock", outcome="acquired")
    got = get()
    lost = (("cause", "expired"), ("lock", "stock"))
    assert got[("scalekit_lock_leases_lost_total", lost)] == 2
    series = (("lock", "stock"), ("outcome", "acquired"))
    assert got[("scalekit_lock_wait_seconds_count", series)] == 4
    assert got[("scalekit_lock_wait_seconds_sum", series)] == pytest.approx(12.324)
    bucket = "scalekit_lock_wait_seconds_bucket"
    assert got[(bucket, (("le", "0.005"), *series))] == 1
    assert got[(bucket, (("le", "0.025"), *series))] == 2
    assert got[(bucket, (("le", "0.5"), *series))] == 3
    assert got[(bucket, (("le", "10.0"), *series))] == 3
    assert got[(bucket, (("le", "+Inf"), *series))] == 4
    collector.close()
    hub.add("scalekit_lock_leases_lost", lock="stock", cause="expired")
    assert hub.active is False


def test_a_new_collector_starts_from_the_hubs_pushed_totals() -> None:
    # Replacing the exporter (a reload, a new registry) must not reset pushed
    # counters: the hub keeps their totals, as it does for pulled ones.
    hub = Telemetry()
    first_registry = CollectorRegistry()
    first = PrometheusCollector(hub).register(first_registry)
    watch_locks("jobs", telemetry=hub)
    lock = MemoryLock("jobs:1", ttl=10)
    for _ in range(5):
        lease = lock.acquire()
        assert lease is not None
        lock.release(lease)
    lb = RoundRobin(["a", "b"])
    watch_balancer(lb, "pay", telemetry=hub)
    for _ in range(10):
        lb.release(lb.pick(), latency=0.001)
    jobs = {"lock": "jobs"}
    assert first_registry.get_sample_value("scalekit_lock_acquisitions_total", jobs) == 5
    first.close()

    registry = CollectorRegistry()
    second = PrometheusCollector(hub).register(registry)
    try:
        assert registry.get_sample_value("scalekit_lock_acquisitions_total", jobs) == 5
        assert registry.get_sample_value("scalekit_lock_timeouts_total", jobs) == 0
        picks = sum(
            registry.get_sample_value(
                "scalekit_balancer_picks_total", {"balancer": "pay", "endpoint": ep}
            )
            or 0
            for ep in "ab"
        )
        assert picks == 10
        lease = lock.acquire()
        assert lease is not None
        lock.release(lease)
        assert registry.get_sample_value("scalekit_lock_acquisitions_total", jobs) == 6
    finally:
        second.close()


def _wait_count(registry: CollectorRegistry, outcome: str) -> float | None:
    return registry.get_sample_value(
        "scalekit_lock_wait_seconds_count", {"lock": "jobs", "outcome": outcome}
    )


def _latency_count(registry: CollectorRegistry) -> float:
    return sum(
        registry.get_sample_value(
            "scalekit_balancer_request_duration_seconds_count",
            {"balancer": "pay", "endpoint": ep, "outcome": "ok"},
        )
        or 0
        for ep in "ab"
    )


@pytest.mark.parametrize("order", ["close, then attach", "attach, then close"])
def test_a_replacing_collector_goes_on_from_the_pushed_histograms(order: str) -> None:
    # Counters and histograms alike: a reload never sets an exported count back,
    # whether the new collector is attached before or after the old one is closed.
    hub = Telemetry()
    first_registry = CollectorRegistry()
    first = PrometheusCollector(hub).register(first_registry)
    watch_locks("jobs", telemetry=hub)
    lock = MemoryLock("jobs:1", ttl=10)
    lb = RoundRobin(["a", "b"])
    watch_balancer(lb, "pay", telemetry=hub)
    for _ in range(5):
        lease = lock.acquire()
        assert lease is not None
        lock.release(lease)
    for _ in range(10):
        lb.release(lb.pick(), latency=0.001)
    assert _wait_count(first_registry, "acquired") == 5
    assert _latency_count(first_registry) == 10  # scraped: the latencies are in the first

    registry = CollectorRegistry()
    if order == "close, then attach":
        first.close()
        second = PrometheusCollector(hub).register(registry)
    else:
        second = PrometheusCollector(hub).register(registry)
        first.close()
    try:
        assert _wait_count(registry, "acquired") == 5
        assert registry.get_sample_value("scalekit_lock_acquisitions_total", {"lock": "jobs"}) == 5
        assert _latency_count(registry) == 10
        lease = lock.acquire()
        assert lease is not None
        lock.release(lease)
        lb.release(lb.pick(), latency=0.001)
        assert _wait_count(registry, "acquired") == 6
        assert _latency_count(registry) == 11
    finally:
        second.close()
