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


def test_an_exporter_replacing_a_closed_one_carries_on_from_the_hub_totals() -> None:
    # The error for a second exporter says to close() the first one: the one made
    # after it, on the same provider, must report every counter, gauge and histogram.
    hub = Telemetry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    first = OpenTelemetryExporter(hub, meter_provider=provider)
    cache: LRUCache[str, int] = LRUCache(maxsize=10)
    watch_cache(cache, "products", telemetry=hub)
    cache["a"] = 1
    cache.get("a")
    cache.get("a")
    hub.add("scalekit_lock_timeouts", lock="stock")
    hub.observe("scalekit_lock_wait_seconds", 0.25, lock="stock", outcome="timeout")
    assert _points(reader)["scalekit.cache.hits"][0].value == 2
    first.close()
    second = OpenTelemetryExporter(hub, meter_provider=provider)
    cache.get("a")
    cache["b"] = 2
    hub.add("scalekit_lock_timeouts", lock="stock")
    hub.observe("scalekit_lock_wait_seconds", 0.5, lock="stock", outcome="timeout")
    points = _points(reader)
    (hits,) = points["scalekit.cache.hits"]
    assert hits.value == 3 and dict(hits.attributes) == {"cache": "products"}
    (size,) = points["scalekit.cache.size"]
    assert size.value == 2
    (timeouts,) = points["scalekit.lock.timeouts"]
    assert timeouts.value == 2
    (wait,) = points["scalekit.lock.wait_duration"]
    assert wait.count == 2 and wait.sum == 0.75
    second.close()
    # Closed for good: nothing is reported any more, and a third one goes on again.
    assert "scalekit.cache.hits" not in _points(reader)
    third = OpenTelemetryExporter(hub, meter_provider=provider)
    assert _points(reader)["scalekit.cache.hits"][0].value == 3
    third.close()
    provider.shutdown()
