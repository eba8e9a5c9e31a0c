"""Metrics and events from every scalekit primitive, for Prometheus and OpenTelemetry.

One hub (`Telemetry`; the process-wide one is `default_telemetry()`)
receives pushed measurements and reads watched objects at collection time;
the exporters are optional extras:

* `PrometheusCollector` (`pip install 'scalekit-primitives[prometheus]'`);
* `OpenTelemetryExporter` (`pip install 'scalekit-primitives[opentelemetry]'`).

`METRICS` lists every metric (name, kind, unit, labels, help) and `EVENTS`
the rare events logged on the `scalekit` logger by `log_event()`.

The exporters are looked up lazily, so `import scalekit.observability`
needs no extra; `__all__` (and so `import *`) lists only what needs none.
"""

from __future__ import annotations

from .._lazy import lazy_exports
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
from .sources import watch_balancer, watch_cache, watch_locks, watch_migration, watch_router

__all__ = [  # noqa: RUF022 - plain sorted(), as every scalekit __all__
    "DEFAULT_BUCKETS",
    "EVENTS",
    "HistogramState",
    "METRICS",
    "MemoryRecorder",
    "MetricKind",
    "MetricSpec",
    "Recorder",
    "Sample",
    "Telemetry",
    "default_telemetry",
    "log_event",
    "watch_balancer",
    "watch_cache",
    "watch_locks",
    "watch_migration",
    "watch_router",
]


__getattr__, __dir__ = lazy_exports(
    __name__,
    {"PrometheusCollector": ".prometheus_exporter", "OpenTelemetryExporter": ".otel_exporter"},
    globals(),
)
