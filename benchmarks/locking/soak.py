"""Soak the locks under randomized fault schedules and print the checker's table.

``python -m benchmarks.locking soak --seconds 300`` runs seeded fault
schedules (see `scalekit.testing.lock_workload`) against every backend in
turn, each schedule ``--chunk`` seconds long with a fresh random seed,
until the time is spent; ``--seed S`` replays one schedule per backend;
``--backend`` limits the backends, ``--without FAULT`` leaves a fault kind
out (say, to look past a known defect). Every seed is printed before its run, so
a violation can be replayed. The exit status is 1 when any invariant was
violated.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from scalekit.testing.lock_checker import INVARIANTS
from scalekit.testing.lock_workload import BACKENDS, FAULTS, SoakResult, run_schedule

from .._common import format_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.locking soak",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=120.0,
        help="total time to soak for, in seconds (default %(default)g)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="replay this seed once per backend (default: fresh random seeds)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="a backend to soak (repeatable; default: all)",
    )
    parser.add_argument(
        "--chunk",
        type=float,
        default=20.0,
        help="seconds of faults per schedule (default %(default)g)",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="FAULT",
        help="leave this fault kind out of every schedule (repeatable), e.g. to look "
        "past a known defect; faults a backend does not have are ignored for it "
        "(default: none)",
    )
    parser.add_argument(
        "--keep",
        default=None,
        help="keep histories and logs under this directory (default: kept only for a failure)",
    )
    return parser


class _Bar:
    """A progress bar over the whole soak (tqdm when stderr is a terminal)."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.bar: Any = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(
                total=round(total), unit="s", file=sys.stderr, disable=not sys.stderr.isatty()
            )
        except ImportError:
            pass
        self.done = 0.0

    def to(self, seconds: float, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)
            self.bar.update(max(0, round(min(seconds, self.total)) - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    backends = args.backend or list(BACKENDS)
    rng = random.Random()
    results: list[SoakResult] = []
    began = time.monotonic()
    bar = _Bar(args.seconds)
    try:
        while True:
            for backend in backends:
                seed = args.seed if args.seed is not None else rng.randrange(1, 10**6)
                left = args.seconds - (time.monotonic() - began)
                chunk = args.chunk if args.seed is not None else min(args.chunk, left)
                if args.seed is None and chunk < 2:
                    break
                print(f"soak: backend={backend} seed={seed} faults for {chunk:g}s", flush=True)
                base = time.monotonic() - began
                keep = (
                    None
                    if args.keep is None
                    else str(Path(args.keep).resolve() / f"{backend}-{seed}")
                )
                result = run_schedule(
                    backend,
                    seed=seed,
                    seconds=chunk,
                    keep=keep,
                    without=[k for k in args.without if k in FAULTS[backend]],
                    progress=lambda f, base=base, chunk=chunk, b=backend: bar.to(
                        base + f * (chunk + 6), f"{b}"
                    ),
                )
                results.append(result)
                print(result.summary(), flush=True)
                if not result.report.ok:
                    print(result.report.table())
                    for violation in result.report.violations[:10]:
                        print(f"  {violation.invariant}: {violation.message}")
                    print(f"  histories and logs kept in {result.kept}")
                    print(
                        f"  replay: python -m benchmarks.locking soak --backend {backend} "
                        f"--seed {seed} --chunk {chunk:g}"
                        + "".join(f" --without {k}" for k in args.without if k in FAULTS[backend])
                    )
            if args.seed is not None or time.monotonic() - began >= args.seconds - 2:
                break
    finally:
        bar.close()
    print()
    print(_table(results))
    print()
    print(_faults_applied(results))
    return 0 if all(r.report.ok for r in results) else 1


def _faults_applied(results: list[SoakResult]) -> str:
    """Per backend, how many faults of each kind the nemesis applied, and how many overlapped."""
    lines = ["faults applied (kind: count; overlapping: started while another was active)"]
    for backend in BACKENDS:
        mine = [r for r in results if r.backend == backend]
        if not mine:
            continue
        kinds: Counter[str] = Counter()
        overlapping = 0
        for r in mine:
            active: set[tuple[str, str]] = set()
            for e in r.events:
                if e.process != "nemesis" or e.f in ("quiet", "end", "stuck"):
                    continue
                key = (e.f, str(e.data.get("target", "")))
                if e.type == "invoke" or e.f == "kill":
                    kinds[e.f] += 1
                    overlapping += bool(active)
                    if e.type == "invoke":
                        active.add(key)
                else:
                    active.discard(key)
        listed = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        lines.append(f"  {backend}: {listed}; overlapping {overlapping}")
    return "\n".join(lines)


def _table(results: list[SoakResult]) -> str:
    rows = []
    for backend in BACKENDS:
        mine = [r for r in results if r.backend == backend]
        if not mine:
            continue
        row: list[Any] = [
            backend,
            " ".join(str(r.seed) for r in mine),
            sum(len(r.schedule) for r in mine),
            sum(int(r.report.stats["leases"]) for r in mine),
            sum(int(r.report.stats["writes_ok"]) for r in mine),
            sum(int(r.report.stats["writes_refused"]) for r in mine),
        ]
        for name in INVARIANTS:
            checked = sum(r.report.checked[name] for r in mine)
            bad = sum(len(r.report.failed(name)) for r in mine)
            row.append(f"{bad}/{checked}")
        rows.append(row)
    headers = ["backend", "seeds", "faults", "leases", "writes", "refused"]
    headers += [f"{name} bad/checked" for name in INVARIANTS]
    return format_table(headers, rows)
