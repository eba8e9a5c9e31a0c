"""Locks side by side on the same real servers, in one run, reported as ratios of medians.

1. Uncontended acquire+release per second: RedisLock vs redis-py ``Lock``,
   ZooKeeperLock vs kazoo ``Lock`` (python-redis-lock shown for reference).
2. Eight threads, one lock, a 1 ms critical section: acquisitions per
   worker (fairness = max/min), and the p99 wait, against python-redis-lock,
   redis-py and kazoo.
3. Eight threads over 64 locks, empty critical section: aggregate
   acquisitions per second per backend.
4. Semaphores and read-write locks: uncontended acquire+release against
   kazoo's ``Semaphore``, ``ReadLock`` and ``WriteLock`` (and, on Redis,
   against RedisLock, for the price of the richer structure), and eight
   threads sharing a semaphore of 2 places (fairness, acquisitions/s).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import (
    base_parser,
    format_table,
    median_time,
    progress,
    repeat_for,
    save_figure,
    write_result,
)
from scalekit.testing import RedisServer, ZooKeeperServer


# -- the contenders ------------------------------------------------------------
def _scalekit_redis(client: Any, prefix: str) -> Callable[[str], Any]:
    from scalekit.locking import RedisLock

    return lambda name: RedisLock(client, prefix + name, ttl=10)


def _redis_py(client: Any, prefix: str) -> Callable[[str], Any]:
    return lambda name: client.lock(prefix + name, timeout=10)


def _python_redis_lock(client: Any, prefix: str) -> Callable[[str], Any]:
    import redis_lock

    return lambda name: redis_lock.Lock(client, prefix + name, expire=10)


def _scalekit_zk(client: Any, prefix: str) -> Callable[[str], Any]:
    from scalekit.locking import ZooKeeperLock

    return lambda name: ZooKeeperLock(client, f"/{prefix}{name}")


def _kazoo(client: Any, prefix: str) -> Callable[[str], Any]:
    return lambda name: client.Lock(f"/{prefix}{name}")


def _shared_contenders(rclient: Any, zclient: Any) -> dict[str, Callable[[str], Any]]:
    """Semaphores (4 places) and both sides of the read-write locks, scalekit and kazoo."""
    from scalekit.locking import (
        RedisReadWriteLock,
        RedisSemaphore,
        ZooKeeperReadWriteLock,
        ZooKeeperSemaphore,
    )

    return {
        "scalekit RedisSemaphore(4)": lambda n: RedisSemaphore(rclient, "sks:" + n, 4, ttl=10),
        "scalekit RedisRWLock read": lambda n: RedisReadWriteLock(rclient, "skr:" + n).read,
        "scalekit RedisRWLock write": lambda n: RedisReadWriteLock(rclient, "skw:" + n).write,
        "scalekit ZooKeeperSemaphore(4)": lambda n: ZooKeeperSemaphore(zclient, "/sks" + n, 4),
        "kazoo Semaphore(4)": lambda n: zclient.Semaphore("/kzs" + n, max_leases=4),
        "scalekit ZooKeeperRWLock read": lambda n: ZooKeeperReadWriteLock(zclient, "/skr" + n).read,
        "kazoo ReadLock": lambda n: zclient.ReadLock("/kzr" + n),
        "scalekit ZooKeeperRWLock write": lambda n: (
            ZooKeeperReadWriteLock(zclient, "/skw" + n).write
        ),
        "kazoo WriteLock": lambda n: zclient.WriteLock("/kzw" + n),
    }


def shared_locks(
    rclient: Any,
    zclient: Any,
    redis_lock: Callable[[str], Any],
    *,
    ops: int,
    repeat: int,
    seconds: float,
    runs: int,
    seed: int,
) -> list[str]:
    """Section 4: semaphores and read-write locks."""
    shared = _shared_contenders(rclient, zclient)
    everyone = {**shared, "scalekit RedisLock": redis_lock}
    pairs = [
        ("scalekit ZooKeeperSemaphore(4)", "kazoo Semaphore(4)", ops // 3, ">= 1.0x"),
        ("scalekit ZooKeeperRWLock read", "kazoo ReadLock", ops // 3, ">= 1.0x"),
        ("scalekit ZooKeeperRWLock write", "kazoo WriteLock", ops // 3, ">= 1.0x"),
        ("scalekit RedisSemaphore(4)", "scalekit RedisLock", ops, "-"),
        ("scalekit RedisRWLock read", "scalekit RedisLock", ops, "-"),
        ("scalekit RedisRWLock write", "scalekit RedisLock", ops, "-"),
    ]
    rows = []
    for mine, peer, n, target in progress(pairs, desc="semaphores, rw locks"):
        a, b = uncontended_pair(everyone[mine], everyone[peer], n, repeat)
        rows.append((mine, a, peer, b, f"{a / b:.2f}x", target))
    report = [
        "Semaphores and read-write locks, uncontended acquire+release per second (median of "
        f"{repeat} interleaved runs)\n"
        + format_table(["scalekit", "ops/s", "peer", "peer ops/s", "ratio", "target"], rows)
    ]
    semaphores = {
        label: (lambda name, label=label: _places(label, rclient, zclient, name))
        for label in (
            "scalekit RedisSemaphore(2)",
            "scalekit ZooKeeperSemaphore(2)",
            "kazoo Semaphore(2)",
        )
    }
    two = _interleaved(
        semaphores,
        runs,
        "8 workers, semaphore of 2",
        lambda make, r: contended(
            make, workers=8, locks=1, seconds=seconds, hold=0.001, seed=seed + r
        ),
    )
    report.append(
        f"8 workers, one semaphore of 2 places, 1 ms critical section, {seconds}s x {runs} runs "
        "(medians)\n"
        + format_table(
            ["semaphore", "max/min", "p99 wait ms", "acq/s", "per-worker acquisitions"],
            [
                (label, r["fairness"], r["p99_ms"], r["per_s"], " ".join(map(str, r["counts"])))
                for label, r in two.items()
            ],
        )
    )
    return report


def _places(label: str, rclient: Any, zclient: Any, name: str) -> Any:
    from scalekit.locking import RedisSemaphore, ZooKeeperSemaphore

    if label.startswith("scalekit Redis"):
        return RedisSemaphore(rclient, "sk2:" + name, 2, ttl=10)
    if label.startswith("scalekit"):
        return ZooKeeperSemaphore(zclient, "/sk2" + name, 2)
    return zclient.Semaphore("/kz2" + name, max_leases=2)


# -- 1. uncontended --------------------------------------------------------------
def uncontended_pair(
    make_a: Callable[[str], Any], make_b: Callable[[str], Any], ops: int, repeat: int
) -> tuple[float, float]:
    """Median acquire+release pairs per second of two contenders, runs interleaved.

    Alternating the two in one loop spreads the machine's noise (and the
    server's warm-up) over both sides instead of billing it to one.
    """
    locks = [make_a("uncontended"), make_b("uncontended")]
    times: list[list[float]] = [[], []]

    def run(lock: Any) -> None:
        for _ in range(ops):
            lock.acquire()
            lock.release()

    for lock in locks:
        median_time(lambda lock=lock: run(lock), repeat=1, warmup=2)
    for _ in range(repeat):
        for side, lock in enumerate(locks):
            times[side].append(median_time(lambda lock=lock: run(lock), repeat=1, warmup=0))
    return ops / statistics.median(times[0]), ops / statistics.median(times[1])


# -- 2. and 3. contended -----------------------------------------------------------
def contended(
    make: Callable[[str], Any], *, workers: int, locks: int, seconds: float, hold: float, seed: int
) -> dict[str, Any]:
    """*workers* threads loop acquire, hold *hold* s, release over *locks* locks."""
    counts = [0] * workers
    waits: list[float] = []
    start = threading.Barrier(workers + 1)
    stop = time.monotonic() + 3600.0
    deadline = [stop]

    def work(i: int) -> None:
        rng = random.Random(seed + i)
        mine = [make(f"contended-{k}") for k in range(locks)]
        local_waits = []
        start.wait()
        while time.monotonic() < deadline[0]:
            lock = mine[rng.randrange(locks)]
            began = time.perf_counter()
            lock.acquire()
            local_waits.append(time.perf_counter() - began)
            if hold:
                time.sleep(hold)
            lock.release()
            counts[i] += 1
        waits.extend(local_waits)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds + 0.05
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.monotonic() - began
    ordered = sorted(waits)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
    return {
        "counts": counts,
        "fairness": max(counts) / max(min(counts), 1),
        "p99_ms": p99 * 1000,
        "per_s": sum(counts) / elapsed,
    }


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = sorted(runs, key=lambda r: r["fairness"])[len(runs) // 2]
    return {
        "counts": best["counts"],
        "fairness": statistics.median(r["fairness"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "per_s": statistics.median(r["per_s"] for r in runs),
    }


def _interleaved(
    contenders: dict[str, Callable[[str], Any]],
    runs: int,
    desc: str,
    measure: Callable[[Callable[[str], Any], int], dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Run every contender once per round, *runs* rounds; return the medians per contender."""
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in contenders}
    steps = [(r, label) for r in range(runs) for label in contenders]
    for r, label in progress(steps, desc=desc):
        results[label].append(measure(contenders[label], r))
    return {label: _median_runs(rs) for label, rs in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(
        "Locks side by side on the same real servers, in one run, reported as ratios of "
        "medians. 'soak' runs randomized fault schedules instead and 'lost-updates' the "
        "fencing experiment (each has its own --help).",
    )
    args = parser.parse_args(argv)
    import redis
    from kazoo.client import KazooClient

    quick = args.quick
    ops = 100 if quick else 3000
    repeat = repeat_for(args, 1)
    seconds = 0.2 if quick else 3.0
    runs = 1 if quick else 3
    report: list[str] = []
    with RedisServer() as rserver, ZooKeeperServer() as zserver:
        rclient = redis.Redis.from_url(rserver.url)
        zclient = KazooClient(hosts=zserver.hosts, timeout=10)
        zclient.start(timeout=30)
        try:
            redis_family = {
                "scalekit RedisLock": _scalekit_redis(rclient, "sk:"),
                "redis-py Lock": _redis_py(rclient, "rp:"),
                "python-redis-lock": _python_redis_lock(rclient, "prl:"),
            }
            zk_family = {
                "scalekit ZooKeeperLock": _scalekit_zk(zclient, "sk"),
                "kazoo Lock": _kazoo(zclient, "kz"),
            }
            everyone = {**redis_family, **zk_family}

            # 1. uncontended
            pairs = [
                ("scalekit RedisLock", "redis-py Lock", ops, ">= 1.0x"),
                ("scalekit RedisLock", "python-redis-lock", ops, "-"),
                ("scalekit ZooKeeperLock", "kazoo Lock", ops // 3, ">= 1.0x"),
            ]
            rows = []
            for mine, peer, n, target in progress(pairs, desc="uncontended"):
                a, b = uncontended_pair(everyone[mine], everyone[peer], n, repeat)
                rows.append((mine, a, peer, b, f"{a / b:.2f}x", target))
            report.append(
                "Uncontended acquire+release per second (median of "
                f"{repeat} interleaved runs)\n"
                + format_table(["scalekit", "ops/s", "peer", "peer ops/s", "ratio", "target"], rows)
            )

            # 2. eight workers, one lock, 1 ms critical section
            one = _interleaved(
                everyone,
                runs,
                "8 workers, 1 lock",
                lambda make, r: contended(
                    make, workers=8, locks=1, seconds=seconds, hold=0.001, seed=args.seed + r
                ),
            )
            rows2 = [
                (
                    label,
                    r["fairness"],
                    r["p99_ms"],
                    r["per_s"],
                    " ".join(str(c) for c in r["counts"]),
                )
                for label, r in one.items()
            ]
            sk, prl = one["scalekit RedisLock"], one["python-redis-lock"]
            report.append(
                f"8 workers, one lock, 1 ms critical section, {seconds}s x {runs} runs "
                "(medians)\n"
                + format_table(
                    ["lock", "max/min", "p99 wait ms", "acq/s", "per-worker acquisitions"], rows2
                )
                + f"\nRedisLock fairness {sk['fairness']:.2f} (target <= 1.5); p99 wait "
                f"{sk['p99_ms']:.1f} ms vs python-redis-lock {prl['p99_ms']:.1f} ms "
                f"({sk['p99_ms'] / prl['p99_ms']:.2f}x, target <= 1.0x)"
            )

            # 3. eight workers over 64 locks
            many = _interleaved(
                everyone,
                runs,
                "8 workers, 64 locks",
                lambda make, r: contended(
                    make, workers=8, locks=64, seconds=seconds, hold=0.0, seed=args.seed + r
                ),
            )
            report.append(
                f"8 workers over 64 locks, empty critical section, {seconds}s x {runs} runs\n"
                + format_table(
                    ["lock", "acquisitions/s", "p99 wait ms"],
                    [(label, r["per_s"], r["p99_ms"]) for label, r in many.items()],
                )
            )

            # 4. semaphores and read-write locks
            report.extend(
                shared_locks(
                    rclient,
                    zclient,
                    everyone["scalekit RedisLock"],
                    ops=ops,
                    repeat=repeat,
                    seconds=seconds,
                    runs=runs,
                    seed=args.seed,
                )
            )
        finally:
            zclient.stop()
            zclient.close()
            rclient.close()
    text = "\n\n".join(report)
    name = "locking_quick" if quick else "locking"
    write_result(args.out, name, text)
    if not args.no_plot:
        _plot(args.out, name, one)


def _plot(out: Path, name: str, one: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(one)
    for k, (label, result) in enumerate(one.items()):
        xs = [i + k * width for i in range(len(result["counts"]))]
        ax.bar(xs, result["counts"], width=width, label=label)
    ax.set_xlabel("worker")
    ax.set_ylabel("acquisitions")
    ax.set_title("8 workers, one lock, 1 ms critical section: who gets the lock")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / f"{name}_fairness.png", dpi=100)
    plt.close(fig)
