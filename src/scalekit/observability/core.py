"""The instrumentation layer: one hub, pushed measurements and pulled state.

Two ways a measurement reaches an exporter:

* **Pushed**: a primitive calls `Telemetry.add()`, `Telemetry.set()` or
  `Telemetry.observe()` when something happens (a load took 12 ms, an
  endpoint was ejected). With no recorder subscribed, the hub's `active` flag
  is false and instrumented code skips the call altogether, so the cost
  when nobody listens is one attribute read.
* **Pulled**: state a primitive keeps anyway (a cache's hit counters, a
  balancer's in-flight counts) is read only when an exporter collects:
  `Telemetry.watch()` registers a callback, held by a weak reference to the
  object it reads so that watching never keeps a cache or balancer alive.

Exporters (`scalekit.observability.prometheus_exporter`,
`scalekit.observability.otel_exporter`) subscribe a recorder and read both.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..exceptions import ConfigurationError
from . import _emit
from .catalog import EVENTS, METRICS, MetricSpec

__all__ = [
    "DEFAULT_BUCKETS",
    "HistogramState",
    "MemoryRecorder",
    "Recorder",
    "Sample",
    "Telemetry",
    "default_telemetry",
    "log_event",
]

# Prometheus' default buckets, in seconds.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]
T = TypeVar("T")

_logger = logging.getLogger("scalekit")


@dataclass(frozen=True)
class Sample:
    """One value of one metric for one label set, as a pull source reports it."""

    metric: str
    value: float
    labels: Mapping[str, str]


class Recorder(Protocol):
    """Receives pushed measurements; exporters implement it."""

    def add(self, spec: MetricSpec, amount: float, labels: Labels) -> None:
        """Add *amount* (>= 0) to a counter."""

    def set(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        """Set a gauge."""

    def observe(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        """Record one observation of a histogram."""


def _spec(metric: str, kind: str) -> MetricSpec:
    spec = METRICS.get(metric)
    if spec is None:
        raise ConfigurationError(
            f"metric must be one of scalekit.observability.METRICS, got {metric!r}"
        )
    if spec.kind != kind:
        raise ConfigurationError(f"metric {metric!r} is a {spec.kind}, not a {kind}")
    return spec


def _labels(spec: MetricSpec, labels: Mapping[str, Any]) -> Labels:
    if set(labels) != set(spec.labels):
        raise ConfigurationError(
            f"labels of {spec.name} must be {list(spec.labels)}, got {sorted(labels)}"
        )
    return tuple((name, str(labels[name])) for name in spec.labels)


class Telemetry:
    """The hub every instrumented primitive reports to.

    Most programs use the process-wide `default_telemetry()`; tests and
    multi-tenant programs build their own and pass it to the primitives and
    exporters they want to keep apart.

    Thread-safety: thread-safe; recorders are called on the emitting thread.

    Cost: with no recorder, `active` is false and nothing else runs; with
    recorders, one call per recorder per measurement.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorders: tuple[Recorder, ...] = ()
        self._sources: list[tuple[weakref.ref[Any], Callable[[Any], Iterable[Sample]]]] = []
        self._switches: list[tuple[weakref.ref[Any], Callable[[Any, bool], None]]] = []
        self.active = False

    # -- recorders ----------------------------------------------------------

    def subscribe(self, recorder: Recorder) -> None:
        """Send every pushed measurement to *recorder* from now on."""
        with self._lock:
            self._recorders = (*self._recorders, recorder)
            _emit._subscribed(1)
            was, self.active = self.active, True
        if not was:
            self._switch(True)

    def unsubscribe(self, recorder: Recorder) -> None:
        """Stop sending to *recorder* (no error if it was not subscribed)."""
        with self._lock:
            kept = tuple(r for r in self._recorders if r is not recorder)
            _emit._subscribed(len(kept) - len(self._recorders))
            self._recorders = kept
            was, self.active = self.active, bool(kept)
        if was and not self.active:
            self._switch(False)

    def on_switch(self, obj: T, switch: Callable[[T, bool], None]) -> None:
        """Call `switch(obj, active)` now and whenever the hub turns on or off.

        This is how a watched primitive gets its hot-path probe only while
        somebody listens. *obj* is held weakly.
        """
        with self._lock:
            self._switches.append((weakref.ref(obj), switch))
            active = self.active
        switch(obj, active)

    def _switch(self, active: bool) -> None:
        with self._lock:
            self._switches = [(ref, fn) for ref, fn in self._switches if ref() is not None]
            switches = list(self._switches)
        for ref, fn in switches:
            obj = ref()
            if obj is not None:
                fn(obj, active)

    # -- pushing --------------------------------------------------------------

    def add(self, metric: str, amount: float = 1.0, **labels: Any) -> None:
        """Add *amount* to counter *metric*.

        Raises:
            ConfigurationError: unknown metric, wrong kind, wrong labels, or a
                negative or non-finite amount.
        """
        spec = _spec(metric, "counter")
        if not (isinstance(amount, (int, float)) and math.isfinite(amount) and amount >= 0):
            raise ConfigurationError(
                f"amount must be a finite number >= 0, got {amount!r} for {metric}"
            )
        key = _labels(spec, labels)
        for recorder in self._recorders:
            recorder.add(spec, float(amount), key)

    def set(self, metric: str, value: float, **labels: Any) -> None:
        """Set gauge *metric* to *value*."""
        spec = _spec(metric, "gauge")
        key = _labels(spec, labels)
        for recorder in self._recorders:
            recorder.set(spec, float(value), key)

    def observe(self, metric: str, value: float, **labels: Any) -> None:
        """Record one observation of histogram *metric*.

        Raises:
            ConfigurationError: as `add()`; NaN is refused, never recorded.
        """
        spec = _spec(metric, "histogram")
        if not (isinstance(value, (int, float)) and not math.isnan(value)):
            raise ConfigurationError(f"value must be a number, got {value!r} for {metric}")
        key = _labels(spec, labels)
        for recorder in self._recorders:
            recorder.observe(spec, float(value), key)

    def _observe_many(self, metric: str, values: list[float], **labels: Any) -> None:
        """`observe()` for a batch of values a probe already checked (finite, >= 0)."""
        spec = _spec(metric, "histogram")
        key = _labels(spec, labels)
        for recorder in self._recorders:
            _emit.observe_many(recorder, spec, values, key)

    # -- pulling --------------------------------------------------------------

    def watch(self, obj: T, collect: Callable[[T], Iterable[Sample]]) -> None:
        """Report `collect(obj)` at every collection while *obj* is alive.

        *obj* is held by a weak reference: watching it never keeps it alive,
        and its samples disappear once it is garbage.
        """
        with self._lock:
            self._sources.append((weakref.ref(obj), collect))

    def unwatch(self, obj: object) -> None:
        """Stop reporting *obj*."""
        with self._lock:
            self._sources = [(ref, fn) for ref, fn in self._sources if ref() is not obj]

    def collect(self) -> Iterator[Sample]:
        """Every pulled sample now, checked against the catalog.

        Raises:
            ConfigurationError: a source reported a metric or labels outside
                the catalog.
        """
        with self._lock:
            self._sources = [(ref, fn) for ref, fn in self._sources if ref() is not None]
            sources = list(self._sources)
        for ref, fn in sources:
            obj = ref()
            if obj is None:
                continue
            for sample in fn(obj):
                spec = METRICS.get(sample.metric)
                if spec is None or set(sample.labels) != set(spec.labels):
                    raise ConfigurationError(
                        f"a watched source reported {sample.metric!r} with labels "
                        f"{sorted(sample.labels)}, which the catalog does not define"
                    )
                yield sample


_default = Telemetry()


def default_telemetry() -> Telemetry:
    """The process-wide hub that primitives report to unless given another."""
    return _default


@dataclass
class HistogramState:
    """Bucket counts (cumulative on export), sum and count of one histogram series."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf

    def record(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def record_many(self, values: list[float]) -> None:
        counts, total = _emit.bucket_counts(self.buckets, values)
        for index, n in counts.items():
            self.counts[index] += n
        self.total += total
        self.count += len(values)

    def cumulative(self) -> list[tuple[float, int]]:
        """`(upper bound, observations <= bound)` pairs, ending with +Inf."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class MemoryRecorder:
    """Aggregates pushed measurements in memory: what an exporter reads.

    Counters sum, gauges keep the last value, histograms count into
    `buckets` (seconds; `DEFAULT_BUCKETS` unless given).

    Thread-safety: thread-safe.
    """

    def __init__(self, buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or not all(map(math.isfinite, bounds)):
            raise ConfigurationError(
                f"buckets must be finite, strictly increasing and not empty, got {bounds!r}"
            )
        self.buckets = bounds
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, Labels], float] = {}
        self.gauges: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], HistogramState] = {}

    def add(self, spec: MetricSpec, amount: float, labels: Labels) -> None:
        key = (spec.name, labels)
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def set(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        with self._lock:
            self.gauges[(spec.name, labels)] = value

    def observe(self, spec: MetricSpec, value: float, labels: Labels) -> None:
        key = (spec.name, labels)
        with self._lock:
            state = self.histograms.get(key)
            if state is None:
                state = self.histograms[key] = HistogramState(self.buckets)
            state.record(value)

    def observe_many(self, spec: MetricSpec, values: list[float], labels: Labels) -> None:
        """Record a batch of observations of one series under one lock."""
        key = (spec.name, labels)
        with self._lock:
            state = self.histograms.get(key)
            if state is None:
                state = self.histograms[key] = HistogramState(self.buckets)
            state.record_many(values)

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, Labels], float],
        dict[tuple[str, Labels], float],
        dict[tuple[str, Labels], HistogramState],
    ]:
        """Copies of the counters, gauges and histograms, taken atomically."""
        with self._lock:
            return (
                dict(self.counters),
                dict(self.gauges),
                {
                    k: HistogramState(v.buckets, list(v.counts), v.total, v.count)
                    for k, v in self.histograms.items()
                },
            )


def log_event(event: str, level: int = logging.WARNING, **fields: Any) -> None:
    """Log one of the rare events in `EVENTS` on the `scalekit` logger.

    The record's message is `event key=value ...` (fields sorted), and the
    record carries `event` and `fields` attributes for structured handlers.

    Raises:
        ConfigurationError: *event* is not in `EVENTS`.
    """
    if event not in EVENTS:
        raise ConfigurationError(
            f"event must be one of scalekit.observability.EVENTS, got {event!r}"
        )
    if not _logger.isEnabledFor(level):
        return
    text = " ".join(f"{k}={fields[k]!r}" for k in sorted(fields))
    _logger.log(level, "%s %s", event, text, extra={"event": event, "fields": dict(fields)})
