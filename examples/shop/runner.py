"""Running the simulation: the worker processes, dead-worker detection and the sweeps.

``run()`` prepares the shop, starts one process per worker (or runs the
buyers in this process for one worker), and collects each worker's summary
over a pipe of its own. A worker that dies (``kill -9``) closes its pipe
and is reported at once; the others finish. One that has not finished
``grace`` seconds after the load is killed and reported. Then a recovery
sweep settles what is left ``reserved``.

Ctrl-C (SIGINT) at any moment of `run()`, workers starting included, ends
the load early: the parent owns it from before the first worker starts,
each worker is started with SIGINT ignored until its own handler is in
place (a shared event carries an interrupt it missed), buyers end their
current step, and the sweep and the report follow.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalekit import BackendError, ConfigurationError

from . import datadir, resharding
from .resharding import ShardAdder
from .service import Recovery, Shop
from .simulation import STOP, Settings, Summary, build_shop, prepare, work
from .storage import ShopStorage

if TYPE_CHECKING:
    from .metrics import ShopMetrics


def _worker_main(
    settings: Settings,
    directory: Path,
    worker: int,
    namespace: str,
    buyers: int,
    conn: multiprocessing.connection.Connection,
    load_started: Any = None,
    stopped: Any = None,
) -> None:
    # The parent starts this process with SIGINT ignored (and blocked, where
    # the start keeps the parent's signal mask), so a Ctrl-C while it starts
    # (imports, unpickling) is not a KeyboardInterrupt traceback. From here
    # Ctrl-C (to the process group, or forwarded by the parent) stops this
    # worker's buyers: one held pending meanwhile is delivered by the
    # unblock, one ignored meanwhile is read from *stopped*, which the
    # parent sets before it forwards. The summary still goes back.
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if stopped is not None and stopped.is_set():
        STOP.set()
    try:
        summary = work(settings, directory, worker, namespace, buyers, None, load_started)
        conn.send(("ok", summary))
    except (BackendError, ConfigurationError) as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Start processes in the block with SIGINT ignored, which they keep through exec.

    A spawned Python keeps an ignored SIGINT instead of installing its
    `KeyboardInterrupt` handler, so a worker is deaf to Ctrl-C until
    `_worker_main` installs its own. Meanwhile this thread blocks SIGINT:
    one that arrives is held pending (a blocked signal is not discarded)
    and reaches the parent's handler when the block ends. (A SIGINT the
    kernel hands to another thread of this process in those milliseconds
    is lost; the parent's own threads are the backends' helpers.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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
    apart and reach the worker processes through `workers` meanwhile.

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
        self.metrics: ShopMetrics | None = None  # one worker only: it runs in this process
        self.workers: list[Worker] = []
        self.summary = Summary()
        self._exit = contextlib.ExitStack()
        self.storage: ShopStorage | None = None
        self.shop: Shop | None = None
        self._load_started: Any = threading.Event()  # set by the first worker whose load begins
        self._stopped: Any = threading.Event()  # set on Ctrl-C; workers read it as they start
        self._owning_ctrl_c = False

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
            # Memory locks do not cross processes: this run needs the
            # directory to itself, for its whole length (datadir.py).
            self._exit.enter_context(datadir.alone(self.directory, "a memory-lock run"))
        _check_shards(self.directory, settings)
        storage = prepare(self.directory, settings)
        self.storage = storage
        namespace = storage.catalog.shop_id
        backends = settings.backends(namespace)  # fails fast on a dead or wrong backend
        self._exit.callback(backends.close)
        if self.metrics is not None:
            self.metrics.watch_caches(backends)
        # Memory tokens start at 1 in each run; another backend's are not comparable.
        source = settings.fence_source()
        if backends.backend_id:  # a wiped ZooKeeper at the same address is another backend
            source = f"{source}:{backends.backend_id}"
        if settings.backend == "memory":
            source = f"memory:{uuid.uuid4().hex}"
        reset = storage.catalog.adopt_fences(source)
        self.shop = build_shop(self.directory, settings, backends, worker=-1)
        if not fresh:
            self.summary.catalog = "reused (stock, fences and orders carried over)"
            if reset:
                self.summary.catalog = (
                    f"reused (stock and orders carried over; fences reset for {settings.backend} "
                    "tokens)"
                )
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
        self._load_started = ctx.Event()
        stopped = ctx.Event()
        if self._stopped.is_set():
            stopped.set()
        self._stopped = stopped
        for i, n in enumerate(share):
            if STOP.is_set():  # Ctrl-C while the others started: no more
                break
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(settings, self.directory, i, namespace, n, send, self._load_started, stopped),
                name=f"shop-worker-{i}",
            )
            with _sigint_ignored_by_children():
                proc.start()
            send.close()
            self.workers.append(Worker(i, proc, receive))

    def wait(self) -> tuple[ShopStorage, Summary]:
        """Wait for the load to end, sweep what is left reserved and return the results.

        Ctrl-C (SIGINT) during the load stops it: every buyer ends after its
        current step, the workers report, the sweep runs, and
        ``summary.interrupted`` says so.
        """
        assert self.storage is not None and self.shop is not None, "start() first"
        with self.ctrl_c():
            return self._wait()

    @contextlib.contextmanager
    def ctrl_c(self) -> Iterator[None]:
        """Own SIGINT while in the block (main thread only; re-entrant): it stops the load.

        `run()` holds it over `start` and `wait`, so a Ctrl-C while the
        shop is prepared or the workers start is an interrupted run with
        its sweep and report, never a `KeyboardInterrupt`.
        """
        if self._owning_ctrl_c or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._interrupt)
        self._owning_ctrl_c = True
        try:
            yield
        finally:
            if previous is not None:  # None: a handler not set from Python, left alone
                signal.signal(signal.SIGINT, previous)
            self._owning_ctrl_c = False
            STOP.clear()

    def _interrupt(self, signum: int, frame: Any) -> None:
        self.summary.interrupted = True
        STOP.set()
        self._stopped.set()  # before the signals: a worker still starting reads it
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGINT)

    def _wait(self) -> tuple[ShopStorage, Summary]:
        assert self.storage is not None and self.shop is not None
        adder = None
        if self.settings.add_shard_at is not None:
            assert self.shop.storage.migration is not None
            adder = ShardAdder(
                self.shop.storage.migration, self.settings.add_shard_at, self._load_started
            )
            if self.metrics is not None:
                self.metrics.watch_migration(self.shop.storage.migration)
            adder.start()
        try:
            if self.settings.workers == 1:
                self.summary.add(
                    work(
                        self.settings,
                        self.directory,
                        0,
                        self.namespace,
                        self._share[0],
                        self.metrics,
                        self._load_started,
                    )
                )
            else:
                self._collect()
            if adder is not None:
                adder.join(self.settings.grace)
                self.summary.resharding = adder.describe()
                self.summary.resharding_window = adder.window
                if adder.error is not None or adder.is_alive():
                    self.summary.died.append(self.summary.resharding)
            swept = self._sweep()
            self.summary.recovery.append(f"after the run: {swept}")
            self.summary.units_swept += swept.units_returned
            self.summary.left_reserved = swept.left_reserved
        finally:
            self._exit.close()
        for key, n in self.shop.errors.items():
            self.summary.errors[key] += n
        return self.storage, self.summary

    def _collect(self) -> None:
        deadline = time.monotonic() + self.settings.duration + self.settings.grace
        pending = {w.conn: w for w in self.workers}
        while pending:
            if STOP.is_set():  # interrupted: the buyers end their step, then report
                deadline = min(deadline, time.monotonic() + self.settings.grace)
            ready = multiprocessing.connection.wait(
                list(pending), timeout=min(0.2, max(0.0, deadline - time.monotonic()))
            )
            if not ready and time.monotonic() < deadline:
                continue
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

    def _still_reserved(self) -> int:
        assert self.storage is not None
        try:
            return len(self.storage.reserved_orders(float("inf")))
        except sqlite3.OperationalError:
            return 1  # unknown, but not none

    def _sweep(self) -> Recovery:
        assert self.shop is not None
        # Nothing is in flight any more: every order still reserved is stale.
        # A backend still down leaves some for the next run's sweep.
        total = Recovery()
        for attempt in range(3):
            try:
                swept = self.shop.recover()
            except (BackendError, sqlite3.OperationalError) as exc:  # a lock held, a disk full
                self.shop.note(exc, "recovery")
                swept = Recovery(left_reserved=self._still_reserved())
            total.completed += swept.completed
            total.released += swept.released
            total.units_returned += swept.units_returned
            total.left_reserved = swept.left_reserved
            if not swept.left_reserved or attempt == 2:
                break
            time.sleep(1.0)
        return total


def _check_shards(directory: Path, settings: Settings) -> None:
    """Refuse a --shards (and --add-shard-at) that would route users away from their rows.

    Users are placed by jump hash over the shard count: another count would
    route existing users to shards that do not hold their orders (fewer
    shards than asked, all empty, are a first setup stopped midway: the
    rest are made). A shard being added that a stopped run did not finish (its migration recorded
    ``planned`` or ``forward``) is served only by the migration's router:
    only ``--shards N-1 --add-shard-at`` carries it on.
    """
    found = 0
    while (directory / f"shard{found}.sqlite3").exists():
        found += 1
    if not found:
        return
    phase = resharding.recorded_phase(directory, found)
    adding = settings.add_shard_at is not None
    if phase in ("planned", "forward"):
        if adding and found == settings.shards + 1:
            return  # resharding.plan carries the move on
        given = f"--shards {settings.shards}" + (" --add-shard-at" if adding else "")
        raise ConfigurationError(
            f"{given}: data directory {str(directory)!r} has a shard being added that a "
            f"stopped run left {phase} (migration {resharding.MIGRATION!r} is not finished: "
            f"some users are on shard{found - 1}, some not yet); give --shards {found - 1} "
            f"--add-shard-at 0 to finish the move, then --shards {found}"
        )
    if phase is not None and adding and found == settings.shards:
        raise ConfigurationError(
            f"--add-shard-at: data directory {str(directory)!r} has grown to {found} shards "
            f"already (migration {resharding.MIGRATION!r} is {phase}), and the shop adds "
            f"one shard to a data directory once: give --shards {found} without --add-shard-at"
        )
    if found == settings.shards:
        return
    if adding and found == settings.shards + 1:
        return  # a shard added already: resharding.plan says so
    if (
        phase is None
        and found < settings.shards
        and not any(_holds_rows(directory / f"shard{i}.sqlite3") for i in range(found))
    ):
        return  # a first setup stopped between shards: no user to route away, make the rest
    raise ConfigurationError(
        f"--shards {settings.shards}: data directory {str(directory)!r} has {found} shards "
        f"(shard0..shard{found - 1}); give --shards {found}"
    )


def _holds_rows(path: Path) -> bool:
    """True if the shard at *path* holds a user, a cart, a checkout or an order."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name in ("users", "carts", "checkouts") or name.startswith("orders_")
        ]
        return any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in tables)
    finally:
        conn.close()


def run(
    settings: Settings, directory: Path, metrics: ShopMetrics | None = None
) -> tuple[ShopStorage, Summary]:
    """Prepare the shop in *directory*, run the load, sweep, return the storage and the summary.

    With *metrics* (one worker only), the buyers report to it.
    """
    shop_run = ShopRun(settings, directory)
    shop_run.metrics = metrics
    with shop_run.ctrl_c():
        shop_run.start()
        return shop_run.wait()
