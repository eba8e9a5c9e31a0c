"""The shop's /metrics, scraped over HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples.shop.metrics import ShopMetrics
from examples.shop.simulation import Settings, build_shop, prepare

ROOT = Path(__file__).resolve().parents[2]
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_known_sequence_shows_in_the_scrape(tmp_path: Path) -> None:
    settings = Settings(failing_gateway_rate=0.0, shards=2)
    storage = prepare(tmp_path, settings)
    backends = settings.backends("metrics-test")
    shop = build_shop(tmp_path, settings, backends)
    metrics = ShopMetrics()
    metrics.watch(shop, backends.local_cache)
    port = _free_port()
    metrics.serve(port)
    try:
        user = shop.register("ada@example.com")
        for sku in ("hot-0", "hot-1", "hot-0"):
            shop.view_product(sku)
        shop.add_to_cart(user, "hot-0", 2)
        shop.add_to_cart(user, "sku-001", 1)
        started = time.monotonic()
        order = shop.checkout(user, "key-1")
        metrics.record_checkout(
            order.status, time.monotonic() - started, storage.router.route(user)
        )
        got = _scrape(port)
    finally:
        metrics.close()
        backends.close()
    assert order.status == "paid"
    # views: hot-0 miss, hot-1 miss, hot-0 hit; adding to the cart views the
    # product too: hot-0 hit, sku-001 miss
    products = (("cache", "products"),)
    assert got[("scalekit_cache_misses_total", products)] == 3
    assert got[("scalekit_cache_hits_total", products)] == 2
    assert got[("scalekit_cache_size", products)] == 3
    assert got[("scalekit_cache_capacity", products)] == 64
    # one lock per SKU of the order, each acquired once and at once
    stock = (("lock", "shop:stock"),)
    assert got[("scalekit_lock_acquisitions_total", stock)] == 2
    acquired = (("lock", "shop:stock"), ("outcome", "acquired"))
    assert got[("scalekit_lock_wait_seconds_count", acquired)] == 2
    assert 0 <= got[("scalekit_lock_wait_seconds_sum", acquired)] < settings.lock_timeout
    # the payment went through one gateway and is no longer in flight
    for gw in ("gw-1", "gw-2", "gw-3"):
        key = (("balancer", "payments"), ("endpoint", gw))
        assert got[("scalekit_balancer_in_flight", key)] == 0
        assert got[("scalekit_balancer_ejected", key)] == 0
    # ... and reported its pick and its latency itself
    picks = [v for (name, _), v in got.items() if name == "scalekit_balancer_picks_total"]
    assert sum(picks) == 1
    timed = [
        v
        for (name, labels), v in got.items()
        if name == "scalekit_balancer_request_duration_seconds_count"
        and dict(labels)["outcome"] == "ok"
    ]
    assert sum(timed) == 1
    assert got[("scalekit_lock_handovers_total", stock)] == 0  # nobody waited; at 0 from watch time
    assert got[("shop_checkout_duration_seconds_count", (("outcome", "paid"),))] == 1
    shard = storage.router.route(user)
    assert got[("shop_orders_total", (("shard", shard),))] == 1
    assert sum(v for (name, _), v in got.items() if name == "shop_orders_total") == 1


def test_the_running_shop_serves_metrics_that_agree_with_its_report() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.shop",
            "--duration",
            "2",
            "--metrics-port",
            str(port),
            "--metrics-linger",
            "60",
            "--log-events",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        report = []
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # the report, then the linger notice
            report.append(line)
            if line.startswith("serving /metrics") or time.monotonic() > deadline:
                break
        text = "".join(report)
        assert "serving /metrics" in text, text
        got = _scrape(port)
    finally:
        proc.terminate()
        _, events = proc.communicate(timeout=10)
    placed = int(re.search(r"orders placed: (\d+)", text).group(1))  # type: ignore[union-attr]
    assert placed > 0
    paid = got[("shop_checkout_duration_seconds_count", (("outcome", "paid"),))]
    orders = sum(v for (name, _), v in got.items() if name == "shop_orders_total")
    assert paid == orders == placed
    hits = got[("scalekit_cache_hits_total", (("cache", "products"),))]
    assert re.search(rf"product cache hit ratio: [\d.]+% \({int(hits)} hits", text), text
    ejected = got[("scalekit_balancer_ejected", (("balancer", "payments"), ("endpoint", "gw-3")))]
    assert ejected in (0.0, 1.0)
    # --log-events: each ejection counted is also an event on stderr (fewer than the
    # rate limit of 10 a second in this run, so none is suppressed).
    ejections = sum(
        v for (name, labels), v in got.items() if name == "scalekit_balancer_ejections_total"
    )
    logged = events.count("scalekit.balancer.ejected balancer='payments'")
    assert ejections >= 1 and logged == ejections, events
    assert got[("scalekit_lock_acquisitions_total", (("lock", "shop:stock"),))] >= placed


def test_the_dashboard_asks_only_for_metrics_the_shop_serves(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "examples" / "shop" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 5
    served = {
        "scalekit_cache_hits_total",
        "scalekit_cache_misses_total",
        "scalekit_lock_wait_seconds_bucket",
        "scalekit_lock_timeouts_total",
        "scalekit_balancer_ejected",
        "scalekit_balancer_in_flight",
        "scalekit_balancer_ejections_total",
        "shop_checkout_duration_seconds_bucket",
        "shop_orders_total",
    }
    asked = {name for expr in exprs for name in re.findall(r"\b((?:scalekit|shop)_[a-z_]+)", expr)}
    assert asked <= served, asked - served
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("hit ratio", "checkout latency", "lock wait", "ejected", "orders per shard"):
        assert topic in titles


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "0"], "port number"),
        (["--metrics-linger", "5"], "goes with --metrics-port"),
        (["--metrics-port", "9100", "--workers", "2", "--redis", "redis://x"], "--workers 1"),
    ],
)
def test_metrics_flags_are_checked_before_the_run(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.shop", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


def _paid_orders_stored(storage: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for shard, db in storage.shards.items():
        conn = db.connection()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orders_%'"
            )
        ]
        n = sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE status = 'paid'").fetchone()[0]
            for t in tables
        )
        if n:
            out[shard] = n
    return out


def test_while_a_shard_is_added_orders_and_routes_count_where_users_are_stored(
    tmp_path: Path,
) -> None:
    settings = Settings(failing_gateway_rate=0.0, shards=2, add_shard_at=0.0)
    storage = prepare(tmp_path, settings)  # the mover's view, migration planned
    backends = settings.backends("metrics-reshard")
    shop = build_shop(tmp_path, settings, backends)  # a buyer's view
    metrics = ShopMetrics()
    metrics.watch(shop, backends.local_cache)
    assert storage.migration is not None
    metrics.watch_migration(storage.migration)
    port = _free_port()
    metrics.serve(port)
    try:
        users = [shop.register(f"user{i}@example.com") for i in range(12)]
        storage.migration.start()
        moved = 0
        while n := storage.migration.move(limit=100, batch=100):
            moved += n
        got = _scrape(port)
        assert got[("scalekit_migration_keys_moved_total", (("migration", "users"),))] == moved
        assert got[("scalekit_migration_progress_ratio", (("migration", "users"),))] == 1.0
        routes_before = {
            dict(labels)["shard"]: v
            for (name, labels), v in got.items()
            if name == "scalekit_router_routes_total"
        }
        for user in users:
            shop.add_to_cart(user, "sku-001", 1)
            started = time.monotonic()
            order = shop.checkout(user, f"key-{user}")
            metrics.record_checkout(
                order.status, time.monotonic() - started, metrics.shard_of(shop.storage, user)
            )
        got = _scrape(port)
    finally:
        metrics.close()
        backends.close()
    stored = _paid_orders_stored(storage)
    assert "shard2" in stored  # the new shard holds some of them
    served = {
        dict(labels)["shard"]: v for (name, labels), v in got.items() if name == "shop_orders_total"
    }
    assert served == stored
    routed = {
        dict(labels)["shard"]: v - routes_before.get(dict(labels)["shard"], 0)
        for (name, labels), v in got.items()
        if name == "scalekit_router_routes_total"
    }
    assert routed.get("shard2", 0) > 0
    assert set(k for k, v in routed.items() if v) <= set(storage.shards)
