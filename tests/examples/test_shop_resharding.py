"""The shop adds a user shard while buyers check out, and loses nothing.

Each run is about 6 s (4 s of load over Redis locks in two processes, plus
their start-up).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from examples.shop.resharding import MIGRATION
from examples.shop.runner import run
from examples.shop.simulation import Settings
from scalekit import ConfigurationError
from scalekit.sharding import HashRouter
from scalekit.testing import RedisServer

from .test_shop import _shop_cli, assert_conserved


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_buyers_keep_checking_out_while_a_shard_is_added_and_nothing_is_lost(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(
        buyers=12, workers=2, duration=4.0, shards=3, add_shard_at=1.0, redis=redis_server.url
    )
    storage, summary = run(settings, tmp_path)
    assert summary.died == [], summary.died
    assert "shard3 added at 1s" in summary.resharding and "complete" in summary.resharding
    assert_conserved(storage)
    new = HashRouter([f"shard{i}" for i in range(4)], strategy="jump")
    users: dict[str, list[str]] = {}
    paid: dict[tuple[str, str], int] = {}
    in_window = 0
    assert summary.resharding_window is not None
    begin, end = summary.resharding_window
    for shard in new.shards:
        path = tmp_path / f"{shard}.sqlite3"
        for (user,) in _rows(path, "SELECT user_id FROM users"):
            users.setdefault(str(user), []).append(shard)
        tables = _rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'orders_%'")
        for (table,) in tables:
            for user, order, status, created in _rows(
                path, f"SELECT user_id, order_id, status, created_at FROM {table}"
            ):
                assert new.route(str(user)) == shard  # every order lives with its user
                if status == "paid":
                    paid[(str(user), str(order))] = paid.get((str(user), str(order)), 0) + 1
                    in_window += begin <= float(created) <= end  # type: ignore[arg-type]
        for name in ("doubt", "stage"):
            assert _rows(path, f"SELECT COUNT(*) FROM scalekit_reshard_{name}") == [(0,)]
        (state,) = _rows(path, "SELECT state FROM scalekit_reshard_state")
        assert json.dumps(state[0]).strip('"').endswith(":complete")
    assert all(where == [new.route(user)] for user, where in users.items())
    moved = [u for u, where in users.items() if where == ["shard3"]]
    old = HashRouter([f"shard{i}" for i in range(3)], strategy="jump")
    assert any(old.route(u) != "shard3" for u in moved)  # users really moved to the new shard
    assert len(summary.acknowledged) == summary.placed > 20
    lost = [ack for ack in summary.acknowledged if paid.get(ack) != 1]
    assert lost == []  # every acknowledged order is there, paid, exactly once
    assert in_window > 0, summary.resharding  # some were placed while users moved


def test_a_grown_data_directory_refuses_to_grow_again_and_the_flag_is_checked(
    tmp_path: Path,
) -> None:
    settings = Settings(buyers=4, duration=1.0, shards=2, add_shard_at=0.2)
    storage, summary = run(settings, tmp_path)
    assert summary.died == [] and "complete" in summary.resharding
    assert_conserved(storage)
    with pytest.raises(ConfigurationError, match=r"has 3 shards already .* --shards 3"):
        run(settings, tmp_path)
    grown = Settings(buyers=4, duration=1.0, shards=3)
    storage, summary = run(grown, tmp_path)  # the grown placement, as the message says
    assert summary.died == []
    assert_conserved(storage)
    done = _shop_cli("--duration", "1", "--add-shard-at", "1")
    assert done.returncode == 2 and "--add-shard-at must be within the load" in done.stderr
    assert MIGRATION == "shop-add-shard"
