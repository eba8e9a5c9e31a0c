"""The instrumentation hub: catalog checks, push, pull, weak watching, events."""

from __future__ import annotations

import gc
import logging
import math
import re

import pytest

from scalekit.caching import LRUCache
from scalekit.exceptions import ArgumentTypeError, ConfigurationError
from scalekit.observability import (
    EVENTS,
    METRICS,
    MemoryRecorder,
    Telemetry,
    log_event,
    watch_cache,
)


def test_catalog_names_follow_prometheus_conventions() -> None:
    for name, spec in METRICS.items():
        assert name == spec.name
        assert re.fullmatch(r"scalekit_[a-z]+_[a-z_]+", name), name
        assert not name.endswith("_total"), name  # the exporter adds it to counters
        if spec.unit:
            assert name.endswith("_" + spec.unit), name
        assert spec.help.endswith("."), name
        assert all(re.fullmatch(r"[a-z_]+", label) for label in spec.labels)
        assert spec.otel_name.startswith("scalekit.") and "_" not in spec.otel_name.split(".")[1]
    for event in EVENTS:
        assert event.startswith("scalekit.")


def test_an_idle_hub_is_inactive_and_a_subscribed_one_fans_out() -> None:
    hub = Telemetry()
    assert hub.active is False
    first, second = MemoryRecorder(), MemoryRecorder()
    hub.subscribe(first)
    hub.subscribe(second)
    assert hub.active is True
    hub.add("scalekit_lock_acquisitions", lock="stock")
    hub.add("scalekit_lock_acquisitions", 2, lock="stock")
    hub.set("scalekit_balancer_panic", 1, balancer="pay")
    hub.observe("scalekit_lock_wait_seconds", 0.02, lock="stock", outcome="acquired")
    hub.observe("scalekit_lock_wait_seconds", 3.0, lock="stock", outcome="acquired")
    for rec in (first, second):
        counters, gauges, hists = rec.snapshot()
        assert counters == {("scalekit_lock_acquisitions", (("lock", "stock"),)): 3.0}
        assert gauges == {("scalekit_balancer_panic", (("balancer", "pay"),)): 1.0}
        state = hists[("scalekit_lock_wait_seconds", (("lock", "stock"), ("outcome", "acquired")))]
        assert state.count == 2 and state.total == pytest.approx(3.02)
        cumulative = dict(state.cumulative())
        assert cumulative[0.01] == 0 and cumulative[0.025] == 1
        assert cumulative[2.5] == 1 and cumulative[5.0] == 2 and cumulative[math.inf] == 2
    hub.unsubscribe(first)
    hub.unsubscribe(second)
    assert hub.active is False


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.add("scalekit_nope", lock="x"), "must be one of"),
        (lambda h: h.add("scalekit_lock_wait_seconds", lock="x"), "is a histogram"),
        (lambda h: h.add("scalekit_lock_acquisitions", name="x"), r"labels of .* \['lock'\]"),
        (lambda h: h.add("scalekit_lock_acquisitions", -1, lock="x"), "finite number >= 0"),
        (lambda h: h.add("scalekit_lock_acquisitions", math.inf, lock="x"), "finite"),
        (
            lambda h: h.observe("scalekit_lock_wait_seconds", math.nan, lock="x", outcome="ok"),
            "must be a finite number >= 0",
        ),
    ],
)
def test_bad_measurements_are_refused_and_record_nothing(call, message) -> None:  # type: ignore[no-untyped-def]
    hub = Telemetry()
    rec = MemoryRecorder()
    hub.subscribe(rec)
    with pytest.raises(ConfigurationError, match=message):
        call(hub)
    assert rec.snapshot() == ({}, {}, {})


def test_buckets_must_increase() -> None:
    with pytest.raises(ConfigurationError, match="strictly increasing"):
        MemoryRecorder([0.1, 0.1, 1.0])
    with pytest.raises(ConfigurationError, match="not empty"):
        MemoryRecorder([])


def test_watching_a_cache_reports_its_counters_and_never_keeps_it_alive() -> None:
    hub = Telemetry()
    cache: LRUCache[str, int] = LRUCache(maxsize=2)
    watch_cache(cache, "products", telemetry=hub)
    cache["a"], cache["b"] = 1, 2
    cache.get("a")
    cache.get("zz")
    cache["c"] = 3  # evicts b
    samples = {s.metric: s.value for s in hub.collect()}
    assert samples == {
        "scalekit_cache_hits": 1,
        "scalekit_cache_misses": 1,
        "scalekit_cache_evictions": 1,
        "scalekit_cache_size": 2,
        "scalekit_cache_capacity": 2,
    }
    del cache
    gc.collect()
    # Its gauges go; its counters keep their last totals, so that no total ever decreases.
    assert {s.metric: s.value for s in hub.collect()} == {
        "scalekit_cache_hits": 1,
        "scalekit_cache_misses": 1,
        "scalekit_cache_evictions": 1,
    }


def test_watch_cache_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="non-empty string"):
        watch_cache(LRUCache(maxsize=2), "", telemetry=Telemetry())
    with pytest.raises(ArgumentTypeError, match="stats"):
        watch_cache({}, "plain-dict", telemetry=Telemetry())


def test_a_source_outside_the_catalog_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scalekit.observability import Sample

    class Thing:
        pass

    hub = Telemetry()
    thing = Thing()
    good = LRUCache(maxsize=2)
    watch_cache(good, "products", telemetry=hub)
    hub.watch(thing, lambda _: [Sample("scalekit_cache_hits", 1, {"wrong": "x"})])
    with caplog.at_level(logging.ERROR, logger="scalekit"):
        samples = list(hub.collect())
    assert {s.labels["cache"] for s in samples if s.metric == "scalekit_cache_hits"} == {"products"}
    events = [
        r
        for r in caplog.records
        if getattr(r, "event", "") == "scalekit.observability.source_failed"
    ]
    assert len(events) == 1
    assert "catalog does not define" in events[0].fields["error"]


def test_events_are_logged_with_a_stable_name_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scalekit"):
        log_event("scalekit.lock.lease_lost", lock="stock:42", cause="expired", token=7)
    (record,) = caplog.records
    assert record.name == "scalekit"
    assert record.getMessage() == "scalekit.lock.lease_lost cause='expired' lock='stock:42' token=7"
    assert record.event == "scalekit.lock.lease_lost"  # type: ignore[attr-defined]
    assert record.fields == {"lock": "stock:42", "cause": "expired", "token": 7}  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="EVENTS"):
        log_event("lease lost")


def test_the_docs_page_lists_every_metric_and_event() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    for spec in METRICS.values():
        shown = spec.name + ("_total" if spec.kind == "counter" else "")
        assert f"`{shown}`" in page, shown
    for event in EVENTS:
        assert f"`{event}`" in page, event


@pytest.mark.parametrize("n", [5, 500])  # below and above the batch size numpy takes
def test_a_batch_of_observations_counts_as_one_by_one(n: int) -> None:
    import random

    from scalekit.observability import HistogramState

    rng = random.Random(n)
    bounds = (0.005, 0.01, 0.1, 1.0)
    values = [rng.choice([0.005, 0.01, 1.0, 2.0]) if i % 3 else rng.random() for i in range(n)]
    one, many = HistogramState(bounds), HistogramState(bounds)
    for value in values:
        one.record(value)
    many.record_many(values)
    assert many.counts == one.counts and many.count == one.count == n
    assert many.total == pytest.approx(one.total)
