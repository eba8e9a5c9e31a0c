"""Least frequently used eviction in O(1) (Shah, Mitra and Matani, 2010)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .base import MISSING, Cache

__all__ = ["LFUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Bucket(OrderedDict[Any, Any]):
    """The entries used exactly `count` times, key -> value, oldest access first.

    Buckets form a doubly linked ring ordered by count, through a sentinel of
    count 0. The links are slots of the dictionary itself, so a hit reads one
    object where a `[count, keys, prev, next]` list would read three.
    """

    __slots__ = ("count", "next", "prev")
    count: int
    prev: _Bucket
    next: _Bucket

    def __reduce__(self) -> Any:
        # The links are left out (LFUCache.__setstate__ relinks the ring): a
        # pickle that followed them would recurse once per bucket.
        return _Bucket, (), (None, {"count": self.count}), None, iter(self.items())

    def __deepcopy__(self, memo: dict[int, Any]) -> _Bucket:
        # Copies the whole ring at once, iteratively, for the same reason.
        clones: list[_Bucket] = []
        bucket = self
        while True:
            clone = _Bucket(
                (copy.deepcopy(key, memo), copy.deepcopy(value, memo))
                for key, value in bucket.items()
            )
            clone.count = bucket.count
            memo[id(bucket)] = clone
            clones.append(clone)
            bucket = bucket.next
            if bucket is self:
                break
        for prev, nxt in zip(clones, [*clones[1:], clones[0]], strict=True):
            prev.next = nxt
            nxt.prev = prev
        return clones[0]


def _new_bucket(count: int, prev: _Bucket, nxt: _Bucket) -> _Bucket:
    """An empty bucket for *count*, linked between *prev* and *nxt*."""
    bucket = _Bucket()
    bucket.count = count
    bucket.prev = prev
    bucket.next = nxt
    prev.next = nxt.prev = bucket
    return bucket


class LFUCache(Cache[K, V]):
    """Evicts the least frequently used entry; ties go to the least recently used.

    Drop-in for `cachetools.LFUCache`. Every read and every write of a
    present key counts one use; a new entry starts at one. Entries sit in
    frequency buckets (a linked ring of `OrderedDict` buckets ordered by
    count, each holding its keys and values), so lookup, increment and
    eviction are O(1) -- the scheme of Shah, Mitra and Matani. Counts are
    forgotten on eviction, exactly as libCacheSim's LFU, whose hit ratios
    this class reproduces.

    ```pycon
    >>> cache = LFUCache(maxsize=2)
    >>> cache["a"], cache["b"] = 1, 2
    >>> cache["a"], cache["a"]
    (1, 1)
    >>> cache["c"] = 3          # evicts "b", used once
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

    _state: ClassVar[tuple[str, ...] | None] = ("_data", "_root", "_sizes")

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof)
        # key -> the bucket holding it (and its value)
        self._data: dict[Any, _Bucket] = {}
        root = _Bucket()
        root.count = 0
        root.prev = root.next = root
        self._root = root

    def _use(self, key: Any, bucket: _Bucket) -> Any:
        """Count a use of *key*, held in *bucket*: move it up one count; return its value."""
        nxt = bucket.next
        count = bucket.count + 1
        if nxt.count != count:
            if len(bucket) == 1:
                bucket.count = count  # sole member: renumber the bucket in place
                return bucket[key]
            nxt = _new_bucket(count, bucket, nxt)
        nxt[key] = value = bucket.pop(key)  # one call: faster than [] then del
        self._data[key] = nxt
        if not bucket:
            prev = bucket.prev
            prev.next = nxt
            nxt.prev = prev
        return value

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (counting a use), or *default*.

        Runtime complexity: O(1).
        """
        data = self._data
        bucket = data.get(key)
        if bucket is None:
            self._misses += 1
            return default
        self._hits += 1
        # The body of _use, inlined: this is the hot path.
        nxt = bucket.next
        count = bucket.count + 1
        if nxt.count != count:
            if len(bucket) == 1:
                bucket.count = count
                return bucket[key]
            nxt = _new_bucket(count, bucket, nxt)
        nxt[key] = value = bucket.pop(key)  # one call: faster than [] then del
        data[key] = nxt
        if not bucket:
            prev = bucket.prev
            prev.next = nxt
            nxt.prev = prev
        return value

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __getitem__(self, key: K) -> V:
        bucket = self._data.get(key)
        if bucket is None:
            self._misses += 1
            value = self.__missing__(key)
            # A __missing__ that stores the key makes this lookup its first use,
            # as in cachetools (the default raises KeyError above).
            bucket = self._data.get(key)
            if bucket is not None:
                self._use(key, bucket)
            return value
        self._hits += 1
        return self._use(key, bucket)  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        if self._sizes is not None:
            Cache.__setitem__(self, key, value)
            return
        data = self._data
        if key in data:
            bucket = data[key]
            old = bucket[key]  # released after the use: its __del__ may write to the cache
            bucket[key] = value
            self._use(key, bucket)
            del old
            return
        root = self._root
        if len(data) >= self._maxsize:
            if self._inline and data:
                bucket = root.next
                victim, evicted = bucket.popitem(False)  # the oldest of the least used
                if not bucket:
                    nxt = bucket.next
                    root.next = nxt
                    nxt.prev = root
                del data[victim]
                self._evictions += 1
                del evicted  # released once consistent: its __del__ may write to the cache
                if key in data:  # ... and wrote this key: the write is an update
                    bucket = data[key]
                    bucket[key] = value
                    self._use(key, bucket)
                    return
            else:
                self._make_room()
        first = root.next
        if first.count != 1:
            first = _new_bucket(1, root, first)
        first[key] = value
        data[key] = first

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled cache, relinking its buckets in count order."""
        self.__dict__.update(state)
        root = self._root
        buckets = {id(bucket): bucket for bucket in self._data.values()}
        prev = root
        for bucket in sorted(buckets.values(), key=lambda b: b.count):
            bucket.prev = prev
            prev.next = bucket
            prev = bucket
        prev.next = root
        root.prev = prev

    def frequency(self, key: K) -> int:
        """How many uses *key* has in the cache (0 if absent). Runtime complexity: O(1)."""
        bucket = self._data.get(key)
        return 0 if bucket is None else bucket.count

    def _touch(self, key: Any) -> Any:
        bucket = self._data.get(key)
        if bucket is None:
            return MISSING
        return self._use(key, bucket)

    def _peek(self, key: Any) -> Any:
        bucket = self._data.get(key)
        return MISSING if bucket is None else bucket[key]

    def _update(self, key: Any, value: Any) -> bool:
        bucket = self._data.get(key)
        if bucket is None:
            return False
        old = bucket[key]  # released after the use, as in __setitem__
        bucket[key] = value
        self._use(key, bucket)
        del old
        return True

    def _insert(self, key: Any, value: Any) -> None:
        root = self._root
        first = root.next
        if first.count != 1:
            first = _new_bucket(1, root, first)
        first[key] = value
        self._data[key] = first

    def _remove(self, key: Any) -> Any:
        bucket = self._data.pop(key)
        value = bucket.pop(key)
        if not bucket:
            prev, nxt = bucket.prev, bucket.next
            prev.next = nxt
            nxt.prev = prev
        return value

    def _victim(self) -> Any:
        return next(iter(self._root.next))

    def _clear(self) -> None:
        # The buckets are held until the cache is empty and whole: a key's or
        # value's __del__ may write to it. Their links are cut, so they go at once,
        # not when the GC finds their cycle (as the compiled twin releases them).
        root = self._root
        held = []
        bucket = root.next
        while bucket is not root:
            held.append(bucket)
            bucket = bucket.next
        self._data.clear()
        root.prev = root.next = root
        for bucket in held:
            bucket.prev = bucket.next = root  # root no longer links back: no cycle
        del held


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import lfu

    LFUCache = lfu(LFUCache)
