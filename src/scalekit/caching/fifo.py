"""First in, first out eviction."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, TypeVar

from ._ordered import OrderedCache

__all__ = ["FIFOCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FIFOCache(OrderedCache[K, V]):
    """Evicts the entry inserted first; drop-in for `cachetools.FIFOCache`.

    Reads do not reorder. As in cachetools, writing a present key re-inserts
    it (it becomes the newest). Replaying a trace (insert on miss only) this
    is exactly libCacheSim's FIFO.

    ```pycon
    >>> cache = FIFOCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"]
    1
    >>> cache["c"] = 3          # evicts "a", the oldest, despite the read
    >>> sorted(cache)
    ['b', 'c']

    ```

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        getsizeof: optional function giving a value's size.

    Raises:
        ArgumentTypeError: `maxsize` is neither an `int` nor `math.inf` (a bool,
            `None`, a string).
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) per operation.
    """


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import linked

    FIFOCache = linked(FIFOCache, reorder=False)
