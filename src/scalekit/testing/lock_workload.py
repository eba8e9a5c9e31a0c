"""Randomized fault schedules for the locks: worker processes, a nemesis, a checker.

[run_schedule][scalekit.testing.lock_workload.run_schedule] starts real
servers, at least four worker processes that contend for one lock and do
fenced increments through a
[RedisFencedStore][scalekit.locking.fencing.RedisFencedStore] on a separate
Redis, and a seeded [Nemesis][scalekit.testing.nemesis.Nemesis] that
SIGSTOPs and SIGKILLs holders and waiters, crash-restarts AOF-backed Redis
servers, blackholes, delays and resets the TCP proxies in front of them,
makes a Redis server answer error replies (`OOM` through
`CONFIG SET maxmemory`, `READONLY` through `REPLICAOF`, `BUSY` while a
script runs), kills the ZooKeeper leader, cuts a ZooKeeper follower from
its leader (a TCPProxy on every link between members), blackholes or
delays the proxy between the clients and a ZooKeeper member, and expires a
holder's session. About a third of the faults start while another one is
still active (two Redlock masters down at once, a fault during a
SIGSTOP). Every worker writes its history (see
`scalekit.testing.history`); the parent merges the histories and runs
[check_lock_history][scalekit.testing.lock_checker.check_lock_history].

Backends: `redis` (RedisLock), `async-redis` (AsyncRedisLock), `redlock`
(Redlock over 3 servers), `zookeeper` (ZooKeeperLock on a 3-node
ensemble) and `zookeeper-standalone` (on one ZooKeeper server). A worker
is this module run as a script: `python -m scalekit.testing.lock_workload '<json config>'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError, InvalidStateError
from .history import Event, HistoryRecorder, read_history
from .lock_checker import CheckBounds, CheckReport, check_lock_history
from .nemesis import Fault, Nemesis, make_schedule
from .process import find_free_port

__all__ = ["BACKENDS", "FAULTS", "OVERLAP", "Settings", "SoakResult", "run_schedule"]

BACKENDS = ("redis", "async-redis", "redlock", "zookeeper", "zookeeper-standalone")

_PROCESS_FAULTS = ("pause-holder", "kill-holder", "kill-waiter")
_REDIS_FAULTS = (
    *_PROCESS_FAULTS,
    "restart",
    "blackhole",
    "delay",
    "reset",
    "oom",
    "readonly",
    "busy",
)
_FAULTS = {
    "redis": _REDIS_FAULTS,
    "async-redis": _REDIS_FAULTS,
    "redlock": (*_REDIS_FAULTS, "clock-slow"),
    "zookeeper": (
        *_PROCESS_FAULTS,
        "kill-leader",
        "expire-session",
        "partition-follower",
        "blackhole",
        "delay",
    ),
    "zookeeper-standalone": (*_PROCESS_FAULTS, "expire-session", "blackhole", "delay"),
}
FAULTS = _FAULTS
"""The fault kinds the nemesis draws from, per backend."""

OVERLAP = 0.3
"""The chance that a fault starts while the one before it is still active."""

# A script running longer than this makes the server answer BUSY to everyone else.
_BUSY_AFTER_MS = 100


@dataclass(frozen=True)
class Settings:
    """The locks' parameters in a run, and the bounds they imply.

    Attributes:
        ttl: the lease ttl of the Redis locks.
        op_timeout: RedisLock's and ZooKeeperLock's per-call bound.
        instance_timeout: Redlock's per-master bound.
        session_timeout: the ZooKeeper session timeout asked for.
        acquire_timeout: `acquire(timeout=...)` of every worker.
        margin: slack on every bound, for a loaded machine.
        tick_time: the ZooKeeper ensemble's tick, in seconds.
    """

    ttl: float = 1.0
    op_timeout: float = 0.5
    instance_timeout: float = 0.1
    session_timeout: float = 2.0
    acquire_timeout: float = 2.0
    margin: float = 0.25
    tick_time: float = 0.5

    def lease_time(self, backend: str) -> float:
        """How long a lease outlives its holder: the ttl, or the session timeout."""
        return self.session_timeout if backend.startswith("zookeeper") else self.ttl

    def call_bounds(self, backend: str) -> dict[str, float]:
        """The documented bound of each call a worker makes, in seconds.

        As docs/locking.md states them: `acquire(timeout=T)` returns or
        raises within `T + 0.1`; a release within `op_timeout + 0.1`
        (Redlock: one round over its masters, `N * instance_timeout + 0.1`);
        a fenced-store call within its `op_timeout`.
        """
        slack = 0.1
        if backend == "redlock":
            release = 3 * self.instance_timeout + slack
        else:
            release = self.op_timeout + slack
        return {
            "acquire": self.acquire_timeout + slack,
            "release": release,
            "store": self.op_timeout,
        }

    def check_bounds(self, backend: str) -> CheckBounds:
        """What the checker holds a run of *backend* to.

        A dead holder's lease outlives it by the ttl; a ZooKeeper session by
        its timeout plus one tick (the server expires sessions in ticks of
        `tick_time`, 500 ms in `ZooKeeperEnsemble`).
        """
        lease = self.lease_time(backend)
        if backend.startswith("zookeeper"):
            lease += self.tick_time
        return CheckBounds(
            notice=0.0,
            recovery=lease + self.margin,
            margin=self.margin,
            expiry_notice=self.session_timeout if backend.startswith("zookeeper") else 0.0,
        )


@dataclass
class SoakResult:
    """The outcome of one schedule: its seed, the faults, the history, the checker's report."""

    backend: str
    seed: int
    seconds: float
    schedule: list[Fault]
    events: list[Event]
    report: CheckReport
    took: float
    nemesis_errors: list[str] = field(default_factory=list)
    kept: Path | None = None
    """Where the run's histories and logs are (None once removed: a passing run without `keep`)."""

    def summary(self) -> str:
        s = self.report.stats
        return (
            f"backend={self.backend} seed={self.seed} faults={len(self.schedule)} "
            f"leases={int(s.get('leases', 0))} writes={int(s.get('writes_ok', 0))} "
            f"refused={int(s.get('writes_refused', 0))} final={int(s.get('final_value', 0))} "
            f"took={self.took:.1f}s {'OK' if self.report.ok else 'VIOLATIONS'}"
        )


# -- the worker ---------------------------------------------------------------------------


class _Clock:
    """The worker's lock clock: `time.monotonic()` at a rate the nemesis may change.

    The nemesis writes the rate to the worker's clock file and sends
    SIGUSR2 (`clock-slow`); the clock goes on from where it was, so it
    never goes back.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.rate = 1.0
        self._true = time.monotonic()
        self._read = self._true

    def __call__(self) -> float:
        return self._read + (time.monotonic() - self._true) * self.rate

    def reload(self, *_args: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            rate = float(self.path.read_text())
            now = time.monotonic()
            self._read, self._true = self._read + (now - self._true) * self.rate, now
            self.rate = rate

    def true_time(self, reading: float | None) -> float | None:
        """The monotonic time at which this clock will read *reading*, at its current rate."""
        if reading is None:
            return None
        return time.monotonic() + (reading - self()) / self.rate


def _probe_script() -> str:
    return (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('PTTL', KEYS[1]) else return -3 end"
    )


class _Worker:
    """One contending client: acquire, fenced read, fenced write, release, in a loop."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import redis

        from ..locking.fencing import RedisFencedStore

        self.cfg = cfg
        self.rec = HistoryRecorder(cfg["history"], cfg["process"])
        self.rng = random.Random(cfg["seed"])
        self.stop_path = Path(cfg["stop"])
        self.bounds = cfg["bounds"]
        self.store_client = redis.Redis.from_url(cfg["store"], socket_timeout=2)
        self.store = RedisFencedStore(
            self.store_client, namespace=cfg["namespace"], op_timeout=cfg["op_timeout"]
        )
        self.probes = [
            redis.Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)
            for url in cfg.get("probe", [])
        ]
        self.session = ""
        self.zk_client: Any = None
        self.clock = _Clock(cfg["clock"])
        signal.signal(signal.SIGUSR2, self.clock.reload)

    def notice(self, lease: Any) -> None:
        self.rec.info("notice", token=lease.token)

    def validity(self, lease: Any) -> dict[str, Any]:
        """The expiry the lock servers report for *lease*, as ms after `validity_at`."""
        if not self.probes:
            return {}
        ends = []
        for client in self.probes:
            try:
                pttl = int(client.eval(_probe_script(), 1, self.cfg["lock_key"], lease.owner))
            except Exception:
                continue
            if pttl >= 0:
                ends.append(time.monotonic() + pttl / 1000)
        quorum = len(self.probes) // 2 + 1
        if len(ends) < quorum:
            return {}
        # The lease holds while a majority holds the key: the quorum-th latest expiry.
        end = sorted(ends, reverse=True)[quorum - 1]
        at = time.monotonic()
        return {"validity_ms": (end - at) * 1000 + 1, "validity_at": at}

    def advertise(self, lease: Any) -> None:
        with contextlib.suppress(Exception):
            self.store_client.set(
                self.cfg["namespace"] + "holder",
                f"{self.cfg['process']} {os.getpid()} {self.member()} {self.session}",
                px=int(self.cfg["lease_time"] * 3000),
            )

    def member(self) -> int:
        """The index of the server (proxy) the ZooKeeper client is connected through, or -1."""
        with contextlib.suppress(Exception):
            port = self.zk_client._connection._socket.getpeername()[1]
            return list(self.cfg["lock_ports"]).index(port)
        return -1

    def checked(self, lease: Any) -> dict[str, Any]:
        at = time.monotonic()
        return {"checked": at, "lost": bool(lease.lost.is_set())}

    def store_step(self, lease: Any, do: Callable[..., Any], *args: Any) -> tuple[str, Any]:
        from ..exceptions import BackendUnavailableError, StaleTokenError

        try:
            return "ok", do(*args)
        except StaleTokenError:
            return "fail", "StaleTokenError"
        except BackendUnavailableError as exc:
            return "info", type(exc).__name__

    def rmw_sync(self, lease: Any) -> None:
        key, token, bound = "counter", lease.token, self.bounds["store"]
        self.rec.invoke("read", token=token, bound=bound, **self.checked(lease))
        outcome, got = self.store_step(lease, self.store.read, key, lease)
        if outcome != "ok":
            self.rec.record(outcome, "read", token=token, error=got)
            return
        value = int(got or 0)
        self.rec.ok("read", token=token, value=value)
        time.sleep(self.rng.uniform(0, 0.02))  # a critical section the nemesis can hit
        self.rec.invoke("write", token=token, value=value + 1, bound=bound, **self.checked(lease))
        outcome, got = self.store_step(lease, self.store.write, key, value + 1, lease)
        if outcome == "ok":
            self.rec.ok("write", token=token, value=value + 1)
        else:
            self.rec.record(outcome, "write", token=token, value=value + 1, error=got)

    def stopping(self) -> bool:
        return self.stop_path.exists()


def _make_sync_lock(cfg: dict[str, Any], worker: _Worker) -> Any:
    backend = cfg["backend"]
    if backend == "redis":
        import redis

        from ..locking.redis_lock import RedisLock

        return RedisLock(
            redis.Redis.from_url(cfg["lock"][0]),
            cfg["name"],
            ttl=cfg["ttl"],
            op_timeout=cfg["op_timeout"],
            on_lost=worker.notice,
        )
    if backend == "redlock":
        import redis

        from ..locking.redlock import Redlock

        return Redlock(
            [redis.Redis.from_url(url) for url in cfg["lock"]],
            cfg["name"],
            ttl=cfg["ttl"],
            instance_timeout=cfg["instance_timeout"],
            rng=random.Random(cfg["seed"]),
            on_lost=worker.notice,
            clock=worker.clock,
        )
    from kazoo.client import KazooClient

    from ..locking.zookeeper_lock import ZooKeeperLock

    # Each worker starts on its own member (then tries the others in order), so
    # the workers spread over the ensemble and a fault on one member hits some.
    hosts = cfg["lock"][0].split(",")
    first = int(cfg["process"][1:]) % len(hosts)
    client = KazooClient(
        hosts=",".join(hosts[first:] + hosts[:first]),
        timeout=cfg["session_timeout"],
        randomize_hosts=False,
    )
    client.start(timeout=30)
    worker.zk_client = client

    def remember_session(_state: Any = None) -> None:
        with contextlib.suppress(Exception):
            sid, password = client.client_id
            worker.session = f"{sid} {password.hex()}"

    remember_session()
    client.add_listener(remember_session)
    return ZooKeeperLock(
        client, "/" + cfg["name"], op_timeout=cfg["op_timeout"], on_lost=worker.notice
    )


def _run_sync(cfg: dict[str, Any]) -> None:
    from ..exceptions import BackendUnavailableError, LockError, LockLostError, LockTimeoutError

    worker = _Worker(cfg)
    lock = _make_sync_lock(cfg, worker)
    rec = worker.rec
    rec.info("start", pid=os.getpid())
    while not worker.stopping():
        if cfg["backend"].startswith("zookeeper"):
            with contextlib.suppress(Exception):
                sid, password = lock.client.client_id
                worker.session = f"{sid} {password.hex()}"
        rec.invoke("acquire", bound=worker.bounds["acquire"])
        try:
            lease = lock.acquire(timeout=cfg["acquire_timeout"])
        except LockTimeoutError:
            rec.fail("acquire", error="LockTimeoutError")
            continue
        except BackendUnavailableError as exc:
            rec.fail("acquire", error=type(exc).__name__)
            time.sleep(0.05)
            continue
        except Exception as exc:  # not an outcome acquire() documents: the checker flags it
            rec.fail("acquire", error=f"{type(exc).__name__}: {exc}", undocumented=True)
            time.sleep(0.05)
            continue
        assert lease is not None
        deadline = worker.clock.true_time(lease.deadline)  # as time.monotonic() reads it
        rec.ok("acquire", token=lease.token, deadline=deadline, **worker.validity(lease))
        worker.advertise(lease)
        worker.rmw_sync(lease)
        rec.invoke("release", token=lease.token, bound=worker.bounds["release"])
        try:
            lease.release()
            rec.ok("release", token=lease.token)
        except LockLostError:
            rec.fail("release", token=lease.token, error="LockLostError")
        except BackendUnavailableError as exc:
            rec.info("release", token=lease.token, error=type(exc).__name__)
        except LockError as exc:
            rec.fail("release", token=lease.token, error=type(exc).__name__)
        except Exception as exc:  # not an outcome release() documents: the checker flags it
            rec.fail(
                "release",
                token=lease.token,
                error=f"{type(exc).__name__}: {exc}",
                undocumented=True,
            )
    rec.info("stop")


async def _run_async(cfg: dict[str, Any]) -> None:
    import redis.asyncio

    from ..exceptions import BackendUnavailableError, LockError, LockLostError, LockTimeoutError
    from ..locking.async_redis_lock import AsyncRedisLock

    worker = _Worker(cfg)
    rec = worker.rec
    lock = AsyncRedisLock(
        redis.asyncio.Redis.from_url(cfg["lock"][0]),
        cfg["name"],
        ttl=cfg["ttl"],
        op_timeout=cfg["op_timeout"],
        on_lost=worker.notice,
    )
    rec.info("start", pid=os.getpid())
    while not worker.stopping():
        rec.invoke("acquire", bound=worker.bounds["acquire"])
        try:
            lease = await lock.acquire(timeout=cfg["acquire_timeout"])
        except LockTimeoutError:
            rec.fail("acquire", error="LockTimeoutError")
            continue
        except BackendUnavailableError as exc:
            rec.fail("acquire", error=type(exc).__name__)
            await asyncio.sleep(0.05)
            continue
        except Exception as exc:  # not an outcome acquire() documents: the checker flags it
            rec.fail("acquire", error=f"{type(exc).__name__}: {exc}", undocumented=True)
            await asyncio.sleep(0.05)
            continue
        assert lease is not None
        validity = await asyncio.to_thread(worker.validity, lease)
        rec.ok("acquire", token=lease.token, deadline=lease.deadline, **validity)
        worker.advertise(lease)
        # The store is synchronous: run it off the loop, so the loop keeps
        # delivering lost-lease notices on time.
        await asyncio.to_thread(worker.rmw_sync, lease)
        rec.invoke("release", token=lease.token, bound=worker.bounds["release"])
        try:
            await lease.release()
            rec.ok("release", token=lease.token)
        except LockLostError:
            rec.fail("release", token=lease.token, error="LockLostError")
        except BackendUnavailableError as exc:
            rec.info("release", token=lease.token, error=type(exc).__name__)
        except LockError as exc:
            rec.fail("release", token=lease.token, error=type(exc).__name__)
        except Exception as exc:  # not an outcome release() documents: the checker flags it
            rec.fail(
                "release",
                token=lease.token,
                error=f"{type(exc).__name__}: {exc}",
                undocumented=True,
            )
    rec.info("stop")


def worker_main(argv: list[str]) -> None:
    """Entry point of a worker process: `argv[0]` is its JSON configuration."""
    cfg = json.loads(argv[0])
    # A worker that hangs prints every thread's stack to its log on SIGUSR1.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if cfg["backend"] == "async-redis":
        asyncio.run(_run_async(cfg))
    else:
        _run_sync(cfg)


# -- the parent ---------------------------------------------------------------------------


class _Cluster:
    """The servers, proxies and worker processes of one run, and the faults on them."""

    def __init__(self, backend: str, settings: Settings, workdir: Path, seed: int) -> None:
        from .proxy import TCPProxy
        from .redis_servers import RedisServer

        self.backend = backend
        self.settings = settings
        self.workdir = workdir
        self.seed = seed
        self.name = f"soak-{backend}-{seed}"
        self.namespace = f"soak:{backend}:{seed}:"
        self.stop_path = workdir / "stop"
        self.servers: list[Any] = []
        self.proxies: list[Any] = []
        self.ensemble: Any = None
        self.store_server = RedisServer(appendonly=True, workdir=workdir / "store")
        self.store_server.start()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.next_id = 0
        # Targets a fault is applied to now (a process, a server, a proxy): an
        # overlapping fault picks another target, or none.
        self._claimed: set[str] = set()
        self._claim_lock = threading.Lock()
        if backend.startswith("zookeeper"):
            from .zookeeper_servers import ZooKeeperEnsemble, ZooKeeperServer

            self.ensemble = (
                ZooKeeperServer(workdir=workdir / "zk")
                if backend == "zookeeper-standalone"
                else ZooKeeperEnsemble(workdir=workdir / "zk", partitionable=True)
            )
            self.ensemble.start()
            members = getattr(self.ensemble, "members", [self.ensemble])
            # A proxy between the clients and each member.
            self.proxies = [TCPProxy(*m.address) for m in members]
            self.lock_targets = [",".join(f"{p.host}:{p.port}" for p in self.proxies)]
            self.probe: list[str] = []
            self.lock_key = ""
        else:
            count = 3 if backend == "redlock" else 1
            for i in range(count):
                server = RedisServer(
                    appendonly=True,
                    workdir=workdir / f"lock{i}",
                    extra_args=["--lua-time-limit", str(_BUSY_AFTER_MS)],
                )
                server.start()
                self.servers.append(server)
                self.proxies.append(TCPProxy(*server.address))
            self.lock_targets = [f"redis://{p.host}:{p.port}/0" for p in self.proxies]
            self.probe = [s.url for s in self.servers]
            prefix = "scalekit:redlock:" if backend == "redlock" else "scalekit:lock:"
            self.lock_key = f"{prefix}{{{self.name}}}"

    def spawn(self) -> str:
        process = f"w{self.next_id}"
        self.next_id += 1
        s = self.settings
        cfg = {
            "backend": self.backend,
            "process": process,
            "seed": self.seed * 1000 + self.next_id,
            "history": str(self.workdir / f"{process}.jsonl"),
            "stop": str(self.stop_path),
            "store": self.store_server.url,
            "namespace": self.namespace,
            "name": self.name,
            "lock": self.lock_targets,
            "probe": self.probe,
            "lock_key": self.lock_key,
            "lock_ports": [p.port for p in self.proxies],
            "clock": str(self.workdir / f"clock-{process}"),
            "ttl": s.ttl,
            "op_timeout": s.op_timeout,
            "instance_timeout": s.instance_timeout,
            "session_timeout": s.session_timeout,
            "acquire_timeout": s.acquire_timeout,
            "lease_time": s.lease_time(self.backend),
            "bounds": s.call_bounds(self.backend),
        }
        log = open(self.workdir / f"{process}.log", "ab")  # noqa: SIM115 - the child owns it
        self.children[process] = subprocess.Popen(
            [sys.executable, "-m", "scalekit.testing.lock_workload", json.dumps(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return process

    def alive(self) -> list[str]:
        return [p for p, c in self.children.items() if c.poll() is None]

    def started(self, process: str) -> bool:
        path = self.workdir / f"{process}.jsonl"
        return path.exists() and path.stat().st_size > 0

    def holder(self) -> tuple[str | None, list[str], int]:
        """The process that last announced it holds the lock, its session and member (ZooKeeper).

        The member is the index of the proxy its client is connected through, or -1.
        """
        raw = self.store_server.execute("GET", self.namespace + "holder").split(b"\r\n")
        if len(raw) < 2 or not raw[1]:
            return None, [], -1
        parts = raw[1].decode().split()
        process = parts[0]
        if process not in self.alive():
            return None, [], -1
        return process, parts[3:], int(parts[2])

    @contextlib.contextmanager
    def claim(self, *candidates: str) -> Iterator[str | None]:
        """The first candidate target no other active fault holds, held for the block."""
        with self._claim_lock:
            chosen = next((c for c in candidates if c not in self._claimed), None)
            if chosen is not None:
                self._claimed.add(chosen)
        try:
            yield chosen
        finally:
            if chosen is not None:
                with self._claim_lock:
                    self._claimed.discard(chosen)

    def pick(self, fault: Fault, holder: bool) -> list[str]:
        """Candidate processes for a fault: the holder, or the others from a seeded start."""
        found, _, _ = self.holder()
        alive = self.alive()
        if holder:
            return [] if found is None else [found]
        others = [p for p in alive if p != found]
        if not others:
            return []
        first = int(fault.pick * len(others))
        return others[first:] + others[:first]

    def indices(self, fault: Fault, count: int, prefer: int = -1) -> list[int]:
        """Candidate indices of a server or proxy: *prefer* first if given, else a seeded one."""
        first = prefer if 0 <= prefer < count else int(fault.pick * count)
        return [(first + i) % count for i in range(count)]

    def tolerated(self) -> bool:
        """Whether one lock server's fault is one the lock is documented to survive (Redlock)."""
        return self.backend == "redlock"

    # -- the faults ---------------------------------------------------------------------------
    def pause_holder(self, fault: Fault, rec: HistoryRecorder) -> None:
        with self.claim(*self.pick(fault, holder=True)) as target:
            if target is None:
                return
            child = self.children[target]
            rec.invoke("pause", target=target)
            child.send_signal(signal.SIGSTOP)
            try:
                time.sleep(fault.duration)
            finally:
                child.send_signal(signal.SIGCONT)
                rec.ok("pause", target=target)

    def kill(self, fault: Fault, rec: HistoryRecorder, holder: bool) -> None:
        with self.claim(*self.pick(fault, holder=holder)) as target:
            if target is None:
                return
            child = self.children[target]
            # Logged before the signal: the checker takes the process as dead from
            # this time on, and a nemesis descheduled between the two would
            # otherwise log the death late, so that a lease the dead process held
            # past its deadline was judged "told never".
            rec.info("kill", target=target, holder=holder)
            child.kill()
            child.wait()
        time.sleep(fault.duration)
        self.spawn()

    def restart(self, fault: Fault, rec: HistoryRecorder) -> None:
        candidates = [f"server:{i}" for i in self.indices(fault, len(self.servers))]
        with self.claim(*candidates) as claimed:
            if claimed is None:
                return
            server = self.servers[int(claimed.split(":")[1])]
            rec.invoke("restart", target=server.port, tolerated=self.tolerated())
            server.kill()  # a crash: appendfsync always keeps every acknowledged write
            time.sleep(fault.duration)
            server.start()
            rec.ok("restart", target=server.port)

    def error_replies(self, fault: Fault, rec: HistoryRecorder, how: str) -> None:
        """Make one lock server answer error replies for the fault's duration.

        `oom`: `maxmemory` 1 byte under `noeviction`, so every write a
        script makes is refused with `OOM` (reads, `DEL` and `PEXPIRE`
        still work). `readonly`: `REPLICAOF` a port nothing listens on, so
        the server refuses writes with `READONLY` and unblocks its `BLPOP`
        clients. `busy`: a script that spins for the duration, so every
        other command gets `BUSY` once it has run `_BUSY_AFTER_MS`.
        """
        candidates = [f"server:{i}" for i in self.indices(fault, len(self.servers))]
        with self.claim(*candidates) as claimed:
            if claimed is None:
                return
            server = self.servers[int(claimed.split(":")[1])]
            rec.invoke(how, target=server.port, tolerated=self.tolerated())
            try:
                if how == "oom":
                    server.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
                    server.execute("CONFIG", "SET", "maxmemory", "1")
                    time.sleep(fault.duration)
                elif how == "readonly":
                    nowhere = find_free_port()
                    server.execute("REPLICAOF", server.host, str(nowhere))
                    time.sleep(fault.duration)
                else:
                    spin = (
                        "local t = redis.call('TIME') "
                        "local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) "
                        "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop "
                        "return 1"
                    )
                    micros = int(fault.duration * 1_000_000)
                    server.execute("EVAL", spin, "0", str(micros), timeout=fault.duration + 5)
            finally:
                if how == "oom":
                    server.execute("CONFIG", "SET", "maxmemory", "0")
                elif how == "readonly":
                    server.execute("REPLICAOF", "NO", "ONE")
                rec.ok(how, target=server.port)

    def clock_slow(self, fault: Fault, rec: HistoryRecorder) -> None:
        """Slow a worker's lock clock (mostly the holder's) by half Redlock's drift allowance.

        Redlock subtracts `drift_factor` (1 %) of the ttl plus 2 ms from
        every lease's validity, for clocks that run at different rates; a
        client clock 0.5 % slow must still give up every lease before the
        masters' keys expire (the `validity` and `notice` checks).
        """
        candidates = self.pick(fault, holder=fault.pick < 0.7) or self.pick(fault, holder=False)
        # Only a worker that has started has its SIGUSR2 handler in place.
        with self.claim(*[c for c in candidates if self.started(c)]) as target:
            if target is None:
                return
            rate = 1 - 0.005
            path = self.workdir / f"clock-{target}"
            rec.invoke("clock-slow", target=target, rate=rate, tolerated=True)
            try:
                path.write_text(str(rate))
                self.children[target].send_signal(signal.SIGUSR2)
                time.sleep(fault.duration)
            finally:
                path.write_text("1.0")
                with contextlib.suppress(OSError):
                    self.children[target].send_signal(signal.SIGUSR2)
                rec.ok("clock-slow", target=target)

    def network(self, fault: Fault, rec: HistoryRecorder, how: str) -> None:
        prefer = -1
        if self.ensemble is not None and fault.pick < 0.7:
            prefer = self.holder()[2]  # mostly the holder's member: the case that matters
        candidates = [f"proxy:{i}" for i in self.indices(fault, len(self.proxies), prefer)]
        with self.claim(*candidates) as claimed:
            if claimed is None:
                return
            proxy = self.proxies[int(claimed.split(":")[1])]
            rec.invoke(how, target=proxy.port, tolerated=self.tolerated())
            if how == "blackhole":
                proxy.blackhole()
            elif how == "delay":
                proxy.delay(self.settings.op_timeout * 0.4)
            else:
                proxy.reset()
            try:
                time.sleep(fault.duration)
            finally:
                proxy.pass_through()
                rec.ok(how, target=proxy.port)

    def kill_leader(self, fault: Fault, rec: HistoryRecorder) -> None:
        with self.claim("ensemble") as claimed:
            if claimed is None:
                return
            # The same target on both records, so the checker pairs them.
            target = self.ensemble.wait_for_leader().port
            rec.invoke("kill-leader", target=target)
            killed = self.ensemble.kill_leader()
            try:
                time.sleep(fault.duration)
                killed.start()
            finally:
                rec.ok("kill-leader", target=target)

    def partition_follower(self, fault: Fault, rec: HistoryRecorder) -> None:
        """Cut a follower from the leader: the holder's, if it is on one, else a seeded one.

        The follower keeps answering its clients' reads and pings; the
        leader expires their sessions. The lock is documented to survive
        it: clients on the other members go on acquiring.
        """
        with self.claim("ensemble") as claimed:
            if claimed is None:
                return
            leader = self.ensemble.wait_for_leader()
            members = self.ensemble.members
            followers = [i for i, m in enumerate(members) if m is not leader]
            held_on = self.holder()[2]
            index = held_on if held_on in followers else followers[int(fault.pick * len(followers))]
            follower = members[index]
            rec.invoke(
                "partition-follower", target=f"zk{follower.myid}", member=index, tolerated=True
            )
            self.ensemble.partition(follower, leader)
            try:
                time.sleep(fault.duration)
            finally:
                self.ensemble.heal()
                rec.ok("partition-follower", target=f"zk{follower.myid}")

    def expire_session(self, fault: Fault, rec: HistoryRecorder) -> None:
        from kazoo.client import KazooClient

        target, session, _ = self.holder()
        if target is None or len(session) != 2:
            return
        rec.invoke("expire", target=target)
        try:
            twin = KazooClient(
                hosts=self.ensemble.hosts,
                client_id=(int(session[0]), bytes.fromhex(session[1])),
                timeout=self.settings.session_timeout,
            )
            twin.start(timeout=5)
            twin.stop()
            twin.close()
        finally:
            rec.ok("expire", target=target)

    def actions(self) -> dict[str, Callable[[Fault, HistoryRecorder], None]]:
        return {
            "pause-holder": self.pause_holder,
            "kill-holder": lambda f, r: self.kill(f, r, holder=True),
            "kill-waiter": lambda f, r: self.kill(f, r, holder=False),
            "restart": self.restart,
            "blackhole": lambda f, r: self.network(f, r, "blackhole"),
            "delay": lambda f, r: self.network(f, r, "delay"),
            "reset": lambda f, r: self.network(f, r, "reset"),
            "oom": lambda f, r: self.error_replies(f, r, "oom"),
            "readonly": lambda f, r: self.error_replies(f, r, "readonly"),
            "busy": lambda f, r: self.error_replies(f, r, "busy"),
            "kill-leader": self.kill_leader,
            "partition-follower": self.partition_follower,
            "clock-slow": self.clock_slow,
            "expire-session": self.expire_session,
        }

    def final_value(self) -> int:
        key = f"{self.namespace}{{counter}}"
        raw = self.store_server.execute("GET", key).split(b"\r\n")
        return int(raw[1]) if len(raw) > 1 and raw[1] else 0

    def close(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(OSError):
                    child.send_signal(signal.SIGCONT)
                child.kill()
            child.wait()
        for proxy in self.proxies:
            proxy.close()
        for server in self.servers:
            server.close()
        if self.ensemble is not None:
            self.ensemble.close()
        self.store_server.close()


def run_schedule(
    backend: str,
    *,
    seed: int,
    seconds: float,
    workers: int = 4,
    settings: Settings | None = None,
    progress: Callable[[float], None] | None = None,
    keep: str | os.PathLike[str] | None = None,
    without: Sequence[str] = (),
) -> SoakResult:
    """Run one seeded fault schedule against *backend* and check its history.

    Args:
        backend: one of `BACKENDS`.
        seed: the nemesis's seed (print it: the same seed replays the schedule).
        seconds: faults start within this many seconds; the run then goes
            on quietly for the recovery bound plus one second.
        workers: contending worker processes (at least 4); killed ones are
            replaced.
        settings: the locks' parameters and bounds.
        progress: called with the fraction of the run done, now and then.
        keep: a directory to keep the histories and logs in (default: a
            temporary one, removed afterwards if the checker passed, kept
            for a failure; `SoakResult.kept` names it).
        without: fault kinds to leave out of the schedule (of `FAULTS[backend]`),
            say to look past a known defect; the seed then draws another schedule.

    Returns:
        A [SoakResult][scalekit.testing.lock_workload.SoakResult] with the
        checker's report.

    Raises:
        ConfigurationError: an unknown *backend*, fewer than 4 *workers*, or
            *without* naming a fault the backend does not have, or all of them.
    """
    if backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if workers < 4:
        raise ConfigurationError(f"workers must be at least 4, got {workers!r}")
    s = settings or Settings()
    bounds = s.check_bounds(backend)
    unknown = sorted(set(without) - set(_FAULTS[backend]))
    if unknown:
        raise ConfigurationError(
            f"without must name faults of {backend!r} ({', '.join(_FAULTS[backend])}), "
            f"got {unknown}"
        )
    kinds = [k for k in _FAULTS[backend] if k not in without]
    if not kinds:
        raise ConfigurationError(f"without must leave some fault of {backend!r}, got {without!r}")
    lease = s.lease_time(backend)
    durations = {
        "pause-holder": (1.2 * lease, 1.8 * lease),
        "kill-holder": (0.1, 0.5),
        "kill-waiter": (0.1, 0.5),
        "restart": (0.05, 0.5),
        "kill-leader": (0.5, 2.0),
        # Past the session timeout, so the leader expires the cut-off clients'
        # sessions; some past the follower's syncLimit (5 s) too.
        "partition-follower": (1.2 * lease, 2.8 * lease),
        # Long enough, some of them, to be checked for availability on Redlock.
        "oom": (0.3, 2.0),
        "readonly": (0.3, 2.0),
        "busy": (0.2, 1.0),
        "clock-slow": (2.0, 4.0),
    }
    schedule = make_schedule(seed, kinds, seconds, durations=durations, overlap=OVERLAP)
    workdir = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="scalekit-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # A kept directory of an earlier run: its histories and server data must go.
    for old in [workdir / "stop", *workdir.glob("*.jsonl"), *workdir.glob("w*.log")]:
        old.unlink(missing_ok=True)
    for data in ["store", "zk", "lock0", "lock1", "lock2"]:
        shutil.rmtree(workdir / data, ignore_errors=True)
    began = time.monotonic()
    cluster = _Cluster(backend, s, workdir, seed)
    nemesis_log = HistoryRecorder(workdir / "nemesis.jsonl", "nemesis")
    nemesis = Nemesis(schedule, cluster.actions(), nemesis_log)
    try:
        for _ in range(workers):
            cluster.spawn()
        deadline = time.monotonic() + 60
        while not all(cluster.started(p) for p in cluster.children):
            if time.monotonic() > deadline:
                raise InvalidStateError(f"workers did not start; see the logs in {workdir}")
            time.sleep(0.02)
        nemesis.start()
        expected = max(f.at + f.duration for f in schedule) if schedule else 0.0
        started = time.monotonic()
        while not nemesis.join(0.2):
            if progress is not None:
                progress(min(0.95, (time.monotonic() - started) / (expected + bounds.recovery + 1)))
        time.sleep(bounds.recovery + 1.0)
        nemesis_log.info("end")
        cluster.stop_path.touch()
        grace = time.monotonic() + max(s.call_bounds(backend).values()) * 3 + 5
        while cluster.alive() and time.monotonic() < grace:
            time.sleep(0.05)
        for process in cluster.alive():  # stuck: its pending call never returned
            nemesis_log.info("stuck", target=process)
            with contextlib.suppress(OSError):  # its stacks, into wN.log
                cluster.children[process].send_signal(signal.SIGUSR1)
        if cluster.alive():
            time.sleep(0.5)
        final = cluster.final_value()
    finally:
        nemesis.stop()
        nemesis.join(30)
        cluster.close()
        nemesis_log.close()
    events = read_history(sorted(workdir.glob("*.jsonl")))
    report = check_lock_history(events, final_value=final, bounds=bounds)
    if progress is not None:
        progress(1.0)
    result = SoakResult(
        backend, seed, seconds, schedule, events, report, time.monotonic() - began, nemesis.errors
    )
    if keep is None and report.ok and not nemesis.errors:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.kept = workdir
    return result


if __name__ == "__main__":
    worker_main(sys.argv[1:])
