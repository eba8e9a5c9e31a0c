"""A short load simulation of the shop.

Many buyers register, browse a catalog with a few hot SKUs of little
stock, fill carts and check out at once, while one payment gateway
misbehaves. Buyers are threads; with ``workers > 1`` they are spread over
that many processes sharing the SQLite files and the Redis (or Redis
Cluster, or ZooKeeper) lock backend.

A run survives its own faults: a buyer counts a backend error and goes on;
a worker process that dies (``kill -9``) is reported and the others
finish; a worker that does not finish within ``grace`` seconds after the
load is killed and reported. After the load a recovery sweep settles the
orders left ``reserved``, and the conservation audit (``audit.py``) is
computed from the databases.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalekit import BackendError, BackendUnavailableError, ConfigurationError
from scalekit.balancing import HealthPolicy, OutlierDetection, PeakEWMA

from .backends import Backends
from .gateways import PaymentService, SimulatedGateway
from .service import CheckoutRejected, Recovery, Shop
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
    lock_timeout: float = 5.0
    grace: float = 30.0  # seconds a worker may take past the load before it is killed
    # Seconds each stock change dawdles while holding the SKU's lock (a slow
    # warehouse call): fault schedules use it so a SIGSTOP often hits a holder.
    hold_seconds: float = 0.0
    redis: str | None = None
    redis_cluster: str | None = None
    zookeeper: str | None = None
    # Per-worker Redis URL overrides (a proxy in front of the shared Redis, for faults).
    worker_redis: dict[int, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        if self.redis_cluster:
            return "redis-cluster"
        return "redis" if self.redis else "zookeeper" if self.zookeeper else "memory"

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
    lookups: int = 0
    loads: int = 0
    gateways: dict[str, list[int]] = field(default_factory=dict)  # calls, failures, ejections
    phase_seconds: Counter[str] = field(default_factory=Counter)  # lock, database, cache, ...
    busy_seconds: float = 0.0  # buyer threads' total time
    errors: Counter[str] = field(default_factory=Counter)  # "Class (step)" -> count
    examples: dict[str, str] = field(default_factory=dict)  # "Class (step)" -> first message
    died: list[str] = field(default_factory=list)  # dead workers and buyers, one line each
    catalog: str = "new"
    recovery: list[str] = field(default_factory=list)
    units_swept: int = 0  # units the recovery sweeps gave back to stock

    def add(self, other: Summary) -> None:
        self.placed += other.placed
        self.rejected.update(other.rejected)
        self.latencies.extend(other.latencies)
        self.duplicate_orders += other.duplicate_orders
        self.fence_rejections += other.fence_rejections
        self.lookups += other.lookups
        self.loads += other.loads
        self.phase_seconds.update(other.phase_seconds)
        self.busy_seconds += other.busy_seconds
        self.errors.update(other.errors)
        for key, text in other.examples.items():
            self.examples.setdefault(key, text)
        self.died.extend(other.died)
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
    return Shop(
        storage,
        backends.cache,
        backends.lock_for,
        payments,
        lock_timeout=settings.lock_timeout,
        hold_hook=hold_hook,
    )


# Seconds a buyer waits after a backend error before it tries again.
_ERROR_BACKOFF = 0.05


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
        try:
            _shop_once(shop, settings, out, lock, rng, hot, skus)
        except BackendError as exc:  # Redis or ZooKeeper down, a cache load timed out
            with lock:
                out.error(exc, "buyer")
            time.sleep(_ERROR_BACKOFF)
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
        with lock:
            out.latencies.append((wall, time.monotonic() - started))
            out.rejected[exc.reason] += 1
        return
    elapsed = time.monotonic() - started
    if order.status != "paid":  # settled by another execution (e.g. recovery) meanwhile
        with lock:
            out.rejected[order.status] += 1
        return
    # A client retrying the same checkout must get the same order back.
    duplicate = rng.random() < 0.1 and shop.checkout(user, key).order_id != order.order_id
    with lock:
        out.latencies.append((wall, elapsed))
        out.placed += 1
        out.duplicate_orders += duplicate


def work(settings: Settings, directory: Path, worker: int, namespace: str, buyers: int) -> Summary:
    """One process's share of the load; returns its summary.

    A backend that is down when the worker starts is retried until the end
    of the load (the parent checked it just before); then the error is raised.
    """
    deadline = time.monotonic() + settings.duration
    while True:
        try:
            backends = settings.backends(namespace, worker)
            break
        except BackendUnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_ERROR_BACKOFF * 4)
    try:
        hold = settings.hold_seconds
        shop = build_shop(
            directory, settings, backends, worker, (lambda _: time.sleep(hold)) if hold else None
        )
        out, lock = Summary(), threading.Lock()
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
        out.lookups, out.loads = shop.lookups, shop.loads
        for key, n in shop.errors.items():
            out.errors[key] += n
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
    namespace: str,
    buyers: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    try:
        conn.send(("ok", work(settings, directory, worker, namespace, buyers)))
    except (BackendError, ConfigurationError) as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass
class Worker:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class ShopRun:
    """One run of the simulation: prepare, start the workers, wait for them, sweep, audit.

    ``run()`` is ``start()`` then ``wait()``; fault schedules call them
    apart and reach the worker processes through :attr:`workers` meanwhile.

    Raises:
        BackendUnavailableError: (from `start`) the lock backend does not answer.
        ConfigurationError: (from `start`) bad settings or a wrong kind of backend.
    """

    def __init__(self, settings: Settings, directory: Path) -> None:
        if settings.workers > 1 and settings.backend == "memory":
            raise ConfigurationError(
                f"workers={settings.workers} needs a shared lock backend: give --redis, "
                "--redis-cluster or --zookeeper (memory locks do not cross processes)"
            )
        self.settings = settings
        self.directory = directory
        self.workers: list[Worker] = []
        self.summary = Summary()
        self._exit = contextlib.ExitStack()
        self.storage: ShopStorage | None = None
        self.shop: Shop | None = None

    def start(self) -> None:
        settings = self.settings
        try:
            self._start(settings)
        except BaseException:
            self._exit.close()
            raise

    def _start(self, settings: Settings) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fresh = not (self.directory / "catalog.sqlite3").exists()
        if settings.backend == "memory":
            # Memory locks start their tokens anew in each process: with this
            # directory to ourselves no older claim can be alive, so the
            # stored fences may start anew too.
            self._exit.enter_context(_exclusive(self.directory))
        storage = prepare(self.directory, settings)
        self.storage = storage
        namespace = storage.catalog.shop_id
        backends = settings.backends(namespace)  # fails fast on a dead or wrong backend
        self._exit.callback(backends.close)
        self.shop = build_shop(self.directory, settings, backends, worker=-1)
        if not fresh:
            if settings.backend == "memory":
                storage.catalog.reset_fences()
            self.summary.catalog = "reused (stock, fences and orders carried over)"
            swept = self.shop.recover()
            self.summary.recovery.append(f"before the run: {swept}")
            self.summary.units_swept += swept.units_returned
        share = [
            settings.buyers // settings.workers + (i < settings.buyers % settings.workers)
            for i in range(settings.workers)
        ]
        self.namespace = namespace
        if settings.workers == 1:
            self._share = share
            return
        ctx = multiprocessing.get_context("spawn")
        for i, n in enumerate(share):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(settings, self.directory, i, namespace, n, send),
                name=f"shop-worker-{i}",
            )
            proc.start()
            send.close()
            self.workers.append(Worker(i, proc, receive))

    def wait(self) -> tuple[ShopStorage, Summary]:
        """Wait for the load to end, sweep what is left reserved and return the results."""
        assert self.storage is not None and self.shop is not None, "start() first"
        try:
            if not self.workers:
                self.summary.add(
                    work(self.settings, self.directory, 0, self.namespace, self._share[0])
                )
            else:
                self._collect()
            swept = self._sweep()
            self.summary.recovery.append(f"after the run: {swept}")
            self.summary.units_swept += swept.units_returned
        finally:
            self._exit.close()
        for key, n in self.shop.errors.items():
            self.summary.errors[key] += n
        return self.storage, self.summary

    def _collect(self) -> None:
        deadline = time.monotonic() + self.settings.duration + self.settings.grace
        pending = {w.conn: w for w in self.workers}
        while pending:
            ready = multiprocessing.connection.wait(
                list(pending), timeout=max(0.0, deadline - time.monotonic())
            )
            if not ready:
                for w in pending.values():
                    w.process.kill()
                    w.process.join()
                    self.summary.died.append(
                        f"worker {w.index} (pid {w.pid}) did not finish within "
                        f"{self.settings.grace:g}s after the load: killed"
                    )
                break
            for conn in ready:
                w = pending.pop(conn)  # type: ignore[call-overload]
                try:
                    status, payload = w.conn.recv()
                except EOFError:
                    w.process.join(10)
                    self.summary.died.append(
                        f"worker {w.index} (pid {w.pid}) died: {_exit_reason(w.process.exitcode)}"
                    )
                    continue
                w.process.join(10)
                if status == "ok":
                    self.summary.add(payload)
                else:
                    self.summary.died.append(f"worker {w.index} could not run: {payload}")
        for w in self.workers:
            w.conn.close()

    def _sweep(self) -> Recovery:
        assert self.shop is not None
        # Nothing is in flight any more: every order still reserved is stale.
        # A backend still down leaves some for the next run's sweep.
        total = Recovery()
        for attempt in range(3):
            swept = self.shop.recover()
            total.completed += swept.completed
            total.released += swept.released
            total.units_returned += swept.units_returned
            total.left_reserved = swept.left_reserved
            if not swept.left_reserved or attempt == 2:
                break
            time.sleep(1.0)
        return total


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    with open(directory / ".memory-run.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigurationError(
                f"data directory {str(directory)!r} is in use by another memory-lock run; "
                "memory locks do not cross processes (use --redis or --zookeeper)"
            ) from None
        yield


def run(settings: Settings, directory: Path) -> tuple[ShopStorage, Summary]:
    """Prepare the shop in *directory*, run the load, sweep, return the storage and the summary."""
    shop_run = ShopRun(settings, directory)
    shop_run.start()
    return shop_run.wait()


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="scalekit-shop-")
