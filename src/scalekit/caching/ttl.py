"""Least recently used eviction with a time to live per entry."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, ClassVar, TypeVar

from .._validation import positive_number
from .base import MISSING, Cache

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Cache[K, V]):
    """An LRU cache whose entries expire; drop-in for ``cachetools.TTLCache``.

    An entry written at time *t* expires at ``t + ttl`` (``ttl`` from the
    constructor, or per entry with :meth:`set`). As in cachetools, an entry
    is expired when ``timer() >= expires``: it is then invisible (``in``,
    ``[]``, ``get``, iteration and ``len`` ignore it) and is dropped by
    :meth:`expire`, which every write runs first. Within the live entries
    the least recently used is evicted when the cache is full.

    >>> from scalekit.testing import FakeClock
    >>> clock = FakeClock()
    >>> cache = TTLCache(maxsize=10, ttl=5, timer=clock)
    >>> cache["a"] = 1
    >>> cache.set("b", 2, ttl=60)
    >>> _ = clock.advance(10)
    >>> sorted(cache)
    ['b']

    :param maxsize: capacity (entries, or units of ``getsizeof``).
    :param ttl: default time to live, in the timer's units (seconds).
    :param timer: the clock, :func:`time.monotonic` by default.
    :param getsizeof: optional function giving a value's size.
    :raises ConfigurationError: if ``maxsize`` is not a positive integer or
        ``ttl`` is not a positive finite number.

    Thread-safety: not thread-safe; guard shared use with a lock.
    Runtime complexity: O(1) per read, O(log n) per write (expiry heap).
    """

    #: False when a subclass overrides popitem or __delitem__ again (cachetools
    #: users hook evictions that way): then __setitem__ evicts through popitem().
    _ttl_inline: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._ttl_inline = (
            cls.popitem is TTLCache.popitem and cls.__delitem__ is TTLCache.__delitem__
        )

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        timer: Callable[[], float] = time.monotonic,
        getsizeof: Callable[[V], int] | None = None,
    ) -> None:
        super().__init__(maxsize, getsizeof)
        self._ttl = positive_number("ttl", ttl)
        self._timer = timer
        # key -> [value, expires], in recency order; the heap holds
        # (expires, seq, key, node) and is cleaned lazily.
        self._data: OrderedDict[Any, list[Any]] = OrderedDict()
        self._heap: list[tuple[float, int, Any, list[Any]]] = []
        self._seq = itertools.count()
        self._write_ttl = self._ttl
        self._now: float | None = None  # the time frozen for the duration of a write

    def _clock(self) -> float:
        now = self._now
        return self._timer() if now is None else now

    @property
    def ttl(self) -> float:
        """The default time to live."""
        return self._ttl

    @property
    def timer(self) -> Callable[[], float]:
        """The clock the cache reads."""
        return self._timer

    def set(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store *value* for *ttl* (default: the cache's ``ttl``).

        :raises ConfigurationError: if *ttl* is not a positive finite number.
        :raises ValueError: ``"value too large"`` as for ``[]=``.

        Runtime complexity: O(log n).
        """
        self._write_ttl = self._ttl if ttl is None else positive_number("ttl", ttl)
        try:
            self[key] = value
        finally:
            self._write_ttl = self._ttl

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* if it has not expired (making it most recent), or *default*.

        Runtime complexity: O(1).
        """
        data = self._data
        node = data.get(key)
        if node is not None:
            now = self._now
            if (self._timer() if now is None else now) < node[1]:
                data.move_to_end(key)
                self._hits += 1
                return node[0]
        self._misses += 1
        return default

    def __getitem__(self, key: K) -> V:
        data = self._data
        node = data.get(key)
        if node is not None:
            now = self._now
            if (self._timer() if now is None else now) < node[1]:
                data.move_to_end(key)
                self._hits += 1
                return node[0]  # type: ignore[no-any-return]
        self._misses += 1
        return self.__missing__(key)

    def __setitem__(self, key: K, value: V) -> None:
        now = self._timer()
        self.expire(now)
        if self._sizes is None and self._ttl_inline:
            # Unit sizes: every entry left is live (expire(now) ran), so this is
            # LRU's write -- at most one eviction, the least recent entry.
            data = self._data
            node = [value, now + self._write_ttl]
            if key in data:
                data[key] = node
                data.move_to_end(key)
            else:
                if len(data) >= self._maxsize:
                    data.popitem(last=False)
                    self._evictions += 1
                data[key] = node
            self._push(key, node)
            return
        self._now = now
        try:
            Cache.__setitem__(self, key, value)
        finally:
            self._now = None

    def __delitem__(self, key: K) -> None:
        node = self._data.get(key)
        Cache.__delitem__(self, key)
        if node is not None and self._clock() >= node[1]:
            raise KeyError(key)  # it had already expired, as cachetools reports

    def expire(self, time: float | None = None) -> list[tuple[K, V]]:
        """Remove the entries expired at *time* (default: now) and return them.

        Runtime complexity: O(k log n) for k expired entries.
        """
        if time is None:
            time = self._clock()
        heap = self._heap
        expired: list[tuple[K, V]] = []
        data = self._data
        while heap and heap[0][0] <= time:
            _, _, key, node = heapq.heappop(heap)
            if data.get(key) is node and node[1] <= time:
                expired.append((key, node[0]))
                Cache.__delitem__(self, key)
        return expired

    def __contains__(self, key: object) -> bool:
        node = self._data.get(key)
        return node is not None and self._clock() < node[1]

    def __iter__(self) -> Iterator[K]:
        now = self._clock()
        for key, node in list(self._data.items()):
            if now < node[1]:
                yield key

    def __len__(self) -> int:
        self.expire()
        return len(self._data)

    def _touch(self, key: Any) -> Any:
        data = self._data
        node = data.get(key)
        if node is None or self._clock() >= node[1]:
            return MISSING
        data.move_to_end(key)
        return node[0]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None or self._clock() >= node[1]:
            return MISSING
        return node[0]

    def _update(self, key: Any, value: Any) -> bool:
        data = self._data
        if key not in data:
            return False
        node = [value, self._clock() + self._write_ttl]
        data[key] = node
        data.move_to_end(key)
        self._push(key, node)
        return True

    def _insert(self, key: Any, value: Any) -> None:
        node = [value, self._clock() + self._write_ttl]
        self._data[key] = node
        self._push(key, node)

    def _push(self, key: Any, node: list[Any]) -> None:
        heap = self._heap
        heapq.heappush(heap, (node[1], next(self._seq), key, node))
        if len(heap) > 2 * len(self._data) + 64:
            data = self._data
            self._heap = [e for e in heap if data.get(e[2]) is e[3]]
            heapq.heapify(self._heap)

    def _remove(self, key: Any) -> Any:
        return self._data.pop(key)[0]

    def _victim(self) -> Any:
        self.expire()
        return next(iter(self._data))

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used entry that has not expired.

        :raises KeyError: if no live entry is left.
        """
        self.expire()
        return Cache.popitem(self)

    def _clear(self) -> None:
        self._data.clear()
        self._heap.clear()
