"""In-process single-flight never returns a value read before the caller began.

A caller that joins a load already running in its process may take that
load's result only if the read behind it (the Redis request, or the loader
call) began after the caller did: a write acknowledged before the caller
started is then never hidden from it, in the Redis layer or in NearCache.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from tests.caching._redis_helpers import make_client, unique_namespace, wait_until

pytestmark = pytest.mark.redis


def _calls(admin: Any, command: str) -> int:
    stats = admin.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


class _SlowLoad:
    """A loader that reads the database, then waits until released (a slow query)."""

    def __init__(self, db: dict[str, int]) -> None:
        self.db = db
        self.read = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> int:
        seen = self.db["price"]
        self.read.set()
        assert self.release.wait(10)
        return seen


def _run(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def body() -> None:
        out["value"] = target()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def test_a_caller_started_after_an_invalidation_never_gets_the_older_load(
    redis_server: Any,
) -> None:
    spec = ("standalone", redis_server.url)
    namespace = unique_namespace()
    cache = RedisCache(make_client(spec), namespace=namespace, ttl=300, lease_ttl=5)
    admin = make_client(spec)
    db = {"price": 2499}
    slow = _SlowLoad(db)
    leader, led = _run(lambda: cache.get_or_load("goods:1", slow))
    assert slow.read.wait(10)
    db["price"] = 1999
    cache.invalidate("goods:1")  # acknowledged before the follower begins
    gets = _calls(admin, "get")
    follower, got = _run(lambda: cache.get_or_load("goods:1", lambda: db["price"]))
    assert wait_until(lambda: _calls(admin, "get") > gets)  # it found no value: it would join
    slow.release.set()
    leader.join(10)
    follower.join(10)
    assert led["value"] == 2499  # the leader's own read began before the write
    assert got["value"] == 1999
    assert cache.get("goods:1") == 1999
    assert cache.stats().writebacks_rejected == 1


def test_callers_that_began_before_the_load_share_it(redis_server: Any) -> None:
    spec = ("standalone", redis_server.url)
    cache = RedisCache(make_client(spec), namespace=unique_namespace(), ttl=300, lease_ttl=5)
    calls: list[int] = []
    started = threading.Barrier(9)
    release = threading.Event()

    def load() -> int:
        calls.append(1)
        assert release.wait(10)
        return 7

    def call() -> int:
        started.wait(10)
        return cache.get_or_load("k", load)

    threads = [_run(call) for _ in range(8)]
    started.wait(10)
    assert wait_until(lambda: calls)
    # followers that joined after the loader was called take the next load (a hit)
    release.set()
    for thread, _ in threads:
        thread.join(10)
    assert [out["value"] for _, out in threads] == [7] * 8
    assert len(calls) == 1


def test_near_cache_never_keeps_a_joined_load_older_than_an_invalidation_it_heard(
    redis_server: Any,
) -> None:
    spec = ("standalone", redis_server.url)
    namespace = unique_namespace()
    admin = make_client(spec)
    writer = RedisCache(make_client(spec), namespace=namespace, ttl=300, lease_ttl=5)
    near = NearCache(
        LRUCache(100),
        RedisCache(make_client(spec), namespace=namespace, ttl=300, lease_ttl=5),
        max_staleness=0.5,
    )
    try:
        db = {"price": 2499}
        slow = _SlowLoad(db)
        leader, _ = _run(lambda: near.get_or_load("goods:1", slow))
        assert slow.read.wait(10)
        db["price"] = 1999
        writer.invalidate("goods:1")
        assert near.sync(5)  # the invalidation has reached this process
        reads = _calls(admin, "evalsha")
        follower, got = _run(lambda: near.get_or_load("goods:1", lambda: db["price"]))
        assert wait_until(lambda: _calls(admin, "evalsha") > reads)
        slow.release.set()
        leader.join(10)
        follower.join(10)
        assert got["value"] == 1999
        assert near.get("goods:1") == 1999
        assert writer.get("goods:1") == 1999
    finally:
        near.close()
