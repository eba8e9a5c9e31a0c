"""First in, first out eviction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from .base import MISSING, Cache

__all__ = ["FIFOCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FIFOCache(Cache[K, V]):
    """Evicts the entry inserted first; drop-in for ``cachetools.FIFOCache``.

    Reads do not reorder. As in cachetools, writing a present key re-inserts
    it (it becomes the newest). Replaying a trace (insert on miss only) this
    is exactly libCacheSim's FIFO.

    >>> cache = FIFOCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"]
    1
    >>> cache["c"] = 3          # evicts "a", the oldest, despite the read
    >>> sorted(cache)
    ['b', 'c']

    :param maxsize: capacity (entries, or units of ``getsizeof``).
    :param getsizeof: optional function giving a value's size.
    :raises ConfigurationError: if ``maxsize`` is not a positive integer.

    Thread-safety: not thread-safe; guard shared use with a lock.
    Runtime complexity: O(1) per operation.
    """

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof)
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key*, or *default*. Runtime complexity: O(1)."""
        value = self._data.get(key, MISSING)
        if value is MISSING:
            self._misses += 1
            return default
        self._hits += 1
        return value

    def __getitem__(self, key: K) -> V:
        value = self._data.get(key, MISSING)
        if value is MISSING:
            self._misses += 1
            return self.__missing__(key)
        self._hits += 1
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        if self._sizes is not None:
            Cache.__setitem__(self, key, value)
            return
        data = self._data
        if key in data:
            data[key] = value
            data.move_to_end(key)
            return
        if len(data) >= self._maxsize:
            if self._inline:
                data.popitem(last=False)
                self._evictions += 1
            else:
                while len(data) >= self._maxsize:
                    self.popitem()
                    self._evictions += 1
        data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _touch(self, key: Any) -> Any:
        return self._data.get(key, MISSING)

    _peek = _touch

    def _update(self, key: Any, value: Any) -> bool:
        data = self._data
        if key not in data:
            return False
        data[key] = value
        data.move_to_end(key)
        return True

    def _insert(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def _remove(self, key: Any) -> Any:
        return self._data.pop(key)

    def _victim(self) -> Any:
        return next(iter(self._data))

    def _clear(self) -> None:
        self._data.clear()
