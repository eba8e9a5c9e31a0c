"""A short load simulation of the shop, and its report.

Many buyers register, browse a catalog with a few hot SKUs of little
stock, fill carts and check out at once, while one payment gateway
misbehaves. Buyers are threads; with ``workers > 1`` they are spread over
that many processes sharing the SQLite files and the Redis or ZooKeeper
lock backend. The report shows what matters: orders placed and rejected,
checkout latency, ``oversold`` (must be 0), stock left, the cache's hit
ratio, orders per shard and each gateway's calls and ejections.
"""

from __future__ import annotations

import multiprocessing
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

from scalekit.balancing import HealthPolicy, OutlierDetection, PeakEWMA

from .backends import Backends
from .gateways import PaymentService, SimulatedGateway
from .service import CheckoutRejected, Shop
from .storage import ShopStorage


@dataclass
class Settings:
    buyers: int = 32
    duration: float = 3.0
    workers: int = 1
    shards: int = 4
    hot_skus: int = 3
    hot_stock: int = 60
    cold_skus: int = 30
    cold_stock: int = 10_000
    gateways: int = 3
    failing_gateway_rate: float = 0.5
    hot_share: float = 0.6  # how often a buyer goes for a hot SKU
    max_qty: int = 2
    seed: int = 7
    lock_ttl: float = 5.0
    redis: str | None = None
    zookeeper: str | None = None


@dataclass
class Summary:
    """What one or more worker processes did; picklable, and adds up."""

    placed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (wall time, seconds)
    duplicate_orders: int = 0
    fence_rejections: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    gateways: dict[str, list[int]] = field(default_factory=dict)  # calls, failures, ejections
    phase_seconds: Counter[str] = field(default_factory=Counter)  # lock, database, cache, ...
    busy_seconds: float = 0.0  # buyer threads' total time

    def add(self, other: Summary) -> None:
        self.placed += other.placed
        self.rejected.update(other.rejected)
        self.latencies.extend(other.latencies)
        self.duplicate_orders += other.duplicate_orders
        self.fence_rejections += other.fence_rejections
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.phase_seconds.update(other.phase_seconds)
        self.busy_seconds += other.busy_seconds
        for name, counts in other.gateways.items():
            mine = self.gateways.setdefault(name, [0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n


def hot_skus(settings: Settings) -> list[str]:
    return [f"hot-{i}" for i in range(settings.hot_skus)]


def prepare(directory: Path, settings: Settings) -> ShopStorage:
    """Create the databases and load the catalog."""
    storage = ShopStorage(directory, shards=settings.shards)
    for i, sku in enumerate(hot_skus(settings)):
        storage.add_product(sku, f"Hot item {i}", 1999 + i, settings.hot_stock)
    for i in range(settings.cold_skus):
        storage.add_product(f"sku-{i:03d}", f"Item {i}", 500 + 10 * i, settings.cold_stock)
    return storage


def build_shop(
    directory: Path,
    settings: Settings,
    backends: Backends,
    worker: int = 0,
    hold_hook: Callable[[str], None] | None = None,
) -> Shop:
    """A shop process's view: the shared databases, its backends and its gateways."""
    storage = ShopStorage(directory, shards=settings.shards)
    rng = random.Random(settings.seed * 1000 + worker)
    gateways = [
        SimulatedGateway(f"gw-{i + 1}", latency=0.001 + 0.001 * i, rng=random.Random(rng.random()))
        for i in range(settings.gateways)
    ]
    gateways[-1].failure_rate = settings.failing_gateway_rate
    balancer = PeakEWMA(
        [g.name for g in gateways],
        rng=random.Random(rng.random()),
        health=HealthPolicy(
            outlier=OutlierDetection(
                consecutive_failures=3,
                base_ejection_time=1.0,
                max_ejection_percent=50,
                success_rate_stdev_factor=None,
            )
        ),
    )
    payments = PaymentService(storage, gateways, balancer)
    return Shop(storage, backends.cache, backends.lock_for, payments, hold_hook=hold_hook)


def _buyer(
    shop: Shop,
    settings: Settings,
    deadline: float,
    out: Summary,
    lock: threading.Lock,
    rng: random.Random,
) -> None:
    hot = hot_skus(settings)
    skus = shop.storage.skus()
    while time.monotonic() < deadline:
        user = shop.register(f"{uuid.uuid4().hex}@example.com")
        for sku in rng.sample(skus, 3):
            shop.view_product(sku)
        pick = rng.choice(hot) if rng.random() < settings.hot_share else rng.choice(skus)
        shop.view_product(pick)
        shop.add_to_cart(user, pick, rng.randint(1, settings.max_qty))
        key = uuid.uuid4().hex
        started, wall = time.monotonic(), time.time()
        try:
            order = shop.checkout(user, key)
        except CheckoutRejected as exc:
            with lock:
                out.latencies.append((wall, time.monotonic() - started))
                out.rejected[exc.reason] += 1
            continue
        elapsed = time.monotonic() - started
        # A client retrying the same checkout must get the same order back.
        duplicate = rng.random() < 0.1 and shop.checkout(user, key).order_id != order.order_id
        with lock:
            out.latencies.append((wall, elapsed))
            out.placed += 1
            out.duplicate_orders += duplicate


def work(settings: Settings, directory: Path, worker: int, run_id: str, buyers: int) -> Summary:
    """One process's share of the load; returns its summary."""
    backends = Backends(
        run_id=run_id,
        redis_url=settings.redis,
        zookeeper_hosts=settings.zookeeper,
        lock_ttl=settings.lock_ttl,
    )
    try:
        shop = build_shop(directory, settings, backends, worker)
        out, lock = Summary(), threading.Lock()
        deadline = time.monotonic() + settings.duration
        rng = random.Random(settings.seed * 7919 + worker)
        threads = [
            threading.Thread(
                target=_buyer,
                args=(shop, settings, deadline, out, lock, random.Random(rng.random())),
            )
            for _ in range(buyers)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.busy_seconds = (time.monotonic() - started) * buyers
        out.phase_seconds.update(shop.timings.seconds)
        out.fence_rejections = shop.fence_rejections
        out.cache_hits, out.cache_misses = shop.cache_hits, shop.cache_misses
        health = shop.payments.balancer.health  # type: ignore[attr-defined]
        for name, gw in shop.payments.gateways.items():
            out.gateways[name] = [
                gw.calls,
                gw.failures,
                health.ejection_count(name) if health is not None else 0,
            ]
        return out
    finally:
        backends.close()


def _worker_main(
    settings: Settings,
    directory: Path,
    worker: int,
    run_id: str,
    buyers: int,
    queue: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    try:
        queue.put((worker, work(settings, directory, worker, run_id, buyers)))
    except BaseException as exc:
        queue.put((worker, exc))
        raise


def run(settings: Settings, directory: Path) -> tuple[ShopStorage, Summary]:
    """Prepare the shop in *directory*, run the load, return the storage and the summary."""
    if settings.workers > 1 and settings.redis is None and settings.zookeeper is None:
        raise ValueError("workers > 1 need a shared lock backend: give --redis or --zookeeper")
    storage = prepare(directory, settings)
    run_id = uuid.uuid4().hex[:12]
    share = [
        settings.buyers // settings.workers + (i < settings.buyers % settings.workers)
        for i in range(settings.workers)
    ]
    total = Summary()
    if settings.workers == 1:
        total.add(work(settings, directory, 0, run_id, share[0]))
        return storage, total
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(settings, directory, i, run_id, n, queue))
        for i, n in enumerate(share)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        _worker, result = queue.get(timeout=settings.duration + 120)
        if isinstance(result, BaseException):
            raise RuntimeError(f"shop worker {_worker} failed: {result!r}") from result
        total.add(result)
    for p in procs:
        p.join()
    return storage, total


def oversold(storage: ShopStorage) -> int:
    """Units sold beyond the initial stock, over every SKU (must be 0)."""
    sold = storage.sold()
    over = 0
    for sku, (initial, left) in storage.stock_report().items():
        over += max(0, sold.get(sku, 0) - initial) + max(0, -left)
    return over


def report(storage: ShopStorage, summary: Summary, settings: Settings, kind: str) -> str:
    lat = sorted(s for _, s in summary.latencies)

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    stock, sold = storage.stock_report(), storage.sold()
    lookups = summary.cache_hits + summary.cache_misses
    lines = [
        f"scalekit shop: {settings.buyers} buyers in {settings.workers} process(es) for "
        f"{settings.duration:g}s, {settings.shards} SQLite shards, {kind} locks",
        f"orders placed: {summary.placed}",
        "orders rejected: "
        + (", ".join(f"{k} {v}" for k, v in sorted(summary.rejected.items())) or "0"),
        f"checkout latency: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms "
        f"(mean {1000 * statistics.fmean(lat) if lat else 0:.1f} ms over {len(lat)} checkouts)",
        f"oversold: {oversold(storage)}",
        f"duplicate orders from retried checkouts: {summary.duplicate_orders}",
        f"stale stock writes fenced off: {summary.fence_rejections}",
        "stock left (hot SKUs): "
        + ", ".join(
            f"{sku} {stock[sku][1]}/{stock[sku][0]} (sold {sold.get(sku, 0)})"
            for sku in hot_skus(settings)
        ),
        f"product cache hit ratio: {summary.cache_hits / lookups if lookups else 0:.1%} "
        f"({summary.cache_hits} hits, {summary.cache_misses} misses)",
        "orders per shard: "
        + ", ".join(f"{name} {sum(c.values())}" for name, c in storage.order_counts().items()),
        f"payments charged: {storage.charge_count()}",
    ]
    if summary.busy_seconds:
        shares = {k: v / summary.busy_seconds for k, v in summary.phase_seconds.items()}
        shares["other (Python, thread switches)"] = max(0.0, 1 - sum(shares.values()))
        lines.append(
            "where buyer time goes: "
            + ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
        )
    for name, (calls, failures, ejections) in sorted(summary.gateways.items()):
        lines.append(f"gateway {name}: {calls} calls, {failures} failures, {ejections} ejections")
    return "\n".join(lines)


def plot(summary: Summary, path: Path) -> None:
    """Checkout latency over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary.latencies:
        return
    start = min(at for at, _ in summary.latencies)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(
        [at - start for at, _ in summary.latencies],
        [1000 * s for _, s in summary.latencies],
        s=4,
        alpha=0.5,
    )
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("checkout latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("scalekit shop: checkout latency over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="scalekit-shop-")
