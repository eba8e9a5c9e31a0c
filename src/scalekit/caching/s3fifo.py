"""S3-FIFO eviction (Yang et al., "FIFO queues are all you need", SOSP 2023)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .._validation import fraction, non_negative_number
from .base import MISSING, Cache

__all__ = ["S3FIFOCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_SMALL, _MAIN = 0, 1


class S3FIFOCache(Cache[K, V]):
    """S3-FIFO: a small probationary FIFO, a main FIFO with 2-bit clock, and a ghost FIFO.

    As libCacheSim's `S3FIFO.c` defines it (small 10% of the capacity,
    ghost 90% of it in keys, move-to-main threshold 2):

    * a new key goes to the small queue, or to the main queue if the ghost
      remembers it (or, before the first eviction, once the small queue is
      full); every hit adds one to the entry's counter (capped at 3);
    * when the cache must evict and the main queue is within its share and
      the small queue is not empty, the small queue's oldest entry moves to
      the main queue if it was hit at least twice, else it is evicted and
      its key enters the ghost;
    * otherwise the main queue's oldest entry is re-inserted with its counter
      decremented if the counter is positive, else evicted.

    One deviation: libCacheSim refuses to cache an entry not smaller than
    the small queue (so with `maxsize < 10` nothing is cached); here such
    an entry goes straight to the main queue, so every `[]=` stores.

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        getsizeof: optional function giving a value's size.
        small_ratio: the small queue's share of `maxsize` (default 0.1).
        ghost_ratio: the ghost's length as a share of `maxsize` (default 0.9).

    Raises:
        ArgumentTypeError: `maxsize` is neither an `int` nor `math.inf` (a bool,
            `None`, a string), or a ratio is not a number.
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`, or a ratio is outside its range.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) amortized per operation.
    """

    # What `copy.copy` gives the copy of its own; every other attribute, a
    # subclass's lock included, is shared.
    _state: ClassVar[tuple[str, ...] | None] = ("_data", "_small", "_main", "_ghost", "_sizes")

    def __init__(
        self,
        maxsize: int,
        getsizeof: Callable[[V], int] | None = None,
        *,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
    ) -> None:
        super().__init__(maxsize, getsizeof)
        small_ratio = fraction("small_ratio", small_ratio)
        ghost_ratio = non_negative_number("ghost_ratio", ghost_ratio)
        if self._maxsize == math.inf:  # unbounded: nothing is ever evicted
            self._small_cap = self._main_cap = self._ghost_cap = self._maxsize
        else:
            self._small_cap = int(self._maxsize * small_ratio)
            self._main_cap = self._maxsize - self._small_cap
            self._ghost_cap = int(self._maxsize * ghost_ratio)
        self._data: dict[Any, list[Any]] = {}  # key -> [value, freq, queue]
        self._small: OrderedDict[Any, None] = OrderedDict()
        self._main: OrderedDict[Any, None] = OrderedDict()
        self._ghost: OrderedDict[Any, None] = OrderedDict()
        self._small_used = 0
        self._main_used = 0
        self._has_evicted = False
        self._ghost_hit = False

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (counting a hit), or *default*. Runtime: O(1)."""
        node = self._data.get(key)
        if node is None:
            self._misses += 1
            return default
        if node[1] < 3:
            node[1] += 1
        self._hits += 1
        return node[0]

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self._data:
            ghost = self._ghost
            # A write refused for its size takes nothing from the ghost: checked
            # here, before the key leaves it (Cache checks again).
            if self._sizes is not None and key in ghost and self._size_of(value) > self._maxsize:
                raise ValueError("value too large")
            # libCacheSim consults the ghost on the lookup, before it evicts.
            self._ghost_hit = ghost.pop(key, MISSING) is not MISSING
        Cache.__setitem__(self, key, value)

    def _size(self, key: Any) -> int:
        sizes = self._sizes
        return 1 if sizes is None else sizes.get(key, 0)

    def _touch(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None:
            return MISSING
        if node[1] < 3:
            node[1] += 1
        return node[0]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        return MISSING if node is None else node[0]

    def _update(self, key: Any, value: Any) -> bool:
        node = self._data.get(key)
        if node is None:
            return False
        sizes = self._sizes
        if sizes is not None:
            diff = self._size_of(value) - sizes[key]
            if node[2] == _SMALL:
                self._small_used += diff
            else:
                self._main_used += diff
        node[0] = value
        if node[1] < 3:
            node[1] += 1
        return True

    def _insert(self, key: Any, value: Any) -> None:
        size = 1 if self._sizes is None else self._size_of(value)
        to_main = (
            self._ghost_hit
            or size >= self._small_cap
            or (not self._has_evicted and self._small_used >= self._small_cap)
        )
        self._ghost_hit = False
        if to_main:
            self._main[key] = None
            self._main_used += size
            self._data[key] = [value, 0, _MAIN]
        else:
            self._small[key] = None
            self._small_used += size
            self._data[key] = [value, 0, _SMALL]

    def _remove(self, key: Any) -> Any:
        value, _, queue = self._data.pop(key)
        size = self._size(key)
        if queue == _SMALL:
            del self._small[key]
            self._small_used -= size
        else:
            del self._main[key]
            self._main_used -= size
        return value

    def _victim(self) -> Any:
        self._has_evicted = True
        data, small, main = self._data, self._small, self._main
        while True:
            if self._main_used > self._main_cap or not small:
                while True:
                    key = next(iter(main))
                    node = data[key]
                    freq = node[1]
                    if freq < 1:
                        return key
                    main.move_to_end(key)
                    node[1] = min(freq, 3) - 1
            while small:
                key = next(iter(small))
                node = data[key]
                if node[1] >= 2:
                    size = self._size(key)
                    del small[key]
                    self._small_used -= size
                    main[key] = None
                    self._main_used += size
                    node[1] = 0
                    node[2] = _MAIN
                    continue
                self._remember(key)
                return key

    def _remember(self, key: Any) -> None:
        cap = self._ghost_cap
        if cap <= 0:
            return
        ghost = self._ghost
        if key in ghost:
            return
        while len(ghost) >= cap:
            ghost.popitem(False)
        ghost[key] = None

    def _clear(self) -> None:
        # The entries (and the ghost's keys) are held until the cache is empty and
        # whole: a key's or value's __del__ may write to it (as in the compiled twin).
        held = (list(self._data.items()), list(self._ghost))
        self._data.clear()
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self._small_used = self._main_used = 0
        self._has_evicted = False
        del held


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import s3fifo

    S3FIFOCache = s3fifo(S3FIFOCache)
