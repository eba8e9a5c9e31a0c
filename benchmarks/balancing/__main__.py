"""``python -m benchmarks.balancing``: the tail-latency simulator and pick+release overhead.

Scenarios (11 endpoints by default, as in Linkerd's "Beyond Round Robin"):

* ``healthy``: every endpoint serves with the same distribution;
* ``slow``: one endpoint answers every request in 2 s;
* ``failing``: one endpoint fails every request within 1 ms; every
  strategy runs with consecutive-failure ejection (5 failures).

Targets checked: Peak EWMA's p99.9 and least request's p99 in ``slow`` stay
within 3x of their ``healthy`` run, round robin's p99 in ``slow`` is
dominated by the slow endpoint, the failing endpoint is ejected after the
configured number of failures and the error rate in the second half of the
run is near zero; pick+release <= 2 us.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import (
    base_parser,
    display_path,
    format_table,
    progress,
    repeat_for,
    save_figure,
    write_result,
)
from scalekit.balancing import (
    Balancer,
    HealthPolicy,
    LeastRequest,
    OutlierDetection,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)

from .overhead import TARGET_US, build_times, measure
from .simulator import EndpointModel, Result, Scenario, SimClock, service_time, simulate

STRATEGIES: list[type[Balancer]] = [
    RoundRobin,
    RandomBalancer,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
    LeastRequest,
    PeakEWMA,
]
SLOW_LATENCY = 2.0
FAILURES_TO_EJECT = 5


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    n: int = args.endpoints
    workers: int = args.workers
    mean: float = args.mean
    dist: str = args.dist
    requests: int = args.requests
    rate = args.utilisation * n * workers / mean
    sampler = service_time(dist, mean)

    def healthy(i: int) -> EndpointModel:
        return EndpointModel(f"e{i:02d}", sampler, workers)

    slow = EndpointModel("e00", service_time("constant", SLOW_LATENCY), None)
    failing = EndpointModel("e00", sampler, workers, error_rate=1.0, fail_latency=0.001)
    rest = [healthy(i) for i in range(1, n)]
    return [
        Scenario("healthy", [healthy(0), *rest], rate, requests),
        Scenario("slow", [slow, *rest], rate, requests),
        Scenario("failing", [failing, *rest], rate, requests),
    ]


def factory(
    cls: type[Balancer], names: list[str], with_health: bool
) -> Callable[[SimClock, random.Random], Balancer]:
    def make(clock: SimClock, rng: random.Random) -> Balancer:
        health = None
        if with_health:
            outlier = OutlierDetection(
                consecutive_failures=FAILURES_TO_EJECT,
                base_ejection_time=5.0,
                interval=1.0,
                success_rate_stdev_factor=None,
            )
            health = HealthPolicy(outlier=outlier)
        return cls(names, clock=clock, rng=rng, health=health)

    return make


def run_simulation(args: argparse.Namespace, out: Path) -> tuple[list[str], bool]:
    seed: int = args.seed
    runs = [(s, cls) for s in scenarios(args) for cls in STRATEGIES]
    results: dict[tuple[str, str], Result] = {}
    for scenario, cls in progress(runs, total=len(runs), desc="simulating"):
        names = [m.name for m in scenario.endpoints]
        failing = scenario.name == "failing"
        results[(scenario.name, cls.__name__)] = simulate(
            scenario, factory(cls, names, failing), seed=seed, watch="e00" if failing else None
        )
    lines: list[str] = []
    first = runs[0][0]
    lines.append(
        f"Simulator: {len(first.endpoints)} endpoints x {first.endpoints[0].workers} workers, "
        f"{args.dist} service time mean {args.mean * 1000:g} ms, "
        f"Poisson arrivals at utilisation {args.utilisation:g} "
        f"({first.rate:,.0f} req/s), {first.requests:,} requests per run, seed {seed}"
    )
    rows = []
    for (scenario_name, strategy), r in results.items():
        shares = r.share.values()
        total = max(1, sum(shares))
        rows.append(
            (
                scenario_name,
                strategy,
                r.percentile(50) * 1000,
                r.percentile(99) * 1000,
                r.percentile(99.9) * 1000,
                f"{100 * r.error_rate:.3f}%",
                f"{100 * r.share['e00'] / total:.2f}%",
                f"{100 * min(shares) / total:.1f}-{100 * max(shares) / total:.1f}%",
            )
        )
    headers = [
        "scenario",
        "strategy",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "e00 share",
        "share range",
    ]
    lines += ["", format_table(headers, rows)]

    checks: list[tuple[str, bool]] = []
    ratio_rows = []
    for cls in STRATEGIES:
        h, s = results[("healthy", cls.__name__)], results[("slow", cls.__name__)]
        p99 = s.percentile(99) / h.percentile(99)
        p999 = s.percentile(99.9) / h.percentile(99.9)
        ratio_rows.append((cls.__name__, f"{p99:.2f}x", f"{p999:.2f}x"))
    lines += [
        "",
        "slow / healthy, same strategy:",
        format_table(["strategy", "p99 ratio", "p99.9 ratio"], ratio_rows),
    ]
    ewma = (results[("slow", "PeakEWMA")], results[("healthy", "PeakEWMA")])
    lr = (results[("slow", "LeastRequest")], results[("healthy", "LeastRequest")])
    rr = results[("slow", "RoundRobin")]
    checks.append(
        (
            "PeakEWMA p99.9 (slow) <= 3x healthy: "
            f"{ewma[0].percentile(99.9) * 1000:.1f} ms vs {ewma[1].percentile(99.9) * 1000:.1f} ms",
            ewma[0].percentile(99.9) <= 3 * ewma[1].percentile(99.9),
        )
    )
    checks.append(
        (
            "LeastRequest p99 (slow) <= 3x healthy: "
            f"{lr[0].percentile(99) * 1000:.1f} ms vs {lr[1].percentile(99) * 1000:.1f} ms",
            lr[0].percentile(99) <= 3 * lr[1].percentile(99),
        )
    )
    checks.append(
        (
            f"RoundRobin p99 (slow) dominated by the {SLOW_LATENCY:g} s endpoint: "
            f"{rr.percentile(99) * 1000:.0f} ms",
            rr.percentile(99) >= 0.9 * SLOW_LATENCY,
        )
    )
    fail_rows = []
    for cls in STRATEGIES:
        r = results[("failing", cls.__name__)]
        ejected = r.first_ejection is not None
        fail_rows.append(
            (
                cls.__name__,
                f"{r.first_ejection:.3f} s" if ejected else "never",
                r.failures_before_ejection,
                f"{100 * r.error_rate:.3f}%",
                f"{100 * r.late_error_rate:.3f}%",
            )
        )
        checks.append(
            (
                f"{cls.__name__}: failing endpoint ejected after "
                f"{r.failures_before_ejection} failures (configured {FAILURES_TO_EJECT}); "
                f"second-half error rate {100 * r.late_error_rate:.3f}%",
                ejected
                and r.failures_before_ejection == FAILURES_TO_EJECT
                and r.late_error_rate < 0.005,
            )
        )
    lines += [
        "",
        f"failing endpoint (errors in 1 ms), ejection after {FAILURES_TO_EJECT} consecutive "
        "failures, base ejection 5 s, interval 1 s:",
        format_table(
            ["strategy", "ejected at", "failures before", "error rate", "2nd-half errors"],
            fail_rows,
        ),
    ]
    lines += ["", "targets:"] + [f"  [{'met' if ok else 'NOT MET'}] {text}" for text, ok in checks]
    if not args.no_plot:
        path = plot(results, out)
        lines.append(f"\nlatency CDFs: {display_path(path)}")
    return lines, all(ok for _, ok in checks)


def plot(results: dict[tuple[str, str], Result], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario_names = ["healthy", "slow", "failing"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    for ax, scenario_name in zip(axes, scenario_names, strict=True):
        for cls in STRATEGIES:
            r = results[(scenario_name, cls.__name__)]
            xs = r.sorted()
            count = len(xs)
            # Complementary CDF on log axes: the tail is where strategies differ.
            index = sorted({min(count - 1, int(count * (1 - 10 ** (-k / 50)))) for k in range(251)})
            ax.step(
                [max(xs[i], 1e-4) * 1000 for i in index],
                [max(1 - (i + 1) / count, 0.5 / count) for i in index],
                where="post",
                label=cls.__name__,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(scenario_name)
        ax.set_xlabel("latency (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of requests slower (1 - CDF)")
    axes[-1].legend(loc="lower left", fontsize=8)
    fig.suptitle("Latency tail per strategy (complementary CDF) - python -m benchmarks.balancing")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "balancing_latency_cdf.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def run_overhead(args: argparse.Namespace) -> tuple[list[str], bool]:
    quick: bool = args.quick
    ops = 2_000 if quick else 20_000
    repeat = repeat_for(args, 3)
    rows = measure((10, 1000), ops, repeat, args.seed)
    table = format_table(
        ["balancer", "endpoints", "weights", "us per pick+release", "x floor"],
        [(name, n, w, us, f"{ratio:.2f}x") for name, n, w, us, ratio in rows],
    )
    misses = [
        f"{name} ({w}) at {n}: {us:.2f} us"
        for name, n, w, us, _ in rows
        if "floor" not in name and us > TARGET_US
    ]
    lines = [
        f"pick+release overhead (median of {repeat} runs of {ops:,} ops, "
        f"target <= {TARGET_US:g} us):",
        table,
        "",
    ]
    builds = build_times(3 if quick else 5)
    for name, seconds in builds:
        lines.append(f"{name}: {seconds * 1000:.1f} ms")
        if "maglev" in name and seconds > 0.1:
            misses.append(f"{name}: {seconds * 1000:.1f} ms > 100 ms")
    lines.append("targets: " + ("all met" if not misses else "NOT MET for " + "; ".join(misses)))
    return lines, not misses


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "Every balancer's tail latency in a simulated cluster (healthy, one slow and one "
        "failing endpoint) and its pick+release overhead.",
    )
    parser.add_argument("--endpoints", type=int, default=11, help="endpoints (default %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=8, help="workers per endpoint (default %(default)s)"
    )
    parser.add_argument(
        "--mean",
        type=float,
        default=0.010,
        help="mean service time in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--dist",
        default="exponential",
        choices=["exponential", "lognormal", "constant"],
        help="service time distribution (default %(default)s)",
    )
    parser.add_argument(
        "--utilisation",
        type=float,
        default=0.6,
        help="offered load per worker, 0..1 (default %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per run (default 200,000; 5,000 with --quick)",
    )
    parser.add_argument(
        "--only", choices=["sim", "overhead"], default=None, help="run one part (default both)"
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 5_000 if args.quick else 200_000
    ok = True
    if args.only != "overhead":
        lines, sim_ok = run_simulation(args, args.out)
        write_result(
            args.out, "balancing_simulation" + ("_quick" if args.quick else ""), "\n".join(lines)
        )
        ok = ok and sim_ok
    if args.only != "sim":
        lines, _ = run_overhead(args)
        write_result(
            args.out, "balancing_overhead" + ("_quick" if args.quick else ""), "\n".join(lines)
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
