"""Histories of cache reads and writes, and the staleness checker run on them.

A write of version *n* to a key is acknowledged at the moment the cache
call that published it (``set`` or ``invalidate``, after the database held
*n*) returned. The property checked, per layer with its own bound *b*
(Redis: 0, the near layer: its ``max_staleness``): a read that began at
time *s* never returns a version older than the newest write of that key
acknowledged before ``s - b``. A read that returns nothing (a miss) is not
stale. Versions are integers that grow with every write of a key.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Write(NamedTuple):
    """Version *version* of *key* was acknowledged at *acked* (seconds, one clock)."""

    key: str
    version: int
    acked: float


class Read(NamedTuple):
    """A read of *key* through *layer* began at *start* and returned *version* (None: a miss)."""

    key: str
    layer: str
    version: int | None
    start: float
    end: float


class Violation(NamedTuple):
    """A read that returned *read.version* though *newer* was acknowledged *late_by* seconds
    more than the layer's bound before the read began."""

    read: Read
    newer: Write
    late_by: float

    def __str__(self) -> str:
        r, w = self.read, self.newer
        return (
            f"{r.layer} read of {r.key!r} at {r.start:.3f} returned version {r.version}, "
            f"but version {w.version} was acknowledged at {w.acked:.3f} "
            f"({self.late_by * 1000:.1f} ms beyond the bound)"
        )


def check(
    writes: Iterable[Write], reads: Iterable[Read], bounds: Mapping[str, float]
) -> list[Violation]:
    """Every read that is staler than its layer's bound allows, oldest read first.

    Args:
        writes: Acknowledged writes, in any order.
        reads: Reads, in any order; each `layer` must be a key of *bounds*.
        bounds: Seconds of staleness each layer may show, e.g.
            `{"redis": 0.0, "near": 0.5}`.

    Returns:
        The violations; empty if the history keeps the property.

    Raises:
        KeyError: A read names a layer without a bound.

    Runtime complexity: O((W + R) log W).
    """
    by_key: dict[str, tuple[list[float], list[int], list[Write]]] = {}
    for write in sorted(writes, key=lambda w: w.acked):
        acked, newest, which = by_key.setdefault(write.key, ([], [], []))
        # keep the running maximum so one bisect finds the newest version acknowledged so far
        if newest and newest[-1] >= write.version:
            acked.append(write.acked)
            newest.append(newest[-1])
            which.append(which[-1])
        else:
            acked.append(write.acked)
            newest.append(write.version)
            which.append(write)
    found: list[Violation] = []
    for read in sorted(reads, key=lambda r: r.start):
        bound = bounds[read.layer]
        if read.version is None or read.key not in by_key:
            continue
        acked, newest, which = by_key[read.key]
        i = bisect.bisect_left(acked, read.start - bound) - 1
        if i >= 0 and newest[i] > read.version:
            found.append(Violation(read, which[i], read.start - bound - which[i].acked))
    return found
