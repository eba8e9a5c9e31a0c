"""What every benchmark shares: timing by median, ratio tables, progress, output paths.

Each benchmark measures scalekit and its peer in the same run and reports
the ratio of their medians, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import re
import secrets
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# Where a --quick run writes when --out is not given: never over the committed
# results (the folder is ignored by git).
QUICK_DIR = RESULTS_DIR / "tmp"
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


# One id per benchmark process, written into every results file and plot it makes,
# so a plot and the text it illustrates can be told to come from the same run.
RUN_ID = (
    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    + "-"
    + secrets.token_hex(3)
)
_RUN_LINE = re.compile(r"^run: (\S+)$", re.MULTILINE)
_PNG_RUN_KEY = "scalekit-run"
# The plots that illustrate each results file: `write_result` warns when one of
# them in the same folder comes from another run.
PLOTS = {
    "balancing_simulation": ("balancing_latency_cdf.png",),
    "caching-replay": ("caching-hit-ratio-*.png",),
    "locking": ("locking_fairness.png",),
    "rediscache": ("rediscache.png",),
    "sharding": ("sharding.png",),
    "shop": ("shop-scaling.png",),
}
# An absolute or parent-relative path: a results file must not record the
# machine it ran on (`display_path` and `command_line` keep them out).
MACHINE_PATH = re.compile(r"(?<![^\s=,'\"(])(?:/(?:[\w.-]+/)+[\w.-]*|\.\./[\w./-]*|~/[\w./-]*)")


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
    parser = _BenchmarkParser(prog=f"python -m {family}", description=plain_text(description))
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (seconds), as the test suite does"
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=7,
        action=_Given,
        help="timed runs per measurement; the median is reported (default %(default)s; "
        "a --quick run uses fewer unless --repeat is given)",
    )
    parser.set_defaults(repeat_given=False)
    parser.add_argument(
        "--seed", type=int, default=20261125, help="random seed (default %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help=f"where text results and plots go (default {display_path(RESULTS_DIR)}; "
        f"with --quick {display_path(QUICK_DIR)}, so a smoke run never overwrites "
        "the committed results)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class _Given(argparse.Action):
    """Stores the value and records that the option was given (`repeat_given`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def repeat_for(args: argparse.Namespace, quick: int) -> int:
    """The timed runs per measurement: `--repeat` when given, else *quick* in a `--quick` run."""
    if args.quick and not args.repeat_given:
        return quick
    return int(args.repeat)


class _BenchmarkParser(argparse.ArgumentParser):
    """Parses as argparse does, then sends a `--quick` run's output to `QUICK_DIR`.

    A smoke run writes text and plots under the same names as a full run;
    aimed at the committed results folder (the default `--out`, or that
    folder given explicitly) it goes to the scratch folder instead.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        out = getattr(parsed, "out", None)
        quick = getattr(parsed, "quick", False)
        if quick and isinstance(out, Path) and out.resolve() == RESULTS_DIR.resolve():
            parsed.out = QUICK_DIR
        if isinstance(out, Path) and out.exists() and not out.is_dir():
            self.error(f"--out must be a folder (results go in it), got the file {out}")
        return parsed, rest


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
    """*path* as a results file that gets committed records it.

    Relative to the repository when inside it; otherwise only its name
    (a trace's file name, a folder's name), never where it sat on the machine
    that ran the benchmark.
    """
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path.name or str(path)


def command_line(family: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran, for a results header, with every path as `display_path` gives it.

    *argv* defaults to `sys.argv[1:]`; each argument (or comma-separated
    item) that names a file or folder, or looks like an absolute path, is
    shortened, so `--traces /data/caffeine/traces` is recorded as
    `--traces traces`.
    """
    argv = sys.argv[1:] if argv is None else argv

    def shorten(item: str) -> str:
        looks_like_path = item.startswith(("/", "../", "~")) or (
            "/" in item and Path(item).exists()
        )
        return display_path(Path(item).expanduser()) if looks_like_path else item

    args = [",".join(shorten(item) for item in arg.split(",")) for arg in argv]
    return " ".join(["$ python -m", f"benchmarks.{family}", *args])


def run_id_of(path: Path) -> str | None:
    """The `RUN_ID` a results file or plot was written with, or None if it has none."""
    if path.suffix == ".png":
        return _png_text(path).get(_PNG_RUN_KEY)
    found = _RUN_LINE.findall(path.read_text())
    return found[-1] if found else None


def _png_text(path: Path) -> dict[str, str]:
    """A PNG's tEXt and zTXt chunks, read without an imaging library."""
    data = path.read_bytes()
    chunks: dict[str, str] = {}
    pos = 8  # past the signature
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            chunks[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        pos += 12 + length
    return chunks


def save_figure(fig: Any, path: Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure as a PNG carrying this run's `RUN_ID`; return the path."""
    fig.savefig(path, metadata={_PNG_RUN_KEY: RUN_ID}, **kwargs)
    return path


def plots_from_other_runs(text_path: Path) -> list[Path]:
    """The plots beside *text_path* (see `PLOTS`) whose run is not the text's."""
    run = run_id_of(text_path)
    name = text_path.stem.removesuffix("-quick").removesuffix("_quick")
    if text_path.stem != name:
        return []  # a quick run's plots are not kept apart from the full run's
    return [
        png
        for pattern in PLOTS.get(name, ())
        for png in sorted(text_path.parent.glob(pattern))
        if run_id_of(png) != run
    ]


def write_result(out: Path, name: str, text: str) -> Path:
    """Print *text* and save it as `out/name.txt` with this run's `RUN_ID`; return the path.

    A machine path in *text* (an absolute path or one into a parent folder)
    is written as `display_path` gives it, so a long run is never lost to a
    stray path, and the results committed name no machine. Warns on stderr
    when a plot of this result in *out* comes from another run (made with
    `--no-plot`, or a plot left from an earlier run).
    """
    text = MACHINE_PATH.sub(lambda found: display_path(Path(found.group()).expanduser()), text)
    text = f"{text}\n\nrun: {RUN_ID}"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.txt"
    path.write_text(text + "\n")
    for png in plots_from_other_runs(path):
        print(
            f"warning: {display_path(png)} is from another run than {display_path(path)} "
            f"({run_id_of(png) or 'no run id'}, not {RUN_ID}); run again without --no-plot",
            file=sys.stderr,
        )
    return path
