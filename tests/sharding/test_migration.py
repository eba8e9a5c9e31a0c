"""Migration plans between routers and MigratingRouter, down to real Redis servers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Hashable
from typing import Any

import pytest

from scalekit import ConfigurationError
from scalekit.sharding import HashRouter, MigratingRouter, RangeRouter, TimeRouter
from scalekit.testing import RedisServer


def test_range_plan_lists_the_moving_ranges() -> None:
    old = RangeRouter([10, 20], ["a", "b", "c"])
    new = RangeRouter([10, 15, 20], ["a", "b", "d", "c"])
    plan = old.plan_to(new)
    assert [(m.source, m.target, m.ranges) for m in plan.moves] == [("b", "d", ((15, 20),))]
    assert plan.fraction is None and plan.exact
    assert plan.moved(17) and not plan.moved(12)
    sampled = old.plan_to(new, sample=range(0, 30))
    assert sampled.fraction == pytest.approx(5 / 30) and not sampled.exact
    merged = RangeRouter([20], ["a", "c"])
    plan = old.plan_to(merged)
    assert [(m.source, m.target, m.ranges) for m in plan.moves] == [("b", "a", ((10, 20),))]
    shifted = RangeRouter([5, 25], ["a", "b", "c"])
    plan = old.plan_to(shifted)
    assert {(m.source, m.target, m.ranges) for m in plan.moves} == {
        ("a", "b", ((5, 10),)),
        ("c", "b", ((20, 25),)),
    }


def test_plan_between_unrelated_routers_needs_a_sample() -> None:
    ranges = RangeRouter(["m"], ["a", "b"])
    hashed = HashRouter(["a", "b"])
    with pytest.raises(ConfigurationError, match="pass sample="):
        ranges.plan_to(hashed)
    plan = ranges.plan_to(hashed, sample=[f"k{i}" for i in range(1000)])
    assert not plan.exact and plan.fraction is not None and 0.3 < plan.fraction < 0.7


def test_time_routers_compare_by_sample() -> None:
    from datetime import datetime, timedelta, timezone

    months = TimeRouter("month", "o_{:%Y_%m}")
    days = TimeRouter("day", "o_{:%Y_%m_%d}")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sample = [start + timedelta(hours=h) for h in range(0, 24 * 60, 7)]
    assert months.plan_to(days, sample=sample).fraction == 1.0


class DictShards:
    """In-memory stores per shard, to check the read/write protocol step by step."""

    def __init__(self) -> None:
        self.data: dict[Hashable, dict[str, str]] = {}

    def fetch(self, shard: Hashable, key: str) -> str | None:
        return self.data.setdefault(shard, {}).get(key)


def moving_key(router: MigratingRouter) -> str:
    return next(f"k{i}" for i in range(1000) if router.moves(f"k{i}"))


def test_reads_fall_back_to_the_old_owner_until_the_move_is_done() -> None:
    old, new = HashRouter(["a"]), HashRouter(["a", "b"])
    router = MigratingRouter(old, new)
    key = moving_key(router)
    assert router.route(key) == "b" and router.read_targets(key) == ("b", "a")
    stay = next(f"k{i}" for i in range(1000) if not router.moves(f"k{i}"))
    assert router.read_targets(stay) == ("a",)
    shards = DictShards()
    shards.data["a"] = {key: "v0"}
    assert router.read(key, shards.fetch) == "v0"
    shards.data["b"] = {key: "v1"}  # a write during the move lands on the new owner
    assert router.read(key, shards.fetch) == "v1"
    router.mark_moved(key)
    assert router.read_targets(key) == ("b",) and router.is_moved(key)
    assert router.complete() is new


def test_read_asks_the_new_owner_again_if_the_key_moved_between_reads() -> None:
    router = MigratingRouter(HashRouter(["a"]), HashRouter(["a", "b"]))
    key = moving_key(router)
    store = {"a": {key: "v0"}, "b": {}}
    calls: list[Hashable] = []

    def fetch(shard: Hashable, k: str) -> str | None:
        calls.append(shard)
        value = store[shard].get(k)  # type: ignore[index]
        if shard == "b" and len(calls) == 1:  # the mover copies and deletes right after
            store["b"][k] = store["a"].pop(k)
        return value

    assert router.read(key, fetch) == "v0"
    assert calls == ["b", "a", "b"]


def test_rollback_routes_back_to_the_old_placement() -> None:
    old, new = HashRouter(["a"]), HashRouter(["a", "b"])
    forward = MigratingRouter(old, new)
    key = moving_key(forward)
    back = forward.rollback()
    assert back.route(key) == "a" and back.read_targets(key) == ("a", "b")
    assert back.complete() is old
    with pytest.raises(ConfigurationError, match="must be routers"):
        MigratingRouter(old, "b")  # type: ignore[arg-type]


@pytest.mark.redis
def test_moving_real_keys_between_redis_servers_loses_nothing_and_reads_nothing_stale(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    redis = pytest.importorskip("redis")
    clients = {
        name: redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
        for name, server in zip(("A", "B"), redis_pair, strict=True)
    }
    old, new = HashRouter(["A"]), HashRouter(["A", "B"])
    keys = [f"cart:{i}" for i in range(1500)]
    pipe = clients["A"].pipeline(transaction=False)
    for key in keys:
        pipe.set(key, 0)
    pipe.execute()
    router = MigratingRouter(old, new)
    moving = [k for k in keys if router.moves(k)]
    assert 600 < len(moving) < 900  # jump 1 -> 2 moves half

    acked = dict.fromkeys(keys, 0)  # the newest version whose write returned
    errors: list[str] = []
    stop = threading.Event()
    mover_running = threading.Event()
    counts = {"reads": 0, "writes": 0, "reads_during_move": 0, "moved_reads": 0}

    def fetch(shard: Hashable, key: str) -> str | None:
        return clients[shard].get(key)  # type: ignore[index,no-any-return]

    def writer(mine: list[str], seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(mine)
            version = acked[key] + 1
            clients[router.write_target(key)].set(key, version)  # type: ignore[index]
            acked[key] = version
            counts["writes"] += 1

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(moving) if rng.random() < 0.8 else rng.choice(keys)
            done_before = router.is_moved(key)
            floor = acked[key]
            value = router.read(key, fetch)
            counts["reads"] += 1
            counts["reads_during_move"] += mover_running.is_set()
            counts["moved_reads"] += done_before and router.moves(key)
            if value is None:
                errors.append(f"{key} lost (floor {floor})")
            elif int(value) < floor:
                moved = "after its move completed" if done_before else "during its move"
                errors.append(f"{key} stale {moved}: read {value}, {floor} was acknowledged")

    def mover() -> None:
        mover_running.set()
        for key in moving:
            value = clients["A"].get(key)
            if value is not None:
                clients["B"].set(key, value, nx=True)  # never over a newer write
                clients["A"].delete(key)
            router.mark_moved(key)
            time.sleep(0)  # let readers and writers in between moves
        mover_running.clear()

    shuffled = random.Random(1).sample(keys, len(keys))
    threads = [threading.Thread(target=writer, args=(shuffled[i::2], i)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(10 + i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    move = threading.Thread(target=mover)
    move.start()
    move.join(timeout=60)
    deadline = time.monotonic() + 0.3  # keep reading after every move completed
    while time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert not move.is_alive() and not any(t.is_alive() for t in threads)

    assert errors == []
    assert counts["writes"] > 200 and counts["reads_during_move"] > 200
    assert counts["moved_reads"] > 100
    final: dict[str, Any] = {}
    for shard, client in clients.items():
        for key in client.scan_iter(count=1000):
            assert new.route(key) == shard, f"{key} left on {shard}"
            final[key] = int(client.get(key))
    assert final == acked
    for client in clients.values():
        client.close()
