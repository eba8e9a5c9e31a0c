"""What the hub guarantees a primitive and a scrape: isolation, monotonic counters, zeros."""

from __future__ import annotations

import gc
import logging
import os
import threading
import weakref
from typing import Any

import pytest

from scalekit.balancing import RoundRobin
from scalekit.caching import LRUCache
from scalekit.exceptions import ArgumentTypeError, ConfigurationError, LockTimeoutError
from scalekit.locking import MemoryLock
from scalekit.observability import (
    MemoryRecorder,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
    watch_router,
)
from scalekit.sharding import HashRouter


class Failing:
    """A recorder whose backend is gone: every call raises."""

    def add(self, spec: Any, amount: float, labels: Any) -> None:
        raise RuntimeError("exporter queue full")

    def set(self, spec: Any, value: float, labels: Any) -> None:
        raise RuntimeError("exporter queue full")

    def observe(self, spec: Any, value: float, labels: Any) -> None:
        raise RuntimeError("exporter queue full")


def _values(hub: Telemetry, metric: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for s in hub.collect() if s.metric == metric}


def test_a_failing_recorder_never_changes_a_lock(caplog: pytest.LogCaptureFixture) -> None:
    hub = Telemetry()
    good = MemoryRecorder()
    hub.subscribe(Failing())
    hub.subscribe(good)
    watch_locks("stock", telemetry=hub)
    lock = MemoryLock("stock:1", ttl=30)
    with caplog.at_level(logging.ERROR, logger="scalekit"):
        lease = lock.acquire()
        lease.release()
        again = lock.acquire(timeout=0.5)  # free: the first lease was released
        again.release()
    failures = [
        r
        for r in caplog.records
        if getattr(r, "event", "") == "scalekit.observability.recorder_failed"
    ]
    assert len(failures) == 1  # logged once, not once per measurement
    acquisitions = (("lock", "stock"),)
    assert good.counters[("scalekit_lock_acquisitions", acquisitions)] == 2


def test_a_failing_recorder_never_reaches_a_balancers_release() -> None:
    hub = Telemetry()
    hub.subscribe(Failing())
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    for _ in range(5000):  # more than one batch of latencies
        lb.release(lb.pick(), latency=0.001)
    assert lb.in_flight("a") == 0


def test_a_failing_acquire_raises_its_own_error_with_a_failing_recorder() -> None:
    hub = Telemetry()
    hub.subscribe(Failing())
    watch_locks("stock", telemetry=hub)
    lock = MemoryLock("stock:1", ttl=30)
    held = lock.acquire()
    with pytest.raises(LockTimeoutError):
        lock.acquire(timeout=0.05)
    held.release()


def test_watch_refuses_objects_it_could_not_read() -> None:
    hub = Telemetry()
    with pytest.raises(ArgumentTypeError, match="balancer must be a scalekit"):
        watch_balancer(LRUCache(5), "oops", telemetry=hub)
    with pytest.raises(ArgumentTypeError, match="balancer must be a scalekit"):
        watch_balancer(None, "oops", telemetry=hub)

    class StatsOnly:
        def stats(self) -> Any:
            return LRUCache(1).stats()

    with pytest.raises(ArgumentTypeError, match="currsize"):
        watch_cache(StatsOnly(), "mine", telemetry=hub)
    with pytest.raises(ArgumentTypeError, match="telemetry must be"):
        watch_cache(LRUCache(1), "x", telemetry="hub")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="telemetry must be"):
        watch_locks("x", telemetry=42)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="recorder must have"):
        hub.subscribe(None)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="collect must be callable"):
        hub.watch(LRUCache(1), None)  # type: ignore[arg-type]
    assert list(hub.collect()) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.set("scalekit_cache_size", float("nan"), cache="x"),
        lambda h: h.set("scalekit_cache_size", "big", cache="x"),
        lambda h: h.observe("scalekit_lock_wait_seconds", -5, lock="x", outcome="acquired"),
        lambda h: h.observe(
            "scalekit_lock_wait_seconds", float("inf"), lock="x", outcome="acquired"
        ),
        lambda h: h.add("scalekit_cache_hits", True, cache="x"),
    ],
)
def test_bad_values_are_refused_naming_the_value(call: Any) -> None:
    hub = Telemetry()
    rec = MemoryRecorder()
    hub.subscribe(rec)
    with pytest.raises(ConfigurationError, match="got"):
        call(hub)
    assert rec.snapshot() == ({}, {}, {})


def test_memory_recorder_buckets_are_checked() -> None:
    with pytest.raises(ArgumentTypeError, match="buckets must be an iterable"):
        MemoryRecorder(buckets=5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="buckets must be numbers"):
        MemoryRecorder(buckets=["a"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match=">= 0"):
        MemoryRecorder(buckets=[-1.0, 1.0])


def test_a_failing_source_is_skipped_and_the_rest_reported() -> None:
    hub = Telemetry()
    good: LRUCache[str, int] = LRUCache(5)
    watch_cache(good, "products", telemetry=hub)
    good.get("x")

    class Broken:
        pass

    broken = Broken()
    hub.watch(broken, lambda _: 1 / 0)  # type: ignore[arg-type, return-value]
    assert _values(hub, "scalekit_cache_misses") == {("products",): 1}


def test_watching_the_same_object_twice_counts_once() -> None:
    hub = Telemetry()
    cache: LRUCache[str, int] = LRUCache(5)
    watch_cache(cache, "products", telemetry=hub)
    watch_cache(cache, "products", telemetry=hub)
    cache.get("x")
    assert _values(hub, "scalekit_cache_misses") == {("products",): 1}
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    watch_balancer(lb, "pay", telemetry=hub)
    lb.pick()
    assert _values(hub, "scalekit_balancer_in_flight") == {("pay", "a"): 1}


def test_same_name_objects_never_make_a_counter_decrease() -> None:
    hub = Telemetry()
    old: LRUCache[str, int] = LRUCache(5)
    new: LRUCache[str, int] = LRUCache(5)
    watch_cache(old, "products", telemetry=hub)
    watch_cache(new, "products", telemetry=hub)
    for _ in range(10):
        old.get("x")
    for _ in range(5):
        new.get("x")
    assert _values(hub, "scalekit_cache_misses") == {("products",): 15}
    del old
    gc.collect()
    assert _values(hub, "scalekit_cache_misses") == {("products",): 15}
    new.get("x")
    assert _values(hub, "scalekit_cache_misses") == {("products",): 16}
    hub.unwatch(new)
    assert _values(hub, "scalekit_cache_misses") == {("products",): 16}


def test_same_name_state_gauges_stay_zero_or_one() -> None:
    from scalekit.balancing import HealthPolicy, OutlierDetection

    hub = Telemetry()
    kept = []
    for _ in range(3):
        policy = HealthPolicy(outlier=OutlierDetection(consecutive_failures=1), panic_threshold=0)
        lb = RoundRobin(["a", "b"], health=policy)
        watch_balancer(lb, "payments", telemetry=hub)
        lb.release(lb.pick(), latency=0.1, ok=False)  # ejects a
        kept.append(lb)
    ejected = _values(hub, "scalekit_balancer_ejected")
    assert ejected[("payments", "a")] == 1
    assert _values(hub, "scalekit_balancer_in_flight")[("payments", "a")] == 0


def test_a_request_released_after_its_endpoint_left_still_counts() -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    lb = RoundRobin(["a", "b"])
    watch_balancer(lb, "pay", telemetry=hub)
    picked = [lb.pick() for _ in range(4)]
    assert _values(hub, "scalekit_balancer_picks")[("pay", "b")] == 2
    lb.remove("b")
    for ep in picked:
        lb.release(ep, latency=0.5, ok=False)
    assert _values(hub, "scalekit_balancer_picks")[("pay", "b")] == 2


def test_counter_series_exist_at_zero_from_watch_time() -> None:
    hub = Telemetry()
    rec = MemoryRecorder()
    hub.subscribe(rec)
    watch_locks("stock", telemetry=hub)
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    later = MemoryRecorder()
    hub.subscribe(later)  # a recorder subscribed later sees the same zeros
    for r in (rec, later):
        assert r.counters[("scalekit_lock_timeouts", (("lock", "stock"),))] == 0
        assert (
            r.counters[("scalekit_lock_leases_lost", (("lock", "stock"), ("cause", "expired")))]
            == 0
        )
        labels = (("balancer", "pay"), ("endpoint", "a"), ("reason", "consecutive_failures"))
        assert r.counters[("scalekit_balancer_ejections", labels)] == 0


def test_unwatch_stops_the_pushes() -> None:
    hub = Telemetry()
    rec = MemoryRecorder()
    hub.subscribe(rec)
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    hub.unwatch(lb)
    assert lb._probe is None
    lb.release(lb.pick(), latency=0.1)
    assert not any(name.startswith("scalekit_balancer") for name, _ in rec.histograms)


def test_a_router_watched_is_not_kept_alive() -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    router = HashRouter(["s1", "s2"])
    watch_router(router, "users", telemetry=hub)
    router.route("k")
    ref = weakref.ref(router)
    del router
    gc.collect()
    assert ref() is None


def test_a_lock_family_of_an_idle_hub_never_hides_an_active_one() -> None:
    live = Telemetry()
    rec = MemoryRecorder()
    live.subscribe(rec)
    watch_locks("shop", telemetry=live)
    idle = Telemetry()
    watch_locks("shop", prefix="shop:", telemetry=idle)
    MemoryLock("shop:1", ttl=30).acquire().release()
    assert rec.counters[("scalekit_lock_acquisitions", (("lock", "shop"),))] == 1


def test_lock_families_of_one_hub_and_name_replace_each_other() -> None:
    from scalekit.observability import _emit

    hub = Telemetry()
    for _ in range(50):
        watch_locks("churn", match=lambda n: n.startswith("churn"), telemetry=hub)
    assert sum(1 for f in _emit._lock_families if f[3] == "churn") == 1
    ref = weakref.ref(hub)
    del hub
    gc.collect()
    assert ref() is None
    watch_locks("other", telemetry=Telemetry())
    assert all(f[3] != "churn" for f in _emit._lock_families)


def test_subscribe_and_unsubscribe_race_leaves_the_probe_consistent() -> None:
    for _ in range(100):
        hub = Telemetry()
        lb = RoundRobin(["a"])
        watch_balancer(lb, "pay", telemetry=hub)
        first, second = MemoryRecorder(), MemoryRecorder()
        hub.subscribe(first)
        barrier = threading.Barrier(2)

        def flip_on(
            rec: MemoryRecorder = second, b: threading.Barrier = barrier, h: Telemetry = hub
        ) -> None:
            b.wait()
            h.subscribe(rec)

        def flip_off(
            rec: MemoryRecorder = first, b: threading.Barrier = barrier, h: Telemetry = hub
        ) -> None:
            b.wait()
            h.unsubscribe(rec)

        threads = [threading.Thread(target=flip_on), threading.Thread(target=flip_off)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert hub.active
        assert lb._probe is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_starts_with_fresh_pushed_state() -> None:
    hub = Telemetry()
    rec = MemoryRecorder()
    hub.subscribe(rec)
    watch_locks("stock", telemetry=hub)
    MemoryLock("stock:1", ttl=30).acquire().release()
    rec._lock.acquire()  # as if another thread were pushing at fork time
    try:
        pid = os.fork()
        if pid == 0:  # the child
            ok = False
            try:
                counters, _, _ = rec.snapshot()
                ok = counters[("scalekit_lock_acquisitions", (("lock", "stock"),))] == 0
            finally:
                os._exit(0 if ok else 1)
    finally:
        rec._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_otel_histograms_use_the_prometheus_buckets() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from scalekit.observability import DEFAULT_BUCKETS, OpenTelemetryExporter

    reader = InMemoryMetricReader()
    hub = Telemetry()
    exporter = OpenTelemetryExporter(hub, meter_provider=MeterProvider(metric_readers=[reader]))
    watch_locks("stock", telemetry=hub)
    hub.observe("scalekit_lock_wait_seconds", 0.2, lock="stock", outcome="acquired")
    data = reader.get_metrics_data()
    points = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "scalekit.lock.wait_duration"
        for p in m.data.data_points
    ]
    assert tuple(points[0].explicit_bounds) == DEFAULT_BUCKETS
    exporter.close()


def test_a_second_prometheus_collector_on_one_registry_is_refused() -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, Counter

    from scalekit.observability import PrometheusCollector

    registry = CollectorRegistry()
    first = PrometheusCollector(Telemetry()).register(registry)
    second = PrometheusCollector(Telemetry())
    with pytest.raises(ValueError, match="Duplicated"):
        second.register(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("scalekit_cache_hits", "clash", ["cache"], registry=registry)
    second.close()
    first.close()


def test_otel_exporter_close_reports_nothing_and_one_provider_takes_one() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from scalekit.observability import OpenTelemetryExporter

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    hub = Telemetry()
    exporter = OpenTelemetryExporter(hub, meter_provider=provider)
    with pytest.raises(ConfigurationError, match="meter_provider already has"):
        OpenTelemetryExporter(hub, meter_provider=provider)
    cache: LRUCache[str, int] = LRUCache(5)
    watch_cache(cache, "products", telemetry=hub)
    cache.get("x")
    exporter.close()
    for _ in range(5):
        cache.get("x")

    def misses() -> list[float]:
        data = reader.get_metrics_data()
        return [
            p.value
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "scalekit.cache.misses"
            for p in m.data.data_points
        ]

    assert all(v <= 1 for v in misses())
    OpenTelemetryExporter(hub, meter_provider=MeterProvider()).close()  # a new provider is fine


def test_a_storm_of_one_event_is_rate_limited_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scalekit.observability import log_event
    from scalekit.observability.core import LOG_EVENTS_PER_SECOND

    with caplog.at_level(logging.WARNING, logger="scalekit"):
        for i in range(2000):
            log_event("scalekit.lock.callback_failed", lock=f"l{i}", error="x")
    records = [r for r in caplog.records if r.event == "scalekit.lock.callback_failed"]
    # One window, or two if the loop straddled a second.
    assert LOG_EVENTS_PER_SECOND <= len(records) <= 2 * LOG_EVENTS_PER_SECOND


def test_a_router_watched_on_two_hubs_counts_each_route_once_on_both() -> None:
    first, second = Telemetry(), Telemetry()
    first.subscribe(MemoryRecorder())
    second.subscribe(MemoryRecorder())
    router = HashRouter(["s0", "s1", "s2"])
    watch_router(router, "users", telemetry=first)
    watch_router(router, "members", telemetry=second)
    for round_ in range(1, 4):
        for i in range(100):
            router.route(f"user-{round_}-{i}")
        assert sum(_values(first, "scalekit_router_routes").values()) == 100 * round_
        assert sum(_values(second, "scalekit_router_routes").values()) == 100 * round_
    second.unwatch(router)
    router.route("one-more")  # the first hub still listens
    assert sum(_values(first, "scalekit_router_routes").values()) == 301
    first.unwatch(router)
    from scalekit.observability import _emit

    assert _emit.route_counts(router).installed is None  # nobody listens: no counting route
    assert router.route("k") == HashRouter(["s0", "s1", "s2"]).route("k")


# -- exported counters never decrease, and count each event once ---------------------


def _picks(hub: Telemetry) -> float:
    return sum(_values(hub, "scalekit_balancer_picks").values())


def _release(lb: RoundRobin[str], n: int) -> None:
    for _ in range(n):
        lb.release(lb.pick(), ok=True, latency=0.01)


def test_watching_a_balancer_again_keeps_its_picks() -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    lb = RoundRobin(["a", "b"])
    watch_balancer(lb, "p", telemetry=hub)
    _release(lb, 100)
    assert _picks(hub) == 100
    watch_balancer(lb, "p", telemetry=hub)
    _release(lb, 10)
    assert _picks(hub) == 110


def test_two_balancers_under_one_name_never_wipe_each_others_series() -> None:
    hub = Telemetry()
    recorder = MemoryRecorder()
    hub.subscribe(recorder)
    first, second = RoundRobin(["a1"]), RoundRobin(["b1"])
    watch_balancer(first, "pay", telemetry=hub)
    watch_balancer(second, "pay", telemetry=hub)
    key = (
        "scalekit_balancer_request_duration_seconds",
        (("balancer", "pay"), ("endpoint", "b1"), ("outcome", "ok")),
    )
    counts = []
    for step in range(6):
        if step == 2:
            first.add("a2")
        _release(second, 10)
        list(hub.collect())
        counts.append(recorder.snapshot()[2][key].count)
    assert counts == [10, 20, 30, 40, 50, 60]
    assert _values(hub, "scalekit_balancer_picks")[("pay", "b1")] == 60


def test_cache_clear_and_reset_stats_never_lower_the_exported_counters() -> None:
    from scalekit.caching import cached

    hub = Telemetry()
    cache: LRUCache[str, str] = LRUCache(10)
    watch_cache(cache, "p", telemetry=hub)

    @cached(cache, lock=threading.Lock())
    def load(key: str) -> str:
        return key

    for key in ("a", "a", "b", "c", "d", "e", "f", "g"):
        load(key)
    assert _values(hub, "scalekit_cache_hits")[("p",)] == 1
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 7
    load.cache_clear()
    load("a")
    assert _values(hub, "scalekit_cache_hits")[("p",)] == 1
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 8
    for _ in range(8):  # more after the reset than before it: still counted exactly
        load("a")
    cache.reset_stats()
    load("z")
    assert _values(hub, "scalekit_cache_hits")[("p",)] == 9
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 9


def test_unwatching_and_watching_a_cache_again_counts_each_miss_once() -> None:
    hub = Telemetry()
    cache: LRUCache[str, int] = LRUCache(10)
    watch_cache(cache, "p", telemetry=hub)
    for i in range(10):
        cache.get(f"k{i}")
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 10
    hub.unwatch(cache)
    for i in range(10):
        cache.get(f"m{i}")
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 10
    watch_cache(cache, "p", telemetry=hub)
    assert _values(hub, "scalekit_cache_misses")[("p",)] == 20


def test_a_scrape_buckets_latencies_outside_the_balancers_lock() -> None:
    hub = Telemetry()
    recorder = MemoryRecorder()
    hub.subscribe(recorder)
    lb = RoundRobin(["a"])
    watch_balancer(lb, "p", telemetry=hub)
    _release(lb, 50)
    held = []
    observe_many = recorder.observe_many

    def observing(*args: Any) -> None:
        held.append(lb._lock.acquire(blocking=False))  # free while the batch is bucketed
        if held[-1]:
            lb._lock.release()
        observe_many(*args)

    recorder.observe_many = observing  # type: ignore[method-assign]
    list(hub.collect())
    assert held == [True]


def test_a_family_watched_while_a_lock_name_is_resolved_is_not_missed() -> None:
    # A lock's families are resolved once per name and remembered; an answer
    # worked out while another family was being watched must not be remembered.
    hub = Telemetry()
    recorder = MemoryRecorder()
    hub.subscribe(recorder)
    asked: list[str] = []

    def match(name: str) -> bool:
        if not asked:
            asked.append(name)
            watch_locks("late", prefix="jobs:", telemetry=hub)  # meanwhile, elsewhere
        return False

    watch_locks("first", match=match, telemetry=hub)
    lock = MemoryLock("jobs:1", ttl=10)
    for _ in range(2):
        lease = lock.acquire()
        assert lease is not None
        lock.release(lease)
    late = ("scalekit_lock_acquisitions", (("lock", "late"),))
    assert recorder.counters[late] == 1  # the second acquire found the late family
    hub.unsubscribe(recorder)
    watch_locks("first", match=lambda name: False, telemetry=hub)  # drops `match`'s hold on hub


def test_reset_stats_never_fails_while_another_thread_makes_hubs() -> None:
    # reset_stats() folds the cache's counts into every hub; a hub made on another
    # thread meanwhile must not make it raise. Bounded: stops at the first error,
    # at most about 1 s (a fast thread switch makes the race likely).
    import sys
    import time

    from scalekit.caching import cached

    keep = [Telemetry() for _ in range(1000)]
    cache: LRUCache[str, int] = LRUCache(10)
    watch_cache(cache, "c", telemetry=keep[0])
    func = cached(LRUCache(10))(lambda x: x)
    stop = threading.Event()
    errors: list[BaseException] = []

    def make_hubs() -> None:
        while not stop.is_set():
            made = [Telemetry() for _ in range(50)]
            del made

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    maker = threading.Thread(target=make_hubs)
    maker.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not errors:
            for call in (cache.reset_stats, func.cache_clear):
                try:
                    call()
                except Exception as exc:
                    errors.append(exc)
    finally:
        stop.set()
        maker.join()
        sys.setswitchinterval(before)
    assert errors == []
    assert len(keep) == 1000


_UNBOUNDED = ["FIFOCache", "LFUCache", "LRUCache", "RRCache", "S3FIFOCache", "SIEVECache"]


@pytest.mark.parametrize(
    "kind", [*_UNBOUNDED, "TinyLFUCache", "TTLCache", "TLRUCache", "lru_cache"]
)
def test_an_unbounded_cache_reports_its_counters(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    import math

    import scalekit.caching as caching

    hub = Telemetry()
    if kind == "lru_cache":
        func = caching.lru_cache(maxsize=None)(lambda x: x)
        cache: Any = func.cache  # type: ignore[attr-defined]
    elif kind == "TTLCache":
        cache = caching.TTLCache(math.inf, ttl=60)
    elif kind == "TLRUCache":
        cache = caching.TLRUCache(math.inf, ttu=lambda k, v, now: now + 60)
    else:
        cache = getattr(caching, kind)(math.inf)
    assert cache.maxsize == math.inf
    watch_cache(cache, "unbounded", telemetry=hub)
    cache["a"] = 1
    assert cache.get("a") == 1
    assert cache.get("b") is None
    with caplog.at_level(logging.ERROR, logger="scalekit"):
        samples = {s.metric: s.value for s in hub.collect()}
    assert not [r for r in caplog.records if getattr(r, "event", "").startswith("scalekit.obs")]
    assert samples["scalekit_cache_hits"] == 1
    assert samples["scalekit_cache_misses"] == 1
    assert samples["scalekit_cache_size"] == 1
    assert "scalekit_cache_capacity" not in samples  # unbounded: no capacity to report


def test_a_bad_sample_costs_only_itself_and_its_log_names_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scalekit.observability import Sample

    hub = Telemetry()
    good: LRUCache[str, int] = LRUCache(5)
    watch_cache(good, "products", telemetry=hub)
    good.get("x")

    class Odd:
        pass

    odd = Odd()

    def collect(_: Odd) -> list[Sample]:
        return [
            Sample("scalekit_cache_hits", 4, {"cache": "odd"}),
            Sample("scalekit_cache_size", float("nan"), {"cache": "odd"}),
            Sample("scalekit_cache_misses", 2, {"cache": "odd"}),
        ]

    hub.watch(odd, collect, scope=("cache", "odd"))
    with caplog.at_level(logging.ERROR, logger="scalekit"):
        assert _values(hub, "scalekit_cache_misses") == {("products",): 1, ("odd",): 2}
    assert _values(hub, "scalekit_cache_hits") == {("products",): 0, ("odd",): 4}
    assert ("odd",) not in _values(hub, "scalekit_cache_size")
    (failed,) = [
        r
        for r in caplog.records
        if getattr(r, "event", "") == "scalekit.observability.source_failed"
    ]
    assert failed.fields["cache"] == "odd"  # type: ignore[attr-defined]
    assert "scalekit_cache_size" in failed.fields["error"]  # type: ignore[attr-defined]


def test_picks_carry_on_across_a_replaced_recorder_with_requests_in_flight() -> None:
    # An exporter reloaded (close(), then a new one) while long requests are in
    # flight, which end before the new one subscribes: no pick made while one
    # listened is lost, and none is counted twice.
    hub = Telemetry()
    lb = RoundRobin(["a", "b"])
    watch_balancer(lb, "pay", telemetry=hub)
    first = MemoryRecorder()
    hub.subscribe(first)
    held = [lb.pick() for _ in range(100)]
    assert sum(_values(hub, "scalekit_balancer_picks").values()) == 100
    hub.unsubscribe(first)
    for endpoint in held:
        lb.release(endpoint, latency=0.5)
    second = MemoryRecorder()
    hub.subscribe(second)
    for _ in range(150):
        lb.release(lb.pick(), latency=0.01)
    assert sum(_values(hub, "scalekit_balancer_picks").values()) == 250
    # Requests still in flight across the next reload count once, when picked.
    again = [lb.pick() for _ in range(10)]
    assert sum(_values(hub, "scalekit_balancer_picks").values()) == 260
    hub.unsubscribe(second)
    hub.subscribe(first)
    for endpoint in again:
        lb.release(endpoint, latency=0.01)
    lb.release(lb.pick(), latency=0.01)
    assert sum(_values(hub, "scalekit_balancer_picks").values()) == 261


def test_a_hub_dropped_with_recorders_no_longer_counts_as_listening() -> None:
    # `_emit.on` (the process-wide "somebody listens") must follow the live hubs:
    # one dropped without unsubscribing its recorders stops counting once collected.
    # Hubs of earlier tests may be collected meanwhile, so the count is checked
    # against the live hubs' recorders, not against a reading taken before.
    from scalekit.observability import _emit
    from scalekit.observability.core import live_hubs

    def listening() -> int:
        gc.collect()
        return sum(len(h._recorders) for h in live_hubs())

    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    hub.subscribe(MemoryRecorder())
    hub.unsubscribe(MemoryRecorder())  # never subscribed: changes nothing
    assert listening() == _emit._subscribers and _emit.on
    kept = Telemetry()
    kept.subscribe(MemoryRecorder())
    ref = weakref.ref(hub)
    del hub
    assert listening() == _emit._subscribers and _emit.on
    assert ref() is None
    del kept
    assert listening() == _emit._subscribers
    assert _emit.on is (_emit._subscribers > 0)


def test_the_ejection_event_is_logged_after_release_drops_the_lock_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scalekit.balancing import HealthPolicy, OutlierDetection

    health = HealthPolicy(outlier=OutlierDetection(consecutive_failures=1), panic_threshold=0)
    lb = RoundRobin(["a", "b"], health=health)
    watch_balancer(lb, "pay", telemetry=Telemetry())
    seen: list[tuple[str, bool]] = []

    class Raising(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            # User logging code: it must run with the balancer's lock free.
            seen.append((getattr(record, "event", ""), lb._lock.locked()))
            raise KeyError("fields")

    logger = logging.getLogger("scalekit")
    broken = Raising()
    logger.addFilter(broken)
    try:
        with caplog.at_level(logging.INFO, logger="scalekit"):
            endpoint = lb.pick()
            while endpoint != "a":
                lb.release(endpoint)
                endpoint = lb.pick()
            lb.release("a", latency=0.01, ok=False)  # ejects "a": must not raise
            health.set_check_result("b", False)  # an active-check ejection, same rule
    finally:
        logger.removeFilter(broken)
    assert lb.in_flight("a") == 0
    assert ("scalekit.balancer.ejected", False) in seen
    assert [e for e, _ in seen].count("scalekit.balancer.ejected") == 2
    assert not [locked for _, locked in seen if locked]


def test_a_departed_name_is_reported_by_one_more_collection_with_its_last_collected_values() -> (
    None
):
    # What the docs promise, exactly: "once more" is one more `collect()` of the hub
    # (the first scraper after the object went), with the values of the object's
    # last collection; what it counted after that is not reported.
    hub = Telemetry()
    cache: LRUCache[int, int] = LRUCache(10)
    watch_cache(cache, "job-42", telemetry=hub)
    for key in range(5):
        cache.get(key)
    assert _values(hub, "scalekit_cache_misses") == {("job-42",): 5}  # scraper A
    assert _values(hub, "scalekit_cache_misses") == {("job-42",): 5}  # scraper B
    for key in range(100):
        cache.get(key)
    del cache
    gc.collect()
    assert _values(hub, "scalekit_cache_misses") == {("job-42",): 5}  # A: once more
    assert _values(hub, "scalekit_cache_misses") == {}  # B: already gone
