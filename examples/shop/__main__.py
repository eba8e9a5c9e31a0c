"""``python -m examples.shop``: run the load simulation and print its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .simulation import Settings, oversold, plot, report, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Run the scalekit shop's order flow under load and report what happened.")
    parser.add_argument("--buyers", type=int, default=Settings.buyers,
                        help="concurrent buyers (threads)")
    parser.add_argument("--duration", type=float, default=Settings.duration,
                        help="seconds of load")
    parser.add_argument("--shards", type=int, default=Settings.shards,
                        help="SQLite databases users and orders are sharded over")
    parser.add_argument("--hot-stock", type=int, default=Settings.hot_stock,
                        help="units of each hot SKU")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="write checkout latency over time to this PNG")
    args = parser.parse_args(argv)
    for name in ("buyers", "shards", "hot_stock"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.duration <= 0:
        parser.error(f"--duration must be > 0, got {args.duration}")
    settings = Settings(buyers=args.buyers, duration=args.duration, shards=args.shards,
                        hot_stock=args.hot_stock, seed=args.seed)
    shop, result, hot = run(settings)
    print(report(shop, result, hot, settings))
    if args.plot is not None:
        plot(result, args.plot)
        print(f"latency plot: {args.plot}")
    return 1 if oversold(shop) else 0


if __name__ == "__main__":
    raise SystemExit(main())
