"""The shop under faults on real servers: backend errors, kill -9, restarts, a Cluster, reruns.

Each test ends with the conservation audit (``assert_conserved``). The
multi-process tests take 5-15 s each; the seeded fault schedules at the
end take about a minute together and are marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from examples.shop.audit import audit
from examples.shop.backends import MAX_STALENESS
from examples.shop.faults import Fault, Outcome, run_schedule
from examples.shop.report import exit_status, report
from examples.shop.runner import ShopRun, run
from examples.shop.service import Shop
from examples.shop.simulation import Settings, Summary, build_shop, prepare
from scalekit import BackendUnavailableError
from scalekit.testing import RedisClusterServers, RedisServer, TCPProxy, find_free_port

from .test_shop import ROOT, _env, _shop_cli, assert_conserved


def _first_order(shop_run: ShopRun, timeout: float = 60) -> None:
    assert shop_run.storage is not None
    conn = shop_run.storage.catalog.db.connection()
    deadline = time.monotonic() + timeout
    while not conn.execute("SELECT 1 FROM reservations LIMIT 1").fetchone():
        assert time.monotonic() < deadline, "no order was placed"
        time.sleep(0.02)


def _cut_after_first_take(shop: Shop, proxy: TCPProxy) -> None:
    """Reset every connection through *proxy* right after the first stock write commits."""
    take = shop.catalog.take
    done: list[bool] = []

    def take_then_cut(*args: Any) -> str:
        outcome = take(*args)
        if not done:
            done.append(True)
            proxy.reset()
        return outcome

    shop.catalog.take = take_then_cut  # type: ignore[method-assign]


def _proxied_shop(tmp_path: Path, redis: RedisServer, proxy: TCPProxy) -> tuple[Shop, Any]:
    # The lease whose release failed stays until its 1 s ttl runs out; a lock
    # timeout of 3 s lets the recovery sweep wait it out.
    settings = Settings(
        failing_gateway_rate=0.0,
        lock_ttl=1.0,
        lock_timeout=3.0,
        redis=f"redis://{proxy.host}:{proxy.port}/0",
    )
    storage = prepare(tmp_path, settings)
    backends = settings.backends(storage.catalog.shop_id)
    return build_shop(tmp_path, settings, backends), backends


def test_a_backend_error_after_the_stock_write_does_not_undo_the_sale(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """lease.release() fails after the write (Redis gone): the sale stands, the error counted."""
    with TCPProxy(*redis_server.address) as proxy:
        shop, backends = _proxied_shop(tmp_path, redis_server, proxy)
        try:
            user = shop.register("cut@example.com")
            shop.add_to_cart(user, "hot-0", 2)
            _cut_after_first_take(shop, proxy)
            order = shop.checkout(user, "k")
        finally:
            proxy.pass_through()
            backends.close()
    assert order.status == "paid"
    assert shop.storage.stock("hot-0") == 58
    assert shop.storage.sold() == {"hot-0": 2}
    assert shop.errors == {"BackendUnavailableError (lease release)": 1}
    assert_conserved(shop.storage)


def test_stock_held_by_a_failed_checkout_is_never_lost_and_recovery_returns_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis goes away between two SKUs: no stock lost, a retry loses none, recovery returns it."""
    with TCPProxy(*redis_server.address) as proxy:
        shop, backends = _proxied_shop(tmp_path, redis_server, proxy)
        try:
            user = shop.register("cut@example.com")
            shop.add_to_cart(user, "hot-0", 2)
            shop.add_to_cart(user, "hot-1", 1)
            _cut_after_first_take(shop, proxy)
            with pytest.raises(BackendUnavailableError):
                shop.checkout(user, "k")
            # hot-0's 2 units are held by the reserved order, not gone.
            assert shop.storage.stock("hot-0") == 58
            assert shop.catalog.audit()["hot-0"].held == 2
            assert_conserved(shop.storage, settled=False)
            with pytest.raises(BackendUnavailableError):  # Redis still unreachable
                shop.checkout(user, "k")
            assert shop.storage.stock("hot-0") == 58
            assert_conserved(shop.storage, settled=False)

            proxy.pass_through()
            swept = shop.recover()
            assert (swept.released, swept.units_returned, swept.left_reserved) == (1, 2, 0)
            again = shop.recover()
            assert (again.released, again.units_returned, again.completed) == (0, 0, 0)
            assert shop.checkout(user, "k").status == "released"  # the key's order, as settled
        finally:
            proxy.pass_through()
            backends.close()
    assert shop.storage.stock("hot-0") == 60
    assert shop.storage.stock("hot-1") == 60
    assert shop.storage.charge_count() == 0
    assert_conserved(shop.storage)


def test_a_worker_killed_with_sigkill_is_reported_and_the_others_finish(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(
        buyers=9, workers=3, duration=4.0, lock_ttl=1.0, grace=10.0, redis=redis_server.url
    )
    shop_run = ShopRun(settings, tmp_path)
    shop_run.start()
    _first_order(shop_run)
    victim = shop_run.workers[1]
    started = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    storage, summary = shop_run.wait()
    # Nobody waits for the dead worker, and the others were not cut off by the
    # grace period: they finished their load and reported.
    assert time.monotonic() - started < settings.duration + settings.grace
    assert summary.died == [f"worker 1 (pid {victim.pid}) died: killed by SIGKILL"]
    assert summary.placed > 0
    text, checked = report(storage, summary, settings)
    assert f"DIED: worker 1 (pid {victim.pid}) died: killed by SIGKILL" in text.splitlines()
    assert exit_status(storage, summary, checked) == 1
    assert_conserved(storage)


def test_a_redis_restart_mid_run_is_reported_honestly(
    tmp_path: Path, fresh_redis_server_aof: RedisServer
) -> None:
    """Redis (AOF on) goes down for 1.5 s while 3 workers buy: errors counted, audit exact.

    A lock acquire rides out a short outage (it retries until its timeout)
    and the product cache serves loads from the database meanwhile, so no
    buyer may see an error at all; the report counts those fallback loads.
    """
    redis = fresh_redis_server_aof
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.shop",
            "--redis",
            redis.url,
            "--workers",
            "3",
            "--buyers",
            "12",
            "--duration",
            "5",
            "--data",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        catalog = tmp_path / "catalog.sqlite3"
        deadline = time.monotonic() + 60
        while not _has_orders(catalog):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        redis.stop()
        time.sleep(1.5)  # the outage itself
        redis.start()
        stdout, stderr = child.communicate(timeout=90)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines = stdout.splitlines()
    assert child.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr, stderr[:2000]
    assert len(stderr.splitlines()) < 20, stderr[:2000]
    assert "oversold: 0" in lines
    assert any(x.startswith("audit (initial = left + sold + reserved): exact;") for x in lines)
    errors = next(x for x in lines if x.startswith("errors:"))
    assert errors != "errors: 0", stdout
    assert any(x.startswith("  BackendUnavailableError (") for x in lines), stdout
    from examples.shop.storage import ShopStorage

    assert_conserved(ShopStorage(tmp_path, 4))


def _has_orders(catalog: Path) -> bool:
    import sqlite3

    if not catalog.exists():
        return False
    try:
        with sqlite3.connect(catalog, timeout=5) as conn:
            return conn.execute("SELECT 1 FROM reservations LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:  # not created yet
        return False


def test_a_dead_redis_url_fails_fast_with_a_clear_message() -> None:
    started = time.monotonic()
    out = _shop_cli("--redis", f"redis://127.0.0.1:{find_free_port()}/0", "--workers", "2")
    assert time.monotonic() - started < 15
    assert out.returncode == 2
    assert "error: cannot reach Redis at redis://127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    out = _shop_cli("--redis-cluster", f"redis://127.0.0.1:{find_free_port()}/0")
    assert out.returncode == 2
    assert "error: cannot reach Redis at redis://127.0.0.1:" in out.stderr


def test_a_cluster_node_given_as_redis_and_the_reverse_fail_fast(
    redis_cluster: RedisClusterServers, redis_server: RedisServer
) -> None:
    node = redis_cluster.nodes[0]
    out = _shop_cli("--redis", node.url, "--workers", "2")
    assert out.returncode == 2
    assert f"--redis {node.url} is a Redis Cluster node" in out.stderr
    assert f"use --redis-cluster {node.url}" in out.stderr
    out = _shop_cli("--redis-cluster", redis_server.url, "--workers", "2")
    assert out.returncode == 2
    assert f"--redis-cluster {redis_server.url}: not a Redis Cluster node" in out.stderr
    assert f"use --redis {redis_server.url}" in out.stderr


def test_four_workers_on_a_redis_cluster_never_oversell(
    tmp_path: Path, redis_cluster: RedisClusterServers
) -> None:
    settings = Settings(
        buyers=12,
        workers=4,
        duration=5.0,
        hot_skus=2,
        hot_stock=30,
        hot_share=1.0,
        max_qty=1,
        failing_gateway_rate=0.0,
        redis_cluster=redis_cluster.nodes[0].url,
    )
    storage, summary = run(settings, tmp_path)
    assert summary.died == []
    assert summary.errors == {}
    assert summary.placed == 60
    assert storage.sold() == {"hot-0": 30, "hot-1": 30}
    assert summary.rejected["out of stock"] > 0
    assert_conserved(storage)


def test_a_second_run_on_the_same_data_directory_reuses_the_catalog(tmp_path: Path) -> None:
    first = _shop_cli("--duration", "1", "--buyers", "8", "--data", str(tmp_path))
    assert first.returncode == 0, first.stderr
    second = _shop_cli("--duration", "1", "--buyers", "8", "--data", str(tmp_path))
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    # Memory tokens start at 1 in each run: the fences start anew, the rest carries over.
    reused = "catalog: reused (stock and orders carried over; fences reset for memory tokens)"
    assert reused in lines
    assert "oversold: 0" in lines
    assert int(next(x for x in lines if x.startswith("orders placed:")).split(":")[1]) > 0
    assert "stale stock writes fenced off: 0" in lines
    from examples.shop.storage import ShopStorage

    assert_conserved(ShopStorage(tmp_path, 4))


def test_tokens_of_a_second_run_never_pass_below_the_stored_fences(
    tmp_path: Path, fresh_redis_server: RedisServer
) -> None:
    settings = Settings(buyers=8, workers=2, duration=1.5, redis=fresh_redis_server.url)
    storage, summary = run(settings, tmp_path)
    assert summary.placed > 0
    fences = {sku: storage.catalog.fence(sku) for sku in storage.skus()}
    # Same Redis, same lock names: the counters carry on above the stored fences.
    storage, summary = run(settings, tmp_path)
    assert summary.placed > 0
    assert summary.fence_rejections == 0
    assert_conserved(storage)
    # A Redis that lost all its data restarts each counter from its clock in
    # microseconds, above every stored fence: selling carries on.
    fresh_redis_server.execute("FLUSHALL")
    storage, summary = run(settings, tmp_path)
    assert summary.placed > 0
    assert summary.fence_rejections == 0
    assert_conserved(storage)
    # A counter that went back (a restart from an older snapshot) still issues
    # tokens above every stored fence: each grant is at least the server's clock
    # in microseconds, so selling carries on and every fence only grows.
    import redis

    fences = {sku: storage.catalog.fence(sku) for sku in storage.skus()}
    client = redis.Redis.from_url(fresh_redis_server.url)
    try:
        for key in client.scan_iter(match="scalekit:lock:*:fence"):
            client.set(key, 1)
    finally:
        client.close()
    storage, summary = run(settings, tmp_path)
    assert summary.placed > 0
    assert summary.fence_rejections == 0
    for sku, fence in fences.items():
        assert storage.catalog.fence(sku) >= fence, sku
    assert_conserved(storage)


def test_after_a_price_change_the_old_price_is_gone_within_the_bound_and_totals_use_the_db(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(failing_gateway_rate=0.0, redis=redis_server.url)
    storage = prepare(tmp_path, settings)
    namespace = storage.catalog.shop_id
    admin_backends, reader_backends = settings.backends(namespace), settings.backends(namespace)
    try:
        admin = build_shop(tmp_path, settings, admin_backends)
        reader = build_shop(tmp_path, settings, reader_backends)
        assert reader.view_product("hot-0")["price_cents"] == 1999  # cached near and in Redis

        # A slow load that read the old price before the change must not write it back.
        product = reader.catalog.product_detail
        read_old = threading.Event()
        changed = threading.Event()

        def slow_product(sku: str) -> Any:
            value = product(sku)
            read_old.set()
            changed.wait(10)
            return value

        admin.set_price("hot-1", 2600)  # nothing cached for hot-1 yet
        admin.set_price("hot-1", 2700)
        reader.catalog.product_detail = slow_product  # type: ignore[method-assign]
        slow = threading.Thread(target=reader.view_product, args=("hot-1",))
        slow.start()
        assert read_old.wait(10)
        reader.catalog.product_detail = product  # type: ignore[method-assign]
        admin.set_price("hot-1", 2800)
        changed.set()
        slow.join()

        # hot-0: the reader polls while the admin changes the price.
        reads: list[tuple[float, int]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                began = time.monotonic()
                reads.append((began, reader.view_product("hot-0")["price_cents"]))

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.2)
        admin.set_price("hot-0", 2499)
        acknowledged = time.monotonic()
        time.sleep(MAX_STALENESS * 2)
        stop.set()
        poller.join()
        assert reader.view_product("hot-1")["price_cents"] == 2800
        assert admin.view_product("hot-1")["price_cents"] == 2800

        # Totals come from the database under the lock, even with a wrong cached price.
        reader_backends.cache.remote.set("sku-001", {"sku": "sku-001", "price_cents": 1})
        user = reader.register("price@example.com")
        reader.add_to_cart(user, "sku-001", 3)
        order = reader.checkout(user, "price-k")
    finally:
        admin_backends.close()
        reader_backends.close()
    old_after = [t for t, price in reads if price == 1999 and t > acknowledged]
    # NearCache's bound, plus 0.1 s for a loaded 2-core machine.
    assert not [t for t in old_after if t > acknowledged + MAX_STALENESS + 0.1], old_after[-1:]
    assert reads[-1][1] == 2499
    assert order.status == "paid"
    assert order.total_cents == 3 * 510
    assert_conserved(storage)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_seeded_fault_schedule_keeps_the_audit_exact(
    tmp_path: Path, fresh_redis_server_aof: RedisServer, seed: int
) -> None:
    """kill -9, a Redis restart (AOF), a SIGSTOP past the lock ttl, a blackhole; ~7 s per seed."""
    outcome = run_schedule(seed, tmp_path, fresh_redis_server_aof, workers=3, duration=5.0)
    faults = "; ".join(str(f) for f in outcome.faults)
    assert outcome.summary.placed > 0, faults
    assert outcome.oversold == 0, faults
    assert outcome.audit.exact, (faults, outcome.audit.problems)
    assert any("killed by SIGKILL" in line for line in outcome.summary.died), outcome.summary.died
    assert outcome.ok, (faults, outcome.problems)
    assert_conserved(outcome.storage)


def test_the_soak_fails_when_nothing_ran_or_a_worker_died_unplanned(tmp_path: Path) -> None:
    """A soak that ran nothing, or whose workers died beyond the planned kill, is not a pass."""
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks.shop", "soak", "--seconds", "1", "--duration", "-1"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--duration must be seconds in (0, 600), got -1" in refused.stderr
    settings = Settings(duration=1.0)
    storage = prepare(tmp_path, settings)
    faults = [Fault(at=0.5, kind="kill", worker=1, seconds=1.0)]
    summary = Summary(placed=10, died=["worker 1 (pid 7) died: killed by SIGKILL"])
    outcome = Outcome(1, faults, storage, summary, audit(storage), 0, 1.0)
    assert outcome.ok, outcome.problems  # the planned kill only
    summary.died.append("worker 0: buyer died: NoNodeError: ")
    summary.died.append("worker 2 (pid 9) died: exit code 1")
    assert outcome.problems == [
        "unplanned death: worker 0: buyer died: NoNodeError: ",
        "unplanned death: worker 2 (pid 9) died: exit code 1",
    ]
    idle = Outcome(2, faults, storage, Summary(), audit(storage), 0, 1.0, ["no order within 60s"])
    assert idle.problems == ["no order was placed", "no order within 60s"]
