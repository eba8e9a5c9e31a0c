"""The pushed measurements through an OpenTelemetry in-memory reader, and a migration's progress.

Real Redis servers: the lock and the two shards of the migration. About 2 seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from scalekit.balancing import RoundRobin
from scalekit.caching import LRUCache, cached
from scalekit.exceptions import LockTimeoutError
from scalekit.locking import RedisLock
from scalekit.observability import (
    OpenTelemetryExporter,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
    watch_migration,
)
from scalekit.sharding import HashRouter, MigratingRouter
from scalekit.sharding.redis_store import RedisShardStore


def _points(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
    out: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = {
                    tuple(sorted(p.attributes.items())): p for p in metric.data.data_points
                }
    return out


def test_pushed_measurements_reach_an_otel_reader(redis_client: Any) -> None:
    hub = Telemetry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = OpenTelemetryExporter(hub, meter_provider=provider)
    try:
        cache: LRUCache[Any, int] = LRUCache(maxsize=4)
        watch_cache(cache, "prices", telemetry=hub)
        square = cached(cache)(lambda n: n * n)
        assert [square(2), square(2), square(3)] == [4, 4, 9]
        lb = RoundRobin(["a", "b"])
        watch_balancer(lb, "payments", telemetry=hub)
        for latency in (0.01, 0.02, 0.4):
            lb.release(lb.pick(), latency=latency, ok=True)
        watch_locks("stock", telemetry=hub)
        lock, other = (RedisLock(redis_client, "stock:1", ttl=5) for _ in range(2))
        lease = lock.acquire()
        assert lease is not None
        with pytest.raises(LockTimeoutError):
            other.acquire(timeout=0.1)
        lock.release(lease)
        points = _points(reader)
    finally:
        exporter.close()
        provider.shutdown()
    loads = points["scalekit.cache.load_duration"]
    (ok,) = loads.values()
    assert ok.count == 2 and dict(ok.attributes) == {"cache": "prices", "outcome": "ok"}
    picks = points["scalekit.balancer.picks"]
    assert {dict(k)["endpoint"]: p.value for k, p in picks.items()} == {"a": 2, "b": 1}
    latency = points["scalekit.balancer.request_duration"]
    a = latency[(("balancer", "payments"), ("endpoint", "a"), ("outcome", "ok"))]
    assert a.count == 2 and a.sum == pytest.approx(0.41)
    waits = points["scalekit.lock.wait_duration"]
    timeout = waits[(("lock", "stock"), ("outcome", "timeout"))]
    assert timeout.count == 1 and 0.1 <= timeout.sum < 5
    assert waits[(("lock", "stock"), ("outcome", "acquired"))].count == 1
    (timeouts,) = points["scalekit.lock.timeouts"].values()
    assert timeouts.value == 1


def test_a_migration_reports_keys_moved_and_progress(
    redis_server: Any, fresh_redis_server: Any
) -> None:
    from scalekit.observability import MemoryRecorder

    clients = {
        name: redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
        for name, server in (("A", redis_server), ("B", fresh_redis_server))
    }
    try:
        clients["A"].flushall()
        stores = {name: RedisShardStore(c) for name, c in clients.items()}
        router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, name="grow")
        hub = Telemetry()
        recorder = MemoryRecorder()
        hub.subscribe(recorder)
        watch_migration(router, "grow", telemetry=hub)

        def progress() -> float:
            (sample,) = hub.collect()
            return sample.value

        for i in range(40):
            clients["A"].set(f"k{i}", "v")  # all on A, the old placement
        assert progress() == 0.0  # not started
        router.start()
        moving = sum(1 for i in range(40) if router.moves(f"k{i}"))
        assert moving > 0
        assert progress() == 0.0  # nothing scanned yet
        moved = router.move(limit=1000)
        assert moved == moving
        assert progress() == 1.0  # the one source is scanned and empty
        assert router.move() == 0
        router.complete()
        assert progress() == 1.0
        counters, _, _ = recorder.snapshot()
        assert counters == {("scalekit_migration_keys_moved", (("migration", "grow"),)): moving}
    finally:
        for c in clients.values():
            c.close()
