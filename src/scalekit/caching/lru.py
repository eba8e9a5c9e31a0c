"""Least recently used eviction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from .base import MISSING, Cache

__all__ = ["LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Cache[K, V]):
    """Evicts the least recently used entry; drop-in for ``cachetools.LRUCache``.

    A read (``get``, ``[]``) or a write of a present key makes it the most
    recently used. Entries live in one :class:`collections.OrderedDict` kept
    in recency order, so a hit is one lookup plus ``move_to_end`` in C.

    >>> cache = LRUCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"]
    1
    >>> cache["c"] = 3          # evicts "b", the least recently used
    >>> sorted(cache)
    ['a', 'c']

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
        """Return the value for *key* (making it most recent), or *default*.

        Runtime complexity: O(1).
        """
        data = self._data
        value = data.get(key, MISSING)
        if value is MISSING:
            self._misses += 1
            return default
        data.move_to_end(key)
        self._hits += 1
        return value

    def __getitem__(self, key: K) -> V:
        data = self._data
        value = data.get(key, MISSING)
        if value is MISSING:
            self._misses += 1
            return self.__missing__(key)
        data.move_to_end(key)
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
        data = self._data
        value = data.get(key, MISSING)
        if value is not MISSING:
            data.move_to_end(key)
        return value

    def _peek(self, key: Any) -> Any:
        return self._data.get(key, MISSING)

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
