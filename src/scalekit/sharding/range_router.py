"""RangeRouter: contiguous key ranges, split and merged like CockroachDB's and TiKV's."""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections.abc import Iterable
from typing import Any

from sortedcontainers import SortedList

from .._validation import iterable, non_negative_int, positive_int, wrong_type
from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import Router, S, check_shards

__all__ = ["RangeRouter"]


class RangeRouter(Router[S]):
    """Route keys of any totally ordered type to contiguous ranges.

    With split points `p0 < p1 < ... < pk` shard 0 owns keys below `p0`,
    shard i owns `[p(i-1), p(i))` and the last shard owns keys from `pk` up.

    Load-based splitting: `record()` counts requests per range and keeps a
    uniform sample of their keys; `suggest_split()` proposes the sampled
    median of the hottest range as its split key.

    Args:
        split_points: the boundaries, strictly increasing, one type.
        shards: distinct shard ids, `len(split_points) + 1` of them.
        sample_size: keys sampled per range for split suggestions.
        rng: the random source of the sampling (seed it in tests).

    Raises:
        ConfigurationError: wrong count, duplicate shards, boundaries not
            strictly increasing, None or NaN.
        ArgumentTypeError: *split_points* is not a collection, or boundaries
            cannot be compared with each other.

    Thread-safety: every method may be called from any thread; `route()`
    reads an immutable snapshot that `split()` and `merge()` replace.

    ```pycon
    >>> router = RangeRouter(["g", "p"], ["a-f", "g-o", "p-z"])
    >>> router.route("kiwi"), router.route_range("e", "h")
    ('g-o', ['a-f', 'g-o'])

    ```
    """

    def __init__(
        self,
        split_points: Iterable[Any],
        shards: Iterable[S],
        *,
        sample_size: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        points = iterable("split_points", split_points, "a collection of boundary keys")
        shard_tuple = check_shards("shards", shards)
        if len(shard_tuple) != len(points) + 1:
            raise ConfigurationError(
                f"shards must number len(split_points) + 1 = {len(points) + 1}, "
                f"got {len(shard_tuple)}"
            )
        _check_increasing(points)
        self._state: tuple[SortedList, tuple[S, ...]] = (SortedList(points), shard_tuple)
        self._sample_size = positive_int("sample_size", sample_size)
        if rng is not None and not isinstance(rng, random.Random):
            raise wrong_type("rng", rng, "a random.Random or None")
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._reset_load()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[Any, Any, S]], **kwargs: Any) -> RangeRouter[S]:
        """Build a router from half-open `(lo, hi, shard)` ranges; None means unbounded.

        The ranges must tile the whole key space: the lowest starts at None,
        the highest ends at None, and each ends where the next begins.

        Raises:
            ConfigurationError: overlapping ranges, a gap, an empty range
                (`lo >= hi`) or no unbounded ends.
        """
        items = iterable("ranges", ranges, "a collection of (lo, hi, shard) tuples")
        for item in items:
            if not isinstance(item, tuple) or len(item) != 3:
                raise wrong_type("ranges item", item, "a (lo, hi, shard) tuple")
        if not items:
            raise ConfigurationError("ranges must not be empty: give at least one (lo, hi, shard)")
        for lo, hi, _ in items:
            if lo is not None and hi is not None and not _less(lo, hi):
                raise ConfigurationError(f"range [{lo!r}, {hi!r}) is empty: lo must be < hi")
        starts = [lo for lo, _, _ in items]
        if starts.count(None) != 1:
            raise ConfigurationError(
                f"exactly one range must start at None (unbounded below), got {starts.count(None)}"
            )
        bounded = sorted((r for r in items if r[0] is not None), key=lambda r: _key(r[0]))
        ordered = [next(r for r in items if r[0] is None), *bounded]
        for (lo_a, hi_a, _), (lo_b, _, _) in itertools.pairwise(ordered):
            if hi_a is None or _less(lo_b, hi_a):
                raise ConfigurationError(
                    f"ranges overlap: [{lo_a!r}, {hi_a!r}) and one starting at {lo_b!r}"
                )
            if _less(hi_a, lo_b):
                raise ConfigurationError(f"ranges leave a gap between {hi_a!r} and {lo_b!r}")
        if ordered[-1][1] is not None:
            raise ConfigurationError(
                f"the highest range must end at None (unbounded above), got {ordered[-1][1]!r}"
            )
        return cls([lo for lo, _, _ in ordered[1:]], [s for _, _, s in ordered], **kwargs)

    # -- routing ---------------------------------------------------------------------

    @property
    def shards(self) -> tuple[S, ...]:
        return self._state[1]

    @property
    def split_points(self) -> list[Any]:
        """The boundaries, in increasing order."""
        return list(self._state[0])

    def ranges(self) -> list[tuple[Any, Any, S]]:
        """Every range as `(lo, hi, shard)`, half-open, None for unbounded ends."""
        points, shards = self._state
        bounds = [None, *points, None]
        return [(bounds[i], bounds[i + 1], shard) for i, shard in enumerate(shards)]

    def range_of(self, shard: S) -> tuple[Any, Any]:
        """The `(lo, hi)` that *shard* owns.

        Raises:
            ConfigurationError: *shard* is not routed to.
        """
        lo, hi, _ = self.ranges()[self._index_of(shard)]
        return lo, hi

    def route(self, key: Any) -> S:
        """Return the shard whose range contains *key*.

        Raises:
            ArgumentTypeError: *key* cannot be compared with the split points.

        Runtime complexity: O(log n).
        """
        points, shards = self._state
        try:
            index = int(points.bisect_right(key))
        except TypeError:
            raise _incomparable(key, points) from None
        if key != key:  # NaN: it compares false with every split point
            raise ConfigurationError(f"key must be a totally ordered value, got {key!r}")
        return shards[index]

    def route_range(self, lo: Any, hi: Any, *, inclusive: bool = False) -> list[S]:
        """Every shard a scan of `[lo, hi)` (`[lo, hi]` if *inclusive*) must visit.

        None for *lo* or *hi* means unbounded. Shards come in key order; an
        empty interval gives `[]`.

        Raises:
            ArgumentTypeError: a bound cannot be compared with the split points.

        Runtime complexity: O(log n + shards returned).
        """
        points, shards = self._state
        try:
            if (
                lo is not None
                and hi is not None
                and (_less(hi, lo) or (hi == lo and not inclusive))
            ):
                return []
            first = 0 if lo is None else points.bisect_right(lo)
            if hi is None:
                last = len(points)
            else:
                last = points.bisect_right(hi) if inclusive else points.bisect_left(hi)
        except TypeError:
            raise _incomparable_bound(lo, hi, points) from None
        return list(shards[first : last + 1])

    # -- splitting and merging -------------------------------------------------------

    def split(self, at: Any, new_shard: S) -> None:
        """Split the range containing *at*: keys from *at* up move to *new_shard*.

        Raises:
            ConfigurationError: *new_shard* is already routed to, or *at* is
                already a boundary.
            ArgumentTypeError: *at* is not comparable with the split points.

        Runtime complexity: O(n) (copy-on-write of the boundaries).
        """
        with self._lock:
            points, shards = self._state
            if new_shard in shards:
                raise ConfigurationError(f"new_shard {new_shard!r} is already routed to")
            if at is None:
                raise ArgumentTypeError("at must be a key, not None")
            try:
                index = points.bisect_right(at)
            except TypeError:
                raise _incomparable(at, points, "at") from None
            if index > 0 and points[index - 1] == at:
                raise ConfigurationError(f"at {at!r} is already a split point")
            new_points = SortedList(points)
            new_points.add(at)
            new_shards = (*shards[: index + 1], new_shard, *shards[index + 1 :])
            self._state = (new_points, new_shards)
            samples = self._samples.pop(index)
            self._counts.insert(index + 1, 0)
            self._counts[index] = 0
            self._seen.insert(index + 1, 0)
            self._seen[index] = 0
            self._samples.insert(index, [k for k in samples if _less(k, at)])
            self._samples.insert(index + 1, [k for k in samples if not _less(k, at)])

    def merge(self, left: S, right: S) -> None:
        """Merge *right*'s range into *left*'s, its neighbour below; *right* is dropped.

        Raises:
            ConfigurationError: unknown shards, or *right*'s range does not
                start where *left*'s ends.

        Runtime complexity: O(n).
        """
        with self._lock:
            points, shards = self._state
            i, j = self._index_of(left), self._index_of(right)
            if j != i + 1:
                raise ConfigurationError(
                    f"merge needs adjacent ranges, left first: {right!r} does not start where "
                    f"{left!r} ends"
                )
            new_points = SortedList(points)
            del new_points[i]
            self._state = (new_points, shards[:j] + shards[j + 1 :])
            self._counts[i] += self._counts.pop(j)
            self._seen[i] += self._seen.pop(j)
            self._samples[i] = (self._samples[i] + self._samples.pop(j))[: self._sample_size]

    # -- load-based splitting --------------------------------------------------------

    def record(self, key: Any) -> S:
        """Count one request for *key* and return its shard (sampling the key).

        Runtime complexity: O(log n).
        """
        with self._lock:
            points, shards = self._state
            try:
                index: int = points.bisect_right(key)
            except TypeError:
                raise _incomparable(key, points) from None
            self._counts[index] += 1
            self._seen[index] += 1
            sample = self._samples[index]
            if len(sample) < self._sample_size:
                sample.append(key)
            else:  # reservoir sampling (Vitter's algorithm R)
                slot = self._rng.randrange(self._seen[index])
                if slot < self._sample_size:
                    sample[slot] = key
            return shards[index]

    def load(self) -> dict[S, int]:
        """Requests recorded per shard since the last `reset_load()`."""
        return dict(zip(self._state[1], self._counts, strict=True))

    def reset_load(self) -> None:
        """Forget the recorded requests and samples."""
        with self._lock:
            self._reset_load()

    def suggest_split(self, *, min_requests: int = 1) -> tuple[S, Any] | None:
        """Suggest `(shard, split_key)`: the hottest range, at its sampled median key.

        None when no range has *min_requests* requests, or when the median
        cannot split the hottest range (every sampled key equal to its start:
        one hot key cannot be split).
        """
        non_negative_int("min_requests", min_requests)
        with self._lock:
            points, shards = self._state
            if not self._counts:
                return None
            index = max(range(len(shards)), key=lambda i: self._counts[i])
            if self._counts[index] < min_requests or not self._samples[index]:
                return None
            sample = sorted(self._samples[index], key=_key)
            median = sample[len(sample) // 2]
            lo = points[index - 1] if index > 0 else None
            if lo is not None and not _less(lo, median):
                return None
            if lo is None and not _less(sample[0], median) and median == sample[-1]:
                return None
            return shards[index], median

    # -- internals -------------------------------------------------------------------

    def _reset_load(self) -> None:
        count = len(self._state[1])
        self._counts = [0] * count
        self._seen = [0] * count
        self._samples: list[list[Any]] = [[] for _ in range(count)]

    def _index_of(self, shard: S) -> int:
        try:
            return self._state[1].index(shard)
        except ValueError:
            raise ConfigurationError(f"shard {shard!r} is not routed to") from None

    def __repr__(self) -> str:
        return f"RangeRouter({self.split_points!r}, {list(self.shards)!r})"


def _less(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        raise ArgumentTypeError(
            f"keys must be of one totally ordered type; cannot compare {a!r} "
            f"({type(a).__name__}) with {b!r} ({type(b).__name__})"
        ) from None


class _key:
    """Sort key that turns a failed comparison into a clear TypeError."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _key) -> bool:
        return _less(self.value, other.value)


def _check_increasing(points: list[Any]) -> None:
    for point in points:
        if point is None:
            raise ConfigurationError("split_points must be keys; None is not a boundary")
        if isinstance(point, float) and math.isnan(point):
            raise ConfigurationError(
                "split_points must be totally ordered keys; NaN compares false with every key"
            )
    for a, b in itertools.pairwise(points):
        if not _less(a, b):
            raise ConfigurationError(
                f"split_points must be strictly increasing, got {a!r} before {b!r}"
            )
    if points:
        kinds = {type(p) for p in points}
        if len(kinds) > 1 and not kinds <= {int, float}:
            raise ArgumentTypeError(
                "split_points must be of one totally ordered type, got "
                + ", ".join(sorted(k.__name__ for k in kinds))
            )


def _incomparable(key: Any, points: SortedList, name: str = "key") -> ArgumentTypeError:
    kind = type(points[0]).__name__ if points else "?"
    return ArgumentTypeError(
        f"{name} {key!r} ({type(key).__name__}) cannot be compared with split points of type {kind}"
    )


def _incomparable_bound(lo: Any, hi: Any, points: SortedList) -> ArgumentTypeError:
    """The error for `route_range(lo, hi)`, naming the bound that does not compare."""
    for name, bound in (("lo", lo), ("hi", hi)):
        if bound is None:
            continue
        try:
            points.bisect_right(bound)
        except TypeError:
            return _incomparable(bound, points, name)
    return ArgumentTypeError(f"lo {lo!r} and hi {hi!r} cannot be compared with each other")
