"""Balancers and routers are generic over their endpoint and shard types, under mypy --strict.

The `check_*` functions are never run: the test below type-checks this file
with `mypy --strict`, where each `assert_type` must hold and each
`# type: ignore[...]` must silence a real error (strict mode reports unused
ones). About 10 s (mypy, with its cache in a temporary directory).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover
    from typing_extensions import assert_type

from scalekit.balancing import (
    ConsistentHashBalancer,
    LeastRequest,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)
from scalekit.sharding import HashRouter, MigratingRouter, RangeRouter, Router, TimeRouter
from scalekit.sharding.resharding import ShardStore


def charge(gateway: str) -> None:
    """A user's function that takes the endpoint as the str it is."""


def check_balancers() -> None:
    lb = PeakEWMA(["pay-1", "pay-2"])
    assert_type(lb, PeakEWMA[str])
    assert_type(lb.pick(), str)
    with lb.request() as gw:
        assert_type(gw, str)
        charge(gw)
    lb.release("pay-1", latency=0.01)
    assert_type(RoundRobin(["a", "b"]).pick(), str)
    assert_type(RandomBalancer({"a": 2, "b": 1}).pick(), str)
    assert_type(SmoothWeightedRoundRobin({"a": 5, "b": 1}).pick(), str)
    assert_type(WeightedRoundRobin([1, 2, 3]).pick(), int)
    assert_type(LeastRequest(["a"]).endpoints, dict[str, int])
    hosts = ConsistentHashBalancer([("10.0.0.1", 80), ("10.0.0.2", 80)], table="maglev")
    assert_type(hosts.pick("user:1"), tuple[str, int])
    assert_type(hosts.lookup("user:1"), tuple[str, int])
    ConsistentHashBalancer(["a"], table="rings")  # type: ignore[arg-type]
    lb.release(3)  # type: ignore[arg-type]


def check_routers(stores: dict[str, ShardStore]) -> None:
    users = HashRouter(["db0", "db1"])
    assert_type(users, HashRouter[str])
    assert_type(users.route("user:42"), str)
    assert_type(users.shards, tuple[str, ...])
    assert_type(users.route_many(["a", "b"]), dict[str, list[Any]])
    assert_type(HashRouter([0, 1], strategy="slots").route("k"), int)
    assert_type(RangeRouter(["m"], ["a-l", "m-z"]).route("k"), str)
    assert_type(TimeRouter("day", "d_{:%Y%m%d}").route(datetime.now(timezone.utc)), str)
    moving = MigratingRouter(users, HashRouter(["db0", "db1", "db2"]), stores)
    assert_type(moving, MigratingRouter[str])
    assert_type(moving.complete(), Router[str])
    assert_type(moving.owner("user:42"), str)
    HashRouter(["a"], strategy="jmp")  # type: ignore[arg-type]


def test_mypy_strict_accepts_the_types_users_rely_on(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--no-error-summary",
            __file__,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
