"""Export scalekit's metrics to Prometheus through `prometheus_client`.

Install the extra: `pip install 'scalekit-primitives[prometheus]'`.

```python
from prometheus_client import start_http_server
from scalekit.observability import PrometheusCollector, watch_cache

watch_cache(products, "products")
PrometheusCollector().register()        # into prometheus_client's default registry
start_http_server(9100, addr="127.0.0.1")
```

Every metric of `scalekit.observability.METRICS` is exposed under its
catalog name (counters with `_total`), e.g.
`scalekit_cache_hits_total{cache="products"}`.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from ..exceptions import ArgumentTypeError
from .catalog import METRICS
from .core import DEFAULT_BUCKETS, MemoryRecorder, Telemetry, default_telemetry

__all__ = ["PrometheusCollector"]

# Registries a collector was registered with: a forked child re-creates their lock.
_registries: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A scrape thread of the parent may have held a registry's lock at fork time."""
    for registry in list(_registries):
        if isinstance(getattr(registry, "_lock", None), type(threading.Lock())):
            registry._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _bound(value: float) -> str:
    """A bucket bound as Prometheus writes it: `0.005`, `1.0`, `+Inf`."""
    return "+Inf" if math.isinf(value) else repr(float(value))


class PrometheusCollector:
    """A `prometheus_client` collector for one `Telemetry` hub.

    Subscribes an in-memory recorder to the hub (pushed counters, gauges and
    histograms aggregate there) and reads the hub's watched objects at every
    scrape.

    Args:
        telemetry: the hub (default: `default_telemetry()`).
        buckets: histogram bucket bounds, in seconds.

    Raises:
        ArgumentTypeError: if *telemetry* is neither `None` nor a `Telemetry`,
            or *buckets* is not an iterable of numbers.

    Thread-safety: thread-safe; a scrape copies the aggregates under a lock.
    """

    def __init__(
        self, telemetry: Telemetry | None = None, *, buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> None:
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise ArgumentTypeError(
                "telemetry must be a scalekit.observability.Telemetry or None, got "
                f"{type(telemetry).__name__}: {telemetry!r}"
            )
        self._telemetry = telemetry or default_telemetry()
        self._recorder = MemoryRecorder(buckets)
        self._telemetry.subscribe(self._recorder)
        self._registries: list[CollectorRegistry] = []

    def register(self, registry: CollectorRegistry | None = None) -> PrometheusCollector:
        """Register with *registry* (default: prometheus_client's `REGISTRY`).

        Raises:
            ArgumentTypeError: if *registry* is neither `None` nor a registry
                (an object with `register()` and `unregister()`, such as a
                `prometheus_client.CollectorRegistry`).
            ValueError: from `prometheus_client`, when the registry already
                has a collector for one of the catalog's names (a second
                `PrometheusCollector`, or a metric of the same name).
        """
        if registry is not None and not all(
            callable(getattr(registry, method, None)) for method in ("register", "unregister")
        ):
            raise ArgumentTypeError(
                "registry must be a prometheus_client.CollectorRegistry or None, got "
                f"{type(registry).__name__}: {registry!r}"
            )
        target = REGISTRY if registry is None else registry
        target.register(self)
        self._registries.append(target)
        # A registry that cannot be weakly referenced keeps its lock in a forked child.
        with contextlib.suppress(TypeError):
            _registries.add(target)
        return self

    def close(self) -> None:
        """Unsubscribe from the hub and unregister from every registry."""
        self._telemetry.unsubscribe(self._recorder)
        for registry in self._registries:
            registry.unregister(self)
        self._registries.clear()

    def describe(self) -> list[Metric]:
        """Every catalog family, empty: lets a registry refuse a second collector or a clash."""
        out: list[Metric] = []
        for name, spec in METRICS.items():
            if spec.kind == "histogram":
                out.append(HistogramMetricFamily(name, spec.help, labels=list(spec.labels)))
            elif spec.kind == "counter":
                out.append(CounterMetricFamily(name, spec.help, labels=list(spec.labels)))
            else:
                out.append(GaugeMetricFamily(name, spec.help, labels=list(spec.labels)))
        return out

    def collect(self) -> Iterator[Metric]:
        # Pulled first: reading a watched balancer hands its buffered latencies to the hub.
        pulled = list(self._telemetry.collect())
        counters, gauges, histograms = self._recorder.snapshot()
        values: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
        for (name, labels), value in (*counters.items(), *gauges.items()):
            key = tuple(v for _, v in labels)
            values[name][key] = values[name].get(key, 0.0) + value
        for sample in pulled:
            spec = METRICS[sample.metric]
            key = tuple(sample.labels[n] for n in spec.labels)
            values[sample.metric][key] = values[sample.metric].get(key, 0.0) + sample.value
        hist_by_name: dict[str, list[tuple[tuple[str, ...], Any]]] = defaultdict(list)
        for (name, labels), state in histograms.items():
            hist_by_name[name].append((tuple(v for _, v in labels), state))
        for name, spec in METRICS.items():
            family: Metric
            if spec.kind == "histogram":
                if name not in hist_by_name:
                    continue
                family = HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
                for key, state in sorted(hist_by_name[name], key=lambda kv: kv[0]):
                    family.add_metric(
                        list(key),
                        [(_bound(b), float(n)) for b, n in state.cumulative()],
                        state.total,
                    )
                yield family
                continue
            series = values.get(name)
            if not series:
                continue
            cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = cls(name, spec.help, labels=list(spec.labels))
            for key, value in sorted(series.items()):
                family.add_metric(list(key), value)
            yield family
