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
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..exceptions import ArgumentTypeError, ConfigurationError
from . import _emit
from .catalog import EVENTS, METRICS, CounterName, GaugeName, HistogramName, MetricSpec

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
Series = tuple[str, tuple[str, ...]]  # a metric and its label values, in catalog order
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


# Gauges that are states (0/1, an age, a ratio): same-name objects report the largest.
_MAX_GAUGES = frozenset(
    {
        "scalekit_nearcache_degraded",
        "scalekit_nearcache_staleness_seconds",
        "scalekit_balancer_ejected",
        "scalekit_balancer_panic",
        "scalekit_migration_progress_ratio",
    }
)

# Failures of recorders and sources are logged at most once per this many seconds each.
_FAILURE_LOG_INTERVAL = 60.0
_failure_logged: dict[tuple[str, int], float] = {}


def _failed(event: str, what: object, exc: BaseException, **fields: Any) -> None:
    """Log a recorder's or source's failure, at most once a minute per object."""
    key = (event, id(what))
    now = time.monotonic()
    last = _failure_logged.get(key)
    if last is not None and now - last < _FAILURE_LOG_INTERVAL:
        return
    _failure_logged[key] = now
    log_event(event, logging.ERROR, error=repr(exc), **fields)


def _recorder_failed(recorder: object, spec: MetricSpec, exc: BaseException) -> None:
    _failed(
        "scalekit.observability.recorder_failed",
        recorder,
        exc,
        recorder=type(recorder).__name__,
        metric=spec.name,
    )


class Telemetry:
    """The hub every instrumented primitive reports to.

    Most programs use the process-wide `default_telemetry()`; tests and
    multi-tenant programs build their own and pass it to the primitives and
    exporters they want to keep apart.

    Thread-safety: thread-safe; recorders are called on the emitting thread.
    A recorder that raises never reaches the primitive: the error is logged
    as `scalekit.observability.recorder_failed` (at most once a minute per
    recorder) and the measurement is lost for that recorder only.

    Cost: with no recorder, `active` is false and nothing else runs; with
    recorders, one call per recorder per measurement.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._recorders: tuple[Recorder, ...] = ()
        # id(obj) -> (weak reference, collect); one source per object.
        self._sources: dict[int, tuple[weakref.ref[Any], Callable[[Any], Iterable[Sample]]]] = {}
        self._switches: list[tuple[weakref.ref[Any], Callable[[Any, bool], None]]] = []
        # Collections (and folds before a reset) run one at a time, so that each
        # source's counter readings are applied in the order they were taken.
        self._collect_lock = threading.Lock()
        # The last counter readings of each watched object (id -> series -> value),
        # and those of unwatched ones, kept in case they are watched again.
        self._base: dict[int, dict[Series, float]] = {}
        self._parked: dict[int, tuple[weakref.ref[Any], dict[Series, float]]] = {}
        # The exported total of every pulled counter series: the sum of every
        # increase its sources were seen to make; it never decreases.
        self._totals: dict[Series, float] = {}
        self._labels_of: dict[Series, Mapping[str, str]] = {}
        # Departed-object expiry: the live values each owner reported per scope,
        # the scopes to expire at the end of this collection, and series marked.
        self._keeps: dict[tuple[str, str], dict[int, tuple[str, frozenset[str]]]] = {}
        self._pending: set[tuple[str, str]] = set()
        self._doomed: dict[tuple[str, str], set[Series]] = {}
        # Counter series that exist at 0 from the moment their object is watched.
        self._zeros: dict[tuple[str, Labels], MetricSpec] = {}
        # The name (label, value) each watched or parked object reports under, and
        # the names whose last object is gone: expiries left before their series go.
        self._scopes: dict[int, tuple[str, str]] = {}
        self._orphans: dict[tuple[str, str], int] = {}
        # The total of every pushed counter series, kept by the hub so that a
        # recorder subscribed later (a new exporter) starts from it, not at 0.
        # `_push_lock` makes each increment land either in the totals a new
        # recorder starts from or in that recorder, never in both.
        self._push_lock = threading.Lock()
        self._pushed: dict[tuple[str, Labels], float] = {}
        # Pushed histograms, per bucket layout: taken from a `MemoryRecorder` when it
        # unsubscribes, given to one that subscribes (an exporter replaced: a reload).
        self._pushed_hists: dict[tuple[float, ...], dict[tuple[str, Labels], HistogramState]] = {}
        self.active = False
        # How many recorders this hub adds to `_emit.on`'s count, given back by a
        # finalizer if the hub is collected with recorders still subscribed.
        self._listening = [0]
        weakref.finalize(self, _stop_listening, self._listening)
        with _hubs_lock:
            _hubs.add(self)

    # -- recorders ----------------------------------------------------------

    def subscribe(self, recorder: Recorder) -> None:
        """Send every pushed measurement to *recorder* from now on.

        The recorder first receives `add(spec, 0.0, labels)` for every
        counter series the watched objects declared, so that those series
        exist at 0 before their first event.

        Raises:
            ArgumentTypeError: *recorder* lacks `add`, `set` or `observe`.
        """
        missing = [m for m in ("add", "set", "observe") if not callable(getattr(recorder, m, None))]
        if missing:
            raise ArgumentTypeError(
                f"recorder must have add(), set() and observe() methods, got "
                f"{type(recorder).__name__} without {', '.join(missing)}"
            )
        with self._lock:
            if any(r is recorder for r in self._recorders):
                return
            if isinstance(recorder, MemoryRecorder):
                self._seed_histograms(recorder)
            with self._push_lock:
                self._recorders = (*self._recorders, recorder)
                pushed = dict(self._pushed)
            self._listening[0] += 1
            _emit._subscribed(1)
            was, self.active = self.active, True
            for series, spec in self._zeros.items():
                self._call(recorder, "add", spec, pushed.pop(series, 0.0), series[1])
            for (metric, key), total in pushed.items():
                self._call(recorder, "add", METRICS[metric], total, key)
            if not was:
                self._switch(True)

    def _seed_histograms(self, recorder: MemoryRecorder) -> None:
        """Give a new memory recorder the pushed histograms so far (called with `_lock` held).

        From the states kept from closed recorders and those of subscribed
        ones with the same buckets, the fullest of each series: an exporter
        that replaces another, before or after the other is closed, goes on
        from its counts. An observation made while the recorder subscribes
        may be missing from it (never counted twice).
        """
        seed = dict(self._pushed_hists.get(recorder.buckets, {}))
        for other in self._recorders:
            if isinstance(other, MemoryRecorder) and other.buckets == recorder.buckets:
                for series, state in other.snapshot()[2].items():
                    if series not in seed or seed[series].count < state.count:
                        seed[series] = state
        with recorder._lock:
            for series, state in seed.items():
                mine = recorder.histograms.get(series)
                if mine is None or mine.count < state.count:
                    recorder.histograms[series] = state.copy()

    def unsubscribe(self, recorder: Recorder) -> None:
        """Stop sending to *recorder* (no error if it was not subscribed).

        A `MemoryRecorder`'s histograms are kept by the hub, for the next
        one subscribed with the same buckets to go on from.
        """
        with self._lock:
            if isinstance(recorder, MemoryRecorder) and any(r is recorder for r in self._recorders):
                hists = self._pushed_hists.setdefault(recorder.buckets, {})
                for series, state in recorder.snapshot()[2].items():
                    if series not in hists or hists[series].count <= state.count:
                        hists[series] = state
            kept = tuple(r for r in self._recorders if r is not recorder)
            self._listening[0] += len(kept) - len(self._recorders)
            _emit._subscribed(len(kept) - len(self._recorders))
            self._recorders = kept
            was, self.active = self.active, bool(kept)
            if was and not self.active:
                self._switch(False)

    def on_switch(self, obj: T, switch: Callable[[T, bool], None]) -> None:
        """Call `switch(obj, active)` now and whenever the hub turns on or off.

        This is how a watched primitive gets its hot-path probe only while
        somebody listens. *obj* is held weakly. Switches run under the hub's
        lock, so a concurrent `subscribe()` or `unsubscribe()` never leaves
        an object switched against the hub's state.
        """
        with self._lock:
            self._switches.append((weakref.ref(obj), switch))
            switch(obj, self.active)

    def _forget_switches(self, obj: object) -> None:
        with self._lock:
            for ref, fn in self._switches:
                if ref() is obj:
                    fn(obj, False)
            self._switches = [(r, f) for r, f in self._switches if r() not in (None, obj)]

    def _switch(self, active: bool) -> None:
        # Called with self._lock held.
        self._switches = [(ref, fn) for ref, fn in self._switches if ref() is not None]
        for ref, fn in list(self._switches):
            obj = ref()
            if obj is not None:
                fn(obj, active)

    def _declare(self, metric: str, **labels: Any) -> None:
        """Make counter series *metric* with *labels* exist at 0 from now on."""
        spec = _spec(metric, "counter")
        key = _labels(spec, labels)
        with self._lock:
            if (metric, key) in self._zeros:
                return
            self._zeros[(metric, key)] = spec
            recorders = self._recorders
        for recorder in recorders:
            self._call(recorder, "add", spec, 0.0, key)

    def _expire(
        self,
        label: str,
        value: str,
        keep_label: str,
        keep: frozenset[str],
        owner: object | None = None,
    ) -> None:
        """Forget series of departed objects (see `MemoryRecorder.expire()`).

        *owner* is the watched object reporting *keep* (its live values of
        *keep_label*): objects watched under the same name keep each other's
        series, since a series goes only once no owner of the scope keeps it.
        Called during a collection, the expiry runs once at its end; called
        outside one, at once. Zero declarations of such series go at once;
        pulled counters and recorders that have an `expire()` method drop
        theirs one expiry after first seeing them gone.
        """
        scope = (label, value)
        with self._lock:
            self._keeps.setdefault(scope, {})[id(owner)] = (keep_label, keep)
            self._pending.add(scope)
        if not self._collect_lock.locked():
            with self._collect_lock:
                self._run_expiries()

    def _run_expiries(self) -> None:
        # Called with self._collect_lock held.
        with self._lock:
            pending, self._pending = self._pending, set()
            work: list[tuple[str, str, str, frozenset[str]]] = []
            for label, value in pending:
                owners = self._keeps.get((label, value), {})
                for gone in [o for o in owners if o != id(None) and o not in self._sources]:
                    del owners[gone]
                if not owners:
                    continue
                keep_label = next(iter(owners.values()))[0]
                keep = frozenset().union(*(k for _, k in owners.values()))
                work.append((label, value, keep_label, keep))
                self._expire_here(label, value, keep_label, keep)
            recorders = self._recorders
        for label, value, keep_label, keep in work:
            for recorder in recorders:
                expire = getattr(recorder, "expire", None)
                if expire is None:
                    continue
                try:
                    expire(label, value, keep_label, keep)
                except Exception as exc:  # as in _call()
                    _failed(
                        "scalekit.observability.recorder_failed",
                        recorder,
                        exc,
                        recorder=type(recorder).__name__,
                        metric="(expire)",
                    )

    def _orphan(self, dead: set[tuple[str, str]]) -> None:
        # Called with self._lock held: names whose last object just went.
        live = {self._scopes[k] for k in (*self._sources, *self._parked) if k in self._scopes}
        for scope in dead - live:
            self._orphans[scope] = 2  # marked at this collection, dropped at the next

    def _expire_orphans(self) -> None:
        """Forget the series of names no live object reports (see `watch()`'s *scope*)."""
        # Called with self._collect_lock held.
        with self._lock:
            work = list(self._orphans)
            for scope in work:
                label, value = scope
                self._expire_here(label, value, label, frozenset())
                self._orphans[scope] -= 1
                if not self._orphans[scope]:
                    del self._orphans[scope]
                    self._doomed.pop(scope, None)
                    self._keeps.pop(scope, None)
            recorders = self._recorders
        for label, value in work:
            for recorder in recorders:
                expire = getattr(recorder, "expire", None)
                if expire is None:
                    continue
                try:
                    expire(label, value, label, frozenset())
                except Exception as exc:  # as in _call()
                    _failed(
                        "scalekit.observability.recorder_failed",
                        recorder,
                        exc,
                        recorder=type(recorder).__name__,
                        metric="(expire)",
                    )

    def _expire_here(self, label: str, value: str, keep_label: str, keep: frozenset[str]) -> None:
        # Called with self._lock held: the zeros at once, pulled counters one expiry later.
        scoped = (label, value)
        for metric, key in list(self._zeros):
            if scoped not in key:
                continue
            kept = dict(key).get(keep_label)
            if kept is not None and kept not in keep:
                del self._zeros[(metric, key)]
        with self._push_lock:
            stores: list[dict[tuple[str, Labels], Any]] = [
                self._pushed,
                *self._pushed_hists.values(),
            ]
            for store in stores:
                for metric, key in list(store):
                    kept = dict(key).get(keep_label) if scoped in key else None
                    if kept is not None and kept not in keep:
                        del store[(metric, key)]
        doomed = self._doomed.pop(scoped, set())
        marked: set[Series] = set()
        for series in list(self._totals):
            spec = METRICS[series[0]]
            fields = dict(zip(spec.labels, series[1], strict=True))
            if fields.get(label) != value or keep_label not in fields:
                continue
            if fields[keep_label] in keep:
                continue
            if series in doomed:
                del self._totals[series]
                self._labels_of.pop(series, None)
                for base in self._base.values():
                    base.pop(series, None)
            else:
                marked.add(series)
        if marked:
            self._doomed[scoped] = marked

    def _call(
        self, recorder: Recorder, method: str, spec: MetricSpec, value: Any, key: Labels
    ) -> None:
        try:
            getattr(recorder, method)(spec, value, key)
        except Exception as exc:  # a recorder's failure must never reach the primitive
            _recorder_failed(recorder, spec, exc)

    # -- pushing --------------------------------------------------------------

    def add(self, metric: CounterName, amount: float = 1.0, **labels: Any) -> None:
        """Add *amount* to counter *metric*.

        Raises:
            ConfigurationError: unknown metric, wrong kind, wrong labels, or a
                negative or non-finite amount.
        """
        spec = _spec(metric, "counter")
        if not (_is_number(amount) and math.isfinite(amount) and amount >= 0):
            raise ConfigurationError(
                f"amount must be a finite number >= 0, got {amount!r} for {metric}"
            )
        self._add_key(spec, _labels(spec, labels), float(amount))

    def _add_key(self, spec: MetricSpec, key: Labels, amount: float = 1.0) -> None:
        """`add()` of a catalog counter with its label tuple, as instrumented code builds them.

        Unchecked: the primitives' own calls (`_emit`) pass specs from the
        catalog and labels in catalog order, and skip the argument checks.
        """
        series = (spec.name, key)
        with self._push_lock:
            self._pushed[series] = self._pushed.get(series, 0.0) + amount
            recorders = self._recorders
        for recorder in recorders:
            try:
                recorder.add(spec, amount, key)
            except Exception as exc:  # a recorder's failure must never reach the primitive
                _recorder_failed(recorder, spec, exc)

    def set(self, metric: GaugeName, value: float, **labels: Any) -> None:
        """Set gauge *metric* to *value*.

        Raises:
            ConfigurationError: unknown metric, wrong kind, wrong labels, or a
                value that is not a finite number.
        """
        spec = _spec(metric, "gauge")
        if not (_is_number(value) and math.isfinite(value)):
            raise ConfigurationError(f"value must be a finite number, got {value!r} for {metric}")
        self._send("set", spec, float(value), _labels(spec, labels))

    def observe(self, metric: HistogramName, value: float, **labels: Any) -> None:
        """Record one observation of histogram *metric*.

        Raises:
            ConfigurationError: as `add()`: NaN, infinities and negative values
                are refused, never recorded.
        """
        spec = _spec(metric, "histogram")
        if not (_is_number(value) and math.isfinite(value) and value >= 0):
            raise ConfigurationError(
                f"value must be a finite number >= 0, got {value!r} for {metric}"
            )
        self._observe_key(spec, _labels(spec, labels), float(value))

    def _observe_key(self, spec: MetricSpec, key: Labels, value: float) -> None:
        """`observe()` of a catalog histogram, unchecked (see `_add_key`)."""
        for recorder in self._recorders:
            try:
                recorder.observe(spec, value, key)
            except Exception as exc:  # a recorder's failure must never reach the primitive
                _recorder_failed(recorder, spec, exc)

    def _send(self, op: str, spec: Any, value: float, key: Any) -> None:
        """Hand one checked measurement to every recorder; a recorder's failure never escapes."""
        for recorder in self._recorders:
            try:
                getattr(recorder, op)(spec, value, key)
            except Exception as exc:  # a recorder's failure must never reach the primitive
                _recorder_failed(recorder, spec, exc)

    def _observe_many(self, metric: str, values: list[float], **labels: Any) -> None:
        """`observe()` for a batch of values a probe already checked (finite, >= 0)."""
        spec = _spec(metric, "histogram")
        key = _labels(spec, labels)
        for recorder in self._recorders:
            try:
                _emit.observe_many(recorder, spec, values, key)
            except Exception as exc:  # as in _call()
                _failed(
                    "scalekit.observability.recorder_failed",
                    recorder,
                    exc,
                    recorder=type(recorder).__name__,
                    metric=spec.name,
                )

    # -- pulling --------------------------------------------------------------

    def watch(
        self,
        obj: T,
        collect: Callable[[T], Iterable[Sample]],
        *,
        scope: tuple[str, str] | None = None,
    ) -> None:
        """Report `collect(obj)` at every collection while *obj* is alive.

        *obj* is held by a weak reference: watching it never keeps it alive,
        and its samples disappear once it is garbage (its counters' last
        collected totals stay while another object reports under the same
        name, so that a total over objects of the same name never
        decreases). Watching an object again replaces its source: it is
        never counted twice.

        *scope* is the `(label, value)` the object reports under, e.g.
        `("cache", "products")`. Once no live object (watched, or unwatched
        and not yet collected) has that scope, every series carrying it
        (pulled totals, pushed counters, gauges and histograms, in this hub
        and its recorders) is exported once more with its final values and
        dropped at the next collection: a program that makes and drops
        named objects keeps a bounded set of series. A later object of the
        same name starts again from 0 (Prometheus' `rate()` reads that as a
        counter reset).

        Raises:
            ArgumentTypeError: *collect* is not callable or *obj* cannot be
                weakly referenced.
        """
        if not callable(collect):
            raise ArgumentTypeError(f"collect must be callable, got {type(collect).__name__}")
        try:
            ref = weakref.ref(obj)
        except TypeError:
            raise ArgumentTypeError(
                f"obj must be an object that can be weakly referenced, got "
                f"{type(obj).__name__}: {obj!r}"
            ) from None
        with self._lock:
            before = self._sources.get(id(obj))
            old_scope = self._scopes.get(id(obj))
            known = (before, self._parked.get(id(obj)))
            renamed = (
                scope is not None
                and self._scopes.get(id(obj), scope) != scope
                and any(f is not None and f[0]() is obj for f in known)
            )
        if renamed and before is not None and before[0]() is obj:
            self._fold_readings(obj, before)  # the old name keeps what it counted so far
        with self._lock:
            found = self._sources.get(id(obj))
            parked = self._parked.pop(id(obj), None)
            dead: set[tuple[str, str]] = set()
            if (found is not None and found[0]() is not obj) or (
                parked is not None and parked[0]() is not obj
            ):
                # An earlier object that had the same id is gone.
                self._base.pop(id(obj), None)
                if id(obj) in self._scopes:
                    dead.add(self._scopes.pop(id(obj)))
            if parked is not None and parked[0]() is obj:
                self._base[id(obj)] = parked[1]  # watched again: carry on from its readings
            self._sources[id(obj)] = (ref, collect)
            if scope is not None:
                self._scopes[id(obj)] = scope
                if self._orphans.pop(scope, None) is not None:
                    self._doomed.pop(scope, None)  # its series are kept: someone reports them
            if renamed and old_scope is not None:
                dead.add(old_scope)  # goes once no other object reports under it
            self._orphan(dead)
        if renamed:
            # The new name starts at 0: what the object counted before is the old name's.
            with self._collect_lock:
                samples = self._read(obj, collect)
                with self._lock:
                    if samples is not None and self._sources.get(id(obj), (None,))[0] is ref:
                        self._base[id(obj)] = self._counter_readings(samples)[0]

    def _fold_readings(self, obj: object, source: tuple[weakref.ref[Any], Any]) -> None:
        """Apply *obj*'s counter readings through its current *source* now."""
        with self._collect_lock:
            samples = self._read(obj, source[1])
            if samples is not None:
                self._apply(id(obj), source[0], samples)

    def unwatch(self, obj: object) -> None:
        """Stop reporting *obj* and stop its pushes to this hub.

        Its counters' totals stay in the same-name totals; watching it again
        later adds only what it counted since its last collection.
        """
        with self._lock:
            found = self._sources.get(id(obj))
            if found is not None and found[0]() is obj:
                del self._sources[id(obj)]
                self._parked[id(obj)] = (found[0], self._base.pop(id(obj), {}))
        self._forget_switches(obj)
        _emit.forget(obj, self)

    def _fold(self, obj: object) -> None:
        """Take *obj*'s counters into the totals now: it is about to reset them to 0."""
        with self._collect_lock:
            with self._lock:
                found = self._sources.get(id(obj))
                parked = self._parked.get(id(obj))
            if found is not None and found[0]() is obj:
                samples = self._read(obj, found[1])
                if samples is not None:
                    self._apply(id(obj), found[0], samples)
                with self._lock:
                    base = self._base.get(id(obj), {})
                    for series in base:
                        base[series] = 0.0
            elif parked is not None and parked[0]() is obj:
                with self._lock:
                    for series in parked[1]:
                        parked[1][series] = 0.0

    def _read(self, obj: Any, fn: Callable[[Any], Iterable[Sample]]) -> list[Sample] | None:
        """*fn*(*obj*)'s samples that the catalog allows; None (logged) if *fn* raised.

        A sample with a metric or labels outside the catalog, or a value
        that is not a finite number, is dropped alone (and logged): the
        source's other samples are reported.
        """
        try:
            samples = list(fn(obj))
        except Exception as exc:  # one failing source never breaks a scrape
            self._source_failed(obj, fn, exc)
            return None
        kept: list[Sample] = []
        bad: ConfigurationError | None = None
        for sample in samples:
            spec = METRICS.get(sample.metric)
            if spec is None or set(sample.labels) != set(spec.labels):
                bad = ConfigurationError(
                    f"a watched source reported {sample.metric!r} with labels "
                    f"{sorted(sample.labels)}, which the catalog does not define"
                )
            elif not (_is_number(sample.value) and math.isfinite(sample.value)):
                bad = ConfigurationError(
                    f"a watched source reported {sample.metric}={sample.value!r}, "
                    "not a finite number"
                )
            else:
                kept.append(sample)
        if bad is not None:
            self._source_failed(obj, fn, bad)
        return kept

    def _source_failed(self, obj: Any, fn: object, exc: BaseException) -> None:
        """Log a source's failure naming the object (`cache='products'`) and its type."""
        with self._lock:
            scope = self._scopes.get(id(obj))
        named = {scope[0]: scope[1]} if scope is not None else {}
        _failed(
            "scalekit.observability.source_failed",
            fn,
            exc,
            source=type(obj).__name__,
            **named,
        )

    def _apply(self, key: int, ref: weakref.ref[Any], samples: list[Sample]) -> None:
        """Add the increases *samples*' counters show since the source's last readings.

        A reading below the last one is a reset the hub was not told of: the
        source counted from 0 again, so all of the reading is new.
        """
        readings, labels = self._counter_readings(samples)
        with self._lock:
            found = self._sources.get(key)
            if found is None or found[0] is not ref:
                return  # unwatched meanwhile
            base = self._base.setdefault(key, {})
            for series, value in readings.items():
                last = base.get(series, 0.0)
                increase = value - last if value >= last else value
                self._totals[series] = self._totals.get(series, 0.0) + increase
                self._labels_of.setdefault(series, labels[series])
                base[series] = value

    @staticmethod
    def _counter_readings(
        samples: list[Sample],
    ) -> tuple[dict[Series, float], dict[Series, Mapping[str, str]]]:
        """The counter samples summed per series, and each series' labels."""
        readings: dict[Series, float] = {}
        labels: dict[Series, Mapping[str, str]] = {}
        for sample in samples:
            spec = METRICS[sample.metric]
            if spec.kind != "counter":
                continue
            series = (sample.metric, tuple(str(sample.labels[n]) for n in spec.labels))
            readings[series] = readings.get(series, 0.0) + float(sample.value)
            labels.setdefault(series, sample.labels)
        return readings, labels

    def collect(self) -> Iterator[Sample]:
        """Every pulled sample now, one per metric and label set.

        Objects watched under the same name are combined: counters and
        amounts (sizes, in-flight) add up, states (0/1 gauges, ages, ratios)
        report the largest. A counter reports the sum of every increase its
        objects were seen to make, so it never decreases: not when an object
        is unwatched or collected, watched again, or resets its own counts
        (`cache_clear()`, `reset_stats()`). A source that raises is skipped
        for this collection; a sample with a metric or labels outside the
        catalog, or a value that is not a finite number, is dropped alone.
        Both are logged as `scalekit.observability.source_failed` with the
        object's name (`cache='products'`), at most once a minute per
        source; every other source and sample is reported.
        """
        with self._collect_lock:
            with self._lock:
                dead: set[tuple[str, str]] = set()
                for key, (ref, _) in list(self._sources.items()):
                    if ref() is None:
                        del self._sources[key]
                        self._base.pop(key, None)
                        if key not in self._parked and key in self._scopes:
                            dead.add(self._scopes.pop(key))
                for key, (ref, _) in list(self._parked.items()):
                    if ref() is None:
                        del self._parked[key]
                        if key not in self._sources and key in self._scopes:
                            dead.add(self._scopes.pop(key))
                self._orphan(dead)
                sources = list(self._sources.items())
            gauges: dict[Series, float] = {}
            labels_of: dict[Series, Mapping[str, str]] = {}
            for key, (ref, fn) in sources:
                obj = ref()
                if obj is None:
                    continue
                samples = self._read(obj, fn)
                if samples is None:
                    continue
                self._apply(key, ref, samples)
                for sample in samples:
                    spec = METRICS[sample.metric]
                    if spec.kind == "counter":
                        continue
                    series = (sample.metric, tuple(str(sample.labels[n]) for n in spec.labels))
                    value = float(sample.value)
                    labels_of.setdefault(series, sample.labels)
                    if series in gauges and sample.metric in _MAX_GAUGES:
                        gauges[series] = max(gauges[series], value)
                    else:
                        gauges[series] = gauges.get(series, 0.0) + value
                del obj
            self._run_expiries()
            self._expire_orphans()
            with self._lock:
                totals = dict(self._totals)
                counter_labels = dict(self._labels_of)
        for series, value in totals.items():
            yield Sample(series[0], value, counter_labels[series])
        for series, value in gauges.items():
            yield Sample(series[0], value, labels_of[series])


def _stop_listening(listening: list[int]) -> None:
    """A hub was collected: its recorders no longer count as listening (`_emit.on`)."""
    count, listening[0] = listening[0], 0
    if count:
        _emit._subscribed(-count)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Every live hub. A WeakSet must not grow while it is iterated (another thread
# making a hub), so it is changed and copied only under `_hubs_lock`.
_hubs: weakref.WeakSet[Telemetry] = weakref.WeakSet()
_hubs_lock = threading.Lock()


def live_hubs() -> list[Telemetry]:
    """A snapshot of every live hub, safe against hubs made meanwhile."""
    with _hubs_lock:
        return list(_hubs)


_recorders: weakref.WeakSet[MemoryRecorder] = weakref.WeakSet()


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

    def copy(self) -> HistogramState:
        """An independent copy."""
        return HistogramState(self.buckets, list(self.counts), self.total, self.count)

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
        try:
            given = list(buckets)
        except TypeError:
            raise ArgumentTypeError(
                f"buckets must be an iterable of numbers, got {type(buckets).__name__}: {buckets!r}"
            ) from None
        bad = [b for b in given if not _is_number(b)]
        if bad:
            raise ArgumentTypeError(
                f"buckets must be numbers (seconds), got {type(bad[0]).__name__}: {bad[0]!r}"
            )
        bounds = tuple(float(b) for b in given)
        if (
            not bounds
            or list(bounds) != sorted(set(bounds))
            or not all(map(math.isfinite, bounds))
            or bounds[0] < 0
        ):
            raise ConfigurationError(
                f"buckets must be finite, >= 0, strictly increasing and not empty, got {bounds!r}"
            )
        self.buckets = bounds
        self._lock = threading.Lock()
        _recorders.add(self)
        self.counters: dict[tuple[str, Labels], float] = {}
        self.gauges: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], HistogramState] = {}
        # Series of departed objects, marked by expire() and dropped at its next call.
        self._doomed: dict[tuple[str, str], set[tuple[str, Labels]]] = {}

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

    def expire(self, label: str, value: str, keep_label: str, keep: frozenset[str]) -> None:
        """Drop the series of departed objects, one `expire()` after they were first seen gone.

        A series whose *label* is *value* and whose *keep_label* is not in
        *keep* is marked at the first call that finds it so (it is still
        exported then, with its last values) and dropped at the next call
        if it is still not kept.
        """
        scope = (label, value)
        with self._lock:
            doomed = self._doomed.pop(scope, set())
            marked: set[tuple[str, Labels]] = set()
            scoped = (label, value)
            for store in (self.counters, self.gauges, self.histograms):
                for key in list(store):
                    if scoped not in key[1]:
                        continue
                    fields = dict(key[1])
                    if keep_label not in fields:
                        continue
                    if fields[keep_label] in keep:
                        continue
                    if key in doomed:
                        del store[key]
                    else:
                        marked.add(key)
            if marked:
                self._doomed[scope] = marked

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
                {k: v.copy() for k, v in self.histograms.items()},
            )


def _after_fork_in_child() -> None:
    """A forked child starts with working locks and no pushed state of its parent.

    Every lock of this package is re-created here: the hubs', the memory
    recorders', the event rate limiter's and `_emit`'s (its module lock and
    each watched router's counts), since a thread of the parent may have
    held any of them at fork time.
    """
    global _storm_lock, _hubs_lock
    _storm_lock = threading.Lock()
    _hubs_lock = threading.Lock()
    for hub in list(_hubs):
        hub._lock = threading.RLock()
        hub._collect_lock = threading.Lock()
        hub._push_lock = threading.Lock()
        hub._pushed.clear()
        hub._pushed_hists.clear()
    for memory in list(_recorders):
        memory._lock = threading.Lock()
        memory.counters.clear()
        memory.gauges.clear()
        memory.histograms.clear()
        memory._doomed.clear()
    for hub in list(_hubs):
        for (_, key), spec in hub._zeros.items():
            for recorder in hub._recorders:
                hub._call(recorder, "add", spec, 0.0, key)
    _emit._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: At most this many records of one event are logged per second; the rest are
#: counted and the next record logged carries `suppressed=<count>`.
LOG_EVENTS_PER_SECOND = 10
_storms: dict[str, tuple[float, int, int]] = {}
_storm_lock = threading.Lock()

_LEVELS = frozenset({logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL})


def log_event(event: str, level: int = logging.WARNING, **fields: Any) -> None:
    """Log one of the rare events in `EVENTS` on the `scalekit` logger.

    The record's message is `event key=value ...` (fields sorted), and the
    record carries `event` and `fields` attributes for structured handlers.
    A storm is rate-limited: at most `LOG_EVENTS_PER_SECOND` records of one
    event per second; the records dropped are counted and the next record
    of that event carries `suppressed=<count>` (the metrics count every one).
    A logging filter or handler that raises is ignored: the exception never
    reaches the caller (and so never a primitive).

    Raises:
        ConfigurationError: *event* is not in `EVENTS` or *level* is not a
            `logging` level.
    """
    if event not in EVENTS:
        raise ConfigurationError(
            f"event must be one of scalekit.observability.EVENTS, got {event!r}"
        )
    if level not in _LEVELS:
        raise ConfigurationError(
            f"level must be one of logging.DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}"
        )
    if not _logger.isEnabledFor(level):
        return
    now = time.monotonic()
    with _storm_lock:
        started, logged, suppressed = _storms.get(event, (now, 0, 0))
        if now - started >= 1.0:
            started, logged = now, 0
        if logged >= LOG_EVENTS_PER_SECOND:
            _storms[event] = (started, logged, suppressed + 1)
            return
        _storms[event] = (started, logged + 1, 0)
    if suppressed:
        fields = {**fields, "suppressed": suppressed}
    text = " ".join(f"{k}={fields[k]!r}" for k in sorted(fields))
    try:
        _logger.log(level, "%s %s", event, text, extra={"event": event, "fields": dict(fields)})
    except Exception:  # a raising filter or handler never reaches the primitive
        return
