"""Known answers: the exact policies reproduce the reference table of data/traces/README.md.

LRU, FIFO, LFU (ties to the least recently used) and SIEVE are exact
definitions, so replaying a trace must give libCacheSim's hit ratio to the
hit (the README prints two decimals); S3-FIFO follows libCacheSim's
``S3FIFO.c`` and reproduces its column too. The table is read from the
README itself, so the test checks against the published figures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._common import TRACES_DIR
from benchmarks.caching.traces import read_trace
from scalekit.caching import FIFOCache, LFUCache, LRUCache, S3FIFOCache, SIEVECache

FILES = {
    "gli": "lirs-gli.trace.gz",
    "multi1": "lirs-multi1.trace.gz",
    "sprite": "lirs-sprite.trace.gz",
    "web07": "cache2k-web07.trace.gz",
    "web12": "cache2k-web12.trace.gz",
}
POLICIES: dict[str, Callable[[int], Any]] = {
    "LRU": LRUCache,
    "FIFO": FIFOCache,
    "LFU": LFUCache,
    "SIEVE": SIEVECache,
    "S3-FIFO": S3FIFOCache,
}
_MISSING = object()


def reference_table() -> dict[tuple[str, int], dict[str, float]]:
    """{(trace, capacity): {column: hit ratio %}} parsed from the traces' README."""
    text = (TRACES_DIR / "README.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| trace @ capacity")]
    assert lines, "the README has no reference table"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*([\w-]+) @(\d+)\s*\|(.*)\|\s*$", line)
        if match:
            cells = [float(c) for c in match.group(3).split("|")]
            table[(match.group(1), int(match.group(2)))] = dict(zip(header[1:], cells, strict=True))
    return table


TABLE = reference_table()
ROWS = sorted(row for row in TABLE if row[0] in FILES)
_traces: dict[str, list[int]] = {}


def _keys(trace: str) -> list[int]:
    if trace not in _traces:
        _traces[trace] = read_trace(TRACES_DIR / FILES[trace])
    return _traces[trace]


def test_the_table_covers_the_small_traces() -> None:
    assert len(ROWS) == 2 * len(FILES)


@pytest.mark.parametrize("row", ROWS, ids=[f"{t}@{c}" for t, c in ROWS])
@pytest.mark.parametrize("column", sorted(POLICIES))
def test_exact_policies_reproduce_the_reference_column(row: tuple[str, int], column: str) -> None:
    trace, capacity = row
    keys = _keys(trace)
    assert capacity in (len(set(keys)) // 100, len(set(keys)) // 10)
    cache = POLICIES[column](capacity)
    get = cache.get
    for key in keys:
        if get(key, _MISSING) is _MISSING:
            cache[key] = True
    stats = cache.stats()
    assert stats.hits + stats.misses == len(keys)
    assert round(100 * stats.hit_ratio, 2) == TABLE[row][column]
