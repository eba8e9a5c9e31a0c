"""Pull sources: report the state a primitive already keeps, read at collection time.

Nothing here touches a hot path: the counters are the ones the primitive
keeps for itself (`Cache.stats()`, a balancer's in-flight counts, its
health policy's ejections), read only when an exporter collects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..exceptions import ConfigurationError
from .core import Sample, Telemetry, default_telemetry

__all__ = ["watch_balancer", "watch_cache"]


def _name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} name must be a non-empty string, got {name!r}")
    return name


def watch_cache(cache: Any, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Report *cache*'s hits, misses, evictions, size and capacity as `cache=name`.

    Works for every scalekit cache (anything with `stats()`, `currsize` and
    `maxsize`); a TinyLFU cache also reports its window size. The cache is
    held weakly.

    Args:
        cache: the cache to report.
        name: the `cache` label, e.g. `"products"`.
        telemetry: the hub (default: `default_telemetry()`).

    Raises:
        ConfigurationError: *name* is empty or *cache* has no `stats()`.
    """
    label = {"cache": _name("cache", name)}
    if not callable(getattr(cache, "stats", None)):
        raise ConfigurationError(f"cache must have a stats() method, got {type(cache).__name__}")

    def collect(c: Any) -> Iterator[Sample]:
        stats = c.stats()
        yield Sample("scalekit_cache_hits", stats.hits, label)
        yield Sample("scalekit_cache_misses", stats.misses, label)
        yield Sample("scalekit_cache_evictions", stats.evictions, label)
        yield Sample("scalekit_cache_size", float(c.currsize), label)
        yield Sample("scalekit_cache_capacity", float(c.maxsize), label)
        window = getattr(c, "window_maxsize", None)
        if window is not None:
            yield Sample("scalekit_cache_window_size", float(window), label)

    (telemetry or default_telemetry()).watch(cache, collect)


def watch_balancer(balancer: Any, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Report *balancer*'s in-flight counts and ejections as `balancer=name`.

    Endpoint labels are `str(endpoint)`. With a health policy, every endpoint
    reports `scalekit_balancer_ejected` (1 or 0). The balancer is held weakly.

    Raises:
        ConfigurationError: *name* is empty.
    """
    label = _name("balancer", name)

    def collect(lb: Any) -> Iterator[Sample]:
        endpoints = list(lb.endpoints)
        for ep in endpoints:
            yield Sample(
                "scalekit_balancer_in_flight",
                float(lb.in_flight(ep)),
                {"balancer": label, "endpoint": str(ep)},
            )
        health = lb.health
        if health is not None:
            ejected = health.ejected()
            for ep in endpoints:
                yield Sample(
                    "scalekit_balancer_ejected",
                    1.0 if ep in ejected else 0.0,
                    {"balancer": label, "endpoint": str(ep)},
                )

    (telemetry or default_telemetry()).watch(balancer, collect)
