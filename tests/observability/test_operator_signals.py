"""What an operator must see when things go wrong: checks, outages, lost renewals, churn.

The Redis tests freeze a server of their own (SIGSTOP) or cut a proxy to
it; each is bounded by the lock's `op_timeout` or the near cache's
`max_staleness` (well under 2 seconds each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.balancing import ActiveHealthChecker, HealthPolicy, RoundRobin
from scalekit.caching import NearCache, RedisCache, TinyLFUCache
from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.locking import RedisLock
from scalekit.observability import (
    MemoryRecorder,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
)
from scalekit.testing import FakeClock, TCPProxy

redis = pytest.importorskip("redis")


def _pulled(hub: Telemetry, metric: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for s in hub.collect() if s.metric == metric}


def _poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- balancers: active checks and churn ----------------------------------------------------


def test_an_endpoint_out_on_active_checks_is_reported_ejected_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Telemetry()
    memory = MemoryRecorder()
    hub.subscribe(memory)
    lb = RoundRobin(["a", "b", "c", "d"], clock=FakeClock(), health=HealthPolicy())
    watch_balancer(lb, "pay", telemetry=hub)
    up = {"a", "c", "d"}
    checker = ActiveHealthChecker(lb, lambda ep: ep in up, unhealthy_threshold=2)
    with caplog.at_level(logging.INFO, logger="scalekit"):
        checker.run_once()
        checker.run_once()  # b fails twice: out
        picks = [lb.pick() for _ in range(30)]
        for ep in picks:
            lb.release(ep)
    assert "b" not in picks
    ejected = _pulled(hub, "scalekit_balancer_ejected")
    assert ejected == {("pay", "a"): 0.0, ("pay", "b"): 1.0, ("pay", "c"): 0.0, ("pay", "d"): 0.0}
    key = (("balancer", "pay"), ("endpoint", "b"), ("reason", "active_check"))
    assert memory.counters[("scalekit_balancer_ejections", key)] == 1.0
    events = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert (
        "scalekit.balancer.ejected",
        {"balancer": "pay", "endpoint": "b", "reason": "active_check"},
    ) in [(e, {k: f[k] for k in ("balancer", "endpoint", "reason") if k in f}) for e, f in events]
    caplog.clear()
    up.add("b")
    with caplog.at_level(logging.INFO, logger="scalekit"):
        checker.run_once()
        checker.run_once()  # healthy_threshold (2) passes: back
    assert _pulled(hub, "scalekit_balancer_ejected")[("pay", "b")] == 0.0
    back = [r for r in caplog.records if getattr(r, "event", "") == "scalekit.balancer.uneject"]
    assert [r.fields for r in back] == [{"balancer": "pay", "endpoint": "b"}]  # type: ignore[attr-defined]


def test_panic_from_active_checks_shows_which_endpoints_are_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    lb = RoundRobin(["a", "b", "c", "d"], clock=FakeClock(), health=HealthPolicy())
    watch_balancer(lb, "pay", telemetry=hub)
    checker = ActiveHealthChecker(lb, lambda ep: ep == "a", unhealthy_threshold=1)
    with caplog.at_level(logging.WARNING, logger="scalekit"):
        checker.run_once()  # 3 of 4 out: below the 50% panic threshold
    # Logged when it happens, not at the next pick.
    panics = [r for r in caplog.records if getattr(r, "event", "") == "scalekit.balancer.panic"]
    assert [r.fields for r in panics] == [{"balancer": "pay", "active": True}]  # type: ignore[attr-defined]
    lb.release(lb.pick())
    assert _pulled(hub, "scalekit_balancer_panic") == {("pay",): 1.0}
    ejected = _pulled(hub, "scalekit_balancer_ejected")
    assert sum(ejected.values()) == 3.0 and ejected[("pay", "a")] == 0.0


def test_a_removed_endpoints_series_are_dropped_after_one_scrape() -> None:
    hub = Telemetry()
    memory = MemoryRecorder()
    hub.subscribe(memory)
    lb = RoundRobin([f"e{i}" for i in range(5)], health=HealthPolicy())
    watch_balancer(lb, "pay", telemetry=hub)
    checker = ActiveHealthChecker(lb, lambda ep: True)

    def endpoints_in_series() -> set[str]:
        pulled = {s.labels.get("endpoint") for s in hub.collect()}
        pushed = {
            dict(labels).get("endpoint")
            for store in (memory.counters, memory.histograms)
            for _, labels in store
        }
        return {ep for ep in pulled | pushed if ep is not None}

    serial = 5
    for _ in range(400):  # replace one endpoint at a time, with traffic and checks
        for _ in range(10):
            lb.release(lb.pick(), latency=0.001)
        checker.run_once()
        old = next(iter(lb.endpoints))
        lb.remove(old)
        lb.add(f"e{serial}")
        serial += 1
        # The scrape right after the removal still shows the departed endpoint's final counts.
        picks = _pulled(hub, "scalekit_balancer_picks")
        assert picks[("pay", old)] >= 1
        assert endpoints_in_series() <= {*map(str, lb.endpoints), old}
    endpoints_in_series()
    assert endpoints_in_series() == set(map(str, lb.endpoints))
    assert len(memory.counters) + len(memory.histograms) < 5 * 10  # not thousands


# -- locks -------------------------------------------------------------------------


def test_an_extend_and_a_release_redis_does_not_answer_are_counted(
    redis_server: Any,
) -> None:
    hub = Telemetry()
    memory = MemoryRecorder()
    hub.subscribe(memory)
    watch_locks("orders", telemetry=hub)
    with TCPProxy(*redis_server.address) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=5)
        try:
            lock = RedisLock(client, "orders:1", ttl=5, op_timeout=0.3)
            lease = lock.acquire()
            assert lease is not None
            proxy.blackhole()
            with pytest.raises(BackendUnavailableError):
                lease.extend()
            with pytest.raises(BackendUnavailableError):
                lease.release()
        finally:
            proxy.pass_through()
            client.close()
    failed = (("lock", "orders"), ("result", "failed"))
    assert memory.counters[("scalekit_lock_renewals", failed)] == 1.0
    assert memory.counters[("scalekit_lock_release_errors", (("lock", "orders"),))] == 1.0


def test_async_redis_lock_reports_waits_acquisitions_timeouts_and_renewals(
    redis_server: Any,
) -> None:
    import redis.asyncio as aioredis

    from scalekit.locking import AsyncRedisLock

    hub = Telemetry()
    memory = MemoryRecorder()
    hub.subscribe(memory)
    watch_locks("jobs", telemetry=hub)

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
        try:
            lock = AsyncRedisLock(client, "jobs:1", ttl=5)
            await client.delete(*lock._keys)
            lease = await lock.acquire()
            assert lease is not None
            await lock.extend(lease)
            with pytest.raises(LockTimeoutError):
                await AsyncRedisLock(client, "jobs:1", ttl=5).acquire(timeout=0.2)
            assert await AsyncRedisLock(client, "jobs:1", ttl=5).acquire(blocking=False) is None
            await lock.release(lease)
        finally:
            await client.aclose()

    asyncio.run(scenario())
    job = (("lock", "jobs"),)
    assert memory.counters[("scalekit_lock_acquisitions", job)] == 1.0
    assert memory.counters[("scalekit_lock_timeouts", job)] == 1.0
    assert memory.counters[("scalekit_lock_renewals", (*job, ("result", "ok")))] == 1.0
    waits = {
        dict(labels)["outcome"]: state.count
        for (name, labels), state in memory.histograms.items()
        if name == "scalekit_lock_wait_seconds"
    }
    assert waits == {"acquired": 1, "timeout": 1, "busy": 1}
    (timeout,) = [
        s
        for (n, labels), s in memory.histograms.items()
        if n == "scalekit_lock_wait_seconds" and dict(labels)["outcome"] == "timeout"
    ]
    assert 0.2 <= timeout.total < 0.2 + 0.5  # the timeout plus one round trip's margin


# -- NearCache ---------------------------------------------------------------------------


def test_nearcache_staleness_keeps_growing_while_redis_is_frozen(
    fresh_redis_server: Any,
) -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    client = redis.Redis.from_url(fresh_redis_server.url, socket_timeout=0.5)
    remote = RedisCache(client, namespace="stale", notify=True, fallback=True)
    near = NearCache(TinyLFUCache(16), remote, max_staleness=0.4)
    watch_cache(near, "products", telemetry=hub)

    def staleness() -> float | None:
        return _pulled(hub, "scalekit_nearcache_staleness_seconds").get(("products",))

    try:
        _poll(lambda: near.connected)
        fresh_redis_server.pause()
        try:
            _poll(lambda: not near.connected)
            readings = []
            for wait in (0.6, 1.2):
                _poll(lambda w=wait: (staleness() or 0.0) >= w, timeout=5)  # type: ignore[misc]
                readings.append(staleness())
            assert all(r is not None for r in readings)
            assert _pulled(hub, "scalekit_nearcache_degraded") == {("products",): 1.0}
        finally:
            fresh_redis_server.resume()
        _poll(lambda: near.connected)
        assert (staleness() or 9.0) < 0.4 + 0.2  # max_staleness, plus a heartbeat's margin
        fresh_redis_server.stop()  # down, not frozen: the same
        _poll(lambda: not near.connected)
        _poll(lambda: (staleness() or 0.0) >= 0.8, timeout=5)
    finally:
        near.close()
        client.close()


def test_a_closed_nearcache_is_not_reported_degraded(fresh_redis_server: Any) -> None:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    client = redis.Redis.from_url(fresh_redis_server.url, socket_timeout=0.5)
    remote = RedisCache(client, namespace="closing", notify=True)
    near = NearCache(TinyLFUCache(16), remote, max_staleness=0.4)
    watch_cache(near, "products", telemetry=hub)
    try:
        _poll(lambda: near.connected)
        near.set("k", "v")
        _poll(lambda: near.get("k") == "v" and near.stats().local_hits > 0)
        assert _pulled(hub, "scalekit_nearcache_degraded") == {("products",): 0.0}
        hits = near.stats().local_hits
    finally:
        near.close()
        client.close()
    # Closed on purpose, with Redis healthy: not an outage. Its counters stay.
    assert _pulled(hub, "scalekit_nearcache_degraded") == {}
    assert _pulled(hub, "scalekit_nearcache_staleness_seconds") == {}
    assert _pulled(hub, "scalekit_nearcache_local_hits") == {("products",): hits}


# -- routers and migrations ----------------------------------------------------------


def _routes(hub: Telemetry) -> float:
    return sum(_pulled(hub, "scalekit_router_routes").values())


def test_routes_count_callers_keys_not_the_movers_scan_and_progress_moves_by_keys(
    redis_server: Any, fresh_redis_server: Any
) -> None:
    from scalekit.observability import watch_migration, watch_router
    from scalekit.sharding import HashRouter, MigratingRouter, RedisShardStore

    clients = {
        name: redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
        for name, server in (("A", redis_server), ("B", fresh_redis_server))
    }
    try:
        clients["A"].flushall()
        for start in range(0, 1000, 250):
            clients["A"].mset({f"k{i}": "v" for i in range(start, start + 250)})
        stores = {name: RedisShardStore(c) for name, c in clients.items()}
        old, new = HashRouter(["A"]), HashRouter(["A", "B"])
        migration = MigratingRouter(old, new, stores, name="grow")
        hub = Telemetry()
        hub.subscribe(MemoryRecorder())
        watch_router(old, "old", telemetry=hub)
        watch_router(new, "new", telemetry=hub)
        watch_migration(migration, "grow", telemetry=hub)
        migration.start()
        moving = sum(1 for i in range(1000) if migration.moves(f"k{i}"))
        assert _routes(hub) == 2 * 1000  # moves() routes each key once on each router
        assert migration.move(limit=moving // 4) == moving // 4
        assert _routes(hub) == 2 * 1000  # the mover's scan routes nobody's key
        (ratio,) = _pulled(hub, "scalekit_migration_progress_ratio").values()
        # A quarter of the moving keys are moved, so the scan is about a quarter through;
        # margin: one scan batch (100 of the 1,000 keys) and the buckets' unevenness.
        assert abs(ratio - 0.25) <= 0.15, ratio
        while migration.move(limit=1000):
            pass
        assert _pulled(hub, "scalekit_migration_progress_ratio") == {("grow",): 1.0}
    finally:
        for c in clients.values():
            c.close()


def test_unwatching_a_migration_stops_its_pushes_and_holds_it_no_more(
    redis_server: Any, fresh_redis_server: Any
) -> None:
    import gc
    import weakref

    from scalekit.observability import watch_migration
    from scalekit.sharding import HashRouter, MigratingRouter, RedisShardStore

    clients = {
        name: redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
        for name, server in (("A", redis_server), ("B", fresh_redis_server))
    }
    try:
        clients["A"].flushall()
        clients["B"].flushall()
        clients["A"].mset({f"k{i}": "v" for i in range(300)})
        stores = {name: RedisShardStore(c) for name, c in clients.items()}
        migration = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, name="g2")
        hub = Telemetry()
        recorder = MemoryRecorder()
        hub.subscribe(recorder)
        watch_migration(migration, "grow", telemetry=hub)
        key = ("scalekit_migration_keys_moved", (("migration", "grow"),))
        assert recorder.counters[key] == 0  # at 0 from watch time
        migration.start()
        assert migration.move(limit=5, batch=5) == 5
        assert recorder.counters[key] == 5
        hub.unwatch(migration)
        assert migration.move(limit=5, batch=5) == 5
        assert migration.move(limit=5, batch=5) == 5
        assert recorder.counters[key] == 5
        watch_migration(migration, "grow", telemetry=hub)
        ref = weakref.ref(migration)
        gc.disable()  # freed by reference counting alone, not by the cycle collector
        try:
            del migration
            assert ref() is None
        finally:
            gc.enable()
    finally:
        for c in clients.values():
            c.close()


def test_routes_between_an_add_shard_and_the_next_scrape_are_counted() -> None:
    from scalekit.observability import watch_router
    from scalekit.sharding import HashRouter

    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    router = HashRouter(["a", "b"])
    watch_router(router, "users", telemetry=hub)
    for i in range(50):
        router.route(f"u{i}")
    router.add_shard("c")
    for i in range(100):
        router.route(f"u{i}")
    router.remove_shard("a")
    for i in range(10):
        router.route(f"u{i}")
    assert _routes(hub) == 160


# -- the shop in Redis mode, Redis frozen -------------------------------------------------


def test_the_running_shop_shows_a_redis_outage_on_metrics(
    tmp_path: Any, fresh_redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """About 5 s: a 3.5 s run on Redis, frozen for 2.4 s once it serves, scraped then."""
    import socket
    import threading
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from examples.shop.metrics import ShopMetrics
    from examples.shop.runner import run
    from examples.shop.simulation import Settings

    # lock_timeout 1 s: an acquire begun in the freeze gives up once the lock's first
    # call to Redis times out (RedisLock's op_timeout, 2 s), before the scrape at 2.4 s.
    settings = Settings(
        redis=fresh_redis_server.url, duration=3.5, failing_gateway_rate=0.0, lock_timeout=1.0
    )
    metrics = ShopMetrics()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    metrics.serve(port)
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def scrape() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scraped[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def freeze() -> None:
        # Freeze once the load runs, the near cache has served locally and checkouts
        # take stock locks (a loaded machine may take a while to get there).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                scrape()
            acquired = scraped.get(("scalekit_lock_acquisitions_total", stock), 0.0)
            if scraped.get(("scalekit_nearcache_local_hits_total", products), 0.0) and acquired:
                break  # buyers check out: some acquire begins early in the freeze
            time.sleep(0.02)  # polling the shop over HTTP: there is nothing to wait on
        fresh_redis_server.pause()
        try:
            time.sleep(2.4)
            scrape()  # while Redis is frozen
        finally:
            fresh_redis_server.resume()

    products = (("cache", "products"),)
    stock = (("lock", "shop:stock"),)
    freezer = threading.Thread(target=freeze)
    try:
        with caplog.at_level(logging.WARNING, logger="scalekit"):
            freezer.start()
            run(settings, tmp_path, metrics)
            freezer.join()
    finally:
        fresh_redis_server.resume()
        metrics.close()
    assert scraped[("scalekit_nearcache_degraded", products)] == 1.0
    assert scraped[("scalekit_nearcache_staleness_seconds", products)] >= 2.0
    assert scraped[("scalekit_nearcache_local_hits_total", products)] > 0
    failed_waits = sum(
        scraped.get(("scalekit_lock_wait_seconds_count", (*stock, ("outcome", outcome))), 0.0)
        for outcome in ("timeout", "error")
    )
    assert failed_waits >= 1
    degraded = [
        r for r in caplog.records if getattr(r, "event", "") == "scalekit.nearcache.degraded"
    ]
    assert degraded and {r.fields["cache"] for r in degraded} == {"products"}  # type: ignore[attr-defined]
