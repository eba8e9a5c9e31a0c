"""Redis cache tier: RedisCache.get vs redis-py GET + json.loads, NearCache local hits,
database calls per burst of concurrent misses, cluster batches, and a fault soak.

    python -m benchmarks.rediscache            # full run (about a minute)
    python -m benchmarks.rediscache --quick    # smoke run (seconds)
    python -m benchmarks.rediscache soak --seconds 300   # seeded faults, checked history

Starts its own redis-server on loopback unless ``--url`` names one.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from benchmarks._common import (
    base_parser,
    format_table,
    median_time,
    progress,
    repeat_for,
    save_figure,
    write_result,
)
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from scalekit.testing import RedisServer

from ._stampede import RECORD, worker

TARGET_GET = 0.9
TARGET_NEAR = 20.0


def bench_reads(url: str, ops: int, repeat: int) -> dict[str, float]:
    """ops/s of three ways to read one cached record, measured in the same run."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    cache = RedisCache(client, namespace=namespace, ttl=3600)
    cache.set("goods:42", RECORD)
    client.set(f"{namespace}:plain", json.dumps(RECORD))
    plain_key = f"{namespace}:plain"
    assert cache.get("goods:42") == RECORD == json.loads(client.get(plain_key))  # type: ignore[arg-type]

    def interleaved() -> tuple[float, float]:
        """One run: GET + json.loads and RedisCache.get alternate op by op (and swap which
        goes first), so bursts of load from other processes on the shared machine and any
        advantage of going second hit both contenders alike."""
        get, loads, ours = client.get, json.loads, cache.get
        clock = time.perf_counter
        peer_s = ours_s = 0.0
        for i in range(ops):
            if i & 1:
                t0 = clock()
                loads(get(plain_key))  # type: ignore[arg-type]
                t1 = clock()
                ours("goods:42")
                t2 = clock()
                peer_s += t1 - t0
                ours_s += t2 - t1
            else:
                t0 = clock()
                ours("goods:42")
                t1 = clock()
                loads(get(plain_key))  # type: ignore[arg-type]
                t2 = clock()
                ours_s += t1 - t0
                peer_s += t2 - t1
        return peer_s, ours_s

    near = NearCache({}, cache, max_staleness=1.0)
    assert near.get("goods:42") == RECORD
    near_ops = ops * 20

    def near_get() -> None:
        get = near.get
        for _ in range(near_ops):
            get("goods:42")

    peer_t: list[float] = []
    ours_t: list[float] = []
    near_t: list[float] = []
    interleaved()  # warm-up
    for _ in progress(range(repeat), total=repeat, desc="reads"):
        gc.collect()
        gc.disable()
        try:
            peer_s, ours_s = interleaved()
        finally:
            gc.enable()
        peer_t.append(peer_s)
        ours_t.append(ours_s)
        near_t.append(median_time(near_get, repeat=1))
    local_hits = near.stats().local_hits
    near.close()
    client.close()
    assert local_hits >= near_ops, "NearCache did not serve from its local layer"
    return {
        "redis-py GET + json.loads": ops / statistics.median(peer_t),
        "RedisCache.get": ops / statistics.median(ours_t),
        "NearCache.get (local hit)": near_ops / statistics.median(near_t),
    }


def bench_cluster_batches(repeat: int, n_keys: int = 200) -> dict[str, float]:
    """Milliseconds per batch of *n_keys* on a 3-master cluster: scalekit's get_many/set_many
    vs redis-py's mget_nonatomic (+ json.loads) / mset_nonatomic, in the same run."""
    from scalekit.testing import RedisClusterServers

    with RedisClusterServers() as cluster:
        client = redis.cluster.RedisCluster(host=cluster.host, port=cluster.port, socket_timeout=5)
        cache = RedisCache(client, namespace=f"batch{uuid.uuid4().hex[:8]}", ttl=3600)
        items = {f"goods:{i}": RECORD for i in range(n_keys)}
        plain = {f"plain:{{{k}}}": json.dumps(v) for k, v in items.items()}
        loads = json.loads

        def ours_get() -> None:
            assert len(cache.get_many(items)) == n_keys

        def peer_get() -> None:
            assert len([loads(v) for v in client.mget_nonatomic(list(plain))]) == n_keys

        cache.set_many(items)
        client.mset_nonatomic(plain)
        timings = {
            "RedisCache.get_many": median_time(ours_get, repeat=repeat),
            "redis-py mget_nonatomic + json.loads": median_time(peer_get, repeat=repeat),
            "RedisCache.set_many": median_time(lambda: cache.set_many(items), repeat=repeat),
            "redis-py mset_nonatomic (no TTL, no versions)": median_time(
                lambda: client.mset_nonatomic(plain), repeat=repeat
            ),
        }
        client.close()
    return {name: seconds * 1000 for name, seconds in timings.items()}


def bench_stampede(url: str, processes: int, threads: int, db_delay: float) -> dict[str, int]:
    """Database calls when processes x threads callers miss one key at the same moment."""
    ctx = multiprocessing.get_context("spawn")
    client = redis.Redis.from_url(url)
    calls: dict[str, int] = {}
    for contender in ("scalekit", "naive cache-aside"):
        namespace = f"stampede{uuid.uuid4().hex[:8]}"
        ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=worker, args=(url, contender, namespace, threads, db_delay, ready, go, done)
            )
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        go.set()
        errors = [done.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        if any(errors):
            raise RuntimeError(f"{contender}: {[e for e in errors if e]}")
        calls[contender] = int(client.get(f"{namespace}-db-calls") or 0)
    client.close()
    return calls


def plot(reads: dict[str, float], stampede: dict[str, int], misses: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    # Points, not bars: a bar's length on a log axis starts at an arbitrary floor and
    # misstates the ratio; a point's position and its label do not.
    names, values = list(reads), list(reads.values())
    base = values[0]
    left.scatter(values, names, s=60, color=["#999", "#1f77b4", "#2ca02c"], zorder=3)
    for value, name in zip(values, names, strict=True):
        left.annotate(
            f"{value:,.0f}/s ({value / base:.2f}x)",
            (value, name),
            textcoords="offset points",
            xytext=(0, 9),
            ha="center",
            fontsize="small",
        )
    left.set_xscale("log")
    left.set_xlim(min(values) / 3, max(values) * 4)
    left.set_ylim(-0.6, len(names) - 0.3)
    left.invert_yaxis()
    left.grid(axis="x", alpha=0.3)
    left.set_xlabel("reads per second (log scale; higher is better)")
    left.set_title("One cached record, hit path")
    right.bar(list(stampede), list(stampede.values()), color=["#1f77b4", "#999"])
    right.set_ylabel(f"database calls per {misses} concurrent misses")
    right.set_title("Stampede on one missing key (lower is better)")
    for i, v in enumerate(stampede.values()):
        right.text(i, v, str(v), ha="center", va="bottom")
    fig.tight_layout()
    path = out / "rediscache.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def soak_main(argv: list[str]) -> int:
    """`soak`: seeded fault schedules against the tier, each history checked."""
    import argparse

    from benchmarks._common import progress as bar

    from .soak import run

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rediscache soak",
        description="Kill -9 and AOF restarts, SIGSTOPs, network blackholes and cluster-link "
        "kills while writers, slow loaders and readers run; then check that no read was "
        "staler than its layer allows (Redis: 0 s, NearCache: --max-staleness).",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of each run in seconds (default %(default)g)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the first run (default %(default)s)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=2,
        help="runs, with seeds seed, seed+1, ... (default %(default)s)",
    )
    parser.add_argument(
        "--max-staleness",
        type=float,
        default=0.5,
        help="the staleness NearCache reads may show, in seconds (default %(default)g)",
    )
    parser.add_argument(
        "--sharing",
        type=int,
        default=3,
        help="reader threads sharing each reading cache instance (default %(default)d)",
    )
    parser.add_argument(
        "--backend",
        choices=["standalone", "cluster", "both"],
        default="both",
        help="one server, a 3-master cluster, or alternate between them (default %(default)s)",
    )
    args = parser.parse_args(argv)
    failed = 0
    for i in range(args.runs):
        seed = args.seed + i
        cluster = args.backend == "cluster" or (args.backend == "both" and i % 2 == 1)
        steps = iter(bar(range(int(args.seconds * 10)), desc=f"soak seed {seed}"))

        def tick(elapsed: float, steps: Any = steps, done: list[int] = [0]) -> None:  # noqa: B006
            while done[0] < int(elapsed * 10):
                next(steps, None)
                done[0] += 1

        result = run(
            seed,
            args.seconds,
            cluster=cluster,
            max_staleness=args.max_staleness,
            sharing=args.sharing,
            tick=tick,
        )
        print(result.summary())
        for violation in result.violations[:20]:
            print(f"  VIOLATION {violation}")
        for hang in result.hangs[:20]:
            print(f"  HANG {hang}")
        failed += bool(result.violations or result.hangs)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        return soak_main(argv[1:])
    parser = base_parser(
        "The Redis cache tier: RedisCache.get against redis-py GET + json.loads, NearCache "
        "local hits, database calls per burst of concurrent misses, and cluster batches "
        "('soak' runs seeded fault schedules instead).",
    )
    parser.add_argument("--url", help="an existing Redis (default: start one on loopback)")
    args = parser.parse_args(argv)
    ops = 300 if args.quick else 5000
    repeat = repeat_for(args, 3)
    processes, threads = (1, 100) if args.quick else (4, 250)
    server = None
    url = args.url
    if url is None:
        server = RedisServer()
        server.start()
        url = server.url
    try:
        reads = bench_reads(url, ops, repeat)
        batches = bench_cluster_batches(repeat)
        stampede = bench_stampede(url, processes, threads, db_delay=0.2)
    finally:
        if server is not None:
            server.close()
    misses = processes * threads
    peer = reads["redis-py GET + json.loads"]
    ours = reads["RedisCache.get"]
    near = reads["NearCache.get (local hit)"]
    get_ratio, near_ratio = ours / peer, near / ours
    rows = [[name, f"{v:,.0f}", f"{v / peer:.2f}x"] for name, v in reads.items()]
    calls = stampede["scalekit"]
    lines = [
        f"python -m benchmarks.rediscache{' --quick' if args.quick else ''}"
        f"  (ops={ops}, median of {repeat}, python {sys.version.split()[0]},"
        f" redis-py {redis.__version__})",
        "",
        format_table(["read path", "ops/s", "vs redis-py GET+json.loads"], rows),
        "",
        f"RedisCache.get / (GET + json.loads): {get_ratio:.2f}x   target >= {TARGET_GET}x  "
        f"{'MET' if get_ratio >= TARGET_GET else 'NOT MET'}",
        f"NearCache local hit / RedisCache.get: {near_ratio:.1f}x   target >= {TARGET_NEAR}x  "
        f"{'MET' if near_ratio >= TARGET_NEAR else 'NOT MET'}",
        "",
        format_table(
            ["200 keys on a 3-master cluster", "ms per batch"],
            [[name, f"{ms:.2f}"] for name, ms in batches.items()],
        ),
        f"get_many / mget_nonatomic: "
        f"{batches['redis-py mget_nonatomic + json.loads'] / batches['RedisCache.get_many']:.2f}x"
        " the peer's speed (one round trip per node for both)",
        "",
        format_table(
            [f"stampede: {processes} processes x {threads} threads miss one key", "database calls"],
            [[k, v] for k, v in stampede.items()],
        ),
        f"database calls per {misses} concurrent misses with get_or_load: {calls}   "
        f"target 1  {'MET' if calls == 1 else 'NOT MET'}",
    ]
    write_result(args.out, "rediscache-quick" if args.quick else "rediscache", "\n".join(lines))
    if not args.no_plot:
        print(f"plot: {plot(reads, stampede, misses, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
