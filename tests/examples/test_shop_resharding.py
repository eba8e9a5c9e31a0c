"""The shop adds a user shard while buyers check out, and loses nothing.

Each run is about 6 s (4 s of load over Redis locks in two processes, plus
their start-up); the run killed mid-move and the two that finish it take
about 10 s together.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.shop.audit import audit
from examples.shop.resharding import MIGRATION
from examples.shop.runner import run
from examples.shop.simulation import Settings, build_shop, prepare
from examples.shop.storage import ShopStorage
from scalekit import ConfigurationError
from scalekit.sharding import HashRouter
from scalekit.testing import RedisServer

from .test_shop import ROOT, _env, _shop_cli, assert_conserved


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


def _users_on(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_run_killed_while_adding_a_shard_is_resumed_not_stranded(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """kill -9 in the middle of the move, then the advice the shop gives (about 8 s).

    Running the grown placement while the move is half done would route moved
    and unmoved users to shards that do not hold them; the shop refuses it
    and names the flags that carry the move on.
    """
    data = str(tmp_path)
    cmd = [sys.executable, "-m", "examples.shop", "--redis", redis_server.url, "--data", data]
    crashed = subprocess.Popen(
        [*cmd, "--shards", "2", "--duration", "5", "--add-shard-at", "1.5", "--hot-stock", "3000"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _users_on(tmp_path / "shard2.sqlite3") < 3 and time.monotonic() < deadline:
            assert crashed.poll() is None, "the run ended before the move began"
            time.sleep(0.005)  # polling another process's database: no event to wait on
        os.killpg(crashed.pid, signal.SIGSTOP)  # frozen, then read, then killed
        (state,) = _rows(tmp_path / "shard0.sqlite3", "SELECT state FROM scalekit_reshard_state")
        os.killpg(crashed.pid, signal.SIGKILL)
    finally:
        crashed.wait(10)
    assert str(state[0]).endswith(":forward")  # killed mid-move
    for shards in ("3", "2"):
        refused = _shop_cli("--redis", redis_server.url, "--data", data, "--shards", shards)
        assert refused.returncode == 2, refused.stdout
        assert "is not finished" in refused.stderr
        assert "give --shards 2 --add-shard-at 0" in refused.stderr, refused.stderr
    at = ["--redis", redis_server.url, "--data", data, "--duration", "0.5"]
    resumed = _shop_cli(*at, "--shards", "2", "--add-shard-at", "0")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    grown = _shop_cli(*at, "--shards", "3")
    assert grown.returncode == 0, grown.stdout + grown.stderr
    assert "0 stale orders released" in grown.stdout  # the resumed run settled them all
    new = HashRouter([f"shard{i}" for i in range(3)], strategy="jump")
    for shard in new.shards:
        path = tmp_path / f"{shard}.sqlite3"
        for (user,) in _rows(path, "SELECT user_id FROM users"):
            assert new.route(str(user)) == shard
        (state,) = _rows(path, "SELECT state FROM scalekit_reshard_state")
        assert str(state[0]).endswith(":complete")
        for (table,) in _rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'orders_%'"):
            assert _rows(path, f"SELECT COUNT(*) FROM {table} WHERE status = 'reserved'") == [(0,)]
    storage = ShopStorage(tmp_path, 3, 5.0)
    assert_conserved(storage)


def test_the_sweep_does_not_count_an_order_released_when_its_row_is_not_where_it_routes(
    tmp_path: Path,
) -> None:
    settings = Settings(buyers=2, duration=0.5, shards=2, hot_skus=1, cold_skus=0)
    storage = prepare(tmp_path, settings)
    shop = build_shop(tmp_path, settings, settings.backends(storage.catalog.shop_id))
    user = shop.register("stranded@example.com")
    home = storage.router.route(user)
    other = next(s for s in storage.shard_names if s != home)
    shop.add_to_cart(user, "hot-0", 1)
    order = shop.checkout(user, "k1")
    assert order.status == "paid"
    # A reserved order on a shard its user is not routed to (a move left half done).
    table = f"orders_{order.created_at:%Y_%m}"
    with sqlite3.connect(tmp_path / f"{home}.sqlite3") as conn:
        row = conn.execute(f"SELECT * FROM {table} WHERE order_id = ?", (order.order_id,))
        values = list(row.fetchone())
        (schema,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,))
    values[0], values[3] = "stranded-order", "reserved"
    with sqlite3.connect(tmp_path / f"{other}.sqlite3") as conn:
        conn.execute(schema[0].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)", values)
        conn.execute("INSERT INTO users VALUES (?, ?, 0)", (user, "stranded@example.com"))
    first = shop.recover()
    assert (first.released, first.left_reserved) == (0, 1), str(first)
    again = shop.recover()
    assert (again.released, again.left_reserved) == (0, 1), str(again)
    checked = audit(storage)
    assert f"1 users on a shard their placement does not route them to (e.g. {user}" in " ".join(
        checked.problems
    ), checked.problems
