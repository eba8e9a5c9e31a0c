"""Replay cache traces through every policy and compare hit ratios.

Capacities are counts (``100``) or fractions of the trace's unique keys
(``0.01``); each run prints a table per trace, a summary against the
reference table of the traces' README (when the trace is listed there; the
README beside the traces is read too) and writes a hit-ratio-vs-capacity PNG
per trace. On the summary's rows TinyLFU is replayed once per seed of its
admission RNG (`SEEDS`) and the worst seed is held to the two targets: at
least the Caffeine column, and within a point of the best non-Belady column.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import REFERENCE_TABLES, display_path, format_table, progress, save_figure
from benchmarks.caching.traces import read_trace, short_name
from scalekit.caching import (
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    S3FIFOCache,
    SIEVECache,
    TinyLFUCache,
)

__all__ = ["POLICIES", "SEEDS", "parse_capacities", "reference_table", "replay", "run_replay"]

POLICIES: dict[str, Callable[[int], Cache[Any, Any]]] = {
    "LRU": LRUCache,
    "FIFO": FIFOCache,
    "LFU": LFUCache,
    "SIEVE": SIEVECache,
    "S3-FIFO": S3FIFOCache,
    "TinyLFU": lambda n: TinyLFUCache(n, rng=random.Random(1)),
}
SEEDS = (1, 2, 3, 4, 5)
_CHUNK = 20_000
_MISSING = object()


def parse_capacities(text: str) -> list[float]:
    """``"0.01,0.1,500"`` -> fractions (< 1) and counts (>= 1)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v < math.inf for v in values):
        raise ValueError(f"capacities must be positive finite numbers, got {text!r}")
    return values


def capacity_for(value: float, unique: int) -> int:
    """A fraction of the unique keys (rounded down, at least 1) or a count."""
    return max(1, int(unique * value)) if value < 1 else int(value)


def replay(cache: Cache[Any, Any], keys: Sequence[int], desc: str = "") -> float:
    """Replay *keys* (insert on miss) and return the hit ratio in percent."""
    get = cache.get
    for start in progress(range(0, len(keys), _CHUNK), total=-(-len(keys) // _CHUNK), desc=desc):
        for key in keys[start : start + _CHUNK]:
            if get(key, _MISSING) is _MISSING:
                cache[key] = True
    return 100.0 * cache.stats().hit_ratio


def reference_table(readme: Path) -> dict[tuple[str, int], dict[str, float]]:
    """{(trace, capacity): {column: hit ratio %}} from the traces' README, if present."""
    if not readme.exists():
        return {}
    lines = readme.read_text().splitlines()
    header = next((ln for ln in lines if ln.startswith("| trace @ capacity")), None)
    if header is None:
        return {}
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    table = {}
    for line in lines:
        match = re.match(r"\|\s*([\w-]+) @(\d+)\s*\|(.*)\|\s*$", line)
        if match:
            cells = [float(c) for c in match.group(3).split("|")]
            table[(match.group(1), int(match.group(2)))] = dict(zip(columns, cells, strict=True))
    return table


def row_name(path: Path, reference: dict[tuple[str, int], Any]) -> str:
    """The name a trace has in the reference table (``address-gcc`` -> ``gcc``)."""
    name = short_name(path)
    if any(row[0] == name for row in reference):
        return name
    tail = name.rsplit("-", 1)[-1]
    return tail.removeprefix("trace_")


def _plot(out: Path, name: str, caps: list[int], results: dict[str, list[float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for policy, ratios in results.items():
        ax.plot(caps, ratios, marker="o", label=policy)
    ax.set_xscale("log")
    ax.set_xlabel("capacity (entries)")
    ax.set_ylabel("hit ratio (%)")
    ax.set_title(f"{name}: hit ratio vs capacity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"caching-hit-ratio-{name}.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def run_replay(
    traces: list[Path],
    capacities: list[float],
    policies: list[str],
    out: Path,
    *,
    fmt: str | None = None,
    plot: bool = True,
) -> str:
    """Replay every trace at every capacity through every policy; return the report."""
    reference = {
        row: ref for table in REFERENCE_TABLES for row, ref in reference_table(table).items()
    }
    # A folder of traces may carry its own reference table (a README.md beside them).
    for readme in sorted({path.parent / "README.md" for path in traces}):
        reference.update(reference_table(readme))
    sections = []
    summary_rows = []
    columns: list[str] = []
    for path in traces:
        name = row_name(path, reference)
        keys = read_trace(path, fmt)
        unique = len(set(keys))
        caps = sorted({capacity_for(c, unique) for c in capacities})
        results: dict[str, list[float]] = {p: [] for p in policies}
        for cap in caps:
            for policy in policies:
                ratio = replay(POLICIES[policy](cap), keys, desc=f"{name}@{cap} {policy}")
                results[policy].append(ratio)
            ref = reference.get((name, cap))
            if ref is not None and "TinyLFU" in results:
                columns = columns or list(ref)
                best = max(v for k, v in ref.items() if k != "Belady")
                seeded = [results["TinyLFU"][-1]] + [
                    replay(TinyLFUCache(cap, rng=random.Random(seed)), keys) for seed in SEEDS[1:]
                ]
                worst = min(seeded)
                marks = [
                    "ok" if worst >= ref["Caffeine"] else "BELOW",
                    "ok" if worst >= best - 1.0 else "SHORT",
                ]
                summary_rows.append(
                    [
                        f"{name} @{cap}",
                        *(ref[c] for c in columns),
                        worst,
                        max(seeded),
                        best,
                        worst - ref["Caffeine"],
                        worst - best,
                        *marks,
                    ]
                )
        rows = [[cap, *(results[p][i] for p in policies)] for i, cap in enumerate(caps)]
        table = format_table(["capacity", *policies], rows)
        sections.append(
            f"{name} ({len(keys):,} requests, {unique:,} unique keys), hit ratio %\n{table}"
        )
        if plot and len(caps) > 0:
            path = _plot(out, name, caps, results)
            sections.append(f"plot: {display_path(path)}")
    if summary_rows:
        met = sum(row[-2:] == ["ok", "ok"] for row in summary_rows)
        sections.append(
            f"TinyLFU vs the README's reference columns (hit ratio %; TinyLFU min and max "
            f"over seeds {','.join(map(str, SEEDS))}; targets: min >= Caffeine, "
            f"min >= best non-Belady - 1)\n"
            + format_table(
                [
                    "trace @ capacity",
                    *columns,
                    "TinyLFU min",
                    "TinyLFU max",
                    "best",
                    "min-Caffeine",
                    "min-best",
                    ">=Caffeine",
                    "best-1",
                ],
                summary_rows,
            )
            + f"\n\n{met} of {len(summary_rows)} rows meet both targets."
        )
    return "\n\n".join(sections)
