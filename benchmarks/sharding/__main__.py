"""Sharding benchmark: ``python -m benchmarks.sharding [--quick]``.

Measured side by side in one run, 10 shards, random string keys:

* lookups per second of every HashRouter strategy and of uhashring's
  ``ketama`` mode (the peer), as ratios of medians;
* balance: the busiest shard's keys over the mean, over 1e6 keys;
* keys moved when a shard is added (10 -> 11), over the ideal 1/11, counted
  on the keys and computed exactly by ``plan_to``; modulo for contrast;
* ``TimeRouter.route`` for hour, day and month partitions in UTC and
  Europe/Berlin, next to the hand-written partitioner it replaces
  (``template.format(dt.astimezone(tz).replace(minute=0, ...))``, which
  knows nothing of DST), as ratios of medians.

Targets (issue 5): ketama >= 2x uhashring ketama, jump and slots >= 1.3x;
balance <= 1.02 for jump, maglev and slots; moved <= 1.05x ideal for jump,
rendezvous and the ketama ring.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import Counter
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
from scalekit.sharding import STRATEGIES, HashRouter

SHARDS = 10
LOOKUP_TARGETS = {"ketama": 2.0, "jump": 1.3, "slots": 1.3}
BALANCE_TARGET = {"jump": 1.02, "maglev": 1.02, "slots": 1.02}
MOVED_TARGET = {"jump": 1.05, "rendezvous": 1.05, "ketama": 1.05}


def shard_names(count: int) -> list[str]:
    return [f"shard-{i:02d}" for i in range(count)]


def random_keys(rng: random.Random, count: int) -> list[str]:
    return [f"user:{rng.getrandbits(64):016x}" for _ in range(count)]


def uhashring_ring(names: list[str]) -> Any:
    from uhashring import HashRing

    return HashRing(names, hash_fn="ketama")


def bench_lookups(keys: list[str], repeat: int) -> list[list[Any]]:
    names = shard_names(SHARDS)
    contenders: list[tuple[str, Any]] = [
        ("uhashring ketama (peer)", uhashring_ring(names).get_node)
    ]
    contenders += [(s, HashRouter(names, strategy=s).route) for s in STRATEGIES]

    def loop(route: Any) -> None:
        for key in keys:
            route(key)

    # Rounds that time every contender once, so a burst of load from other
    # processes on the shared machine hits all of them, not one.
    times: dict[str, list[float]] = {label: [] for label, _ in contenders}
    for round_ in progress(range(repeat), total=repeat, desc="lookups"):
        for label, route in contenders:
            times[label].append(
                median_time(
                    lambda route=route: loop(route), repeat=1, warmup=1 if round_ == 0 else 0
                )
            )
    peer_time = statistics.median(times[contenders[0][0]])
    rows: list[list[Any]] = [[contenders[0][0], len(keys) / peer_time, "1.00x", "", ""]]
    for label, _ in contenders[1:]:
        elapsed = statistics.median(times[label])
        ratio = peer_time / elapsed
        target = LOOKUP_TARGETS.get(label)
        verdict = "" if target is None else ("met" if ratio >= target else "NOT MET")
        rows.append(
            [
                f"scalekit {label}",
                len(keys) / elapsed,
                f"{ratio:.2f}x",
                "" if target is None else f">= {target}x",
                verdict,
            ]
        )
    return rows


def bench_balance(keys: list[str]) -> list[list[Any]]:
    names = shard_names(SHARDS)
    rows: list[list[Any]] = []
    contenders: list[tuple[str, Any]] = [
        (s, HashRouter(names, strategy=s).route) for s in STRATEGIES
    ]
    contenders.append(("uhashring ketama", uhashring_ring(names).get_node))
    for label, route in progress(contenders, desc="balance"):
        counts = Counter(route(k) for k in keys)
        ratio = max(counts.values()) / (len(keys) / SHARDS)
        target = BALANCE_TARGET.get(label)
        rows.append(
            [
                label,
                ratio,
                "" if target is None else f"<= {target}",
                "" if target is None else ("met" if ratio <= target else "NOT MET"),
            ]
        )
    return rows


def bench_moved(keys: list[str], rng: random.Random, name_sets: int) -> list[list[Any]]:
    ideal = 1 / (SHARDS + 1)
    rows: list[list[Any]] = []
    for strategy in progress(STRATEGIES, desc="moved"):
        before = HashRouter(shard_names(SHARDS), strategy=strategy)
        after = before.copy()
        after.add_shard(f"shard-{SHARDS:02d}")
        moved = sum(before.route(k) != after.route(k) for k in keys) / len(keys)
        plan = before.plan_to(after)
        assert plan.fraction is not None
        # The same change over other shard names: for the ring, how much of the
        # figure above is the new name's luck of the MD5 draw.
        spread = []
        if strategy in ("ketama", "maglev"):
            for _ in range(name_sets):
                names = [f"node-{rng.getrandbits(32):08x}" for _ in range(SHARDS + 1)]
                a = HashRouter(names[:-1], strategy=strategy)
                b = a.copy()
                b.add_shard(names[-1])
                fraction = a.plan_to(b).fraction
                assert fraction is not None
                spread.append(fraction / ideal)
        target = MOVED_TARGET.get(strategy)
        ratio = moved / ideal
        rows.append(
            [
                strategy,
                moved,
                ratio,
                plan.fraction / ideal,
                f"{sum(spread) / len(spread):.3f} ({min(spread):.2f}-{max(spread):.2f})"
                if spread
                else "",
                "" if target is None else f"<= {target}",
                "" if target is None else ("met" if ratio <= target else "NOT MET"),
            ]
        )
    return rows


def plot(
    out: Any, lookups: list[list[Any]], balance: list[list[Any]], moved: list[list[Any]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = [r[0].replace("scalekit ", "").replace(" (peer)", "\n(peer)") for r in lookups]
    axes[0].bar(
        labels, [r[1] / 1e6 for r in lookups], color=["grey"] + ["tab:blue"] * (len(lookups) - 1)
    )
    axes[0].set_ylabel("million lookups / s (higher is better)")
    axes[0].set_title(f"Lookups, {SHARDS} shards, random string keys")
    axes[1].bar([r[0] for r in balance], [r[1] for r in balance], color="tab:green")
    axes[1].axhline(1.02, color="red", linestyle="--", label="target 1.02")
    axes[1].set_ylim(0.98, max(1.25, max(r[1] for r in balance) + 0.02))
    axes[1].set_ylabel("busiest shard / mean (lower is better)")
    axes[1].set_title("Balance")
    axes[1].legend()
    axes[2].bar([r[0] for r in moved], [r[2] for r in moved], color="tab:orange")
    axes[2].axhline(1.05, color="red", linestyle="--", label="target 1.05")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("keys moved / ideal 1/11 (log scale)")
    axes[2].set_title(f"Adding a shard: {SHARDS} -> {SHARDS + 1}")
    axes[2].legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out / "sharding.png", dpi=110)
    plt.close(fig)


def bench_time(count: int, repeat: int) -> list[list[Any]]:
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from scalekit.sharding import TimeRouter

    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    moments = [start + timedelta(minutes=7 * i) for i in range(count)]
    cases = [
        ("hour", "h_{:%Y%m%d_%H}", {"minute": 0, "second": 0, "microsecond": 0}),
        ("day", "d_{:%Y%m%d}", {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}),
        ("month", "m_{:%Y_%m}", {"day": 1, "hour": 0, "minute": 0, "second": 0}),
    ]
    rows: list[list[Any]] = []
    for interval, template, zero in cases:
        for tz in (timezone.utc, ZoneInfo("Europe/Berlin")):
            route = TimeRouter(interval, template, tz=tz).route

            def by_hand(
                dt: datetime, tz: Any = tz, template: str = template, zero: Any = zero
            ) -> str:
                return template.format(dt.astimezone(tz).replace(**zero))

            times: dict[str, list[float]] = {"scalekit": [], "by hand": []}
            for round_ in range(repeat):
                for label, fn in (("by hand", by_hand), ("scalekit", route)):
                    times[label].append(
                        median_time(
                            lambda fn=fn: [fn(m) for m in moments],
                            repeat=1,
                            warmup=1 if round_ == 0 else 0,
                        )
                    )
            mine = statistics.median(times["scalekit"])
            peer = statistics.median(times["by hand"])
            zone = getattr(tz, "key", "UTC")
            rows.append(
                [
                    f"{interval}, {zone}",
                    1e6 * mine / count,
                    1e6 * peer / count,
                    f"{peer / mine:.2f}x",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "Every HashRouter strategy's lookups per second next to uhashring, the balance of "
        "keys over shards, and the keys moved when a shard is added.",
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    lookup_keys = random_keys(rng, 20_000 if args.quick else 200_000)
    balance_keys = random_keys(rng, 100_000 if args.quick else 1_000_000)
    repeat = repeat_for(args, 5)
    started = time.perf_counter()
    lookups = bench_lookups(lookup_keys, repeat)
    balance = bench_balance(balance_keys)
    moved = bench_moved(balance_keys, rng, 3 if args.quick else 30)
    partitions = bench_time(5_000 if args.quick else 50_000, repeat)
    text = "\n\n".join(
        [
            f"python -m benchmarks.sharding{' --quick' if args.quick else ''} "
            f"(seed {args.seed}, Python {sys.version.split()[0]}, {SHARDS} shards)",
            f"Lookups ({len(lookup_keys):,} random string keys, "
            f"median of {repeat} interleaved rounds; "
            "ratio = uhashring time / scalekit time)\n"
            + format_table(["router", "lookups/s", "vs uhashring", "target", ""], lookups),
            f"Balance over {len(balance_keys):,} keys (busiest shard / mean)\n"
            + format_table(["strategy", "max/mean", "target", ""], balance),
            f"Keys moved adding shard {SHARDS + 1} (ideal 1/{SHARDS + 1} = {1 / (SHARDS + 1):.4f}; "
            f"counted on {len(balance_keys):,} keys, and plan_to's exact fraction)\n"
            + format_table(
                [
                    "strategy",
                    "moved",
                    "/ideal",
                    "plan /ideal",
                    "/ideal over other names: mean (min-max)",
                    "target",
                    "",
                ],
                moved,
            ),
            f"TimeRouter.route ({5_000 if args.quick else 50_000:,} moments 7 minutes apart, "
            f"median of {repeat} interleaved rounds; ratio = by-hand time / scalekit time)\n"
            + format_table(
                ["partitions", "scalekit us/route", "by hand us/route", "vs by hand"], partitions
            ),
            f"({time.perf_counter() - started:.1f} s)",
        ]
    )
    write_result(args.out, "sharding-quick" if args.quick else "sharding", text)
    if not args.no_plot:
        plot(args.out, lookups, balance, moved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
