"""Least recently used eviction."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ._ordered import OrderedCache
from .base import MISSING

__all__ = ["LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(OrderedCache[K, V]):
    """Evicts the least recently used entry; drop-in for `cachetools.LRUCache`.

    A read (`get`, `[]`) or a write of a present key makes it the most
    recently used. Entries live in one `collections.OrderedDict` kept
    in recency order, so a hit is one lookup plus `move_to_end` in C.

    ```pycon
    >>> cache = LRUCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"]
    1
    >>> cache["c"] = 3          # evicts "b", the least recently used
    >>> sorted(cache)
    ['a', 'c']

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

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (making it most recent), or *default*.

        Runtime complexity: O(1).
        """
        # `in` then `[]`: specialised opcodes, faster than a call of `dict.get`.
        if key in self._data:
            self._data.move_to_end(key)
            self._hits += 1
            return self._data[key]
        self._misses += 1
        return default

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __getitem__(self, key: K) -> V:
        if key in self._data:
            self._data.move_to_end(key)
            self._hits += 1
            return self._data[key]  # type: ignore[no-any-return]
        self._misses += 1
        return self.__missing__(key)

    def _touch(self, key: Any) -> Any:
        data = self._data
        value = data.get(key, MISSING)
        if value is not MISSING:
            data.move_to_end(key)
        return value


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import linked

    LRUCache = linked(LRUCache, reorder=True)
