"""One data directory, many users: memory runs, other backends, other shard counts.

A memory-lock run needs the directory to itself; stored fences are lowered
only while no other process uses the directory; every write checks that the
fence is still its own claim. Each test ends with the conservation audit.
About 20 s in all (a few short runs and CLI calls).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from examples.shop.audit import audit
from examples.shop.service import Shop
from examples.shop.simulation import Settings, build_shop, prepare
from examples.shop.storage import ShopStorage
from scalekit.testing import RedisServer, ZooKeeperServer

from .test_shop import _shop_cli, assert_conserved


def test_a_memory_run_is_refused_while_a_redis_user_holds_a_claim_on_the_directory(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(redis=redis_server.url)
    storage = prepare(tmp_path, settings)
    backends = settings.backends(storage.catalog.shop_id)
    claimed, go_on = threading.Event(), threading.Event()

    def hold(sku: str) -> None:  # a slow admin: between its claim and its write
        claimed.set()
        assert go_on.wait(60)

    admin = build_shop(tmp_path, settings, backends, hold_hook=hold)
    errors: list[BaseException] = []

    def change(admin: Shop = admin) -> None:
        try:
            admin.set_price("hot-0", 2500)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=change)
    thread.start()
    try:
        assert claimed.wait(30)
        memory = _shop_cli("--duration", "1", "--data", str(tmp_path))
    finally:
        go_on.set()
        thread.join(30)
    assert memory.returncode == 2, memory.stdout + memory.stderr
    assert "is in use by another process" in memory.stderr
    assert "Traceback" not in memory.stderr
    assert errors == []
    assert storage.product("hot-0") == {
        "sku": "hot-0",
        "name": "Hot item 0",
        "price_cents": 2500,
        "stock": 60,
    }
    assert_conserved(storage)
    backends.close()
    del admin, storage, change, thread
    gc.collect()  # this process no longer uses the directory
    later = _shop_cli("--duration", "1", "--data", str(tmp_path))
    assert later.returncode == 0, later.stdout + later.stderr
    assert_conserved(ShopStorage(tmp_path, 4))


def test_a_write_is_refused_once_its_claim_is_not_the_fence_even_after_fences_were_lowered(
    tmp_path: Path,
) -> None:
    storage = prepare(tmp_path, Settings(hot_skus=1, hot_stock=5, cold_skus=0))
    catalog = storage.catalog
    assert catalog.claim("hot-0", 900, "o1") is not None
    assert catalog.adopt_fences("another backend")  # alone here: the fences go to 0
    assert catalog.claim("hot-0", 1, "o2") is not None  # the new backend's first token
    # The old claim's writes are void on every path: take, give back, price.
    assert catalog.take("hot-0", 900, "o1", 1, 1999) == "fenced"
    catalog.void_unless_charged("order:o1", 0.0)
    assert catalog.give_back("hot-0", 900, "o1") == "fenced"
    assert not catalog.set_price("hot-0", 900, 1)
    assert catalog.take("hot-0", 1, "o2", 1, 1999) == "taken"
    # Giving back needs the payment intent voided first (a charge could still follow).
    assert catalog.claim("hot-0", 2, "o2") is not None
    assert catalog.give_back("hot-0", 2, "o2") == "not voided"
    assert catalog.stock("hot-0") == 4
    assert catalog.product("hot-0") == {
        "sku": "hot-0",
        "name": "Hot item 0",
        "price_cents": 1999,
        "stock": 4,
    }


def test_a_redis_run_then_a_zookeeper_run_on_one_directory_both_sell(
    tmp_path: Path, redis_server: RedisServer, zookeeper_server: ZooKeeperServer
) -> None:
    """Redis tokens (server microseconds) are far above ZooKeeper's (zxids): fences restart."""
    common = ["--duration", "1.5", "--buyers", "8", "--data", str(tmp_path)]
    first = _shop_cli("--redis", redis_server.url, *common)
    assert first.returncode == 0, first.stdout + first.stderr
    second = _shop_cli("--zookeeper", zookeeper_server.hosts, *common)
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert "stale stock writes fenced off: 0" in lines, second.stdout
    assert int(next(x for x in lines if x.startswith("orders placed:")).split(":")[1]) > 0
    assert any("fences reset for zookeeper tokens" in x for x in lines), second.stdout
    assert_conserved(ShopStorage(tmp_path, 4))


def test_a_fresh_zookeeper_at_the_same_address_resets_the_fences(tmp_path: Path) -> None:
    """A wiped ZooKeeper at the old address issues low zxids again: the run must see a
    new backend (its id node is gone) and reset the fences, not refuse every claim.
    About 15 s (two ZooKeeper starts, two short runs)."""
    common = ["--duration", "1.5", "--buyers", "8", "--data", str(tmp_path)]
    with ZooKeeperServer() as old:
        port = old.port
        first = _shop_cli("--zookeeper", old.hosts, *common)
    assert first.returncode == 0, first.stdout + first.stderr
    with ZooKeeperServer(port=port) as fresh:  # a new data directory, the same address
        second = _shop_cli("--zookeeper", fresh.hosts, *common)
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert any("fences reset for zookeeper tokens" in x for x in lines), second.stdout
    rejected = next(x for x in lines if x.startswith("orders rejected:"))
    assert "fenced off" not in rejected, second.stdout
    assert int(next(x for x in lines if x.startswith("orders placed:")).split(":")[1]) > 0
    assert_conserved(ShopStorage(tmp_path, 4))


def test_a_different_shard_count_on_a_used_directory_is_refused_naming_the_count(
    tmp_path: Path,
) -> None:
    first = _shop_cli("--duration", "1", "--buyers", "4", "--shards", "4", "--data", str(tmp_path))
    assert first.returncode == 0, first.stderr
    fewer = _shop_cli("--duration", "1", "--buyers", "4", "--shards", "2", "--data", str(tmp_path))
    assert fewer.returncode == 2, fewer.stdout + fewer.stderr
    assert "--shards 2:" in fewer.stderr and "has 4 shards" in fewer.stderr
    assert "give --shards 4" in fewer.stderr
    assert fewer.stdout == ""
    assert_conserved(ShopStorage(tmp_path, 4))


def test_two_runs_at_once_on_one_directory_both_report_an_exact_audit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The run that ends first audits while the other still sells (about 10 s)."""
    import subprocess
    import sys
    import time

    from .test_shop import ROOT, _env

    def start(duration: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "examples.shop", "--redis", redis_server.url),
                *("--buyers", "8", "--duration", duration, "--data", str(tmp_path)),
            ],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    longer = start("10")  # long enough to outlast the other's start-up on a loaded machine
    deadline = time.monotonic() + 60
    while not (tmp_path / "catalog.sqlite3").exists():
        assert time.monotonic() < deadline and longer.poll() is None
        time.sleep(0.05)
    shorter = start("1.5")
    first = shorter.communicate(timeout=120)
    assert longer.poll() is None, "the longer run ended first: the runs did not overlap"
    outs = [first, longer.communicate(timeout=120)]
    for child, (stdout, stderr) in zip((shorter, longer), outs, strict=True):
        assert child.returncode == 0, stdout + stderr
        assert "audit (initial = left + sold + reserved): exact;" in stdout, stdout
    assert "another process was using the data directory" in outs[0][0], outs[0][0]
    assert_conserved(ShopStorage(tmp_path, 4))


def test_the_audit_is_not_blinded_by_another_process_on_the_directory(tmp_path: Path) -> None:
    """With another process holding the directory (a second run, an admin shell), a
    user stranded on a shard its placement does not give it, and units held for an
    order that is not in flight, still fail the audit. About 2 s."""
    import subprocess
    import sys

    storage = prepare(tmp_path, Settings(shards=2, hot_skus=1, hot_stock=5, cold_skus=0))
    user = next(f"u{i}" for i in range(100) if storage.router.route(f"u{i}") == "shard0")
    storage.shards["shard1"].connection().execute(
        "INSERT INTO users VALUES (?, ?, ?)", (user, f"{user}@example.com", 0.0)
    )
    catalog = storage.catalog
    assert catalog.claim("hot-0", 1, "ghost") is not None
    assert catalog.take("hot-0", 1, "ghost", 1, 1999) == "taken"  # no such order
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from examples.shop.storage import "
            f"ShopStorage; s = ShopStorage(Path({str(tmp_path)!r}), 2); print('open', "
            "flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        checked = audit(storage)
    finally:
        holder.communicate("", timeout=30)
    assert checked.concurrent
    assert any(
        "1 users on a shard their placement does not route them to" in p for p in checked.problems
    ), checked.problems
    assert any("held for order ghost, which no shard holds" in p for p in checked.problems), (
        checked.problems
    )
    alone = audit(storage)  # the same two problems, alone on the directory
    assert not alone.concurrent and len(alone.problems) == 2, alone.problems


def test_a_setup_killed_between_shards_goes_on_to_the_count_asked_for(tmp_path: Path) -> None:
    """A kill -9 while the first run created its shards leaves fewer, all empty: a rerun
    with the count asked for creates the rest (no user can be routed away from its rows).
    Shards that hold a user keep their count. About 3 s."""
    ShopStorage(tmp_path, 2)  # what ShopStorage(dir, 4) had made when it was killed
    gc.collect()
    rerun = _shop_cli(
        "--duration", "0.5", "--buyers", "4", "--shards", "4", "--data", str(tmp_path)
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert all((tmp_path / f"shard{i}.sqlite3").exists() for i in range(4))
    assert_conserved(ShopStorage(tmp_path, 4))
    more = _shop_cli("--duration", "0.5", "--buyers", "4", "--shards", "6", "--data", str(tmp_path))
    assert more.returncode == 2 and "has 4 shards" in more.stderr, more.stdout + more.stderr


def test_tokens_that_went_back_are_reported_and_fail_the_run(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Stored fences above every token the backend issues (its data replaced by an old
    copy, under the same identity) refuse nearly every claim before reading: the run
    says so and exits 1, and nothing is sold twice. About 4 s."""
    common = ["--redis", redis_server.url, "--duration", "1", "--buyers", "4"]
    first = _shop_cli(*common, "--data", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    storage = ShopStorage(tmp_path, 4)
    with storage.catalog.db.transaction() as conn:
        conn.execute("UPDATE stock SET fence = ?", (2**62,))  # tokens far above Redis's
    del storage
    gc.collect()
    second = _shop_cli(*common, "--data", str(tmp_path))
    assert second.returncode == 1, second.stdout + second.stderr
    assert "TOKENS WENT BACK: " in second.stdout, second.stdout
    assert_conserved(ShopStorage(tmp_path, 4))
