"""Least frequently used eviction in O(1) (Shah, Mitra and Matani, 2010)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from .base import MISSING, Cache

__all__ = ["LFUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# A frequency bucket is a list [count, keys, prev, next]: the keys used exactly
# `count` times, oldest access first, in a doubly linked ring ordered by count.
# The indexes are written as literals below: constants cost a global lookup.


class LFUCache(Cache[K, V]):
    """Evicts the least frequently used entry; ties go to the least recently used.

    Drop-in for ``cachetools.LFUCache``. Every read and every write of a
    present key counts one use; a new entry starts at one. Entries sit in
    frequency buckets (a linked list of ``OrderedDict`` buckets ordered by
    count), so lookup, increment and eviction are O(1) -- the scheme of
    Shah, Mitra and Matani. Counts are forgotten on eviction, exactly as
    libCacheSim's LFU, whose hit ratios this class reproduces.

    >>> cache = LFUCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"], cache["a"]
    (1, 1)
    >>> cache["c"] = 3          # evicts "b", used once
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
        # key -> [value, bucket]
        self._data: dict[Any, list[Any]] = {}
        root: list[Any] = [0, None, None, None]
        root[2] = root[3] = root
        self._root = root

    def _use(self, key: Any, node: list[Any]) -> None:
        bucket = node[1]
        nxt = bucket[3]
        count = bucket[0] + 1
        keys = bucket[1]
        if nxt[0] != count:
            if len(keys) == 1:
                bucket[0] = count  # sole member: renumber the bucket in place
                return
            nxt = [count, OrderedDict(), bucket, nxt]
            bucket[3] = nxt[3][2] = nxt
        nxt[1][key] = None
        del keys[key]
        if not keys:
            prev = bucket[2]
            prev[3] = nxt
            nxt[2] = prev
        node[1] = nxt

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (counting a use), or *default*.

        Runtime complexity: O(1).
        """
        node = self._data.get(key)
        if node is None:
            self._misses += 1
            return default
        self._hits += 1
        # The body of _use, inlined: this is the hot path.
        bucket = node[1]
        nxt = bucket[3]
        count = bucket[0] + 1
        keys = bucket[1]
        if nxt[0] != count:
            if len(keys) == 1:
                bucket[0] = count
                return node[0]
            nxt = [count, OrderedDict(), bucket, nxt]
            bucket[3] = nxt[3][2] = nxt
        nxt[1][key] = None
        del keys[key]
        if not keys:
            prev = bucket[2]
            prev[3] = nxt
            nxt[2] = prev
        node[1] = nxt
        return node[0]

    def __getitem__(self, key: K) -> V:
        node = self._data.get(key)
        if node is None:
            self._misses += 1
            return self.__missing__(key)
        self._hits += 1
        self._use(key, node)
        return node[0]  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        if self._sizes is not None:
            Cache.__setitem__(self, key, value)
            return
        data = self._data
        node = data.get(key)
        if node is not None:
            node[0] = value
            self._use(key, node)
            return
        root = self._root
        if len(data) >= self._maxsize:
            if self._inline:
                bucket = root[3]
                keys = bucket[1]
                victim = keys.popitem(last=False)[0]
                if not keys:
                    nxt = bucket[3]
                    root[3] = nxt
                    nxt[2] = root
                del data[victim]
                self._evictions += 1
            else:
                while len(data) >= self._maxsize:
                    self.popitem()
                    self._evictions += 1
        first = root[3]
        if first[0] != 1:
            first = [1, OrderedDict(), root, first]
            root[3] = first[3][2] = first
        first[1][key] = None
        data[key] = [value, first]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def frequency(self, key: K) -> int:
        """How many uses *key* has in the cache (0 if absent). Runtime complexity: O(1)."""
        node = self._data.get(key)
        return 0 if node is None else int(node[1][0])

    def _touch(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None:
            return MISSING
        self._use(key, node)
        return node[0]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        return MISSING if node is None else node[0]

    def _update(self, key: Any, value: Any) -> bool:
        node = self._data.get(key)
        if node is None:
            return False
        node[0] = value
        self._use(key, node)
        return True

    def _insert(self, key: Any, value: Any) -> None:
        root = self._root
        first = root[3]
        if first[0] != 1:
            first = [1, OrderedDict(), root, first]
            root[3] = first[3][2] = first
        first[1][key] = None
        self._data[key] = [value, first]

    def _remove(self, key: Any) -> Any:
        value, bucket = self._data.pop(key)
        keys = bucket[1]
        del keys[key]
        if not keys:
            prev, nxt = bucket[2], bucket[3]
            prev[3] = nxt
            nxt[2] = prev
        return value

    def _victim(self) -> Any:
        return next(iter(self._root[3][1]))

    def _clear(self) -> None:
        self._data.clear()
        root = self._root
        root[2] = root[3] = root
