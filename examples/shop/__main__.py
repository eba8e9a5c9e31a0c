"""``python -m examples.shop``: run the load simulation and print its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .simulation import Settings, oversold, plot, report, run, temporary_directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Run the scalekit shop's order flow under load and report what happened. "
        "Without --redis or --zookeeper it runs on in-memory locks and caches.",
    )
    parser.add_argument(
        "--buyers",
        type=int,
        default=Settings.buyers,
        help="concurrent buyers, spread over the workers (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=Settings.duration,
        help="seconds of load (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=Settings.workers,
        help="processes; more than 1 needs --redis or --zookeeper",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=Settings.shards,
        help="SQLite databases users and orders are sharded over",
    )
    parser.add_argument(
        "--hot-stock",
        type=int,
        default=Settings.hot_stock,
        help="units of each hot SKU (default %(default)s)",
    )
    parser.add_argument(
        "--redis", metavar="URL", help="share RedisLock locks and a NearCache over this Redis"
    )
    parser.add_argument(
        "--zookeeper",
        metavar="HOSTS",
        help="share ZooKeeperLock locks over this ZooKeeper (host:port,...)",
    )
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="keep the SQLite databases in DIR (default: a temporary directory)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="write checkout latency over time to this PNG"
    )
    args = parser.parse_args(argv)
    for name in ("buyers", "workers", "shards", "hot_stock"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.plot is not None:
        try:  # before the run, not after it
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(
                "--plot needs matplotlib, which is not installed: pip install -e '.[bench]'"
            )
    if args.duration <= 0:
        parser.error(f"--duration must be > 0, got {args.duration}")
    if args.redis and args.zookeeper:
        parser.error("give --redis or --zookeeper, not both")
    if args.workers > 1 and not (args.redis or args.zookeeper):
        parser.error(
            f"--workers {args.workers} needs --redis or --zookeeper: in-memory locks "
            "do not cross processes"
        )
    if args.workers > args.buyers:
        parser.error(f"--workers ({args.workers}) must not exceed --buyers ({args.buyers})")
    settings = Settings(
        buyers=args.buyers,
        duration=args.duration,
        workers=args.workers,
        shards=args.shards,
        hot_stock=args.hot_stock,
        seed=args.seed,
        redis=args.redis,
        zookeeper=args.zookeeper,
    )
    kind = "redis" if args.redis else "zookeeper" if args.zookeeper else "memory"
    with temporary_directory() as tmp:
        directory = args.data if args.data is not None else Path(tmp)
        storage, summary = run(settings, directory)
        print(report(storage, summary, settings, kind))
        if args.plot is not None:
            plot(summary, args.plot)
            print(f"latency plot: {args.plot}")
        return 1 if oversold(storage) else 0


if __name__ == "__main__":
    raise SystemExit(main())
