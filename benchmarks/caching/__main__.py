"""``python -m benchmarks.caching [all|replay|speed|synthetic]``: hit ratios, speed and memory.

Examples::

    python -m benchmarks.caching replay                       # every trace in data/traces
    python -m benchmarks.caching replay --only gli,multi1 --capacities 0.01,0.05,0.1
    python -m benchmarks.caching replay --traces ~/caffeine-traces   # traces you downloaded
    python -m benchmarks.caching replay --only /data/w.oracleGeneral.bin --format oracleGeneral
    python -m benchmarks.caching speed                        # writes caching-speed-compiled.txt
    SCALEKIT_PURE_PYTHON=1 python -m benchmarks.caching speed # ... or caching-speed-pure.txt
    python -m benchmarks.caching speed --ops 300000 --repeat 3   # a busy machine: *-quick.txt
    python -m benchmarks.caching speed --ops 300000 --repeat 5 --runs 3 --record  # committed
    python -m benchmarks.caching --quick                      # seconds; what the tests run
    python -m benchmarks.caching synthetic                    # seeded synthetic workload kinds
    python -m benchmarks.caching synthetic --kinds phases,recency --seed 2
"""

from __future__ import annotations

from pathlib import Path

from benchmarks._common import TRACES_DIR, base_parser, command_line, display_path, write_result
from benchmarks.caching.replay import POLICIES, parse_capacities, run_replay
from benchmarks.caching.speed import results_name, run_speed
from benchmarks.caching.synthetic import KINDS, run_synthetic
from benchmarks.caching.traces import FORMATS

QUICK_TRACES = "gli,multi1"


def _trace_paths(dirs: list[Path], spec: str | None, quick: bool) -> list[Path]:
    for folder in dirs:
        if not folder.is_dir():
            raise SystemExit(f"--traces {folder}: not a directory")
    if spec is None:
        if not quick:
            return sorted(p for folder in dirs for p in folder.glob("*.trace.[gx]z"))
        spec = QUICK_TRACES
    paths = []
    for item in spec.split(","):
        candidate = Path(item)
        if not candidate.exists():
            matches = [
                p
                for folder in dirs
                for p in sorted(folder.glob(f"*-{item}.trace.[gx]z"))
                + sorted(folder.glob(f"{item}*"))
            ]
            if not matches:
                where = ", ".join(display_path(folder) for folder in dirs)
                raise SystemExit(f"--only: no trace named {item!r} here or in {where}")
            candidate = matches[0]
        paths.append(candidate)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "The caches' hit ratios on real traces, and their speed and memory next to "
        "cachetools, cachebox, theine and functools.lru_cache.",
    )
    parser.add_argument(
        "suite",
        nargs="?",
        choices=["all", "replay", "speed", "synthetic"],
        default="all",
        metavar="SUITE",
        help="all, replay, speed or synthetic. replay: hit ratios on traces; speed: "
        "throughput and memory; all: both (default); synthetic: hit ratios on seeded "
        "synthetic workloads (--seed seeds them)",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="synthetic: comma-separated subset of the kinds (default: all of %(default)s)",
    )
    parser.add_argument(
        "--traces",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder of traces to replay; repeat it for several "
        f"(default: the committed {display_path(TRACES_DIR)}; see docs/caching.md for "
        "downloading the large ones)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated trace names (gli, web07...) looked up in the --traces "
        "folders, or file paths (default: every trace there; --quick: gli,multi1)",
    )
    parser.add_argument("--format", choices=FORMATS, help="trace format (default: from the name)")
    parser.add_argument(
        "--capacities",
        default=None,
        help="comma-separated counts or fractions of unique keys "
        "(default 0.01,0.02,0.05,0.1; --quick 0.01,0.1)",
    )
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help="comma-separated subset of the policies (default: all of %(default)s)",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=1_000_000,
        metavar="N",
        help="speed: operations in the Zipf stream (default 1,000,000; fewer on a busy machine)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="speed: measure every pair N times and add the median of each ratio (default 1)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="speed: write the committed caching-speed-compiled/-pure.txt even with a "
        "non-default --ops or --repeat (default: only the default full run does; other "
        "runs write *-quick.txt)",
    )
    args = parser.parse_args(argv)
    repeat = min(args.repeat, 3) if args.quick else args.repeat  # what the run uses
    if args.ops < 1 or args.repeat < 1 or args.runs < 1:
        parser.error(
            f"--ops, --repeat and --runs must be positive, got {args.ops}, {repeat} and {args.runs}"
        )
    # checked whichever suite runs: a typo is an error, not ignored
    caps = args.capacities or ("0.01,0.1" if args.quick else "0.01,0.02,0.05,0.1")
    try:
        capacities = parse_capacities(caps)
    except ValueError as exc:
        parser.error(f"--capacities: {exc}")
    policies = [p for p in args.policies.split(",") if p]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        parser.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")

    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or any(k not in KINDS for k in kinds):
        parser.error(f"--kinds: unknown kinds in {args.kinds!r}; choose from {list(KINDS)}")

    if args.suite == "synthetic":
        report = run_synthetic(kinds, seed=args.seed)
        write_result(args.out, "caching-synthetic", f"{command_line('caching')}\n\n{report}")
    if args.suite in ("all", "replay"):
        report = run_replay(
            _trace_paths(args.traces or [TRACES_DIR], args.only, args.quick),
            capacities,
            policies,
            args.out,
            fmt=args.format,
            plot=not args.no_plot,
        )
        name = "caching-replay-quick" if args.quick else "caching-replay"
        write_result(args.out, name, f"{command_line('caching')}\n\n{report}")
    if args.suite in ("all", "speed"):
        if args.quick:
            report = run_speed(
                n_keys=10_000,
                n_ops=50_000,
                capacity=1_000,
                repeat=min(args.repeat, 3),
                seed=args.seed,
                memory_entries=10_000,
                runs=args.runs,
            )
        else:
            report = run_speed(
                n_keys=100_000,
                n_ops=args.ops,
                capacity=10_000,
                repeat=args.repeat,
                seed=args.seed,
                memory_entries=100_000,
                runs=args.runs,
            )
        full = (args.ops, args.repeat, args.seed) == (
            parser.get_default("ops"),
            parser.get_default("repeat"),
            parser.get_default("seed"),
        )
        name = results_name(quick=args.quick, record=args.record or full)
        write_result(args.out, name, f"{command_line('caching')}\n\n{report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
