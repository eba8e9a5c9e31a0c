"""Metrics and events from every scalekit primitive, for Prometheus and OpenTelemetry.

One hub (`Telemetry`; the process-wide one is `default_telemetry()`)
receives pushed measurements and reads watched objects at collection time;
the exporters are optional extras:

* `PrometheusCollector` (`pip install 'scalekit-primitives[prometheus]'`);
* `OpenTelemetryExporter` (`pip install 'scalekit-primitives[opentelemetry]'`).

`METRICS` lists every metric (name, kind, unit, labels, help) and `EVENTS`
the rare events logged on the `scalekit` logger by `log_event()`.
"""

from __future__ import annotations

from typing import Any

from .catalog import EVENTS, METRICS, MetricKind, MetricSpec
from .core import (
    DEFAULT_BUCKETS,
    HistogramState,
    MemoryRecorder,
    Recorder,
    Sample,
    Telemetry,
    default_telemetry,
    log_event,
)
from .sources import watch_balancer, watch_cache

_LAZY = {
    "PrometheusCollector": "prometheus_exporter",
    "OpenTelemetryExporter": "otel_exporter",
}

__all__ = [
    "DEFAULT_BUCKETS",
    "EVENTS",
    "METRICS",
    "HistogramState",
    "MemoryRecorder",
    "MetricKind",
    "MetricSpec",
    "OpenTelemetryExporter",
    "PrometheusCollector",
    "Recorder",
    "Sample",
    "Telemetry",
    "default_telemetry",
    "log_event",
    "watch_balancer",
    "watch_cache",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
