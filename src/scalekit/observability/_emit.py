"""What the primitives call to push their measurements: small, cheap, and silent when idle.

Instrumented code in the families tests one of two things before doing any
work, so that nobody listening costs one attribute read:

* `on`, true while any `Telemetry` hub in the process has a recorder
  (caches' loads, locks' acquires: paths that are not per-hit);
* a per-object `_probe` attribute (balancers' picks and releases), set
  only while the object is watched by a hub that has a recorder.

Everything else (finding the object's name and hub, timing, batching)
lives here so that the families carry one-line insertions.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import logging
import struct
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from .catalog import METRICS

if TYPE_CHECKING:
    from .core import Telemetry

__all__ = ["on"]


class _Nobody:
    """The hub of an unwatched object: never active."""

    active = False


_NOBODY: Any = _Nobody()

#: True while any live hub in the process has a subscribed recorder (a hub collected
#: with recorders still subscribed stops counting then: see `Telemetry`).
on = False

_subscribers = 0
_state_lock = threading.Lock()

# id(obj) -> (hub, label value) for objects named by watch_cache & co.
_names: dict[int, tuple[Telemetry, str]] = {}
# Lock families: (key, does a lock name belong, hub held weakly, label value), newest first.
_lock_families: list[tuple[object, Callable[[str], bool], weakref.ref[Telemetry], str]] = []


def _subscribed(delta: int) -> None:
    global on, _subscribers
    with _state_lock:
        _subscribers += delta
        on = _subscribers > 0


def name(obj: Any, hub: Telemetry, label: str) -> None:
    """Remember that *obj* reports to *hub* as *label* (forgotten when *obj* dies)."""
    key = id(obj)
    known = key in _names
    _names[key] = (hub, label)
    if not known:
        weakref.finalize(obj, _names.pop, key, None)


def forget(obj: Any, hub: Telemetry) -> None:
    """*obj* no longer pushes to *hub* (`Telemetry.unwatch`)."""
    found = _names.get(id(obj))
    if found is not None and found[0] is hub:
        _names[id(obj)] = (_NOBODY, "")


def name_locks(key: object, belongs: Callable[[str], bool], hub: Telemetry, label: str) -> None:
    """Every lock whose name *belongs* reports to *hub* as `lock=label`.

    *key* is `(id(hub), label)`: watching the same family name on the same
    hub again replaces the earlier entry; families of collected hubs go.
    """
    with _state_lock:
        rest = [f for f in _lock_families if f[0] != key and f[2]() is not None]
        _lock_families[:] = [(key, belongs, weakref.ref(hub), label), *rest]
        _family_of.clear()
        _family_version[0] += 1


def _named(obj: Any) -> tuple[Telemetry, str] | None:
    found = _names.get(id(obj))
    if found is None or not found[0].active:
        return None
    return found


# Lock name -> the families it belongs to, newest first (hub held weakly, label): the
# families' own tests run once per name, not per acquire. Cleared when a family is
# watched, and once it holds _FAMILY_CACHE names (lock names may be per resource).
_family_of: dict[str, tuple[tuple[weakref.ref[Telemetry], str], ...]] = {}
_FAMILY_CACHE = 4096
# Bumped by every name_locks(): an answer worked out against older families is not kept.
_family_version = [0]


def _families(lock_name: str) -> tuple[tuple[weakref.ref[Telemetry], str], ...]:
    found = _family_of.get(lock_name)
    if found is not None:
        return found
    version = _family_version[0]
    out = []
    for _, belongs, ref, label in list(_lock_families):
        try:
            if belongs(lock_name):
                out.append((ref, label))
        except Exception:  # a family's own test failing never reaches the lock
            continue
    found = tuple(out)
    with _state_lock:
        if version == _family_version[0]:
            if len(_family_of) >= _FAMILY_CACHE:
                _family_of.clear()
            _family_of[lock_name] = found
    return found


def _lock_named(lock: Any) -> tuple[Telemetry, str] | None:
    """The first family, newest first, of an active hub that *lock* belongs to."""
    for ref, label in _families(getattr(lock, "name", "")):
        hub = ref()
        if hub is not None and hub.active:
            return hub, label
    return None


# Objects of this module with a `_lock` of their own (a watched router's counts).
_lock_holders: weakref.WeakSet[Any] = weakref.WeakSet()


def _fork_locks() -> list[Any]:
    """Every lock of a live object of this module (what a forked child re-creates)."""
    return [holder._lock for holder in list(_lock_holders)]


def _after_fork_in_child() -> None:
    global _state_lock, _drain_lock, _drain_thread, _deferred_lock
    _state_lock = threading.Lock()
    _deferred_lock = threading.Lock()
    _drain_lock = threading.Lock()
    _drain_thread = None  # restarted by the next collection of a watched balancer
    for holder in list(_lock_holders):
        holder._lock = threading.Lock()


# -- routers ---------------------------------------------------------------------------

# Set while a migration's mover routes keys for itself: those are nobody's requests.
_uncounted = threading.local()


class uncounted:  # a context manager, named like contextlib's
    """Within this block, on this thread, watched routers count no routes."""

    def __enter__(self) -> None:
        _uncounted.depth = getattr(_uncounted, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _uncounted.depth -= 1


def counting() -> bool:
    """False inside `uncounted()` on this thread."""
    return not getattr(_uncounted, "depth", 0)


class RouteCounts:
    """One router's routes per shard, shared by every hub that watches it.

    The counting `route` is set on the router while at least one of those
    hubs has a recorder, and removed when none has; every hub reports the
    same counts (under the name it gave), so watching one router on two
    hubs counts each route once and shows it on both.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _lock_holders.add(self)
        self.counts: dict[Any, int] = {}
        self.active: set[int] = set()  # id() of the watching hubs that have a recorder
        self.installed: Any = None  # the counting `route` set on the router
        self.hidden: Any = None  # the instance attribute it hid, if any
        self.hooked = False  # a HashRouter's `_install` reinstalls through us
        self.doomed: set[Any] = set()  # removed shards reported once, dropped next

    def snapshot(self) -> dict[Any, int]:
        with self._lock:
            return dict(self.counts)

    def expire(self, live: set[Any]) -> None:
        """Forget the counts of shards gone since the last collection but one."""
        with self._lock:
            gone = {shard for shard in self.counts if shard not in live}
            for shard in gone & self.doomed:
                del self.counts[shard]
            self.doomed = gone - self.doomed

    def switch(self, router: Any, hub: Telemetry, active: bool) -> None:
        """*hub* turned on or off (or stopped watching) for *router*."""
        if active:
            self.active.add(id(hub))
        else:
            self.active.discard(id(hub))
        self.install(router)

    def install(self, router: Any) -> None:
        """Set the counting `route` on *router* if a hub listens, else restore its own."""
        mine = self.installed
        if not self.active:
            if mine is not None and router.__dict__.get("route") is mine:
                if self.hidden is None:
                    del router.route
                else:
                    router.route = self.hidden
            self.installed = self.hidden = None
            return
        if mine is not None and router.__dict__.get("route") is mine:
            return
        # The class's route, never the instance's: that one may be replaced later.
        # The router is held weakly here too: a hub must never keep it alive.
        original, ref, counts, state = type(router).route, weakref.ref(router), self.counts, self

        def route(key: Any) -> Any:
            shard = original(ref(), key)
            if counting():
                with state._lock:
                    counts[shard] = counts.get(shard, 0) + 1
            return shard

        self.hidden = router.__dict__.get("route")
        router.route = self.installed = route


_routes: dict[int, RouteCounts] = {}


def route_counts(router: Any) -> RouteCounts:
    """The shared `RouteCounts` of *router* (forgotten when *router* dies)."""
    found = _routes.get(id(router))
    if found is None:
        found = _routes[id(router)] = RouteCounts()
        weakref.finalize(router, _routes.pop, id(router), None)
    return found


# -- caches and `cached` -----------------------------------------------------------


def load(cache: Any, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Call a loader for *cache*, timing it; its result or exception passes through."""
    named = _named(cache)
    if named is None:
        return func(*args, **kwargs)
    hub, label = named
    started = time.perf_counter()
    try:
        value = func(*args, **kwargs)
    except BaseException:
        _loaded(hub, label, time.perf_counter() - started, ok=False)
        raise
    _loaded(hub, label, time.perf_counter() - started, ok=True)
    return value


async def load_async(cache: Any, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """`load()` for a coroutine function."""
    named = _named(cache)
    if named is None:
        return await func(*args, **kwargs)
    hub, label = named
    started = time.perf_counter()
    try:
        value = await func(*args, **kwargs)
    except BaseException:
        _loaded(hub, label, time.perf_counter() - started, ok=False)
        raise
    _loaded(hub, label, time.perf_counter() - started, ok=True)
    return value


_LOAD = METRICS["scalekit_cache_load_duration_seconds"]
_LOAD_ERRORS = METRICS["scalekit_cache_load_errors"]
_WAITS = METRICS["scalekit_cache_singleflight_waits"]


def _loaded(hub: Telemetry, label: str, seconds: float, *, ok: bool) -> None:
    # Label tuples in catalog order, built here: the hub's checked add()/observe() cost more.
    if ok:
        hub._observe_key(_LOAD, (("cache", label), ("outcome", "ok")), max(seconds, 0.0))
        return
    hub._observe_key(_LOAD, (("cache", label), ("outcome", "error")), max(seconds, 0.0))
    hub._add_key(_LOAD_ERRORS, (("cache", label),))


def flight(cache: Any, run: Callable[[Callable[[], Any]], Any], compute: Callable[[], Any]) -> Any:
    """`run(compute)` through a single-flight table, counting a wait if another caller led."""
    led = False

    def lead() -> Any:
        nonlocal led
        led = True
        return compute()

    try:
        return run(lead)
    finally:
        if not led:
            named = _named(cache)
            if named is not None:
                named[0]._add_key(_WAITS, (("cache", named[1]),))


async def flight_async(cache: Any, run: Callable[[Callable[[], Any]], Any], compute: Any) -> Any:
    """`flight()` for an asyncio single-flight table (*compute* is a coroutine function)."""
    led = False

    async def lead() -> Any:
        nonlocal led
        led = True
        return await compute()

    try:
        return await run(lead)
    finally:
        if not led:
            named = _named(cache)
            if named is not None:
                named[0]._add_key(_WAITS, (("cache", named[1]),))


def stats_reset(cache: Any) -> None:
    """*cache* is about to set its own counters back to 0: fold them into every hub first."""
    from .core import live_hubs

    for hub in live_hubs():
        hub._fold(cache)


# -- NearCache -------------------------------------------------------------------------

_degraded: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
# The send time (on the near cache's clock) of the last heartbeat every node answered.
_heard: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def last_heard(near: Any) -> float | None:
    """When *near*'s last confirmed heartbeat was sent, or None if none ever was.

    Kept across a distrust (Redis frozen, down or unreachable), so the age
    since then keeps growing while the local layer is bypassed.
    """
    heard = near._trusted_until - near.max_staleness
    if heard == heard and heard != float("inf") and heard != float("-inf"):
        before = _heard.get(near)
        if before is None or heard > before:
            _heard[near] = heard
            return float(heard)
    return _heard.get(near)


def near_trust(near: Any) -> None:
    """Log `scalekit.nearcache.degraded` / `recovered` when *near*'s trust changes.

    Called at every heartbeat and every listener failure; logs only the
    changes after the first time every node answered (connecting is not a
    degradation; a node that refuses the listener's commands is logged by
    the near cache itself).
    """
    from .core import log_event

    last_heard(near)
    degraded = not near.connected
    before = _degraded.get(near)
    if before is None and degraded:
        return
    _degraded[near] = degraded
    if before is None or before == degraded:
        return
    found = _names.get(id(near))
    label = found[1] if found is not None else near.remote.namespace
    if degraded:
        log_event("scalekit.nearcache.degraded", cache=label, reason=near.state)
    else:
        log_event("scalekit.nearcache.recovered", logging.INFO, cache=label)


# -- balancers -------------------------------------------------------------------------


class BalancerProbe:
    """One watched balancer's released requests: latencies buffered, counts kept.

    Set as the balancer's `_probe` (and its `ok` table of bound appends as
    the balancer's `_latencies`) only while its hub has a recorder. The
    balancer updates it inline in `release`, with its own lock held: a
    timed successful release calls `ok[endpoint](latency)` (one dict read
    and one C-level append, nothing checked), a failed or untimed one goes
    through `released_one`. Nothing here needs a lock of its own and `pick`
    is not touched at all. Picks are counted as the releases seen plus the
    requests in flight now (both exact, so the total only grows), plus an
    offset that carries the reading across the times the probe is off (see
    `switched`).

    Latencies reach the hub in batches: at every collection (the buffers
    are swapped out under the balancer's lock and bucketed after it is
    released), and from the drain thread (see `_drain`), which every
    `DRAIN_INTERVAL` seconds hands over each buffer holding `BATCH` values
    or more, so that a process nobody scrapes keeps a bounded buffer.
    """

    BATCH = 4096

    __slots__ = (
        "doomed", "errors", "hub", "label", "lists", "offset", "ok", "released", "started",
        "untimed",
    )  # fmt: skip

    def __init__(self, hub: Telemetry, label: str) -> None:
        self.hub = hub
        self.label = label
        # The same dict for the probe's life (the balancer reads it on every
        # release); its bound appends are replaced as their lists are taken.
        self.ok: dict[Hashable, Callable[[float], None]] = {}
        self.lists: dict[Hashable, list[float]] = {}
        self.errors: defaultdict[Hashable, list[float]] = defaultdict(list)
        self.untimed: defaultdict[Hashable, int] = defaultdict(int)
        self.released: defaultdict[Hashable, int] = defaultdict(int)  # timed, flushed
        self.doomed: set[Hashable] = set()  # departed endpoints reported once, dropped next
        # Picks are released + in flight + offset: the offset keeps the reading from
        # falling while the probe is off (releases are not counted then).
        self.offset: defaultdict[Hashable, int] = defaultdict(int)
        self.started = False  # switched on once: the first switch counts what is in flight

    def _fresh(self, endpoint: Hashable) -> list[float]:
        """Give *endpoint* a new, empty buffer; return the one it had (or an empty one)."""
        old = self.lists.get(endpoint, [])
        new: list[float] = []
        self.lists[endpoint] = new
        self.ok[endpoint] = new.append
        return old

    def switched(self, in_flight: dict[Hashable, int], on: bool) -> None:
        """The probe goes on or off with *in_flight* requests now (balancer lock held).

        Off, the requests in flight are already counted as picks and their
        releases will not be seen: they move into the offset. Back on, the
        requests in flight then are not new picks (counted before, or picked
        while nobody listened): they move out of it. So the reading goes on
        from where it was, by the picks made while the probe is on (plus,
        the first time, the requests in flight then).
        """
        if on and not self.started:
            self.started = True
            return
        sign = -1 if on else 1
        for endpoint, count in in_flight.items():
            self.offset[endpoint] += sign * count

    def buffered(self) -> int:
        """The most latencies one endpoint's buffer holds now (read without a lock)."""
        return max(map(len, list(self.lists.values())), default=0)

    def expire(self, live: set[Hashable]) -> None:
        """Drop the counts of endpoints gone since the last collection but one (locked).

        An endpoint that left (and has nothing in flight) is reported once
        more with its final counts, then forgotten at the next collection.
        """
        known = (*self.released, *self.untimed, *self.lists, *self.offset)
        gone = {ep for ep in known if ep not in live}
        for endpoint in gone & self.doomed:
            self.released.pop(endpoint, None)
            self.untimed.pop(endpoint, None)
            self.offset.pop(endpoint, None)
            if not self.lists.get(endpoint, True):
                del self.lists[endpoint]
                del self.ok[endpoint]
        self.doomed = gone - self.doomed

    def take(
        self, least: int = 1
    ) -> tuple[dict[Hashable, list[float]], dict[Hashable, list[float]]]:
        """Swap out the buffers holding *least* latencies or more (caller holds the lock).

        O(endpoints): the buffers are handed over whole, for `send()` to
        bucket after the balancer's lock is released; they count as
        released from now on.
        """
        full = [ep for ep, values in self.lists.items() if len(values) >= least]
        ok = {endpoint: self._fresh(endpoint) for endpoint in full}
        for endpoint, values in ok.items():
            self.released[endpoint] += len(values)
        errors: dict[Hashable, list[float]] = {}
        for endpoint in [ep for ep, values in self.errors.items() if len(values) >= least]:
            errors[endpoint] = values = self.errors.pop(endpoint)
            self.released[endpoint] += len(values)
        return ok, errors

    def send(self, ok: dict[Hashable, list[float]], errors: dict[Hashable, list[float]]) -> None:
        """Hand latencies from `take()` to the hub (no balancer lock needed)."""
        for outcome, batches in (("ok", ok), ("error", errors)):
            for endpoint, values in batches.items():
                self.hub._observe_many(
                    "scalekit_balancer_request_duration_seconds",
                    values,
                    balancer=self.label,
                    endpoint=str(endpoint),
                    outcome=outcome,
                )

    def released_one(self, endpoint: Hashable, latency: float | None, ok: bool) -> None:
        """Count one failed or untimed release, or a timed one of a new endpoint (locked)."""
        if latency is None:
            self.untimed[endpoint] += 1
        elif ok:
            if endpoint not in self.lists:
                self._fresh(endpoint)
            self.lists[endpoint].append(latency)
        else:
            self.errors[endpoint].append(latency)

    def picks(self, in_flight: dict[Hashable, int]) -> dict[Hashable, int]:
        """Picks per endpoint since the probe was set (after a `flush()`; locked)."""
        out: dict[Hashable, int] = {}
        for endpoint in {*self.released, *self.untimed, *in_flight, *self.offset}:
            n = self.released.get(endpoint, 0) + self.untimed.get(endpoint, 0)
            out[endpoint] = n + in_flight.get(endpoint, 0) + self.offset.get(endpoint, 0)
        return out


#: How often (seconds) the drain thread hands full latency buffers to their hub.
DRAIN_INTERVAL = 0.05

# id(balancer) -> (balancer held weakly, its probe): the probes that are switched on.
_drained: dict[int, tuple[weakref.ref[Any], BalancerProbe]] = {}
_drain_lock = threading.Lock()
_drain_thread: threading.Thread | None = None


def drain(balancer: Any, probe: BalancerProbe | None) -> None:
    """Keep *probe*'s buffers short while it is switched on (None: it was switched off).

    A release only appends (checking a length there costs as much again),
    so a daemon thread, running while any probe is on, hands every buffer
    holding `BalancerProbe.BATCH` values or more to the hub each
    `DRAIN_INTERVAL` seconds: a balancer that nobody scrapes buffers at most
    about `BATCH` plus `DRAIN_INTERVAL` seconds of its releases per endpoint.
    """
    global _drain_thread
    with _drain_lock:
        if probe is None:
            _drained.pop(id(balancer), None)
            return
        _drained[id(balancer)] = (weakref.ref(balancer), probe)
        if _drain_thread is None or not _drain_thread.is_alive():
            _drain_thread = threading.Thread(
                target=_drain, name="scalekit-latency-drain", daemon=True
            )
            _drain_thread.start()


def _drain() -> None:
    global _drain_thread
    while True:
        with _drain_lock:
            if not _drained:
                _drain_thread = None
                return
            probes = list(_drained.items())
        for key, (ref, probe) in probes:
            _drain_one(key, ref, probe)
        del probes, key, ref, probe  # nothing of a balancer is held across the sleep
        time.sleep(DRAIN_INTERVAL)


def _drain_one(key: int, ref: weakref.ref[Any], probe: BalancerProbe) -> None:
    """Hand *probe*'s full buffers to its hub (its balancer held only in this call)."""
    lb = ref()
    if lb is None:  # collected: its probe (and hub) are not kept alive here
        with _drain_lock:
            if _drained.get(key, (None,))[0] is ref:
                del _drained[key]
        return
    if probe.buffered() < probe.BATCH:
        return
    with lb._lock:
        taken = probe.take(probe.BATCH) if lb._probe is probe else ({}, {})
    del lb
    probe.send(*taken)  # recorders' failures are caught and logged by the hub


# Balancers' log events, raised with the balancer's lock held and logged once a
# pick, release or health change has let it go (user logging code never runs
# under the lock): the event name, level and fields, in the order raised.
_deferred: list[tuple[str, int, dict[str, Any]]] = []
_deferred_lock = threading.Lock()


def _later(event: str, level: int = logging.WARNING, **fields: Any) -> None:
    with _deferred_lock:
        _deferred.append((event, level, fields))


def flush_events() -> None:
    """Log the balancers' deferred events (call with no balancer lock held)."""
    from .core import log_event

    with _deferred_lock:
        if not _deferred:
            return
        events = _deferred[:]
        _deferred.clear()
    for event, level, fields in events:
        log_event(event, level, **fields)


def _balancer_label(lb: Any) -> str:
    found = _names.get(id(lb))
    return found[1] if found is not None else type(lb).__name__


def ejected(lb: Any, endpoint: Hashable, reason: str, until: float | None) -> None:
    """An endpoint was taken out: count it by kind of reason and log the event.

    Called with the balancer's lock held: the event is logged by
    `flush_events()` once the balancer lets its lock go.

    *reason* is an outlier ejection's description, or `"active_check"` for an
    endpoint that failed its active health checks (*until* is then `None`:
    it is out until its checks pass).
    """
    label = _balancer_label(lb)
    if reason == "active_check":
        kind = reason
    else:
        kind = "success_rate" if reason.startswith("success rate") else "consecutive_failures"
    named = _named(lb)
    if named is not None:
        named[0].add(
            "scalekit_balancer_ejections", balancer=label, endpoint=str(endpoint), reason=kind
        )
    # `kind` is the metric's `reason` label, `reason` the full description.
    if until is None:
        _later(
            "scalekit.balancer.ejected",
            balancer=label,
            endpoint=str(endpoint),
            reason=kind,
            kind=kind,
        )
        return
    _later(
        "scalekit.balancer.ejected",
        balancer=label,
        endpoint=str(endpoint),
        reason=reason,
        kind=kind,
        until=until,
        until_utc=_wall(lb, until),
    )


def _wall(lb: Any, until: float) -> str:
    """The balancer's clock reading *until* as an ISO 8601 UTC time (`time.time()` based)."""
    try:
        at = time.time() + (until - lb._clock())
    except Exception:
        return repr(until)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def unejected(lb: Any, endpoint: Hashable) -> None:
    """An ejected endpoint came back."""
    _later(
        "scalekit.balancer.uneject",
        logging.INFO,
        balancer=_balancer_label(lb),
        endpoint=str(endpoint),
    )


def panic(lb: Any, active: bool) -> None:
    """The balancer entered (*active*) or left panic mode."""
    _later("scalekit.balancer.panic", balancer=_balancer_label(lb), active=active)


def checked(lb: Any, endpoint: Hashable, healthy: bool) -> None:
    """One active health-check result."""
    named = _named(lb)
    if named is not None:
        named[0].add(
            "scalekit_balancer_health_checks",
            balancer=named[1],
            endpoint=str(endpoint),
            result="pass" if healthy else "fail",
        )


# -- locks -----------------------------------------------------------------------------


def acquired(lock: Any, begun: float, outcome: str, waited: bool) -> None:
    """An acquire ended with *outcome* (`acquired`, `timeout`, `busy` or `error`)."""
    named = _lock_named(lock)
    if named is None:
        return
    hub, label = named
    waited_for = lock._clock() - begun
    if not waited_for > 0.0:  # a clock that went back, or NaN from a bad clock
        waited_for = 0.0
    key = (("lock", label),)
    hub._observe_key(_LOCK_WAIT, (*key, ("outcome", outcome)), waited_for)
    if outcome == "acquired":
        hub._add_key(_LOCK_ACQUIRED, key)
        if waited:
            hub._add_key(_LOCK_HANDOVERS, key)
    elif outcome == "timeout":
        hub._add_key(_LOCK_TIMEOUTS, key)


_LOCK_WAIT = METRICS["scalekit_lock_wait_seconds"]
_LOCK_ACQUIRED = METRICS["scalekit_lock_acquisitions"]
_LOCK_HANDOVERS = METRICS["scalekit_lock_handovers"]
_LOCK_TIMEOUTS = METRICS["scalekit_lock_timeouts"]


def acquire_outcome(exc: BaseException | None) -> str:
    """The outcome label of an acquire that got no lease, from what it raised."""
    from ..exceptions import LockTimeoutError

    if exc is None:
        return "busy"
    return "timeout" if isinstance(exc, LockTimeoutError) else "error"


def renewed(lock: Any, ok: bool) -> None:
    """One extend of a lease (by hand or by auto-renewal), succeeded or failed."""
    named = _lock_named(lock)
    if named is not None:
        named[0].add("scalekit_lock_renewals", lock=named[1], result="ok" if ok else "failed")


def release_failed(lock: Any) -> None:
    """A release the backend did not answer: the lease ends at its deadline instead."""
    named = _lock_named(lock)
    if named is not None:
        named[0].add("scalekit_lock_release_errors", lock=named[1])


def lease_lost(lock: Any, lease: Any, cause: str) -> None:
    """A lease was found lost: count it by cause and log the event."""
    from .core import log_event

    named = _lock_named(lock)
    if named is not None:
        named[0].add("scalekit_lock_leases_lost", lock=named[1], cause=cause)
    log_event("scalekit.lock.lease_lost", lock=lock.name, cause=cause, token=lease.token)


def callback_failed(lease: Any, exc: BaseException) -> None:
    """An `on_lost` callback raised (its traceback is logged by the lock module)."""
    from .core import log_event

    log_event("scalekit.lock.callback_failed", lock=lease.name, error=repr(exc))


# -- pushed histograms in batches ----------------------------------------------------


def observe_many(recorder: Any, spec: Any, values: list[float], labels: Any) -> None:
    """Hand *values* to *recorder* at once when it can take a batch, else one by one."""
    many = getattr(recorder, "observe_many", None)
    if many is not None:
        many(spec, values, labels)
        return
    for value in values:
        recorder.observe(spec, value, labels)


_numpy: Any = None  # numpy, once looked for; False when it is not installed
_bounds: dict[tuple[float, ...], Any] = {}  # bucket bounds as numpy arrays, made once each


def bucket_counts(buckets: tuple[float, ...], values: list[float]) -> tuple[dict[int, int], float]:
    """How many of *values* fall in each bucket index (the last index is +Inf), and their sum.

    A value equal to a bound counts in that bound's bucket (`le`), as
    `bisect_left` places it. With numpy installed, a large batch is counted
    by `searchsorted` (the same rule) about five times faster; numpy is
    never required.
    """
    global _numpy
    if len(values) >= 64:
        if _numpy is None:
            try:
                _numpy = importlib.import_module("numpy")
            except ImportError:
                _numpy = False
        if _numpy is not False:
            np = _numpy
            bounds = _bounds.get(buckets)
            if bounds is None:
                bounds = _bounds[buckets] = np.asarray(buckets, dtype=float)
            # Packed as C doubles first: several times faster than np.array or
            # np.fromiter on a list of floats.
            array = np.frombuffer(struct.pack(f"{len(values)}d", *values))
            found = np.searchsorted(bounds, array, side="left")
            counts = np.bincount(found, minlength=len(buckets) + 1)
            total = float(array.sum())
            return {i: int(n) for i, n in enumerate(counts.tolist()) if n}, total
    counted = Counter(map(bisect.bisect_left, itertools.repeat(buckets), values))
    return dict(counted), sum(values)
