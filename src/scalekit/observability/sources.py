"""Naming what reports: each `watch_*` names a primitive for one hub.

Two things follow from watching:

* **pulled** state the primitive keeps for itself (`Cache.stats()`, a
  balancer's in-flight counts, its health policy's ejections) is read when
  an exporter collects, never on a hot path;
* **pushed** measurements the primitive emits itself (a `cached` load's
  time, a lock's wait, an ejection) carry the name given here and go to
  this hub. A primitive nobody watched pushes nothing; one whose hub has no
  recorder pays one attribute read per instrumented call.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..exceptions import ArgumentTypeError, ConfigurationError
from . import _emit
from .core import Sample, Telemetry, default_telemetry

__all__ = [
    "WatchableCache",
    "watch_balancer",
    "watch_cache",
    "watch_locks",
    "watch_migration",
    "watch_router",
]


def _hub(telemetry: Any) -> Telemetry:
    if telemetry is None:
        return default_telemetry()
    if not isinstance(telemetry, Telemetry):
        raise ArgumentTypeError(
            f"telemetry must be a scalekit.observability.Telemetry or None, got "
            f"{type(telemetry).__name__}: {telemetry!r}"
        )
    return telemetry


def _needs(arg: str, obj: Any, expected: str, *attrs: str) -> None:
    missing = [a for a in attrs if not hasattr(obj, a)]
    if obj is None or missing:
        raise ArgumentTypeError(
            f"{arg} must be {expected}, got {type(obj).__name__}"
            + (f" without {', '.join(missing)}" if missing and obj is not None else "")
        )


def _name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} name must be a non-empty string, got {name!r}")
    return name


class WatchableCache(Protocol):
    """What `watch_cache` takes: a cache whose `stats()` returns a snapshot of its counters.

    Every scalekit cache (`Cache` and its policies, `RedisCache`, `NearCache`) is one.
    """

    def stats(self) -> tuple[Any, ...]:
        """A named tuple of the cache's counters."""
        ...


def watch_cache(cache: WatchableCache, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Report *cache* as `cache=name`: its counters pulled, its loads pushed.

    What is reported depends on the cache:

    * every in-process scalekit cache (anything with `stats()`, `currsize`
      and `maxsize`): hits, misses, evictions, size and capacity, plus the
      window size of a TinyLFU cache; a `cached` function over it pushes its
      load times, load errors and single-flight waits;
    * a `RedisCache`: remote reads by result, loads and load errors,
      write-backs rejected, fallback calls and cross-process waits;
    * a `NearCache`: local hits, remote reads, invalidations received, the
      age of the last answered heartbeat and whether the local layer is
      bypassed (watch its local layer as well for that layer's own counters);
      once the near cache is closed, only its counters are reported (a
      closed near cache is not degraded: it no longer serves).

    The cache is held weakly.

    Args:
        cache: the cache to report.
        name: the `cache` label, e.g. `"products"`.
        telemetry: the hub (default: `default_telemetry()`).

    Raises:
        ConfigurationError: *name* is empty.
        ArgumentTypeError: *cache* is not one of the caches above (checked
            now, so that a mistake never fails a scrape later), or
            *telemetry* is not a `Telemetry`.
    """
    label = {"cache": _name("cache", name)}
    hub = _hub(telemetry)
    _needs("cache", cache, "a cache with a stats() method", "stats")
    if not callable(cache.stats):
        raise ArgumentTypeError(f"cache must have a stats() method, got {type(cache).__name__}")
    fields = getattr(type(cache.stats()), "_fields", ())

    def collect_local(c: Any) -> Iterator[Sample]:
        stats = c.stats()
        yield Sample("scalekit_cache_hits", stats.hits, label)
        yield Sample("scalekit_cache_misses", stats.misses, label)
        yield Sample("scalekit_cache_evictions", stats.evictions, label)
        yield Sample("scalekit_cache_size", float(c.currsize), label)
        capacity = float(c.maxsize)
        if math.isfinite(capacity):  # an unbounded cache has no capacity to report
            yield Sample("scalekit_cache_capacity", capacity, label)
        window = getattr(c, "window_maxsize", None)
        if window is not None and math.isfinite(window):  # none for an unbounded cache
            yield Sample("scalekit_cache_window_size", float(window), label)

    def collect_redis(c: Any) -> Iterator[Sample]:
        stats = c.stats()
        for result, value in (("hit", stats.hits), ("miss", stats.misses)):
            yield Sample("scalekit_rediscache_remote_reads", value, {**label, "result": result})
        yield Sample("scalekit_rediscache_loads", stats.loads, label)
        yield Sample("scalekit_cache_load_errors", stats.load_errors, label)
        yield Sample("scalekit_rediscache_writebacks_rejected", stats.writebacks_rejected, label)
        yield Sample("scalekit_rediscache_fallback_calls", stats.fallbacks, label)
        yield Sample("scalekit_cache_singleflight_waits", stats.waits + stats.shared, label)

    def collect_near(c: Any) -> Iterator[Sample]:
        stats = c.stats()
        yield Sample("scalekit_nearcache_local_hits", stats.local_hits, label)
        yield Sample("scalekit_nearcache_remote_reads", stats.remote_reads, label)
        yield Sample("scalekit_nearcache_invalidations", stats.invalidations, label)
        if c._stop.is_set():  # closed on purpose: no longer serving, so not degraded
            return
        yield Sample("scalekit_nearcache_degraded", 0.0 if c.connected else 1.0, label)
        # The age of the last heartbeat every node answered; it keeps growing while
        # Redis is frozen or down (the local layer is bypassed then).
        heard = _emit.last_heard(c)
        if heard is not None:  # never answered: no value to show
            yield Sample(
                "scalekit_nearcache_staleness_seconds", max(c._clock() - heard, 0.0), label
            )

    if "local_hits" in fields:
        collect = collect_near
        _needs("cache", cache, "a NearCache", "connected", "max_staleness", "_clock", "_stop")
    elif "writebacks_rejected" in fields:
        collect = collect_redis
    else:
        collect = collect_local
        _needs("cache", cache, "a cache with stats(), currsize and maxsize", "currsize", "maxsize")
        if not {"hits", "misses", "evictions"} <= set(fields):
            raise ArgumentTypeError(
                f"cache must have stats() with hits, misses and evictions, got "
                f"{type(cache).__name__} whose stats() has {list(fields)}"
            )
    _emit.name(cache, hub, label["cache"])
    hub.watch(cache, collect, scope=("cache", label["cache"]))
    for metric in ("scalekit_cache_load_errors", "scalekit_cache_singleflight_waits"):
        hub._declare(metric, **label)


def watch_balancer(balancer: Any, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Report *balancer* as `balancer=name`: picks, in-flight, latency, health.

    Pulled at collection: in-flight requests per endpoint and, with a
    health policy, whether each endpoint is ejected and whether the
    balancer is in panic mode. Pushed by the balancer while the hub has a
    recorder: picks per endpoint, released requests' latencies (by outcome),
    ejections by reason and active health-check results. Endpoint labels are
    `str(endpoint)`. The balancer is held weakly. A balancer pushes to one
    hub: the last that watched it and has a recorder.

    Cost: with a recorder subscribed, `pick` is unchanged and a release
    appends its latency to a buffer (one dict read and one append) under
    the balancer's own lock; buffers reach the hub at each collection
    (swapped out under the balancer's lock, bucketed after it is released),
    and a daemon thread hands over every buffer of 4096 values or more
    each 50 ms, so that memory stays bounded between collections.

    Raises:
        ConfigurationError: *name* is empty.
        ArgumentTypeError: *balancer* is not a scalekit balancer, or
            *telemetry* is not a `Telemetry`.
    """
    label = _name("balancer", name)
    hub = _hub(telemetry)
    from ..balancing.base import Balancer

    if not isinstance(balancer, Balancer):
        raise ArgumentTypeError(
            f"balancer must be a scalekit.balancing load balancer, got {type(balancer).__name__}"
        )
    probe = _emit.BalancerProbe(hub, label)
    found = hub._sources.get(id(balancer))
    before = getattr(found[1], "probe", None) if found and found[0]() is balancer else None
    if before is not None and before.label == label:
        probe = before  # watched again: its counts carry on
    # The live endpoints at the last collection, and whether the one before differed.
    seen: list[Any] = [frozenset(), False]

    def collect(lb: Any) -> Iterator[Sample]:
        with lb._lock:
            ok, errors = probe.take()
            in_flight = {**lb._draining, **lb._in_flight}
            probe.expire(set(in_flight))
            on = lb._probe is probe
            picks = probe.picks(in_flight) if on else {}
        if on:
            _emit.drain(lb, probe)  # running again after a fork
        probe.send(ok, errors)  # bucketing is O(requests): never under the balancer's lock
        endpoints = list(lb.endpoints)
        # Departed endpoints' pushed series go one collection after they left: looked
        # for only at the collection after a change and the next one.
        live = frozenset(str(ep) for ep in in_flight)
        if live != seen[0] or seen[1]:
            seen[1] = live != seen[0]
            seen[0] = live
            hub._expire("balancer", label, "endpoint", live, owner=lb)
        for ep, count in picks.items():
            yield Sample(
                "scalekit_balancer_picks", float(count), {"balancer": label, "endpoint": str(ep)}
            )
        for ep in endpoints:
            yield Sample(
                "scalekit_balancer_in_flight",
                float(lb.in_flight(ep)),
                {"balancer": label, "endpoint": str(ep)},
            )
        health = lb.health
        if health is not None:
            available = set(health.available())
            for ep in endpoints:
                yield Sample(
                    "scalekit_balancer_ejected",
                    0.0 if ep in available else 1.0,
                    {"balancer": label, "endpoint": str(ep)},
                )
            out = len(endpoints) - len(available)
            panicking = bool(out) and health._panicking(len(endpoints), out)
            yield Sample("scalekit_balancer_panic", float(panicking), {"balancer": label})

    def switch(lb: Any, active: bool) -> None:
        # Always an assignment: deleting an instance attribute would slow every other.
        # Under the balancer's lock: a release reads both.
        with lb._lock:
            if active:
                if lb._probe is not probe:
                    probe.switched({**lb._draining, **lb._in_flight}, True)
                lb._probe, lb._latencies = probe, probe.ok
            elif lb._probe is probe:
                probe.switched({**lb._draining, **lb._in_flight}, False)
                lb._probe = lb._latencies = None
        if active:
            _emit.drain(lb, probe)
        elif lb._probe is None:
            _emit.drain(lb, None)

    collect.probe = probe  # type: ignore[attr-defined]
    _emit.name(balancer, hub, label)
    hub.watch(balancer, collect, scope=("balancer", label))
    hub.on_switch(balancer, switch)
    for ep in list(balancer.endpoints):
        for reason in ("consecutive_failures", "success_rate", "active_check"):
            hub._declare(
                "scalekit_balancer_ejections", balancer=label, endpoint=str(ep), reason=reason
            )


def watch_locks(
    name: str,
    *,
    prefix: str | None = None,
    match: Callable[[str], bool] | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    """Report every lock of a family as `lock=name`.

    A lock belongs to the family when its name is *name* or starts with
    *prefix* (default `name + ":"`), or, given *match*, when
    `match(lock.name)` is true.

    Locks are usually one object per resource (`shop:stock:sku-1`,
    `shop:stock:sku-2`, ...); naming the family keeps one series for all of
    them. Locks push, while the hub has a recorder: the time each acquire
    waited (by outcome: `acquired`, `timeout`, `busy` for a non-blocking try
    that found the lock held, `error`), acquisitions, timeouts, hand-overs
    (acquisitions granted after waiting for a holder), renewals by result,
    releases the backend did not answer and leases lost by cause. The
    family watched last is tried first; a later call with the same *name*
    and *prefix* (or *match*) replaces an earlier one. Leases lost are
    also logged (`scalekit.lock.lease_lost`) whether watched or not.

    Args:
        name: the `lock` label, e.g. `"shop:stock"`.
        prefix: lock names that belong to the family (default: `name + ":"`).
        match: instead of *prefix*, a test of a lock's name.
        telemetry: the hub (default: `default_telemetry()`).

    Raises:
        ConfigurationError: *name* or *prefix* is empty, *match* is not
            callable, or both *prefix* and *match* are given.
    """
    label = _name("lock", name)
    hub = _hub(telemetry)
    for metric in (
        "scalekit_lock_acquisitions",
        "scalekit_lock_timeouts",
        "scalekit_lock_handovers",
        "scalekit_lock_release_errors",
    ):
        hub._declare(metric, lock=label)
    for result in ("ok", "failed"):
        hub._declare("scalekit_lock_renewals", lock=label, result=result)
    for cause in ("expired", "extend_refused", "release_refused", "session_lost"):
        hub._declare("scalekit_lock_leases_lost", lock=label, cause=cause)
    if match is not None:
        if prefix is not None or not callable(match):
            raise ConfigurationError(
                f"match must be a callable and replaces prefix, got match={match!r} "
                f"and prefix={prefix!r}"
            )
        _emit.name_locks((id(hub), label), match, hub, label)
        return
    family = label + ":" if prefix is None else _name("prefix", prefix)
    _emit.name_locks((id(hub), label), lambda n: n == label or n.startswith(family), hub, label)


def watch_router(router: Any, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Count the keys *router* routes for callers to each shard as `router=name`.

    While the hub has a recorder, the router's `route` (and so
    `route_many`) counts each shard it returns; with no recorder the router
    is left as it was (a `HashRouter` keeps its fast `route`). A
    `HashRouter` that adds or removes a shard keeps counting without a gap;
    a removed shard's series is reported once more with its final count and
    dropped at the next collection (re-added, it starts again from 0).
    The keys a `MigratingRouter`'s `move()` routes while scanning are not
    callers' keys and are not counted. The router is held weakly.

    Raises:
        ConfigurationError: *name* is empty.
        ArgumentTypeError: *router* has no `route()`, or *telemetry* is not
            a `Telemetry`.
    """
    label = _name("router", name)
    if not callable(getattr(router, "route", None)):
        raise ArgumentTypeError(f"router must have a route() method, got {type(router).__name__}")
    hub = _hub(telemetry)
    state = _emit.route_counts(router)

    # The live shards at the last collection, and whether the one before differed.
    seen: list[Any] = [None, False]

    def collect(r: Any) -> Iterator[Sample]:
        if state.installed is not None and r.__dict__.get("route") is not state.installed:
            state.install(r)  # the router replaced its `route` some way we did not see
        shards = getattr(r, "shards", None)
        counts = state.snapshot()
        if shards is not None:
            # A removed shard's series is reported once more, then goes: looked for
            # only at the collection after a change of shards and the next one.
            state.expire(set(shards))
            live = frozenset(str(shard) for shard in shards)
            if live != seen[0] or seen[1]:
                seen[1] = live != seen[0]
                seen[0] = live
                hub._expire("router", label, "shard", live, owner=r)
        for shard, n in counts.items():
            yield Sample("scalekit_router_routes", float(n), {"router": label, "shard": str(shard)})

    def switch(r: Any, active: bool) -> None:
        state.switch(r, hub, active)

    install = getattr(type(router), "_install", None)
    if callable(install) and not state.hooked:
        # A HashRouter installs a new `route` on every add_shard / remove_shard:
        # count on through it at once, not from the next collection.
        ref = weakref.ref(router)

        def reinstall(route: Any) -> None:
            r = ref()
            install(r, route)
            if r is not None and state.installed is not None:
                state.installed = None
                state.install(r)

        router._install = reinstall
        state.hooked = True
    hub.watch(router, collect, scope=("router", label))
    hub.on_switch(router, switch)


def watch_migration(migration: Any, name: str, *, telemetry: Telemetry | None = None) -> None:
    """Report a `MigratingRouter`'s progress as `migration=name`.

    Pushed: the keys each `move()` moved (at 0 from watch time). Pulled:
    the share of the current direction's source shards whose scan is
    complete with nothing left to move (0 before `start()`, 1 once complete
    or aborted). It never decreases while the migration stays in one state
    (epoch and direction): a `rollback()` or `resume()` starts the new
    direction's ratio from 0. A Redis source counts the share of its scan
    done; other stores (SQLite) count 0 until their scan is complete, so
    with two SQLite sources the ratio steps 0, 0.5, 1. While the hub has a
    recorder, `move` is wrapped on the instance to count; with none, and
    after `unwatch()`, the class's own `move` runs. The migration is held
    weakly (the wrapper too holds it only by a weak reference).

    Raises:
        ConfigurationError: *name* is empty.
        ArgumentTypeError: *migration* has no `move()`, or *telemetry* is
            not a `Telemetry`.
    """
    label = {"migration": _name("migration", name)}
    if not callable(getattr(migration, "move", None)):
        raise ArgumentTypeError(
            f"migration must have a move() method, got {type(migration).__name__}"
        )
    hub = _hub(telemetry)

    def switch(m: Any, active: bool) -> None:
        # The class's move, and the migration held weakly: the hub never keeps it alive.
        if not active:
            if "move" in m.__dict__ and getattr(m.__dict__["move"], "_scalekit_hub", None) is hub:
                del m.move
            return
        original, ref = type(m).move, weakref.ref(m)

        def move(limit: int = 1000, *, batch: int = 100) -> int:
            moved = original(ref(), limit, batch=batch)
            if moved and hub.active:
                hub.add("scalekit_migration_keys_moved", moved, **label)
            return int(moved)

        move._scalekit_hub = hub  # type: ignore[attr-defined]
        m.move = move

    last: list[Any] = [None, 0.0]  # the state and ratio reported last

    def collect(m: Any) -> Iterator[Sample]:
        # The phase and the cursors are read together, under the mover's lock: a
        # phase read before complete() recorded the end, with the cursors it then
        # cleared, read as a scan not begun (the ratio fell from 1 to 0).
        with m._mover_lock:
            state = m.state
            if state is None:
                ratio = 0.0
            elif state.phase not in ("forward", "reverse"):
                ratio = 1.0
            else:
                shares = [
                    _scanned(m._stores[s], m._cursors.get(s, 0), bool(m._pending.get(s)))
                    for s in m._sources(state.phase == "forward")
                ]
                ratio = sum(shares) / len(shares) if shares else 1.0
                # Within one state (epoch and direction) the ratio only grows: a
                # scan begun again (after a refused step) has less left to move.
                if last[0] == state:
                    ratio = max(ratio, last[1])
            last[:] = [state, ratio]
        yield Sample("scalekit_migration_progress_ratio", ratio, label)

    hub.watch(migration, collect, scope=("migration", label["migration"]))
    hub.on_switch(migration, switch)
    hub._declare("scalekit_migration_keys_moved", **label)


# Below 1 while a fully scanned source still has keys to move.
_ALMOST = 0.999


def _scanned(store: Any, cursor: int, pending: bool) -> float:
    """The share of one source's scan done in the current direction, 0 to 1.

    A Redis `SCAN` cursor walks the hash table's buckets in reverse binary
    order, so its bits read backwards, as a fraction of 2**64, are the share
    of the buckets visited: keys spread evenly over buckets make that the
    share of the keys scanned. Other stores' cursors tell nothing of the
    kind: their source counts 0 until its scan is complete.
    """
    if cursor == -1:
        return _ALMOST if pending else 1.0
    if cursor <= 0:
        return 0.0
    redis_store = sys.modules.get("scalekit.sharding.redis_store")
    if redis_store is None or not isinstance(store, redis_store.RedisShardStore):
        return 0.0
    share = int(f"{cursor & (2**64 - 1):064b}"[::-1], 2) / 2**64
    return min(share, _ALMOST)
