"""Export scalekit's metrics through the OpenTelemetry metrics API.

Install the extra: `pip install 'scalekit-primitives[opentelemetry]'` (the
API only; bring your own SDK and exporter).

```python
from scalekit.observability import OpenTelemetryExporter

OpenTelemetryExporter()      # meters from the global MeterProvider
```

Counters and gauges are observable instruments read at each collection
(cumulative totals); histograms are synchronous and recorded as they
happen. Instrument names are the catalog's `otel_name`
(`scalekit.cache.hits`), without a unit suffix, as OpenTelemetry's naming
guidance asks: the unit is the instrument's `unit`, `s` for seconds and
`1` for ratios and counts (`scalekit_lock_wait_seconds` is
`scalekit.lock.wait_duration` in `s`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Observation
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .. import __version__
from ..exceptions import ArgumentTypeError, ConfigurationError
from .catalog import METRICS, MetricSpec
from .core import DEFAULT_BUCKETS, Labels, MemoryRecorder, Telemetry, default_telemetry

__all__ = ["OpenTelemetryExporter"]

# Each meter provider's instruments, made once (the SDK hands back an instrument
# already registered under a name, without the new callbacks): id(provider) ->
# (the provider, held weakly when it can be, and its instruments). A provider
# that is dropped takes its entry with it.
_installed: dict[int, tuple[Callable[[], Any], _Instruments]] = {}
_installed_lock = threading.Lock()


def _instruments_of(provider: Any) -> _Instruments | None:
    """The instruments made on *provider*, if any (called with `_installed_lock` held)."""
    found = _installed.get(id(provider))
    if found is None:
        return None
    if found[0]() is not provider:  # an earlier provider that had the same id is gone
        del _installed[id(provider)]
        return None
    return found[1]


def _install(provider: Any) -> _Instruments:
    """Make *provider*'s instruments (called with `_installed_lock` held)."""
    instruments = _Instruments(provider)
    key = id(provider)
    try:
        ref: Callable[[], Any] = weakref.ref(provider, lambda _: _forget(key))
    except TypeError:  # a provider that cannot be weakly referenced is kept
        ref = lambda: provider  # noqa: E731
    _installed[key] = (ref, instruments)
    return instruments


def _forget(key: int) -> None:
    with _installed_lock:
        found = _installed.get(key)
        if found is not None and found[0]() is None:
            del _installed[key]


_UNITS = {"seconds": "s", "ratio": "1", "": "1"}


class _Forward:
    """Sends histogram observations to their OpenTelemetry instruments."""

    def __init__(self, histograms: dict[str, Any]) -> None:
        self._histograms = histograms

    def add(self, spec: MetricSpec, amount: float, labels: Labels) -> None:
        pass

    def set(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        pass

    def observe(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        self._histograms[spec.name].record(value, attributes=dict(labels))


def _histogram(meter: Any, spec: MetricSpec, unit: str) -> Any:
    """A histogram whose advised buckets are the Prometheus exporter's, in seconds."""
    try:
        return meter.create_histogram(
            spec.otel_name,
            unit=unit,
            description=spec.help,
            explicit_bucket_boundaries_advisory=list(DEFAULT_BUCKETS),
        )
    except TypeError:  # an API older than 1.23 takes no advisory
        return meter.create_histogram(spec.otel_name, unit=unit, description=spec.help)


class _Instruments:
    """One meter provider's scalekit instruments, read through its current exporter.

    Made with the provider's first exporter and kept for the provider's life:
    an exporter made after a closed one becomes the current one, and the
    same instruments go on reporting, from its hub's totals.
    """

    def __init__(self, provider: Any) -> None:
        meter = provider.get_meter("scalekit", __version__)
        self.current: OpenTelemetryExporter | None = None
        self.histograms: dict[str, Any] = {}
        for spec in METRICS.values():
            unit = _UNITS.get(spec.unit, spec.unit)
            if spec.kind == "histogram":
                self.histograms[spec.name] = _histogram(meter, spec, unit)
            elif spec.kind == "counter":
                meter.create_observable_counter(
                    spec.otel_name, callbacks=[self._callback(spec)], unit=unit,
                    description=spec.help,
                )  # fmt: skip
            else:
                meter.create_observable_gauge(
                    spec.otel_name, callbacks=[self._callback(spec)], unit=unit,
                    description=spec.help,
                )  # fmt: skip

    def _callback(self, spec: MetricSpec) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            exporter = self.current
            if exporter is None:
                return []
            return exporter._observations(spec)

        return observe


class OpenTelemetryExporter:
    """Creates one OpenTelemetry instrument per catalog metric for a hub.

    Args:
        telemetry: the hub (default: `default_telemetry()`).
        meter_provider: where meters come from (default: the global one).

    Raises:
        ArgumentTypeError: *telemetry* is neither `None` nor a `Telemetry`, or
            *meter_provider* is neither `None` nor a meter provider.
        ConfigurationError: *meter_provider* already has an exporter that
            was not closed (its instruments would count everything twice).
    """

    def __init__(
        self, telemetry: Telemetry | None = None, *, meter_provider: Any | None = None
    ) -> None:
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise ArgumentTypeError(
                "telemetry must be a scalekit.observability.Telemetry or None, got "
                f"{type(telemetry).__name__}: {telemetry!r}"
            )
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            raise ArgumentTypeError(
                "meter_provider must be an OpenTelemetry MeterProvider (with get_meter()) or "
                f"None, got {type(meter_provider).__name__}: {meter_provider!r}"
            )
        self._telemetry = telemetry or default_telemetry()
        provider = meter_provider or otel_metrics.get_meter_provider()
        self._closed = False
        self._recorder = MemoryRecorder()
        # One reading of the hub per collection cycle, made by the first callback
        # the SDK runs (instruments are collected in the order they were created).
        self._first = next(s.name for s in METRICS.values() if s.kind != "histogram")
        self._reading: dict[str, dict[Labels, float]] = {}
        with _installed_lock:
            found = _instruments_of(provider)
            if found is not None and found.current is not None:
                raise ConfigurationError(
                    "meter_provider already has an OpenTelemetryExporter; its instruments "
                    "would count every measurement twice (close() the first one, or use one "
                    "exporter)"
                )
            if found is None:
                found = _install(provider)
            self._instruments = found
            self._forward = _Forward(found.histograms)
            self._telemetry.subscribe(self._recorder)
            self._telemetry.subscribe(self._forward)
            found.current = self

    def close(self) -> None:
        """Stop receiving from the hub; the instruments then report nothing at all.

        An exporter made afterwards on the same meter provider takes the same
        instruments over and reports from its hub's totals: counters go on
        from where they were, not from 0.
        """
        with _installed_lock:
            self._closed = True
            self._telemetry.unsubscribe(self._recorder)
            self._telemetry.unsubscribe(self._forward)
            if self._instruments.current is self:
                self._instruments.current = None

    def _read(self) -> dict[str, dict[Labels, float]]:
        """Every counter and gauge now: pushed aggregates plus the watched objects."""
        counters, gauges, _ = self._recorder.snapshot()
        totals: dict[str, dict[Labels, float]] = {}
        for (name, labels), value in (*counters.items(), *gauges.items()):
            series = totals.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + value
        for sample in self._telemetry.collect():
            spec = METRICS[sample.metric]
            key = tuple((n, sample.labels[n]) for n in spec.labels)
            series = totals.setdefault(sample.metric, {})
            series[key] = series.get(key, 0.0) + sample.value
        return totals

    def _observations(self, spec: MetricSpec) -> list[Observation]:
        """The observations of counter or gauge *spec* at this collection."""
        if self._closed:
            return []
        if spec.name == self._first or not self._reading:
            self._reading = self._read()
        totals = self._reading.get(spec.name, {})
        return [Observation(v, attributes=dict(k)) for k, v in totals.items()]
