"""What every benchmark shares: timing by median, ratio tables, progress, output paths.

Each benchmark measures scalekit and its peer in the same run and reports
the ratio of their medians, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# The small traces committed with the repository; larger ones come from ``--traces DIR``.
TRACES_DIR = REPO_ROOT / "data" / "traces"
# Reference hit ratios: the committed traces' rows, then the rows of the traces
# a user downloads (orm-busy, the address/w106/request/vaultservice/scan/zigzag set).
REFERENCE_TABLES = (
    TRACES_DIR / "README.md",
    REPO_ROOT / "benchmarks" / "caching" / "reference-hit-ratios.md",
)


_ROLE = re.compile(r":[a-z]+:`([^`]*)`")
_CODE = re.compile(r"``([^`]*)``|(?<![\w'])`([^`\s][^`]*)`")


def plain_text(text: str) -> str:
    """*text* without reST roles, double-backtick literals or Markdown code spans.

    `--help` prints a description as is, so markup copied from a module
    docstring would show raw in a terminal.

    >>> plain_text("``python -m x`` runs :class:`Cache` (see `soak`)")
    'python -m x runs Cache (see soak)'
    """
    text = _ROLE.sub(r"\1", text)
    return _CODE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes.

    Its `prog` is `python -m benchmarks.<family>`, the calling module's
    family, so `--help` shows the command a user types; *description* is
    printed as plain text (see `plain_text`). Every option's help says its
    default; `tests/benchmarks/test_cli.py` checks each command's.
    """
    caller = sys._getframe(1).f_globals
    spec = caller.get("__spec__")
    module = spec.name if spec is not None else caller["__name__"]
    family = ".".join(module.split(".")[:2])
    parser = argparse.ArgumentParser(
        prog=f"python -m {family}", description=plain_text(description)
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (seconds), as the test suite does"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="timed runs per measurement; the median is reported (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=20261125, help="random seed (default %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help=f"where text results and plots go (default {display_path(RESULTS_DIR)})",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    return parser


def median_time(fn: Callable[[], Any], *, repeat: int = 7, warmup: int = 1) -> float:
    """Run *fn* ``warmup`` times untimed, then ``repeat`` times; return the median seconds.

    The garbage collector is paused during each timed run so a collection
    triggered by one contender is not billed to the next.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times)


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", disable: bool = False
) -> Iterator[T]:
    """Wrap *iterable* in a tqdm progress bar on stderr when tqdm is installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield from iterable
        return
    yield from tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=disable or not sys.stderr.isatty(),
        leave=False,
        file=sys.stderr,
    )


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned numbers, for terminals and results files."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)),
        "  ".join("-" * w for w in widths),
    ]
    for row in body:
        lines.append(
            "  ".join(
                v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=False)
            )
        )
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("x", "").replace("%", "")
    return stripped.lstrip("-").isdigit()


def display_path(path: Path) -> str:
    """*path* relative to the repository when inside it, for results files that get committed."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_result(out: Path, name: str, text: str) -> Path:
    """Print *text* and save it as ``out/name.txt``; return the path."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.txt"
    path.write_text(text + "\n")
    return path
