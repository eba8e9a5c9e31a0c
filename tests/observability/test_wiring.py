"""Every family pushes its own measurements: a known sequence on real backends, then a scrape.

The primitives run against the session's real Redis and ZooKeeper; the
metrics are read over HTTP from the shop's `/metrics` server
(`examples.shop.metrics.ShopMetrics`) with prometheus_client's parser, and
through an OpenTelemetry in-memory reader. About 5 seconds, most of it the
lock timeout and ZooKeeper's session setup.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples.shop.metrics import ShopMetrics
from scalekit.balancing import (
    ActiveHealthChecker,
    HealthPolicy,
    OutlierDetection,
    RoundRobin,
)
from scalekit.caching import LRUCache, NearCache, RedisCache, cached
from scalekit.exceptions import LockLostError, LockTimeoutError
from scalekit.locking import RedisLock, ZooKeeperLock
from scalekit.observability import (
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
    watch_router,
)
from scalekit.sharding import HashRouter
from scalekit.testing import FakeClock

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def shop_metrics() -> Iterator[tuple[ShopMetrics, Callable[[], Scrape]]]:
    metrics = ShopMetrics()
    port = _free_port()
    metrics.serve(port)

    def scrape() -> Scrape:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: Scrape = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    yield metrics, scrape
    metrics.close()


def _cached_sequence(hub: Telemetry) -> Any:
    """`cached` over an LRU: one ok load, one hit, one failing load, one shared async load."""
    prices: LRUCache[Any, int] = LRUCache(maxsize=10)
    watch_cache(prices, "prices", telemetry=hub)

    @cached(prices)
    def price(sku: int) -> int:
        if sku < 0:
            raise ValueError("no such sku")
        return sku * 10

    assert price(1) == 10 and price(1) == 10
    with pytest.raises(ValueError):
        price(-1)
    shared: LRUCache[Any, int] = LRUCache(maxsize=10)
    watch_cache(shared, "shared", telemetry=hub)

    @cached(shared)
    async def slow(sku: int) -> int:
        await asyncio.sleep(0)
        return sku

    async def two_callers() -> list[int]:
        return list(await asyncio.gather(slow(3), slow(3)))

    assert asyncio.run(two_callers()) == [3, 3]
    return prices, shared


def _balancer_sequence(hub: Telemetry) -> Any:
    clock = FakeClock()
    health = HealthPolicy(outlier=OutlierDetection(consecutive_failures=2), panic_threshold=50)
    lb = RoundRobin(["a", "b"], clock=clock, health=health)
    watch_balancer(lb, "payments", telemetry=hub)
    for latency, ok in ((0.02, True), (0.3, False), (0.02, True), (0.3, False)):
        lb.release(lb.pick(), latency=latency, ok=ok)  # a, b, a, b: b fails twice
    held = lb.pick()  # b is ejected: a again, left in flight
    assert held == "a"
    checker = ActiveHealthChecker(lb, lambda ep: ep == "a", unhealthy_threshold=5)
    checker.run_once()  # a passes, b fails (below its threshold: nothing changes)
    return lb


def test_every_family_reports_through_the_shops_metrics_endpoint(
    shop_metrics: tuple[ShopMetrics, Callable[[], Scrape]],
    redis_server: Any,
    redis_client: Any,
    zookeeper_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, scrape = shop_metrics
    hub = metrics.telemetry
    caplog.set_level(logging.INFO, logger="scalekit")
    keep = [_cached_sequence(hub), _balancer_sequence(hub)]

    # -- locks on Redis: granted, busy, timed out, renewed, handed over, lost
    watch_locks("stock", prefix="shop:stock:", telemetry=hub)
    lock = RedisLock(redis_client, "shop:stock:sku-1", ttl=5)
    other = RedisLock(redis_client, "shop:stock:sku-1", ttl=5)
    lease = lock.acquire()
    assert lease is not None
    assert other.acquire(blocking=False) is None
    with pytest.raises(LockTimeoutError):
        other.acquire(timeout=0.2)
    lock.extend(lease)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(other.acquire(timeout=10)))
    waiter.start()
    queue = "scalekit:lock:{shop:stock:sku-1}:queue"
    _poll(lambda: redis_client.llen(queue) == 1)
    lock.release(lease)
    waiter.join(10)
    (handed,) = got
    redis_client.delete("scalekit:lock:{shop:stock:sku-1}")  # the lease vanishes under it
    with pytest.raises(LockLostError):
        other.release(handed)
    third = RedisLock(redis_client, "shop:stock:sku-3", ttl=5)
    gone = third.acquire()
    assert gone is not None
    redis_client.delete("scalekit:lock:{shop:stock:sku-3}")
    with pytest.raises(LockLostError):
        third.extend(gone)  # Redis no longer holds it: the renewal is refused

    # -- a lock on ZooKeeper, its own family
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=zookeeper_server.hosts, timeout=5)
    zk.start(timeout=10)
    try:
        watch_locks("zk-stock", prefix="/shop/stock/", telemetry=hub)
        zlock = ZooKeeperLock(zk, "/shop/stock/sku-2")
        zlease = zlock.acquire(timeout=5)
        assert zlease is not None
        zlock.release(zlease)
    finally:
        zk.stop()
        zk.close()

    # -- the Redis tier and a near cache over it
    goods = RedisCache(redis_client, namespace="goods")
    watch_cache(goods, "goods", telemetry=hub)
    assert goods.get_or_load("g1", lambda: "v1") == "v1"  # a miss and a load
    assert goods.get_or_load("g1", lambda: "never") == "v1"  # a hit
    near = NearCache(LRUCache(maxsize=10), RedisCache(redis_client, namespace="near"))
    watch_cache(near, "near", telemetry=hub)
    try:
        assert near.sync(10)
        assert near.get_or_load("n1", lambda: "v") == "v"  # a remote read and a load
        # The load's own write-back may invalidate what it read (the local layer
        # then fills on a later remote read); then the key is served locally.
        _poll(lambda: near.get_or_load("n1", lambda: "never") == "v" and near.stats().local_hits)
        before = near.stats().invalidations
        near.set("n1", "w")  # a write: its invalidation comes back here too
        # A quiescent point: every write acknowledged so far (the load's write-back
        # too) has had its invalidations applied here, so none arrives after the read.
        assert near.sync(10)
        near_stats = near.stats()
        assert near_stats.invalidations > before
        # -- a router
        users = HashRouter(["s1", "s2", "s3"])
        watch_router(users, "users", telemetry=hub)
        keys = [f"user:{i}" for i in range(20)]
        expected: dict[str, int] = {}
        for key in keys:
            expected[str(HashRouter.route(users, key))] = (
                expected.get(str(HashRouter.route(users, key)), 0) + 1
            )
            users.route(key)
        s = scrape()
    finally:
        near.close()

    # caches and `cached`
    prices = (("cache", "prices"),)
    assert s[("scalekit_cache_hits_total", prices)] == 1
    assert s[("scalekit_cache_misses_total", prices)] == 2
    ok = (("cache", "prices"), ("outcome", "ok"))
    error = (("cache", "prices"), ("outcome", "error"))
    assert s[("scalekit_cache_load_duration_seconds_count", ok)] == 1
    assert s[("scalekit_cache_load_duration_seconds_count", error)] == 1
    assert s[("scalekit_cache_load_errors_total", prices)] == 1
    assert s[("scalekit_cache_singleflight_waits_total", (("cache", "shared"),))] == 1
    assert s[("scalekit_cache_singleflight_waits_total", prices)] == 0

    # balancers
    def lb(name: str, **labels: str) -> float:
        return s[(name, tuple(sorted({"balancer": "payments", **labels}.items())))]

    assert lb("scalekit_balancer_picks_total", endpoint="a") == 3
    assert lb("scalekit_balancer_picks_total", endpoint="b") == 2
    assert lb("scalekit_balancer_in_flight", endpoint="a") == 1
    assert lb("scalekit_balancer_request_duration_seconds_count", endpoint="a", outcome="ok") == 2
    assert lb(
        "scalekit_balancer_request_duration_seconds_sum", endpoint="b", outcome="error"
    ) == pytest.approx(0.6)
    bucket = "scalekit_balancer_request_duration_seconds_bucket"
    assert lb(bucket, endpoint="a", outcome="ok", le="0.025") == 2
    assert lb(bucket, endpoint="b", outcome="error", le="0.25") == 0
    assert lb(bucket, endpoint="b", outcome="error", le="0.5") == 2
    assert lb("scalekit_balancer_ejections_total", endpoint="b", reason="consecutive_failures") == 1
    assert lb("scalekit_balancer_ejected", endpoint="b") == 1
    assert lb("scalekit_balancer_ejected", endpoint="a") == 0
    assert lb("scalekit_balancer_panic") == 0
    assert lb("scalekit_balancer_health_checks_total", endpoint="a", result="pass") == 1
    assert lb("scalekit_balancer_health_checks_total", endpoint="b", result="fail") == 1

    # locks
    stock = (("lock", "stock"),)
    assert s[("scalekit_lock_acquisitions_total", stock)] == 3
    assert s[("scalekit_lock_timeouts_total", stock)] == 1
    assert s[("scalekit_lock_handovers_total", stock)] == 1
    for outcome, count in (("acquired", 3), ("busy", 1), ("timeout", 1)):
        series = (("lock", "stock"), ("outcome", outcome))
        assert s[("scalekit_lock_wait_seconds_count", series)] == count, outcome
    timed_out = (("lock", "stock"), ("outcome", "timeout"))
    assert 0.2 <= s[("scalekit_lock_wait_seconds_sum", timed_out)] < 5
    assert s[("scalekit_lock_renewals_total", (("lock", "stock"), ("result", "ok")))] == 1
    assert s[("scalekit_lock_renewals_total", (("lock", "stock"), ("result", "failed")))] == 1
    for cause in ("release_refused", "extend_refused"):
        assert s[("scalekit_lock_leases_lost_total", (("cause", cause), ("lock", "stock")))] == 1
    zk_stock = (("lock", "zk-stock"),)
    assert s[("scalekit_lock_acquisitions_total", zk_stock)] == 1
    assert s[("scalekit_lock_wait_seconds_count", (*zk_stock, ("outcome", "acquired")))] == 1

    # the Redis tier and the near cache
    goods_ = (("cache", "goods"),)
    assert s[("scalekit_rediscache_remote_reads_total", (*goods_, ("result", "hit")))] == 1
    assert s[("scalekit_rediscache_remote_reads_total", (*goods_, ("result", "miss")))] == 1
    assert s[("scalekit_rediscache_loads_total", goods_)] == 1
    assert s[("scalekit_rediscache_writebacks_rejected_total", goods_)] == 0
    assert s[("scalekit_rediscache_fallback_calls_total", goods_)] == 0
    near_ = (("cache", "near"),)
    assert s[("scalekit_nearcache_local_hits_total", near_)] == near_stats.local_hits == 1
    assert s[("scalekit_nearcache_remote_reads_total", near_)] == near_stats.remote_reads >= 1
    assert s[("scalekit_nearcache_invalidations_total", near_)] == near_stats.invalidations >= 1
    assert s[("scalekit_nearcache_degraded", near_)] == 0
    # heartbeats every max_staleness / 4 (1 s): the last answer is younger than max_staleness
    assert 0 <= s[("scalekit_nearcache_staleness_seconds", near_)] < near.max_staleness

    # the router
    routed = {
        dict(labels)["shard"]: v
        for (name, labels), v in s.items()
        if name == "scalekit_router_routes_total" and dict(labels)["router"] == "users"
    }
    assert routed == expected and sum(routed.values()) == 20

    # the rare events, logged with their stable names
    events = [(r.event, _stable(r.fields)) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert (
        "scalekit.balancer.ejected",
        {"balancer": "payments", "endpoint": "b", "reason": "2 consecutive failures",
         "kind": "consecutive_failures", "until": 30.0},
    ) in events  # fmt: skip
    lost_events = [f for e, f in events if e == "scalekit.lock.lease_lost"]
    assert lost_events == [
        {"lock": "shop:stock:sku-1", "cause": "release_refused", "token": handed.token},
        {"lock": "shop:stock:sku-3", "cause": "extend_refused", "token": gone.token},
    ]
    del keep


def test_nobody_listening_leaves_the_hot_paths_untouched() -> None:
    hub = Telemetry()
    lb = RoundRobin(["a", "b"])
    router = HashRouter(["s1", "s2"])
    fast = router.route  # a HashRouter's own fast path, an instance attribute
    watch_balancer(lb, "idle", telemetry=hub)
    watch_router(router, "idle", telemetry=hub)
    assert lb._probe is None and router.route is fast
    assert "_probe" in vars(lb)  # set at construction: the instance keeps its compact dict
    from scalekit.observability import MemoryRecorder

    recorder = MemoryRecorder()
    hub.subscribe(recorder)
    assert lb._probe is not None and router.route is not fast
    router.route("k1")
    router.add_shard("s3")  # installs a new fast path: counting goes on through it at once
    after = router._route
    assert router.route is not after

    def routed() -> float:
        return sum(s.value for s in hub.collect() if s.metric == "scalekit_router_routes")

    router.route("k2")
    assert routed() == 2.0
    hub.unsubscribe(recorder)
    assert lb._probe is None and router.route is after


def test_panic_and_lease_events_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    from scalekit.locking import MemoryLock
    from scalekit.observability import MemoryRecorder

    caplog.set_level(logging.INFO, logger="scalekit")
    hub = Telemetry()
    recorder = MemoryRecorder()
    hub.subscribe(recorder)
    clock = FakeClock()
    outlier = OutlierDetection(
        consecutive_failures=1, interval=10, base_ejection_time=10, max_ejection_percent=50
    )
    lb = RoundRobin(
        ["a", "b"], clock=clock, health=HealthPolicy(outlier=outlier, panic_threshold=100)
    )
    watch_balancer(lb, "pay", telemetry=hub)
    lb.release(lb.pick(), latency=0.1, ok=False)  # a is ejected: one of two out, under 100%
    lb.release(lb.pick(), latency=0.1)  # panic: both used
    clock.advance(10)
    lb.release(lb.pick(), latency=0.1)  # the tick returns a: panic over
    watch_locks("jobs", telemetry=hub)
    plain = MemoryLock("jobs:1", ttl=1, clock=clock)
    lease = plain.acquire()
    assert lease is not None
    plain.extend(lease)
    plain.release(lease)
    held = plain.acquire()
    try:
        raise KeyError("handled by the caller")
    except KeyError:  # an exception being handled is not the acquire's outcome
        assert MemoryLock("jobs:1", ttl=1, clock=clock).acquire(blocking=False) is None
    plain.release(held)
    watched = MemoryLock("jobs:2", ttl=1, clock=clock, on_lost=lambda _lease: 1 / 0)
    other = watched.acquire()
    assert other is not None
    clock.advance(2)  # the lease watchdog finds it expired and runs the failing callback

    def logged(event: str) -> bool:
        return any(getattr(r, "event", "") == event for r in caplog.records)

    _poll(lambda: logged("scalekit.lock.callback_failed"))
    events = [(r.event, _stable(r.fields)) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert events == [
        ("scalekit.balancer.ejected",
         {"balancer": "pay", "endpoint": "a", "reason": "1 consecutive failures",
          "kind": "consecutive_failures", "until": 10.0}),
        ("scalekit.balancer.panic", {"balancer": "pay", "active": True}),
        ("scalekit.balancer.uneject", {"balancer": "pay", "endpoint": "a"}),
        ("scalekit.balancer.panic", {"balancer": "pay", "active": False}),
        ("scalekit.lock.lease_lost", {"lock": "jobs:2", "cause": "expired", "token": other.token}),
        ("scalekit.lock.callback_failed",
         {"lock": "jobs:2", "error": "ZeroDivisionError('division by zero')"}),
    ]  # fmt: skip
    counters, _, _ = recorder.snapshot()
    assert counters[("scalekit_lock_renewals", (("lock", "jobs"), ("result", "ok")))] == 1
    _, _, waits = recorder.snapshot()
    assert waits[("scalekit_lock_wait_seconds", (("lock", "jobs"), ("outcome", "busy")))].count == 1
    assert ("scalekit_lock_wait_seconds", (("lock", "jobs"), ("outcome", "error"))) not in waits
    lost = (("lock", "jobs"), ("cause", "expired"))
    assert counters[("scalekit_lock_leases_lost", lost)] == 1
    ejection = (("balancer", "pay"), ("endpoint", "a"), ("reason", "consecutive_failures"))
    assert counters[("scalekit_balancer_ejections", ejection)] == 1


def _stable(fields: dict[str, object]) -> dict[str, object]:
    """An event's fields without the wall-clock `until_utc` (checked for its form)."""
    out = dict(fields)
    wall = out.pop("until_utc", None)
    assert wall is None or (isinstance(wall, str) and wall.endswith("Z") and "T" in wall)
    return out
