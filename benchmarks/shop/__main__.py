"""``python -m benchmarks.shop``: checkouts/s and p99 by backend and worker processes.

Runs the example shop's load simulation (examples/shop) with memory locks
in one process, and with RedisLock and ZooKeeperLock across 1, 2 and 4
worker processes, against real servers started on loopback. Hot SKUs have
ample stock here, so every checkout does the full flow (lock, fenced stock
claim and write, order, payment) rather than stopping at "out of stock".
Prints a table, where buyer time goes in the slowest configuration, and a
scaling plot. Its Redis runs with ``appendonly yes``, as the shop's should.

``python -m benchmarks.shop soak --seconds N`` runs seeded fault schedules
instead (benchmarks/shop/soak.py).
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
from pathlib import Path

from benchmarks._common import base_parser, format_table, progress, save_figure, write_result
from examples.shop.runner import run
from examples.shop.simulation import Settings, Summary
from scalekit.testing import RedisServer, ZooKeeperServer


def _p99(summary: Summary) -> float:
    lat = sorted(s for _, s in summary.latencies)
    return 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from .soak import main as soak

        return soak(argv[1:])
    parser = base_parser(
        "Checkouts per second and p99 latency of the example shop by backend (memory, "
        "RedisLock, ZooKeeperLock) and worker processes, on servers started on loopback. "
        "'soak --seconds N' runs seeded fault schedules instead.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=4.0,
        help="seconds per configuration (default %(default)g)",
    )
    parser.add_argument(
        "--buyers",
        type=int,
        default=16,
        help="buyers in total, in every configuration (default %(default)s)",
    )
    parser.add_argument(
        "--redis", metavar="URL", help="use this Redis instead of starting one on loopback"
    )
    parser.add_argument(
        "--zookeeper",
        metavar="HOSTS",
        help="use this ZooKeeper instead of starting one on loopback",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="RESULTS",
        help="only redraw the plot from a results table such as benchmarks/results/shop.txt",
    )
    args = parser.parse_args(argv)
    if args.replot is not None:
        _plot(_points_from_table(args.replot.read_text()), args.out / "shop-scaling.png")
        return 0
    duration = 1.0 if args.quick else args.duration
    worker_counts = [1, 2] if args.quick else [1, 2, 4]
    rows: list[list[object]] = []
    results: dict[tuple[str, int], Summary] = {}
    with contextlib.ExitStack() as stack:
        redis_url = args.redis or stack.enter_context(RedisServer(appendonly=True)).url
        zk_hosts = args.zookeeper or stack.enter_context(ZooKeeperServer()).hosts
        configs: list[tuple[str, int, dict[str, str]]] = [("memory", 1, {})]
        for workers in worker_counts:
            configs.append(("redis", workers, {"redis": redis_url}))
            configs.append(("zookeeper", workers, {"zookeeper": zk_hosts}))
        for kind, workers, backend in progress(configs, total=len(configs), desc="shop"):
            settings = Settings(
                buyers=args.buyers,
                duration=duration,
                workers=workers,
                hot_stock=10**6,
                failing_gateway_rate=0.0,
                seed=args.seed,
                **backend,
            )
            with tempfile.TemporaryDirectory(prefix="scalekit-shop-bench-") as tmp:
                _, summary = run(settings, Path(tmp))
            results[(kind, workers)] = summary
            checkouts = len(summary.latencies)
            rows.append(
                [
                    kind,
                    workers,
                    checkouts / duration,
                    _p99(summary),
                    summary.placed,
                    sum(summary.rejected.values()),
                ]
            )
    table = format_table(
        ["backend", "workers", "checkouts/s", "p99 ms", "placed", "rejected"], rows
    )
    slowest = min(results, key=lambda k: len(results[k].latencies))
    summary = results[slowest]
    shares = {k: v / summary.busy_seconds for k, v in summary.phase_seconds.items()}
    shares["other"] = max(0.0, 1 - sum(shares.values()))
    where = f"slowest: {slowest[0]} x {slowest[1]} workers; buyer time: " + ", ".join(
        f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])
    )
    text = (
        f"shop checkouts, {args.buyers} buyers, {duration:g}s per configuration, "
        f"SQLite shards on local disk\n{table}\n{where}"
    )
    write_result(args.out, "shop" + ("-quick" if args.quick else ""), text)
    if not args.no_plot:
        _plot(
            {key: (len(s.latencies) / duration, _p99(s)) for key, s in results.items()},
            args.out / ("shop-scaling" + ("-quick" if args.quick else "") + ".png"),
        )
    return 0


def _points_from_table(text: str) -> dict[tuple[str, int], tuple[float, float]]:
    """{(backend, workers): (checkouts/s, p99 ms)} from the table `main` writes."""
    row = re.compile(r"^(memory|redis|zookeeper)\s+(\d+)\s+([\d,.]+)\s+([\d,.]+)\s", re.M)
    return {
        (m[1], int(m[2])): (float(m[3].replace(",", "")), float(m[4].replace(",", "")))
        for m in row.finditer(text)
    }


def _plot(points: dict[tuple[str, int], tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in ("memory", "redis", "zookeeper"):
        series = sorted((w, v) for (k, w), v in points.items() if k == kind)
        if not series:
            continue
        xs = [w for w, _ in series]
        left.plot(xs, [rate for _, (rate, _) in series], "o-", label=kind)
        right.plot(xs, [p99 for _, (_, p99) in series], "o-", label=kind)
    left.set_title("throughput (higher is better)")
    left.set_ylabel("checkouts per second")
    right.set_title("tail latency (lower is better)")
    right.set_ylabel("checkout p99 (ms)")
    for ax in (left, right):
        ax.set_xlabel("worker processes")
        ax.set_xticks(sorted({w for _, w in points}))
        ax.set_ylim(bottom=0)  # from zero, so a line's height is proportional to its value
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("scalekit shop: scaling by lock backend")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
