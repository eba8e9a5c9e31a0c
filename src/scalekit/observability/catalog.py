"""Every metric and log event scalekit emits: names, kinds, units and labels.

The catalog is the single source of truth: the exporters name their
families from it, the docs page lists it, and a test checks that nothing
outside it is ever emitted. Names follow Prometheus conventions (base unit
in the name, `_total` added to counters by the exporter); the OpenTelemetry
exporter uses the dotted `otel_name`, which carries no unit (the unit is in
the instrument's `unit` field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EVENTS",
    "METRICS",
    "CounterName",
    "GaugeName",
    "HistogramName",
    "MetricKind",
    "MetricSpec",
]

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """What one metric is.

    Attributes:
        name: the Prometheus name without the `_total` suffix of counters.
        kind: `"counter"` (only goes up), `"gauge"` (a current value) or
            `"histogram"` (a distribution of observations).
        unit: the base unit (`"seconds"`, `"entries"`, `"ratio"`, or `""`).
        labels: the label names every sample carries, in order.
        help: one sentence an operator reads next to the graph.
    """

    name: str
    kind: MetricKind
    unit: str
    labels: tuple[str, ...]
    help: str

    @property
    def otel_name(self) -> str:
        """The OpenTelemetry instrument name, e.g. `scalekit.cache.hits` for `scalekit_cache_hits`.

        The family becomes a dotted namespace and, as the OpenTelemetry
        naming guidance asks, the unit goes in the instrument's `unit`
        (`s`, `1`), not in its name: `scalekit_cache_load_duration_seconds`
        is `scalekit.cache.load_duration` with unit `s`, and
        `scalekit_lock_wait_seconds` is `scalekit.lock.wait_duration`.
        """
        renamed = _OTEL_NAMES.get(self.name)
        if renamed is not None:
            return renamed
        base = self.name.removeprefix("scalekit_")
        suffix = _UNIT_SUFFIXES.get(self.unit)
        if suffix is not None:
            base = base.removesuffix(suffix)
        family, _, rest = base.partition("_")
        return f"scalekit.{family}.{rest}"


# The Prometheus name's unit suffix, dropped from the OpenTelemetry name.
_UNIT_SUFFIXES = {"seconds": "_seconds", "ratio": "_ratio"}
# Names that read better otherwise once the unit is dropped.
_OTEL_NAMES = {"scalekit_lock_wait_seconds": "scalekit.lock.wait_duration"}


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


METRICS: dict[str, MetricSpec] = _specs(
    # caches and `cached`
    MetricSpec("scalekit_cache_hits", "counter", "", ("cache",), "Lookups that found the key."),
    MetricSpec("scalekit_cache_misses", "counter", "", ("cache",), "Lookups that missed."),
    MetricSpec(
        "scalekit_cache_evictions",
        "counter",
        "",
        ("cache",),
        "Entries the policy removed to make room.",
    ),
    MetricSpec(
        "scalekit_cache_size", "gauge", "", ("cache",), "Current size (entries or getsizeof units)."
    ),
    MetricSpec(
        "scalekit_cache_capacity", "gauge", "", ("cache",), "Capacity (maxsize) of the cache."
    ),
    MetricSpec(
        "scalekit_cache_window_size",
        "gauge",
        "",
        ("cache",),
        "TinyLFU's admission window capacity, as the climber sets it.",
    ),
    MetricSpec(
        "scalekit_cache_load_duration_seconds",
        "histogram",
        "seconds",
        ("cache", "outcome"),
        "Time a `cached` function's call on a miss took, by outcome (ok or error).",
    ),
    MetricSpec(
        "scalekit_cache_load_errors",
        "counter",
        "",
        ("cache",),
        "Loader calls that raised (a `cached` function's, or a RedisCache loader's).",
    ),
    MetricSpec(
        "scalekit_cache_singleflight_waits",
        "counter",
        "",
        ("cache",),
        "Callers that took another caller's load of the same key instead of loading.",
    ),
    # Redis tier
    MetricSpec(
        "scalekit_rediscache_remote_reads",
        "counter",
        "",
        ("cache", "result"),
        "Reads that went to Redis, by result (hit or miss).",
    ),
    MetricSpec(
        "scalekit_rediscache_loads",
        "counter",
        "",
        ("cache",),
        "Loader calls made while holding the key's load lease.",
    ),
    MetricSpec(
        "scalekit_rediscache_writebacks_rejected",
        "counter",
        "",
        ("cache",),
        "Loader results refused because a newer write happened during the load.",
    ),
    MetricSpec(
        "scalekit_rediscache_fallback_calls",
        "counter",
        "",
        ("cache",),
        "Loader calls made because Redis was unavailable.",
    ),
    MetricSpec(
        "scalekit_nearcache_local_hits",
        "counter",
        "",
        ("cache",),
        "Reads served by the near cache's local layer.",
    ),
    MetricSpec(
        "scalekit_nearcache_remote_reads",
        "counter",
        "",
        ("cache",),
        "Reads the near cache sent on to its RedisCache.",
    ),
    MetricSpec(
        "scalekit_nearcache_invalidations",
        "counter",
        "",
        ("cache",),
        "Invalidation messages received.",
    ),
    MetricSpec(
        "scalekit_nearcache_staleness_seconds",
        "gauge",
        "seconds",
        ("cache",),
        "Age of the last answered heartbeat: how stale the local layer may be.",
    ),
    MetricSpec(
        "scalekit_nearcache_degraded",
        "gauge",
        "",
        ("cache",),
        "1 while the local layer is bypassed (no subscription or heartbeat), else 0.",
    ),
    # balancers
    MetricSpec(
        "scalekit_balancer_picks",
        "counter",
        "",
        ("balancer", "endpoint"),
        "Requests sent to each endpoint.",
    ),
    MetricSpec(
        "scalekit_balancer_in_flight",
        "gauge",
        "",
        ("balancer", "endpoint"),
        "Requests in flight on each endpoint.",
    ),
    MetricSpec(
        "scalekit_balancer_request_duration_seconds",
        "histogram",
        "seconds",
        ("balancer", "endpoint", "outcome"),
        "Latency of released requests, by outcome (ok or error).",
    ),
    MetricSpec(
        "scalekit_balancer_ejections",
        "counter",
        "",
        ("balancer", "endpoint", "reason"),
        (
            "Endpoints taken out, by reason (consecutive_failures or success_rate: "
            "outlier ejections; active_check: failed active health checks)."
        ),
    ),
    MetricSpec(
        "scalekit_balancer_ejected",
        "gauge",
        "",
        ("balancer", "endpoint"),
        "1 while the endpoint is out (ejected as an outlier or failing active checks), else 0.",
    ),
    MetricSpec(
        "scalekit_balancer_panic",
        "gauge",
        "",
        ("balancer",),
        "1 while too few endpoints are healthy and the balancer uses all of them.",
    ),
    MetricSpec(
        "scalekit_balancer_health_checks",
        "counter",
        "",
        ("balancer", "endpoint", "result"),
        "Active health-check results (pass or fail).",
    ),
    # locks
    MetricSpec(
        "scalekit_lock_wait_seconds",
        "histogram",
        "seconds",
        ("lock", "outcome"),
        "Time callers spent in acquire, by outcome (acquired, timeout, busy or error).",
    ),
    MetricSpec("scalekit_lock_acquisitions", "counter", "", ("lock",), "Leases granted."),
    MetricSpec("scalekit_lock_timeouts", "counter", "", ("lock",), "Acquires that timed out."),
    MetricSpec(
        "scalekit_lock_leases_lost",
        "counter",
        "",
        ("lock", "cause"),
        "Leases found lost before release, by cause (expired, extend_refused, "
        "release_refused or session_lost).",
    ),
    MetricSpec(
        "scalekit_lock_renewals",
        "counter",
        "",
        ("lock", "result"),
        "Lease renewals, by result (ok or failed).",
    ),
    MetricSpec(
        "scalekit_lock_release_errors",
        "counter",
        "",
        ("lock",),
        "Releases the backend did not answer (the lease then ends at its deadline).",
    ),
    MetricSpec(
        "scalekit_lock_handovers",
        "counter",
        "",
        ("lock",),
        "Acquisitions granted to a caller that waited for the previous holder's release.",
    ),
    # routers
    MetricSpec(
        "scalekit_router_routes",
        "counter",
        "",
        ("router", "shard"),
        "Keys routed to each shard.",
    ),
    MetricSpec(
        "scalekit_migration_keys_moved",
        "counter",
        "",
        ("migration",),
        "Keys a migration has moved.",
    ),
    MetricSpec(
        "scalekit_migration_progress_ratio",
        "gauge",
        "ratio",
        ("migration",),
        "Share of the source shards fully scanned and moved in the current direction, 0 to 1.",
    ),
)

EVENTS: dict[str, str] = {
    "scalekit.balancer.ejected": (
        "an endpoint was taken out (fields: balancer, endpoint, reason, and kind, the "
        "reason label of scalekit_balancer_ejections; for an outlier ejection also until "
        "on the balancer's clock and until_utc as ISO 8601 UTC; reason is active_check, "
        "without until, for failed active health checks)"
    ),
    "scalekit.balancer.uneject": (
        "an ejected endpoint, or one failing active checks, returned (fields: balancer, endpoint)"
    ),
    "scalekit.balancer.panic": "the balancer entered or left panic mode (fields: balancer, active)",
    "scalekit.lock.lease_lost": "a lease was found lost (fields: lock, cause, token)",
    "scalekit.lock.callback_failed": "an on_lost callback raised (fields: lock, error)",
    "scalekit.nearcache.degraded": "the near layer is bypassed (fields: cache, reason)",
    "scalekit.nearcache.recovered": "the near layer serves again (fields: cache)",
    "scalekit.observability.recorder_failed": (
        "a subscribed recorder raised; the primitive went on unaffected "
        "(fields: recorder, metric, error; at most once a minute per recorder)"
    ),
    "scalekit.observability.source_failed": (
        "a watched object's collection raised or reported outside the catalog; it was "
        "skipped for that collection (fields: source, error; at most once a minute per source)"
    ),
}


#: The counters of `METRICS`: what `Telemetry.add()` accepts.
CounterName = Literal[
    "scalekit_cache_hits",
    "scalekit_cache_misses",
    "scalekit_cache_evictions",
    "scalekit_cache_load_errors",
    "scalekit_cache_singleflight_waits",
    "scalekit_rediscache_remote_reads",
    "scalekit_rediscache_loads",
    "scalekit_rediscache_writebacks_rejected",
    "scalekit_rediscache_fallback_calls",
    "scalekit_nearcache_local_hits",
    "scalekit_nearcache_remote_reads",
    "scalekit_nearcache_invalidations",
    "scalekit_balancer_picks",
    "scalekit_balancer_ejections",
    "scalekit_balancer_health_checks",
    "scalekit_lock_acquisitions",
    "scalekit_lock_timeouts",
    "scalekit_lock_leases_lost",
    "scalekit_lock_renewals",
    "scalekit_lock_release_errors",
    "scalekit_lock_handovers",
    "scalekit_router_routes",
    "scalekit_migration_keys_moved",
]
#: The gauges of `METRICS`: what `Telemetry.set()` accepts.
GaugeName = Literal[
    "scalekit_cache_size",
    "scalekit_cache_capacity",
    "scalekit_cache_window_size",
    "scalekit_nearcache_staleness_seconds",
    "scalekit_nearcache_degraded",
    "scalekit_balancer_in_flight",
    "scalekit_balancer_ejected",
    "scalekit_balancer_panic",
    "scalekit_migration_progress_ratio",
]
#: The histograms of `METRICS`: what `Telemetry.observe()` accepts.
HistogramName = Literal[
    "scalekit_cache_load_duration_seconds",
    "scalekit_balancer_request_duration_seconds",
    "scalekit_lock_wait_seconds",
]
