"""The example shop: never oversells, charges once, survives a failing gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from examples.shop.backends import Backends
from examples.shop.service import CheckoutRejected
from examples.shop.simulation import Settings, build_shop, oversold, prepare, run
from scalekit.testing import RedisServer, ZooKeeperServer

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _paid_orders(storage: object) -> int:
    counts = storage.order_counts()  # type: ignore[attr-defined]
    return sum(c.get("paid", 0) for c in counts.values())


def test_the_readme_command_reports_no_oversell() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.shop", "--duration", "1.5", "--buyers", "16"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "oversold: 0" in lines
    placed = int(next(x for x in lines if x.startswith("orders placed:")).split(":")[1])
    assert placed > 0
    assert any(x.startswith("checkout latency: p50") for x in lines)
    assert any(x.startswith("gateway gw-3:") for x in lines)


def test_one_idempotency_key_creates_one_order(tmp_path: Path) -> None:
    settings = Settings(failing_gateway_rate=0.0)
    prepare(tmp_path, settings)
    backends = Backends(run_id="idem")
    shop = build_shop(tmp_path, settings, backends)
    user = shop.register("idem@example.com")
    shop.add_to_cart(user, "hot-0", 2)
    before = shop.storage.stock("hot-0")
    first = shop.checkout(user, "checkout-1")
    again = shop.checkout(user, "checkout-1")
    assert again.order_id == first.order_id
    assert shop.storage.stock("hot-0") == before - 2
    assert shop.storage.charge_count() == 1
    now = first.created_at
    history = shop.history(user, now.replace(day=1), now.replace(year=now.year + 1))
    assert [o.order_id for o in history] == [first.order_id]
    assert history[0].status == "paid"


def test_concurrent_retries_of_one_checkout_reserve_stock_once(tmp_path: Path) -> None:
    settings = Settings(failing_gateway_rate=0.0)
    prepare(tmp_path, settings)
    shop = build_shop(tmp_path, settings, Backends(run_id="race"))
    user = shop.register("race@example.com")
    shop.add_to_cart(user, "hot-1", 3)
    before = shop.storage.stock("hot-1")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def retry() -> None:
        barrier.wait()
        try:
            results.append(shop.checkout(user, "same-key").order_id)
        except CheckoutRejected as exc:  # the cart was emptied by the winner
            results.append(f"rejected: {exc}")

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order_ids = {r for r in results if not r.startswith("rejected")}
    assert len(order_ids) == 1
    assert shop.storage.stock("hot-1") == before - 3
    assert shop.storage.charge_count() == 1


def test_a_failing_gateway_is_ejected_and_nothing_is_charged_twice(tmp_path: Path) -> None:
    settings = Settings(buyers=8, duration=1.5, failing_gateway_rate=1.0, hot_share=0.0)
    storage, summary = run(settings, tmp_path)
    calls, failures, ejections = summary.gateways["gw-3"]
    assert ejections >= 1
    assert failures == calls  # it never succeeds
    # Ejected after 3 consecutive failures, then only probed when it returns: most
    # payments went elsewhere.
    assert calls < 0.2 * (summary.gateways["gw-1"][0] + summary.gateways["gw-2"][0])
    assert summary.placed > 50
    assert summary.rejected.get("payment failed", 0) <= 0.01 * summary.placed + 1
    assert storage.charge_count() == _paid_orders(storage) == summary.placed
    assert oversold(storage) == 0


def test_a_lost_reply_is_reconciled_by_the_idempotency_key(tmp_path: Path) -> None:
    settings = Settings(gateways=1, failing_gateway_rate=0.0)
    prepare(tmp_path, settings)
    shop = build_shop(tmp_path, settings, Backends(run_id="lost"))
    shop.payments.gateways["gw-1"].lost_reply_rate = 1.0  # charges, then the reply is lost
    user = shop.register("lost@example.com")
    shop.add_to_cart(user, "sku-001", 1)
    order = shop.checkout(user, "k")
    assert order.status == "paid"
    assert shop.payments.gateways["gw-1"].calls == 3  # retried, charged once
    assert shop.storage.charge_count() == 1


def _race(tmp_path: Path, **backend: str) -> None:
    settings = Settings(
        buyers=16,
        workers=8,
        duration=2.5,
        hot_skus=1,
        hot_stock=100,
        hot_share=1.0,
        max_qty=1,
        failing_gateway_rate=0.0,
        **backend,
    )
    storage, summary = run(settings, tmp_path)
    assert summary.placed == 100
    assert storage.stock("hot-0") == 0
    assert storage.sold()["hot-0"] == 100
    assert oversold(storage) == 0
    assert summary.rejected["out of stock"] > 0  # the race really was lost by some


def test_eight_processes_never_oversell_through_the_redis_lock(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    _race(tmp_path, redis=redis_server.url)


def test_eight_processes_never_oversell_through_the_zookeeper_lock(
    tmp_path: Path, zookeeper_server: ZooKeeperServer
) -> None:
    _race(tmp_path, zookeeper=zookeeper_server.hosts)


def test_a_paused_lock_holder_cannot_oversell_when_it_resumes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(shards=2, hot_skus=1, hot_stock=1, failing_gateway_rate=0.0)
    prepare(tmp_path, settings)
    run_id = uuid.uuid4().hex[:8]
    marker = tmp_path / "holding"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.examples._paused_buyer",
            str(tmp_path),
            redis_server.url,
            run_id,
            str(marker),
            "2",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never took the lock"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGSTOP)
        # The child's 1 s lease runs out while it is frozen; this buyer gets the lock
        # with a newer token and takes the last unit.
        backends = Backends(run_id=run_id, redis_url=redis_server.url, lock_ttl=1.0)
        try:
            shop = build_shop(tmp_path, settings, backends)
            user = shop.register("other@example.com")
            shop.add_to_cart(user, "hot-0", 1)
            order = shop.checkout(user, "other-checkout")
            assert order.status == "paid"
        finally:
            backends.close()
        os.kill(child.pid, signal.SIGCONT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()
    assert stdout.strip() == "fenced", stderr
    assert shop.storage.stock("hot-0") == 0
    assert shop.storage.sold() == {"hot-0": 1}
    assert oversold(shop.storage) == 0


def test_workers_without_a_shared_backend_are_refused() -> None:
    with pytest.raises(ValueError, match="need a shared lock backend"):
        run(Settings(workers=2), Path("/nonexistent"))
