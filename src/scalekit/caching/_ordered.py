"""The shared base of the caches kept in one insertion-ordered dictionary."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .base import MISSING, Cache

__all__ = ["OrderedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class OrderedCache(Cache[K, V]):
    """Entries in one `collections.OrderedDict`, oldest first; evicts the first.

    Reads do not reorder here (FIFO); `LRUCache`
    overrides the reads to move a hit to the end. Writing a present key
    moves it to the end, as cachetools does for both.
    """

    _state: ClassVar[tuple[str, ...] | None] = ("_data", "_sizes")

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof)
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def __iter__(self) -> Iterator[K]:
        """The cached keys, oldest (next to evict) first, without touching the policy.

        Iterates over a snapshot: a key written while iterating moves to the
        end without disturbing the loop (cachetools allows it), a key added is
        not visited and a key removed is skipped.
        """
        data = self._data
        for key in list(data):
            if key in data:
                yield key

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key*, or *default*. Runtime complexity: O(1)."""
        # `in` then `[]` are two specialised opcodes, faster than a call of
        # `dict.get` on a hit and on a miss (tuple keys included).
        if key in self._data:
            self._hits += 1
            return self._data[key]
        self._misses += 1
        return default

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __getitem__(self, key: K) -> V:
        if key in self._data:
            self._hits += 1
            return self._data[key]  # type: ignore[no-any-return]
        self._misses += 1
        return self.__missing__(key)

    def __setitem__(self, key: K, value: V) -> None:
        if self._sizes is not None:
            Cache.__setitem__(self, key, value)
            return
        data = self._data
        if key in data:
            # The old value is released only after the move: its __del__ may
            # write or delete this key, and must find the dict consistent.
            old = data[key]  # noqa: F841
            data[key] = value
            data.move_to_end(key)
            return
        if len(data) >= self._maxsize:
            if self._inline and data:
                # Positional: a keyword argument makes the C call measurably slower.
                data.popitem(False)
                self._evictions += 1
            else:
                self._make_room()
        data[key] = value

    def _touch(self, key: Any) -> Any:
        return self._data.get(key, MISSING)

    _peek = _touch

    def _update(self, key: Any, value: Any) -> bool:
        data = self._data
        if key not in data:
            return False
        old = data[key]  # noqa: F841  (released after the move, as in __setitem__)
        data[key] = value
        data.move_to_end(key)
        return True

    def _insert(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def _remove(self, key: Any) -> Any:
        try:
            return self._data.pop(key)
        except KeyError:
            # OrderedDict.pop raises KeyError(*key) for a tuple key; a dict raises
            # KeyError(key), and so does every cache.
            raise KeyError(key) from None

    def _victim(self) -> Any:
        return next(iter(self._data))

    def _clear(self) -> None:
        # The entries are held until the cache is empty: a key's or value's
        # __del__ may write to it, and then finds it whole (as the compiled twin).
        held = list(self._data.items())
        self._data.clear()
        del held
