"""A short load simulation of the shop.

Many buyers register, browse a catalog with a few hot SKUs of little
stock, fill carts and check out at once, while one payment gateway
misbehaves. Buyers are threads; with ``workers > 1`` they are spread over
that many processes sharing the SQLite files and the Redis (or Redis
Cluster, or ZooKeeper) lock backend (``runner.py`` starts them).

A buyer that meets a backend error, or a database locked past SQLite's
busy timeout (another process frozen inside a write transaction) or
failing to write (a full disk), counts it, by class and step, and goes on
after a pause that doubles with each error in a row, up to
`MAX_BACKOFF` seconds; any other exception ends that buyer and is reported
as a death, naming its worker. `STOP` (set on Ctrl-C) ends every buyer
after its current step. Nothing is printed from here: the report says it all.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalekit import BackendError, BackendUnavailableError
from scalekit.balancing import HealthPolicy, OutlierDetection, PeakEWMA

from . import resharding
from .backends import Backends
from .gateways import PaymentService, SimulatedGateway
from .service import CheckoutRejected, Shop
from .storage import ShopStorage

if TYPE_CHECKING:
    from .metrics import ShopMetrics


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
    lock_timeout: float = 5.0
    grace: float = 30.0  # seconds a worker may take past the load before it is killed
    # Seconds each stock change dawdles while holding the SKU's lock (a slow
    # warehouse call): fault schedules use it so a SIGSTOP often hits a holder.
    hold_seconds: float = 0.0
    # Seconds the fastest payment gateway takes (the others take 2x, 3x ...):
    # while a payment runs its order holds stock, where fault schedules hit.
    gateway_latency: float = 0.001
    # Seconds an SQLite statement waits for another process's write lock.
    busy_timeout: float = 30.0
    redis: str | None = None
    redis_cluster: str | None = None
    zookeeper: str | None = None
    # Per-worker Redis URL overrides (a proxy in front of the shared Redis, for faults).
    worker_redis: dict[int, str] = field(default_factory=dict)
    # Seconds into the load at which one more user shard is added (resharding.py).
    add_shard_at: float | None = None

    @property
    def backend(self) -> str:
        if self.redis_cluster:
            return "redis-cluster"
        return "redis" if self.redis else "zookeeper" if self.zookeeper else "memory"

    def fence_source(self) -> str:
        """The lock backend whose tokens this run's fences hold (``catalog.adopt_fences``)."""
        return f"{self.backend}:{self.redis or self.redis_cluster or self.zookeeper or ''}"

    def backends(self, namespace: str, worker: int | None = None) -> Backends:
        redis_url = self.redis
        if worker is not None and self.redis is not None:
            redis_url = self.worker_redis.get(worker, self.redis)
        return Backends(
            namespace=namespace,
            redis_url=redis_url,
            redis_cluster_url=self.redis_cluster,
            zookeeper_hosts=self.zookeeper,
            lock_ttl=self.lock_ttl,
        )


@dataclass
class Summary:
    """What one or more worker processes did; picklable, and adds up."""

    placed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (wall time, seconds)
    duplicate_orders: int = 0
    fence_rejections: int = 0
    stale_tokens: int = 0  # stock claims refused before reading (Shop.stale_tokens)
    lookups: int = 0
    loads: int = 0
    gateways: dict[str, list[int]] = field(default_factory=dict)  # calls, failures, ejections
    phase_seconds: Counter[str] = field(default_factory=Counter)  # lock, database, cache, ...
    busy_seconds: float = 0.0  # buyer threads' total time
    errors: Counter[str] = field(default_factory=Counter)  # "Class (step)" -> count
    examples: dict[str, str] = field(default_factory=dict)  # "Class (step)" -> first message
    died: list[str] = field(default_factory=list)  # dead workers and buyers, one line each
    interrupted: bool = False  # the load was stopped early (Ctrl-C)
    left_reserved: int = 0  # orders the final sweep could not settle (a backend still down)
    catalog: str = "new"
    recovery: list[str] = field(default_factory=list)
    units_swept: int = 0  # units the recovery sweeps gave back to stock
    resharding: str = ""  # what adding a shard did (--add-shard-at)
    resharding_window: tuple[float, float] | None = None  # wall clock, while keys moved
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (user, order) paid

    def add(self, other: Summary) -> None:
        self.placed += other.placed
        self.rejected.update(other.rejected)
        self.latencies.extend(other.latencies)
        self.duplicate_orders += other.duplicate_orders
        self.fence_rejections += other.fence_rejections
        self.stale_tokens += other.stale_tokens
        self.lookups += other.lookups
        self.loads += other.loads
        self.phase_seconds.update(other.phase_seconds)
        self.busy_seconds += other.busy_seconds
        self.errors.update(other.errors)
        for key, text in other.examples.items():
            self.examples.setdefault(key, text)
        self.died.extend(other.died)
        self.acknowledged.extend(other.acknowledged)
        for name, counts in other.gateways.items():
            mine = self.gateways.setdefault(name, [0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n

    def error(self, exc: BaseException, step: str) -> None:
        key = f"{type(exc).__name__} ({step})"
        self.errors[key] += 1
        self.examples.setdefault(key, str(exc)[:160])


def hot_skus(settings: Settings) -> list[str]:
    return [f"hot-{i}" for i in range(settings.hot_skus)]


def prepare(directory: Path, settings: Settings) -> ShopStorage:
    """Create the databases and load the catalog; an existing catalog is reused as it is.

    Products already in the catalog keep their stock, fences and orders: a
    second run carries on where the first stopped.
    """
    storage = ShopStorage(directory, settings.shards, settings.busy_timeout)
    if settings.add_shard_at is not None:
        resharding.plan(resharding.attach(storage, settings.shards))
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
    storage = ShopStorage(directory, settings.shards, settings.busy_timeout)
    if settings.add_shard_at is not None:
        resharding.attach(storage, settings.shards)
    rng = random.Random(settings.seed * 1000 + worker)
    gateways = [
        SimulatedGateway(
            f"gw-{i + 1}",
            latency=settings.gateway_latency * (1 + i),
            rng=random.Random(rng.random()),
        )
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
    return Shop(
        storage,
        backends.cache,
        backends.lock_for,
        payments,
        lock_timeout=settings.lock_timeout,
        hold_hook=hold_hook,
    )


# Seconds a buyer waits after a backend error before it tries again, doubled
# with each error in a row up to MAX_BACKOFF.
_ERROR_BACKOFF = 0.05
MAX_BACKOFF = 1.0
# Set to stop the load early (Ctrl-C): buyers finish their current step.
STOP = threading.Event()


def _buyer(
    shop: Shop,
    settings: Settings,
    deadline: float,
    out: Summary,
    lock: threading.Lock,
    rng: random.Random,
    metrics: ShopMetrics | None = None,
) -> None:
    hot = hot_skus(settings)
    in_a_row = 0
    skus: list[str] = []
    while time.monotonic() < deadline and not STOP.is_set():
        try:
            skus = skus or shop.storage.skus()
            _shop_once(shop, settings, out, lock, rng, hot, skus, metrics)
            in_a_row = 0
        except (BackendError, sqlite3.OperationalError) as exc:
            # A backend down, a cache load timed out, a database locked by a
            # frozen process or a disk full: counted, then tried again later.
            with lock:
                out.error(exc, "buyer")
            STOP.wait(min(MAX_BACKOFF, _ERROR_BACKOFF * 2**in_a_row))
            in_a_row = min(in_a_row + 1, 10)
        except Exception as exc:  # a bug: reported, and this buyer stops
            with lock:
                out.died.append(f"buyer died: {type(exc).__name__}: {exc}")
            return


def _shop_once(
    shop: Shop,
    settings: Settings,
    out: Summary,
    lock: threading.Lock,
    rng: random.Random,
    hot: list[str],
    skus: list[str],
    metrics: ShopMetrics | None = None,
) -> None:
    user = shop.register(f"{uuid.uuid4().hex}@example.com")
    for sku in rng.sample(skus, 3):
        shop.view_product(sku)
    pick = rng.choice(hot) if rng.random() < settings.hot_share else rng.choice(skus)
    shop.add_to_cart(user, pick, rng.randint(1, settings.max_qty))
    key = uuid.uuid4().hex
    started, wall = time.monotonic(), time.time()
    try:
        order = shop.checkout(user, key)
    except CheckoutRejected as exc:
        elapsed = time.monotonic() - started
        if metrics is not None:
            metrics.record_checkout(exc.reason, elapsed)
        with lock:
            out.latencies.append((wall, elapsed))
            out.rejected[exc.reason] += 1
        return
    elapsed = time.monotonic() - started
    if metrics is not None:
        metrics.record_checkout(order.status, elapsed, metrics.shard_of(shop.storage, user))
    if order.status != "paid":  # settled by another execution (e.g. recovery) meanwhile
        with lock:
            out.rejected[order.status] += 1
        return
    # A client retrying the same checkout must get the same order back.
    duplicate = rng.random() < 0.1 and shop.checkout(user, key).order_id != order.order_id
    with lock:
        out.latencies.append((wall, elapsed))
        out.placed += 1
        out.acknowledged.append((user, order.order_id))
        out.duplicate_orders += duplicate


def work(
    settings: Settings,
    directory: Path,
    worker: int,
    namespace: str,
    buyers: int,
    metrics: ShopMetrics | None = None,
    load_started: Any = None,
) -> Summary:
    """One process's share of the load; returns its summary.

    A backend that is down when the worker starts is retried for as long
    as the load would last (the parent checked it just before); then the
    error is raised. The load's clock starts once the backends are up; then
    *load_started* (an event, if given) is set.
    """
    give_up = time.monotonic() + settings.duration
    while True:
        try:
            backends = settings.backends(namespace, worker)
            break
        except BackendUnavailableError:
            if time.monotonic() >= give_up:
                raise
            if STOP.wait(_ERROR_BACKOFF * 4):
                raise
    try:
        hold = settings.hold_seconds
        shop = build_shop(
            directory, settings, backends, worker, (lambda _: time.sleep(hold)) if hold else None
        )
        if metrics is not None:
            metrics.watch(shop, backends.local_cache, backends)
        out, lock = Summary(), threading.Lock()
        deadline = time.monotonic() + settings.duration
        rng = random.Random(settings.seed * 7919 + worker)
        threads = [
            threading.Thread(
                target=_buyer,
                args=(shop, settings, deadline, out, lock, random.Random(rng.random()), metrics),
            )
            for _ in range(buyers)
        ]
        started = time.monotonic()
        if load_started is not None:
            load_started.set()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.died = [f"worker {worker}: {line}" for line in out.died]
        out.busy_seconds = (time.monotonic() - started) * buyers
        out.phase_seconds.update(shop.timings.seconds)
        out.fence_rejections = shop.fence_rejections
        out.stale_tokens = shop.stale_tokens
        out.lookups, out.loads = shop.lookups, shop.loads
        for key, n in shop.errors.items():
            out.errors[key] += n
        # Redis outages the product cache rode out by reading the database
        # (fallback=True): no buyer saw an error, but the report counts them.
        fallbacks = backends.cache_fallbacks()
        if fallbacks:
            out.error(
                BackendUnavailableError(
                    "product loads served from the database while Redis was unavailable"
                ),
                "product cache fallback",
            )
            out.errors["BackendUnavailableError (product cache fallback)"] += fallbacks - 1
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


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="scalekit-shop-")
