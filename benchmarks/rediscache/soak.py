"""A seeded fault schedule against the Redis tier, checked from the recorded history.

Writers bump a per-key version in an in-memory "database" and then
invalidate or overwrite the cache; slow loaders read the database and sleep
before writing back; readers read through RedisCache (`get`,
`get_or_load`) and through a NearCache, several reader threads sharing
each instance (as the threads of one server share one cache), so calls
join loads already running in their process. Meanwhile a seeded schedule kills
Redis with SIGKILL and restarts it from its append-only file (fsync
always), freezes it with SIGSTOP, blackholes the network (a TCP proxy) and,
on a Cluster, kills cluster-bus links; it also slows the link (a proxy
delaying every chunk) or, on a Cluster, freezes a node's event loop
(`DEBUG SLEEP`). Every acknowledged write and every successful read is
recorded, and `history.check` asserts that no read returned a version
older than the newest write acknowledged more than the layer's bound
earlier (Redis: 0 s, the near layer: `max_staleness`). Each single-call
operation (`get`, `set`, `invalidate`, a NearCache `get`) is also timed,
failed or not: one that took longer than `call_timeout` plus
`HANG_MARGIN` is reported as a hang.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from scalekit.exceptions import BackendError, ConfigurationError
from scalekit.testing import RedisClusterServers, RedisServer, TCPProxy

from .history import Read, Violation, Write, check

__all__ = ["SoakResult", "run"]

TIMEOUTS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
HANG_MARGIN = 0.5  # seconds of thread scheduling on a loaded machine


@dataclass
class SoakResult:
    """What one seeded run did and what the checker found."""

    seed: int
    backend: str
    seconds: float
    faults: list[str] = field(default_factory=list)
    writes: int = 0
    reads: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    violations: list[Violation] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    history: tuple[list[Write], list[Read]] = field(default=([], []), repr=False)

    def summary(self) -> str:
        """One line for a terminal or a results file."""
        kinds: dict[str, int] = {}
        for fault in self.faults:
            name = fault.split()[1]
            kinds[name] = kinds.get(name, 0) + 1
        faults = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
        reads = ", ".join(f"{n} {layer}" for layer, n in sorted(self.reads.items()))
        return (
            f"seed {self.seed} {self.backend}: {self.seconds:.0f} s, faults: {faults}; "
            f"{self.writes} acknowledged writes, reads: {reads}, {self.errors} failed calls; "
            f"violations: {len(self.violations)}, hangs: {len(self.hangs)}"
        )


class _Backend:
    """The servers and the fault menu of one run."""

    def __init__(self, cluster: bool, workdir: Path) -> None:
        self.cluster = cluster
        self.proxy: TCPProxy | None = None
        self.servers: Any
        if cluster:
            self.servers = RedisClusterServers(appendonly=True, workdir=workdir)
            for node in self.servers.nodes:
                node.extra_args += ["--enable-debug-command", "yes"]
            self.servers.start()
        else:
            self.servers = RedisServer(appendonly=True, workdir=workdir)
            self.servers.start()
            self.proxy = TCPProxy(*self.servers.address)

    def client(self) -> Any:
        if self.cluster:
            return redis.cluster.RedisCluster(
                host=self.servers.host,
                port=self.servers.port,
                retry=Retry(NoBackoff(), 2),
                **TIMEOUTS,
            )
        assert self.proxy is not None
        return redis.Redis(
            host=self.proxy.host, port=self.proxy.port, retry=Retry(NoBackoff(), 1), **TIMEOUTS
        )

    def inject(self, rng: random.Random, stop: threading.Event) -> str:
        """Apply one fault chosen by *rng*; return what was done."""
        hold = rng.uniform(0.1, 0.8)
        if self.cluster:
            node = rng.choice(self.servers.nodes)
            kind = rng.choice(["kill", "sigstop", "link-kill", "link-kill", "debug-sleep"])
            if kind == "kill":
                node.kill()
                node.start()
                self.servers.wait_ok()
                return f"kill -9 + AOF restart of node :{node.port}"
            if kind == "sigstop":
                node.pause()
                stop.wait(min(hold, 1.0))  # under the 2 s node timeout: no failover
                node.resume()
                return f"sigstop node :{node.port} for {hold:.2f} s"
            if kind == "debug-sleep":
                node.execute("DEBUG", "SLEEP", f"{hold:.2f}", timeout=hold + 2)
                return f"debug-sleep node :{node.port} for {hold:.2f} s"
            others = [n for n in self.servers.nodes if n is not node]
            ids = [n.execute("CLUSTER", "MYID").split(b"\r\n")[1] for n in others]
            # Redis 7.0 crashes killing a link that is still reconnecting.
            deadline = time.monotonic() + 10
            while not all(node.execute("CLUSTER", "LINKS").count(i) >= 2 for i in ids):
                if time.monotonic() > deadline or stop.wait(0.02):
                    return "link-kill skipped (links not up)"
            for node_id in ids:
                node.execute("DEBUG", "CLUSTERLINK", "KILL", "ALL", node_id)
            return f"link-kill all links of node :{node.port}"
        kind = rng.choice(["kill", "sigstop", "blackhole", "slow-link"])
        if kind == "kill":
            self.servers.kill()
            self.servers.start()
            return "kill -9 + AOF restart"
        if kind == "sigstop":
            self.servers.pause()
            stop.wait(hold)
            self.servers.resume()
            return f"sigstop for {hold:.2f} s"
        assert self.proxy is not None
        if kind == "slow-link":
            per_chunk = rng.uniform(0.05, 0.3)
            self.proxy.delay(per_chunk)
            stop.wait(hold)
            self.proxy.pass_through()
            return f"slow-link {per_chunk:.2f} s per chunk for {hold:.2f} s"
        self.proxy.blackhole()
        stop.wait(hold)
        self.proxy.pass_through()
        return f"blackhole for {hold:.2f} s"

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        self.servers.close()


def run(
    seed: int,
    seconds: float,
    *,
    cluster: bool = False,
    keys: int = 6,
    max_staleness: float = 0.5,
    sharing: int = 3,
    faults: bool = True,
    tick: Callable[[float], None] | None = None,
) -> SoakResult:
    """Run the workload under a fault schedule drawn from *seed* for *seconds*.

    Args:
        seed: Seeds the fault schedule and the workload's choices.
        seconds: Length of the run (plus start-up and shut-down).
        cluster: Run on a 3-master Redis Cluster instead of one server.
        keys: Distinct keys the workload touches.
        max_staleness: The NearCache bound checked for the near layer.
        sharing: Reader threads that share each reading instance (as the
            threads of one web server share one cache): a load running in
            the process is then joined by callers that began during it.
        faults: Inject the fault schedule (False: the same workload on a
            healthy server).
        tick: Called about every 0.1 s with the elapsed seconds (progress bars).

    Returns:
        The run's counts and the checker's violations.
    """
    rng = random.Random(seed)
    result = SoakResult(seed, "cluster" if cluster else "standalone", seconds)
    with tempfile.TemporaryDirectory(prefix="scalekit-soak-") as tmp:
        backend = _Backend(cluster, Path(tmp))
        try:
            _workload(backend, rng, result, keys, max_staleness, sharing, faults, tick)
        finally:
            backend.close()
    return result


def _workload(
    backend: _Backend,
    rng: random.Random,
    result: SoakResult,
    n_keys: int,
    max_staleness: float,
    sharing: int,
    faults: bool,
    tick: Callable[[float], None] | None,
) -> None:
    namespace = f"soak{rng.randrange(16**8):08x}"
    names = [f"item:{i}" for i in range(n_keys)]
    db = dict.fromkeys(names, 0)
    db_lock = threading.Lock()
    writes: list[Write] = []
    reads: list[Read] = []
    errors = [0]
    hangs: list[str] = []
    record = threading.Lock()
    stop = threading.Event()
    clients: list[Any] = []

    def cache(**kwargs: Any) -> RedisCache:
        client = backend.client()
        clients.append(client)
        return RedisCache(client, namespace=namespace, ttl=2.0, lease_ttl=0.5, **kwargs)

    near = NearCache(LRUCache(64), cache(), max_staleness=max_staleness)

    def failed() -> None:
        with record:
            errors[0] += 1

    def timed(what: str, bound: float, start: float) -> None:
        took = time.monotonic() - start
        if took > bound + HANG_MARGIN:
            with record:
                hangs.append(f"{what} took {took:.2f} s, call_timeout {bound:.2f} s")

    def writer(own: list[str], wrng: random.Random) -> None:
        c = cache()
        while not stop.is_set():
            key = wrng.choice(own)
            with db_lock:
                db[key] += 1
                version = db[key]
            overwrite = wrng.random() < 0.5
            while not stop.is_set():  # until the cache has heard of the new version
                start = time.monotonic()
                try:
                    c.set(key, version) if overwrite else c.invalidate(key)
                except BackendError:
                    timed("set" if overwrite else "invalidate", c.call_timeout, start)
                    failed()
                    stop.wait(0.02)
                    continue
                timed("set" if overwrite else "invalidate", c.call_timeout, start)
                with record:
                    writes.append(Write(key, version, time.monotonic()))
                break
            stop.wait(wrng.uniform(0.005, 0.05))

    def loader_for(key: str, lrng: random.Random) -> Callable[[], int]:
        def load() -> int:
            with db_lock:
                seen = db[key]
            time.sleep(lrng.random() * 0.3)  # a slow database read: the value ages
            return seen

        return load

    def reader(
        layer: str,
        call: Callable[[str, random.Random], Any],
        rrng: random.Random,
        single: str = "",
    ) -> None:
        bound = plain.call_timeout
        while not stop.is_set():
            key = rrng.choice(names)
            start = time.monotonic()
            try:
                value = call(key, rrng)
            except (BackendError, ConfigurationError):
                if single:
                    timed(single, bound, start)
                failed()
                stop.wait(0.01)
                continue
            end = time.monotonic()
            if single:
                timed(single, bound, start)
            with record:
                reads.append(Read(key, layer, value, start, end))

    plain, loading, lenient = cache(), cache(stale_ttl=1.0), cache(fallback=True)
    calls: list[tuple[str, Callable[[str, random.Random], Any], str]] = [
        ("redis", lambda k, r: plain.get(k), "get"),
        ("redis", lambda k, r: loading.get_or_load(k, loader_for(k, r)), ""),
        ("redis", lambda k, r: lenient.get_or_load(k, loader_for(k, r)), ""),
        ("near", lambda k, r: near.get(k), "near.get"),
        ("near", lambda k, r: near.get_or_load(k, loader_for(k, r)), ""),
    ]
    half = n_keys // 2
    threads = [
        threading.Thread(target=writer, args=(names[:half], random.Random(rng.random()))),
        threading.Thread(target=writer, args=(names[half:], random.Random(rng.random()))),
    ] + [
        threading.Thread(target=reader, args=(layer, call, random.Random(rng.random()), single))
        for layer, call, single in calls
        for _ in range(sharing)
    ]
    for t in threads:
        t.daemon = True
        t.start()
    began = time.monotonic()
    try:
        next_fault = began + rng.uniform(0.2, 0.6)
        while (elapsed := time.monotonic() - began) < result.seconds:
            if tick is not None:
                tick(elapsed)
            if faults and time.monotonic() >= next_fault:
                what = backend.inject(rng, stop)
                result.faults.append(f"{time.monotonic() - began:6.2f} {what}")
                next_fault = time.monotonic() + rng.uniform(0.3, 1.0)
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        near.close()
        for client in clients:
            client.close()
    result.writes = len(writes)
    for r in reads:
        result.reads[r.layer] = result.reads.get(r.layer, 0) + 1
    result.errors = errors[0]
    result.violations = check(writes, reads, {"redis": 0.0, "near": max_staleness})
    result.hangs = hangs
    result.history = (writes, reads)
