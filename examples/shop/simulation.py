"""A short load simulation of the shop, and its report.

Many buyers (threads) register, browse a catalog with a few hot SKUs of
little stock, fill carts and check out at once, while one payment gateway
misbehaves. The report shows what matters: orders placed and rejected,
checkout latency, ``oversold`` (must be 0), stock left, the cache's hit
ratio, orders per shard and each gateway's calls and ejections.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalekit.balancing import OutlierDetection, PeakEWMA
from scalekit.caching import TinyLFUCache
from scalekit.locking import MemoryLock

from .gateways import PaymentService, SimulatedGateway
from .service import CheckoutRejected, Shop
from .storage import ShopStorage


@dataclass
class Settings:
    buyers: int = 32
    duration: float = 3.0
    shards: int = 4
    hot_skus: int = 3
    hot_stock: int = 60
    cold_skus: int = 30
    cold_stock: int = 10_000
    gateways: int = 3
    failing_gateway_rate: float = 0.5
    seed: int = 7
    lock_ttl: float = 5.0


@dataclass
class Result:
    placed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds)
    duplicate_checkouts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def build_shop(directory: Path, settings: Settings,
               lock_for: Callable[[str], Any] | None = None,
               hold_hook: Callable[[str], None] | None = None) -> tuple[Shop, list[str]]:
    """A shop with its catalog loaded; returns it and the hot SKUs."""
    storage = ShopStorage(directory, shards=settings.shards)
    hot = [f"hot-{i}" for i in range(settings.hot_skus)]
    for i, sku in enumerate(hot):
        storage.add_product(sku, f"Hot item {i}", 1999 + i, settings.hot_stock)
    for i in range(settings.cold_skus):
        storage.add_product(f"sku-{i:03d}", f"Item {i}", 500 + 10 * i, settings.cold_stock)
    rng = random.Random(settings.seed)
    gateways = [SimulatedGateway(f"gw-{i + 1}", latency=0.001 + 0.001 * i,
                                 rng=random.Random(rng.random()))
                for i in range(settings.gateways)]
    gateways[-1].failure_rate = settings.failing_gateway_rate
    balancer = PeakEWMA([g.name for g in gateways], rng=random.Random(settings.seed),
                        health=OutlierDetection(consecutive_failures=3, base_ejection_time=1.0,
                                                max_ejection_percent=50))
    payments = PaymentService(storage, gateways, balancer)
    cache = TinyLFUCache(maxsize=64)
    if lock_for is None:
        ttl = settings.lock_ttl
        lock_for = lambda name: MemoryLock(name, ttl=ttl)  # noqa: E731
    shop = Shop(storage, cache, lock_for, payments, hold_hook=hold_hook)
    return shop, hot


def _buyer(shop: Shop, hot: list[str], settings: Settings, deadline: float, result: Result,
           rng: random.Random) -> None:
    skus = shop.storage.skus()
    while time.monotonic() < deadline:
        user = shop.register(f"{uuid.uuid4().hex}@example.com")
        for sku in rng.sample(skus, 3):
            shop.view_product(sku)
        pick = rng.choice(hot) if rng.random() < 0.6 else rng.choice(skus)
        shop.view_product(pick)
        shop.add_to_cart(user, pick, rng.randint(1, 2))
        key = uuid.uuid4().hex
        started = time.monotonic()
        try:
            order = shop.checkout(user, key)
        except CheckoutRejected as exc:
            reason = str(exc).split(":")[0].split(" of ")[0]
            with result.lock:
                result.rejected[_reason(reason)] += 1
            continue
        finally:
            elapsed = time.monotonic() - started
            with result.lock:
                result.latencies.append((started, elapsed))
        # A client retrying the same checkout must get the same order back.
        if rng.random() < 0.1 and shop.checkout(user, key).order_id != order.order_id:
            with result.lock:
                result.duplicate_checkouts += 1
        with result.lock:
            result.placed += 1


def _reason(text: str) -> str:
    if text.startswith("only"):
        return "out of stock"
    if text.startswith("payment failed"):
        return "payment failed"
    if "busy" in text:
        return "lock timeout"
    if "fenced" in text:
        return "fenced off"
    return text


def run(settings: Settings, directory: Path | None = None) -> tuple[Shop, Result, list[str]]:
    """Run the simulation; return the shop (for inspection), the result and the hot SKUs."""
    own = directory is None
    tmp = tempfile.TemporaryDirectory(prefix="scalekit-shop-") if own else None
    path = Path(tmp.name) if tmp is not None else directory
    assert path is not None
    shop, hot = build_shop(path, settings)
    result = Result()
    deadline = time.monotonic() + settings.duration
    rng = random.Random(settings.seed)
    threads = [threading.Thread(target=_buyer, args=(shop, hot, settings, deadline, result,
                                                     random.Random(rng.random())))
               for _ in range(settings.buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shop._tmpdir = tmp  # type: ignore[attr-defined]  # keep the files until the shop goes
    return shop, result, hot


def oversold(shop: Shop) -> int:
    """Units sold beyond the initial stock, over every SKU (must be 0)."""
    sold = shop.storage.sold()
    report = shop.storage.stock_report()
    over = 0
    for sku, (initial, left) in report.items():
        over += max(0, sold.get(sku, 0) - initial)
        over += max(0, -left)
    return over


def report(shop: Shop, result: Result, hot: list[str], settings: Settings) -> str:
    lat = sorted(s for _, s in result.latencies)

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    stats = shop.cache.stats()  # type: ignore[attr-defined]
    stock = shop.storage.stock_report()
    sold = shop.storage.sold()
    lines = [
        f"scalekit shop simulation: {settings.buyers} buyers for {settings.duration:g}s, "
        f"{settings.shards} SQLite shards, memory locks, TinyLFU product cache",
        f"orders placed: {result.placed}",
        "orders rejected: " + (", ".join(f"{k} {v}" for k, v in sorted(result.rejected.items()))
                               or "0"),
        f"checkout latency: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms "
        f"(mean {1000 * statistics.fmean(lat) if lat else 0:.1f} ms over {len(lat)} checkouts)",
        f"oversold: {oversold(shop)}",
        f"duplicate orders from retried checkouts: {result.duplicate_checkouts}",
        f"fence rejections: {shop.fence_rejections}",
        "stock left (hot SKUs): " + ", ".join(
            f"{sku} {stock[sku][1]}/{stock[sku][0]} (sold {sold.get(sku, 0)})" for sku in hot),
        f"product cache hit ratio: {stats.hit_ratio:.1%} ({stats.hits} hits, {stats.misses} misses)",
        "orders per shard: " + ", ".join(
            f"{name} {sum(c.values())}" for name, c in shop.storage.order_counts().items()),
        f"payments charged: {shop.storage.charge_count()}",
    ]
    balancer = shop.payments.balancer
    health = balancer.health  # type: ignore[attr-defined]
    for name, gw in shop.payments.gateways.items():
        ejections = health.ejection_count(name) if health is not None else 0
        lines.append(f"gateway {name}: {gw.calls} calls, {gw.failures} failures, "
                     f"{ejections} ejections (failure rate {gw.failure_rate:.0%})")
    return "\n".join(lines)


def plot(result: Result, path: Path) -> None:
    """Checkout latency over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not result.latencies:
        return
    start = min(at for at, _ in result.latencies)
    xs = [at - start for at, _ in result.latencies]
    ys = [1000 * s for _, s in result.latencies]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(xs, ys, s=4, alpha=0.5)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("checkout latency (ms)")
    ax.set_yscale("log")
    ax.set_title("scalekit shop: checkout latency over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
