"""Seeded, randomized fault schedules for the shop, run on real servers.

One schedule, drawn from its seed, puts each of these faults at a random
moment of the load, on a random worker process:

* ``kill``: ``kill -9`` of a worker (its orders in flight stay ``reserved``
  until the recovery sweep);
* ``restart``: a restart of the shared Redis, which runs with
  ``appendonly yes`` so its fencing-token counters survive;
* ``sigstop``: SIGSTOP of a worker for longer than the lock ttl, then
  SIGCONT (its leases expire while it is frozen; the fence refuses its
  late writes);
* ``blackhole``: a partition between one worker and Redis (a
  `scalekit.testing.TCPProxy` in blackhole mode), then healed.

After the load, the run's recovery sweep and the audit: every schedule
must end with the audit exact and nothing oversold.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scalekit.testing import RedisServer, TCPProxy

from .audit import Audit, audit, oversold
from .runner import ShopRun
from .simulation import Settings, Summary
from .storage import ShopStorage

KINDS = ("kill", "restart", "sigstop", "blackhole")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the first order
    kind: str
    worker: int
    seconds: float  # how long a pause or a partition lasts

    def __str__(self) -> str:
        where = "redis" if self.kind == "restart" else f"worker {self.worker}"
        held = f" for {self.seconds:.1f}s" if self.kind in ("sigstop", "blackhole") else ""
        return f"{self.at:.1f}s {self.kind} {where}{held}"


@dataclass
class Outcome:
    seed: int
    faults: list[Fault]
    storage: ShopStorage
    summary: Summary
    audit: Audit
    oversold: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What went wrong: the audit, an oversell, a run that sold nothing, a death not planned.

        The one death a schedule plans is its ``kill`` of one worker; any
        other (a buyer's, a worker's that hung or crashed) is a problem.
        """
        found = [f"audit: {p}" for p in self.audit.problems]
        if self.oversold:
            found.append(f"oversold {self.oversold}")
        if self.summary.placed == 0:
            found.append("no order was placed")
        found += [note for note in self.notes if note.startswith("no order within")]
        planned = {f"worker {f.worker} (pid" for f in self.faults if f.kind == "kill"}
        for line in self.summary.died:
            if not (line.startswith(tuple(planned)) and line.endswith("killed by SIGKILL")):
                found.append(f"unplanned death: {line}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems


def fault_settings(
    seed: int, redis_url: str, *, workers: int = 3, duration: float = 6.0
) -> Settings:
    """Settings for a schedule: short leases, so a SIGSTOP outlives one."""
    return Settings(
        buyers=4 * workers,
        duration=duration,
        workers=workers,
        shards=2,
        # Enough hot stock to last the load, and payments slow enough that
        # orders hold stock for a while: a kill, a pause or a partition then
        # lands on held units, which the sweep must give back.
        hot_stock=2_000,
        gateway_latency=0.02,
        cold_skus=10,
        cold_stock=1_000,
        failing_gateway_rate=0.2,
        seed=seed,
        lock_ttl=1.0,
        lock_timeout=2.0,
        grace=30.0,
        hold_seconds=0.01,
        redis=redis_url,
    )


def draw(seed: int, settings: Settings) -> list[Fault]:
    """Each kind of fault once, in a random order at random times, on random workers.

    The killed worker is never the one paused or partitioned (with 2 or more
    workers), so every fault hits a live process.
    """
    rng = random.Random(seed)
    span = settings.duration * 0.7
    workers = list(range(settings.workers))
    rng.shuffle(workers)
    victim, others = workers[0], workers[1:] or workers
    faults = [
        Fault(
            at=round(rng.uniform(0.1, 1.0) * span, 2),
            kind=kind,
            worker=victim if kind == "kill" else rng.choice(others),
            seconds=round(settings.lock_ttl * rng.uniform(1.3, 2.0), 2),
        )
        for kind in KINDS
    ]
    return sorted(faults, key=lambda f: f.at)


def run_schedule(
    seed: int,
    directory: Path,
    redis: RedisServer,
    *,
    workers: int = 3,
    duration: float = 6.0,
) -> Outcome:
    """Run the shop on *redis* (``appendonly=True``) under the fault schedule of *seed*."""
    if not redis.appendonly:
        raise ValueError(
            "run_schedule needs a RedisServer(appendonly=True): a restart must keep "
            "the fencing-token counters"
        )
    proxies = [TCPProxy(redis.host, redis.port) for _ in range(workers)]
    settings = fault_settings(seed, redis.url, workers=workers, duration=duration)
    settings.worker_redis = {i: f"redis://{p.host}:{p.port}/0" for i, p in enumerate(proxies)}
    faults = draw(seed, settings)
    notes: list[str] = []
    started = time.monotonic()
    shop_run = ShopRun(settings, directory)
    try:
        shop_run.start()
        assert shop_run.storage is not None
        catalog = shop_run.storage.catalog
        # The fault clock starts with the first order, once the workers are up.
        limit = time.monotonic() + 60
        while not catalog.db.connection().execute("SELECT 1 FROM reservations LIMIT 1").fetchone():
            if time.monotonic() > limit:
                notes.append("no order within 60s of the start")
                break
            time.sleep(0.02)
        t0 = time.monotonic()
        helpers: list[threading.Thread] = []
        for fault in faults:
            time.sleep(max(0.0, t0 + fault.at - time.monotonic()))
            helper = _apply(fault, shop_run, redis, proxies, notes)
            if helper is not None:
                helpers.append(helper)
        for helper in helpers:
            helper.join()
        storage, summary = shop_run.wait()
    finally:
        for proxy in proxies:
            proxy.close()
    return Outcome(
        seed,
        faults,
        storage,
        summary,
        audit(storage),
        oversold(storage),
        time.monotonic() - started,
        notes,
    )


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _apply(
    fault: Fault, shop_run: ShopRun, redis: RedisServer, proxies: list[TCPProxy], notes: list[str]
) -> threading.Thread | None:
    worker = shop_run.workers[fault.worker]
    if fault.kind == "restart":
        redis.restart()
        return None
    if fault.kind == "kill":
        if not _signal(worker.pid, signal.SIGKILL):
            notes.append(f"worker {fault.worker} had exited before the kill")
        return None

    def hold() -> None:
        if fault.kind == "sigstop":
            if _signal(worker.pid, signal.SIGSTOP):
                time.sleep(fault.seconds)
                _signal(worker.pid, signal.SIGCONT)
        else:
            proxies[fault.worker].blackhole()
            time.sleep(fault.seconds)
            proxies[fault.worker].pass_through()

    helper = threading.Thread(target=hold, name=f"fault-{fault.kind}")
    helper.start()
    return helper
