"""SIEVE eviction (Zhang et al., "SIEVE is Simpler than LRU", NSDI 2024)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .base import MISSING, Cache

__all__ = ["SIEVECache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# A node is a list [older, newer, key, value, visited] in a ring around a root.
_OLDER, _NEWER, _KEY, _VALUE, _VISITED = 0, 1, 2, 3, 4


class SIEVECache(Cache[K, V]):
    """SIEVE: a FIFO queue with a visited bit and a hand that sweeps it.

    New entries go to the head of a queue and never move. A hit only sets
    the entry's visited bit. To evict, a hand walks from where it stopped
    last (first time: the tail, the oldest entry) toward the head, clearing
    visited bits, and evicts the first entry whose bit is clear; back at the
    head it wraps to the tail. This is libCacheSim's `Sieve.c`, and the
    class reproduces its hit ratios exactly.

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

    Runtime complexity: O(1) per hit; O(1) amortized per eviction.
    """

    # What `copy.copy` gives the copy of its own (in `__getstate__`'s flat form);
    # every other attribute, a subclass's lock included, is shared.
    _state: ClassVar[tuple[str, ...] | None] = ("_entries", "_sizes")

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        super().__init__(maxsize, getsizeof)
        self._data: dict[Any, list[Any]] = {}
        root: list[Any] = [None, None, MISSING, MISSING, False]
        root[_OLDER] = root[_NEWER] = root
        self._root = root  # root[_NEWER] is the tail (oldest), root[_OLDER] the head
        self._hand: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The queue is a linked list of nodes: flatten it, oldest first, so that
        # copy and pickle need no recursion as deep as the cache is long.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_data", "_root", "_hand")}
        entries = []
        root, node = self._root, self._root[_NEWER]
        while node is not root:
            entries.append((node[_KEY], node[_VALUE], node[_VISITED]))
            node = node[_NEWER]
        state["_entries"] = entries
        state["_hand_key"] = None if self._hand is None else self._hand[_KEY]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        entries = state.pop("_entries")
        hand_key = state.pop("_hand_key")
        self.__dict__.update(state)
        self._data = {}
        root: list[Any] = [None, None, MISSING, MISSING, False]
        root[_OLDER] = root[_NEWER] = root
        self._root = root
        self._hand = None
        for key, value, visited in entries:
            # entries run oldest -> newest; _insert puts a node at the head (newest)
            self._insert(key, value)
            self._data[key][_VISITED] = visited
        self._hand = None if hand_key is None else self._data[hand_key]

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (marking it visited), or *default*.

        Runtime complexity: O(1).
        """
        node = self._data.get(key)
        if node is None:
            self._misses += 1
            return default
        node[_VISITED] = True
        self._hits += 1
        return node[_VALUE]

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def _touch(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None:
            return MISSING
        node[_VISITED] = True
        return node[_VALUE]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        return MISSING if node is None else node[_VALUE]

    def _update(self, key: Any, value: Any) -> bool:
        node = self._data.get(key)
        if node is None:
            return False
        node[_VALUE] = value
        node[_VISITED] = True
        return True

    def _insert(self, key: Any, value: Any) -> None:
        root = self._root
        node = [None, root, key, value, False]
        found = self._data.setdefault(key, node)
        if found is not node:
            # Written meanwhile (by the __del__ of a value the eviction released):
            # an update of that entry, whose old value is released at return.
            old = found[_VALUE]  # noqa: F841
            found[_VALUE] = value
            found[_VISITED] = True
            return
        # The newest end read after the insert: the key's __hash__/__eq__ may have
        # cleared the cache or written other keys meanwhile.
        head = root[_OLDER]
        node[_OLDER] = head
        head[_NEWER] = root[_OLDER] = node

    def _remove(self, key: Any) -> Any:
        node = self._data.pop(key)
        older, newer = node[_OLDER], node[_NEWER]
        if node is self._hand:
            self._hand = None if newer is self._root else newer
        older[_NEWER] = newer
        newer[_OLDER] = older
        return node[_VALUE]

    def _victim(self) -> Any:
        root, data = self._root, self._data
        hand = self._hand
        # No hand, or (threads sharing the cache unlocked) one left on a node
        # another thread unlinked, or on the root: start from the tail.
        node: list[Any] = root[_NEWER]
        if hand is not None and data.get(hand[_KEY]) is hand:
            node = hand
        while node[_VISITED]:
            node[_VISITED] = False
            node = node[_NEWER]
            if node is root:
                node = root[_NEWER]
        if data.get(node[_KEY]) is not node:
            # Unlocked threads raced on the links: any present entry keeps the cache
            # bounded (the oldest inserted), and the next eviction starts afresh.
            # list() copies the keys in one step, where iterating may see a resize.
            self._hand = None
            keys = list(data)
            if not keys:
                raise KeyError(f"{type(self).__name__} is empty")
            return keys[0]
        # _remove moves the hand one step toward the head, as Sieve_evict does.
        self._hand = node
        return node[_KEY]

    def _clear(self) -> None:
        # The nodes are held until the cache is empty and whole: a key's or value's
        # __del__ may write to it. Their links are cut, so they go at once, not
        # when the GC finds their cycle (as the compiled twin releases them).
        held = list(self._data.values())
        self._data.clear()
        root = self._root
        root[_OLDER] = root[_NEWER] = root
        self._hand = None
        for node in held:
            node[_OLDER] = node[_NEWER] = None
        del held


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import sieve

    SIEVECache = sieve(SIEVECache)
