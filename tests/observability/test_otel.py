"""The OpenTelemetry exporter, read through the SDK's in-memory reader."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from scalekit.caching import LRUCache
from scalekit.observability import OpenTelemetryExporter, Telemetry, watch_cache


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "scalekit"
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_pulled_and_pushed_metrics_reach_an_otel_reader() -> None:
    hub = Telemetry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = OpenTelemetryExporter(hub, meter_provider=provider)
    cache: LRUCache[str, int] = LRUCache(maxsize=10)
    watch_cache(cache, "products", telemetry=hub)
    cache["a"] = 1
    cache.get("a")
    cache.get("a")
    cache.get("b")
    hub.add("scalekit_lock_timeouts", lock="stock")
    hub.observe("scalekit_lock_wait_seconds", 0.25, lock="stock", outcome="timeout")
    points = _points(reader)
    (hits,) = points["scalekit.cache.hits"]
    assert hits.value == 2 and dict(hits.attributes) == {"cache": "products"}
    (misses,) = points["scalekit.cache.misses"]
    assert misses.value == 1
    (size,) = points["scalekit.cache.size"]
    assert size.value == 1
    (timeouts,) = points["scalekit.lock.timeouts"]
    assert timeouts.value == 1 and dict(timeouts.attributes) == {"lock": "stock"}
    (wait,) = points["scalekit.lock.wait_duration"]
    assert wait.count == 1 and wait.sum == 0.25
    assert dict(wait.attributes) == {"lock": "stock", "outcome": "timeout"}
    exporter.close()
    provider.shutdown()


def test_instrument_names_carry_no_unit_and_the_unit_field_does() -> None:
    hub = Telemetry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = OpenTelemetryExporter(hub, meter_provider=provider)
    hub.observe("scalekit_lock_wait_seconds", 0.1, lock="stock", outcome="acquired")
    hub.observe("scalekit_cache_load_duration_seconds", 0.1, cache="p", outcome="ok")
    hub.observe(
        "scalekit_balancer_request_duration_seconds", 0.1, balancer="b", endpoint="e", outcome="ok"
    )
    units = {
        m.name: m.unit
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    exporter.close()
    provider.shutdown()
    assert units["scalekit.lock.wait_duration"] == "s"
    assert units["scalekit.cache.load_duration"] == "s"
    assert units["scalekit.balancer.request_duration"] == "s"
    from scalekit.observability import METRICS

    names = {spec.otel_name for spec in METRICS.values()}
    assert not [n for n in names if n.endswith(("_seconds", "_ratio", "_total"))]
    assert "scalekit.nearcache.staleness" in names
    assert "scalekit.migration.progress" in names
