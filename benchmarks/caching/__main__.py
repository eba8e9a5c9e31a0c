"""``python -m benchmarks.caching [all|replay|speed]``: hit ratios on traces, speed and memory.

Examples::

    python -m benchmarks.caching replay                       # every trace in ../shared/traces
    python -m benchmarks.caching replay --traces gli,multi1 --capacities 0.01,0.05,0.1
    python -m benchmarks.caching replay --traces ../shared/traces  # every trace in a folder
    python -m benchmarks.caching replay --traces /data/w.oracleGeneral.bin --format oracleGeneral
    python -m benchmarks.caching speed
    python -m benchmarks.caching --quick                      # seconds; what the tests run
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks._common import TRACES_DIR, base_parser, write_result
from benchmarks.caching.replay import POLICIES, parse_capacities, run_replay
from benchmarks.caching.speed import run_speed
from benchmarks.caching.traces import FORMATS

QUICK_TRACES = "gli,multi1"


def _trace_paths(spec: str | None, quick: bool) -> list[Path]:
    if spec is None:
        if quick:
            spec = QUICK_TRACES
        else:
            return sorted(TRACES_DIR.glob("*.trace.gz"))
    paths = []
    for item in spec.split(","):
        candidate = Path(item)
        if candidate.is_dir():
            paths.extend(sorted(candidate.glob("*.trace.gz")))
            continue
        if not candidate.exists():
            matches = sorted(TRACES_DIR.glob(f"*-{item}.trace.gz")) or sorted(
                TRACES_DIR.glob(f"{item}*")
            )
            if not matches:
                raise SystemExit(f"no trace named {item!r} here or in {TRACES_DIR}")
            candidate = matches[0]
        paths.append(candidate)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "cache benchmarks")
    parser.add_argument("suite", nargs="?", choices=["all", "replay", "speed"], default="all")
    parser.add_argument("--traces", help="comma-separated trace names (gli, web07...) or paths")
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
        help=f"comma-separated subset of {','.join(POLICIES)}",
    )
    args = parser.parse_args(argv)

    if args.suite in ("all", "replay"):
        caps = args.capacities or ("0.01,0.1" if args.quick else "0.01,0.02,0.05,0.1")
        policies = [p for p in args.policies.split(",") if p]
        unknown = [p for p in policies if p not in POLICIES]
        if unknown:
            parser.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")
        report = run_replay(
            _trace_paths(args.traces, args.quick),
            parse_capacities(caps),
            policies,
            args.out,
            fmt=args.format,
            plot=not args.no_plot,
        )
        name = "caching-replay-quick" if args.quick else "caching-replay"
        write_result(
            args.out, name, f"$ python -m benchmarks.caching {' '.join(sys.argv[1:])}\n\n{report}"
        )
    if args.suite in ("all", "speed"):
        if args.quick:
            report = run_speed(
                n_keys=10_000,
                n_ops=50_000,
                capacity=1_000,
                repeat=min(args.repeat, 3),
                seed=args.seed,
                memory_entries=10_000,
            )
        else:
            report = run_speed(
                n_keys=100_000,
                n_ops=1_000_000,
                capacity=10_000,
                repeat=args.repeat,
                seed=args.seed,
                memory_entries=100_000,
            )
        name = "caching-speed-quick" if args.quick else "caching-speed"
        write_result(
            args.out, name, f"$ python -m benchmarks.caching {' '.join(sys.argv[1:])}\n\n{report}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
