"""``python -m benchmarks.shop soak``: the shop under seeded fault schedules, for a while.

Starts a redis-server with ``appendonly yes`` on loopback and runs one
fault schedule (examples/shop/faults.py: ``kill -9`` of a worker, a Redis
restart, a SIGSTOP past the lock ttl and a blackhole between a worker and
Redis, at random moments on random workers) after another, seeds counting
up from ``--seed``, until ``--seconds`` have passed. Each schedule must end
with the conservation audit exact, nothing oversold, orders placed and no
death but the planned kill. Prints each seed
as it starts, a progress bar, and a table of every schedule; exits 1 if
any schedule broke one of those (or none ran).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import RESULTS_DIR, display_path, format_table, plain_text, write_result
from examples.shop.faults import Outcome, run_schedule
from scalekit.testing import RedisServer


def _row(outcome: Outcome) -> list[object]:
    summary = outcome.summary
    return [
        outcome.seed,
        ", ".join(
            f"{f.kind}@{f.at:.1f}s" + ("" if f.kind == "restart" else f"/w{f.worker}")
            for f in outcome.faults
        ),
        summary.placed,
        summary.fence_rejections,
        sum(summary.errors.values()),
        len(summary.died),
        summary.units_swept,
        outcome.oversold,
        "exact" if outcome.audit.exact else "FAILED",
        f"{outcome.seconds:.1f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shop soak",
        description="The shop under seeded fault schedules, for a while. "
        + plain_text(__doc__.partition("\n\n")[2]),
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=120.0,
        help="keep starting schedules until this many seconds have passed (default %(default)g)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="the first seed, then +1 each (default %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=3,
        help="worker processes per schedule, at least 2 (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=6.0,
        help="seconds of load per schedule (default %(default)g)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help=f"where shop-soak.txt goes (default {display_path(RESULTS_DIR)})",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    if not 0 < args.duration < 600:
        parser.error(f"--duration must be seconds in (0, 600), got {args.duration}")
    if args.workers < 2:
        parser.error(f"--workers must be >= 2 (one is killed), got {args.workers}")
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - the bench extra has it
        tqdm = None
    bar = (
        tqdm(total=round(args.seconds), unit="s", desc="shop soak", file=sys.stderr)
        if tqdm is not None
        else None
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    seed = args.seed
    with RedisServer(appendonly=True) as redis:
        while time.monotonic() - started < args.seconds:
            print(f"seed {seed}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="scalekit-shop-soak-") as tmp:
                redis.execute("FLUSHALL")
                outcome = run_schedule(
                    seed, Path(tmp), redis, workers=args.workers, duration=args.duration
                )
            outcomes.append(outcome)
            if not outcome.ok:
                print(f"seed {seed}: {outcome.problems}", file=sys.stderr)
            if bar is not None:
                bar.n = min(round(args.seconds), round(time.monotonic() - started))
                bar.refresh()
            seed += 1
    if bar is not None:
        bar.close()
    table = format_table(
        [
            "seed",
            "faults (kind@time/worker, after the first order)",
            "placed",
            "fenced off",
            "errors",
            "died",
            "swept units",
            "oversold",
            "audit",
            "seconds",
        ],
        [_row(o) for o in outcomes],
    )
    broken = [o.seed for o in outcomes if not o.ok]
    verdict = (
        f"{len(outcomes)} schedules: in every one the audit exact, oversold 0, orders placed "
        f"and no death but the planned kill; {sum(o.summary.units_swept for o in outcomes)} "
        f"held units swept back in all"
        if not broken
        else f"{len(outcomes)} schedules, BROKEN: seeds {broken}"
    )
    text = (
        f"shop soak: {len(outcomes)} seeded fault schedules from seed {args.seed}, "
        f"{args.workers} workers, {args.duration:g}s of load each, Redis with appendonly yes\n"
        f"{table}\n{verdict}"
    )
    write_result(args.out, "shop-soak", text)
    return 1 if broken or not outcomes else 0


if __name__ == "__main__":
    raise SystemExit(main())
