"""The base every scalekit cache shares: mapping behaviour, sizes and statistics.

A cache is a `collections.abc.MutableMapping` with a bounded
`maxsize`, drop-in for the cachetools class of the same name: the same
constructors, `currsize`, `getsizeof`, `popitem()` removing the
policy's victim, `ValueError("value too large")` for a value that cannot
fit and `__missing__` for subclasses that compute absent values.

A policy subclass implements a handful of small hooks (`_touch`,
`_peek`, `_update`, `_insert`, `_remove`, `_victim`, `_clear`
plus `__contains__`, `__iter__` and `__len__`); the base owns the
size accounting, eviction loop and statistics. The hottest policies (LRU,
FIFO, LFU) also override `get`, `__getitem__` and `__setitem__` with
inlined fast paths for the common case of unit sizes.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import threading
from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, TypeVar, overload

from ..exceptions import ArgumentTypeError, ConfigurationError
from ..observability import _emit

__all__ = ["Cache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

#: Sentinel for "no such key" on the hot paths (``None`` may be a cached value).
MISSING: Any = object()


class _Started(threading.local):
    #: How many weighted writes, deletes and clears this thread has started.
    started = 0


_OPS = _Started()


def _started() -> int:
    # Started again before one ended: a key's or a value's code re-entered a cache.
    _OPS.started = n = _OPS.started + 1
    return n


def _evicted(mark: int, cache: Cache[Any, Any]) -> int:
    # One eviction of a weighted write: its own delete is not a re-entry.
    cache.popitem()
    cache._evictions += 1
    return mark + 1 if _OPS.started == mark + 1 else mark


class MaxsizeTypeError(ConfigurationError, ArgumentTypeError):
    """A `maxsize` (or `getsizeof` result) that is a bool or not a number.

    Both a `ConfigurationError` (a `ValueError`), which cachetools users
    migrating catch around a bad size, and an `ArgumentTypeError` (a
    `TypeError`), as every other argument of the wrong type in scalekit is:
    either `except` clause catches it.
    """


_EXPECTED_MAXSIZE = (
    "a non-negative whole number (an int, or a float, Decimal or Fraction with no "
    "fractional part, at most sys.float_info.max) or math.inf"
)


def check_maxsize(value: Any) -> Any:
    """Return *value* as a valid `maxsize`: an `int` >= 0 or `math.inf`.

    As in cachetools, `0` is a cache that stores nothing (every write raises
    `ValueError("value too large")`) and `math.inf` an unbounded one. Any
    real number with no fractional part is taken, as cachetools takes it
    (`1e6`, `10.0`, `Decimal(3)`, `Fraction(6, 2)`), and returned as an `int`.

    Raises:
        MaxsizeTypeError: for a bool or a non-number (a `ConfigurationError`
            that is also an `ArgumentTypeError`).
        ConfigurationError: for a negative number, NaN, a number with a
            fractional part (capacities are whole units here) or one above
            `sys.float_info.max` (a size the policies' arithmetic cannot hold).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise MaxsizeTypeError(
            f"maxsize must be {_EXPECTED_MAXSIZE}, got {value!r} ({type(value).__name__})"
        )
    if isinstance(value, int) and 0 <= value <= sys.float_info.max:
        return value
    number: Any = value  # a Real or a Decimal: ordered, and int() truncates it
    try:
        if number == math.inf:
            return math.inf
        whole = int(number) if number >= 0 else -1  # NaN: int() raises ValueError
    except (ArithmeticError, ValueError):  # NaN (a Decimal NaN refuses even to compare)
        whole = -1
    if whole < 0 or whole > sys.float_info.max:
        raise ConfigurationError(f"maxsize must be {_EXPECTED_MAXSIZE}, got {value!r}")
    if whole != number:
        raise ConfigurationError(
            f"maxsize must be {_EXPECTED_MAXSIZE}, got {value!r}, which has a fractional part "
            "(capacities are counted in whole units)"
        )
    return whole


class CacheStats(NamedTuple):
    """Counters of a cache since it was created (or since `reset_stats()`).

    `hits` and `misses` count lookups through `get()` and `[]`;
    `evictions` counts entries the policy removed to make room (not
    explicit deletions, `clear()` or TTL expiry); `hit_ratio` is
    `hits / (hits + misses)`, 0.0 before the first lookup.
    """

    hits: int
    misses: int
    evictions: int
    hit_ratio: float


class Cache(MutableMapping[K, V]):
    """Base of every bounded scalekit cache; subclass it to add a policy.

    Concrete, as `cachetools.Cache` is: used as it is, it keeps the entries in
    insertion order and evicts the first inserted (updating a key keeps its
    place), and a subclass that only adds `__missing__` works.

    Args:
        maxsize: the capacity, in units of `getsizeof` (entries by default):
            a whole number >= 0 (`0` stores nothing; `1e6` or `Decimal(3)`
            is taken as the `int` it equals) or `math.inf` (unbounded).
        getsizeof: a function giving the size of a value (a non-negative
            `int` or `float`); `None` counts every entry as 1 (the fast path).

    Raises:
        ConfigurationError: if `maxsize` is negative, NaN, a bool, not a
            number or a number with a fractional part, or `getsizeof` is
            not callable. For a bool or a non-number it is a
            `MaxsizeTypeError`, also an `ArgumentTypeError` (a `TypeError`).

    Thread-safety: not thread-safe, like cachetools and `dict` mutation
    sequences; share a cache between threads behind a lock (for example the
    `lock=` argument of `scalekit.caching.cached()`).
    """

    #: True unless a subclass overrides popitem or __delitem__ (cachetools users
    #: hook evictions that way): then the fast paths call popitem() to evict.
    _inline: ClassVar[bool] = True

    #: The attributes holding the cache's own entries and policy state, which
    #: ``copy.copy`` duplicates; every other attribute is shared with the copy,
    #: as cachetools does. ``None`` (a direct subclass of Cache that does not say):
    #: every private, non-callable attribute is duplicated.
    _state: ClassVar[tuple[str, ...] | None] = None

    #: True unless a class outside scalekit overrides __getitem__, __missing__ or get:
    #: then ``cached`` reads the cache through ``cache[key]``, as cachetools does.
    _plain_reads: ClassVar[bool] = True

    #: True when a class outside scalekit overrides __getitem__: then `get()`,
    #: `pop()` and `setdefault()` read a present key through it, as cachetools does.
    _custom_getitem: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._inline = cls.popitem is Cache.popitem and cls.__delitem__ is Cache.__delitem__
        # Decided once per class, so that the library's own reads stay inlined.
        cls._custom_getitem = _defined_outside(cls, "__getitem__")
        cls._plain_reads = not (
            cls._custom_getitem
            or _defined_outside(cls, "__missing__")
            or _defined_outside(cls, "get")
        )
        if cls._custom_getitem and not _defined_outside(cls, "get"):
            cls._native_get = cls.get  # type: ignore[assignment,method-assign]
            cls.get = cls._get_through_getitem  # type: ignore[method-assign]

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None = None) -> None:
        self._maxsize = check_maxsize(maxsize)
        if getsizeof is not None and not callable(getsizeof):
            raise ArgumentTypeError(f"getsizeof must be callable or None, got {getsizeof!r}")
        if getsizeof is not None:
            # The function itself, as in cachetools (copies share it: `is` holds).
            self.getsizeof = getsizeof  # type: ignore[method-assign,assignment]
        # Sized when given a getsizeof or when a subclass overrides the method (as
        # cachetools allows); each write looks `self.getsizeof` up, so a copy's
        # override runs on the copy and a function assigned to a sized cache is used.
        sized = getsizeof is not None or type(self).getsizeof is not Cache.getsizeof
        self._sizes: dict[Any, int] | None = {} if sized else None
        self._currsize = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        if type(self)._touch is Cache._touch:
            self._data = {}

    # -- hooks a policy implements -------------------------------------------------

    # The defaults below keep the entries in one insertion-ordered `dict` and
    # evict the first, as cachetools' base `Cache` evicts through
    # `MutableMapping.popitem` (updating a key keeps its place). A policy
    # overrides them all; the base creates `_data` only when it keeps them.

    def _touch(self, key: Any) -> Any:
        """Return the value for *key* recording a hit in the policy, or MISSING."""
        return self._data.get(key, MISSING)

    def _peek(self, key: Any) -> Any:
        """Return the value for *key* without touching the policy, or MISSING."""
        return self._data.get(key, MISSING)

    def _update(self, key: Any, value: Any) -> bool:
        """Replace the value of a present key (a write access); False if absent.

        Called by the base's `__setitem__` only: a policy that writes in its
        own `__setitem__` (`TinyLFUCache` admits by duel) need not define it.
        """
        data = self._data
        if key not in data:
            return False
        data[key] = value  # type: ignore[index]
        return True

    def _insert(self, key: Any, value: Any) -> None:
        """Add an absent key; the base has already made room (see `_update()`)."""
        self._data[key] = value  # type: ignore[index]

    def _remove(self, key: Any) -> Any:
        """Remove *key* from the policy and return its value; KeyError if absent."""
        return self._data.pop(key)  # type: ignore[attr-defined]

    def _victim(self) -> Any:
        """The key the policy would evict next (the cache is not empty)."""
        return next(iter(self._data))

    def _clear(self) -> None:
        """Forget every entry."""
        self._data.clear()  # type: ignore[attr-defined]

    # -- mapping -------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        """Return the value for *key*, counting a hit or a miss.

        Raises:
            KeyError: if absent (unless a subclass defines `__missing__`).

        Runtime complexity: O(1) (amortized).
        """
        value = self._touch(key)
        if value is MISSING:
            self._misses += 1
            return self.__missing__(key)
        self._hits += 1
        return value  # type: ignore[no-any-return]

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D) -> V | D: ...
    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key*, or *default*; counts a hit or a miss.

        Runtime complexity: O(1) (amortized).
        """
        value = self._touch(key)
        if value is MISSING:
            self._misses += 1
            return default
        self._hits += 1
        return value

    def _get_through_getitem(self, key: K, default: Any = None) -> Any:
        """`get()` of a subclass overriding `__getitem__`: a present key is read through it.

        As in cachetools, an absent key returns *default* without calling
        `__getitem__` (nor `__missing__`); the policy's own `get` handles it,
        so it counts a miss and the policy learns of it as it would otherwise
        (TinyLFU's sketch counts the request).
        """
        if key in self:
            return self[key]
        return self._native_get(key, default)

    def _native_get(self, key: K, default: Any = None) -> Any:
        # Replaced, per class, by the policy's own get (see __init_subclass__).
        return Cache.get(self, key, default)

    def __missing__(self, key: K) -> V:
        raise KeyError(key)

    def __setitem__(self, key: K, value: V) -> None:
        """Store *value*, evicting the policy's victims until it fits.

        Raises:
            ValueError: `"value too large"` if its size exceeds `maxsize`
                (every write, when `maxsize` is 0).
            ConfigurationError: if `getsizeof` returns a negative, NaN or
                non-number size.

        Runtime complexity: O(1) amortized per eviction.
        """
        sizes = self._sizes
        if sizes is None:
            if self._update(key, value):
                return
            if len(self) >= self._maxsize:
                self._make_room()
            self._insert(key, value)
            return
        size = self._size_of(value)
        maxsize = self._maxsize
        if size > maxsize:
            raise ValueError("value too large")
        ops = _OPS
        ops.started = mark = ops.started + 1
        try:
            if key in self:
                diff = size - sizes.get(key, 0)
                while self._currsize + diff > maxsize and len(self):
                    mark = _evicted(mark, self)
                    if key not in self:
                        diff = size
            else:
                diff = size
                while self._currsize + diff > maxsize and len(self):
                    mark = _evicted(mark, self)
            if not (key in self and self._update(key, value)):
                self._insert(key, value)
            sizes[key] = size
            self._currsize += diff
        finally:
            if ops.started != mark:
                self._settle_sizes()

    def _settle_sizes(self) -> None:
        """Rebuild the sizes from the entries after code of a key or value changed them.

        A key's `__hash__`/`__eq__` or a value's `__del__` that writes or deletes
        in this cache while it updates its sizes can leave a size without an entry,
        an entry without a size, or a `currsize` that is not their sum; this
        recounts them (a size not recorded is measured again). It runs only when
        another weighted write or delete ran, in this thread, during one.
        """
        for _ in range(8):
            sizes = self._sizes
            if sizes is None:
                return
            mark = _started()
            try:
                # By identity first: only the sizes that change hash their keys.
                keys = list(self)
                present = {id(key) for key in keys}
                recorded = {id(key) for key in sizes}
                for key in [key for key in sizes if id(key) not in present]:
                    sizes.pop(key, None)
                for key in keys:
                    if id(key) not in recorded:
                        value = self._peek(key)
                        if value is not MISSING:
                            sizes[key] = self._size_of(value)
                self._currsize = sum(sizes.values())
            except (KeyError, RuntimeError):
                continue  # changed under the walk: walk again
            if _OPS.started == mark:
                return

    def _make_room(self) -> None:
        """Evict through `popitem()` until one more unit-size entry fits (the slow path)."""
        if self._maxsize < 1:
            raise ValueError("value too large")
        while len(self) >= self._maxsize:
            self.popitem()
            self._evictions += 1

    def _size_of(self, value: Any) -> Any:
        size = self.getsizeof(value)
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise MaxsizeTypeError(
                f"getsizeof must return a non-negative number, got {size!r} "
                f"({type(size).__name__}) for {value!r}"
            )
        if not size >= 0:
            raise ConfigurationError(
                f"getsizeof must return a non-negative number, got {size!r} "
                f"({type(size).__name__}) for {value!r}"
            )
        return size

    def __delitem__(self, key: K) -> None:
        """Remove *key*.

        Raises:
            KeyError: *key* is absent.

        Runtime complexity: O(1).
        """
        sizes = self._sizes
        if sizes is None:
            self._remove(key)
            return
        ops = _OPS
        ops.started = mark = ops.started + 1
        try:
            self._remove(key)
            self._currsize -= sizes.pop(key, 0)
        finally:
            if ops.started != mark:
                self._settle_sizes()

    # Every policy keeps its entries in ``self._data``, keyed by the cached keys.
    _data: Mapping[Any, Any]

    def __contains__(self, key: object) -> bool:
        """Whether *key* is cached, without counting a hit or touching the policy."""
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        """The cached keys, without touching the policy.

        Iterates over a snapshot: writing a present key while iterating is
        allowed (cachetools allows it too), a key added meanwhile is not
        visited and a key removed (deleted or evicted) is skipped, where
        cachetools and a `dict` raise `RuntimeError`.
        """
        data = self._data
        return filter(data.__contains__, list(data))  # each key checked when reached

    def __len__(self) -> int:
        """The number of cached entries."""
        return len(self._data)

    def __repr__(self) -> str:
        items = {k: self._peek(k) for k in list(self)}
        return (
            f"{type(self).__name__}({items!r}, maxsize={self._maxsize!r}, "
            f"currsize={self.currsize!r})"
        )

    def items(self) -> ItemsView[K, V]:
        """A view of the `(key, value)` pairs; reading it leaves the policy untouched."""
        return _ItemsView(self)

    def values(self) -> ValuesView[V]:
        """A view of the values; reading it leaves the policy untouched."""
        return _ValuesView(self)

    def __copy__(self) -> Cache[K, V]:
        """A cache with its own entries and policy state, sharing everything else.

        As cachetools' `copy.copy`: keys, values, `getsizeof`, `timer`,
        `choice` and any attribute a subclass adds (a lock, a dict of its own)
        are shared with the source; the entries, their order or counts and the
        statistics are the copy's own, so writing to one leaves the other as it was.

        Runtime complexity: O(n).
        """
        cls = type(self)
        clone = cls.__new__(cls)
        # A policy whose state is a linked structure flattens it in __getstate__.
        getstate = getattr(self, "__getstate__", None)  # object has it from Python 3.11
        state = dict(self.__dict__ if getstate is None else getstate())
        own = self._state
        if own is None:
            own = tuple(k for k, v in state.items() if k.startswith("_") and not callable(v))
        memo: dict[int, Any] = {}
        for key in list(self):
            memo[id(key)] = key
            value = self._peek(key)
            memo[id(value)] = value
        for name, attr in state.items():
            if name not in own:
                memo[id(attr)] = attr
        mine = copy.deepcopy({name: state[name] for name in own if name in state}, memo)
        state.update(mine)
        setstate = getattr(clone, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            clone.__dict__.update(state)
        return clone

    # -- cachetools-compatible API -------------------------------------------------

    def popitem(self) -> tuple[K, V]:
        """Remove and return the `(key, value)` pair the policy evicts next.

        Raises:
            KeyError: if the cache is empty (its context suppressed, as cachetools).

        Runtime complexity: O(1) amortized.
        """
        if not len(self):
            raise KeyError(f"{type(self).__name__} is empty") from None
        key = self._victim()
        value = self._peek(key)
        del self[key]
        return key, value

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: V | D) -> V | D: ...
    def pop(self, key: K, default: Any = MISSING) -> Any:
        """Remove *key* and return its value (or *default*); no hit or miss is counted.

        A subclass overriding `__getitem__` has the value read through it, as
        in cachetools (still counting no hit).

        Raises:
            KeyError: if absent and no default is given.
        """
        if key in self:
            if self._custom_getitem:
                hits, misses = self._hits, self._misses
                value = self[key]
                self._hits, self._misses = hits, misses
            else:
                value = self._peek(key)
            del self[key]
            return value
        if default is MISSING:
            raise KeyError(key)
        return default

    @overload
    def setdefault(self: Cache[K, D | None], key: K, default: None = None) -> D | None: ...
    @overload
    def setdefault(self, key: K, default: V) -> V: ...
    def setdefault(self, key: K, default: Any = None) -> Any:
        """Return the value of *key*, storing *default* first if it is absent."""
        if key in self:
            return self[key]
        self[key] = default
        return default

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: V | D) -> V | D: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* without touching the policy or the statistics."""
        value = self._peek(key)
        return default if value is MISSING else value

    def clear(self) -> None:
        """Remove every entry (not counted as evictions). Runtime complexity: O(n)."""
        mark = _started()
        self._clear()
        if self._sizes is not None:
            self._sizes.clear()
            self._currsize = 0
            if _OPS.started != mark:
                self._settle_sizes()  # a value's __del__ wrote meanwhile
        else:
            self._currsize = 0

    @property
    def maxsize(self) -> Any:
        """The capacity, in units of `getsizeof` (an `int`, or `math.inf`)."""
        return self._maxsize

    @property
    def currsize(self) -> Any:
        """The current total size (the number of entries with unit sizes)."""
        return len(self) if self._sizes is None else self._currsize

    def getsizeof(self, value: V) -> int:
        """The size of *value*: 1 unless a `getsizeof` function was given.

        A `getsizeof` function given to the constructor is set on the instance
        in place of this method; a subclass may override it instead, and its
        override may call this one, which returns 1 as cachetools' base does.
        Each write of a cache with sizes looks `self.getsizeof` up, as
        cachetools does, so an override runs on the cache written (a copy's
        on the copy). A cache built with neither keeps unit sizes (a
        function assigned to `getsizeof` later is not used), as in cachetools.
        """
        return 1

    def stats(self) -> CacheStats:
        """Hits, misses, evictions and hit ratio. Runtime complexity: O(1)."""
        hits, misses = self._hits, self._misses
        total = hits + misses
        return CacheStats(hits, misses, self._evictions, hits / total if total else 0.0)

    def reset_stats(self) -> None:
        """Set the hit, miss and eviction counters back to zero."""
        _emit.stats_reset(self)  # exported counters keep what was counted so far
        self._hits = self._misses = self._evictions = 0


def _defined_outside(cls: type, name: str) -> bool:
    """Whether the class that gives *cls* its attribute *name* is not one of scalekit's.

    *name* is one that `Cache` defines, so some class in the MRO has it.
    """
    owner = next(klass for klass in cls.__mro__ if name in klass.__dict__)
    return not owner.__module__.startswith("scalekit.")


class _ItemsView(ItemsView[K, V]):
    _mapping: Cache[K, V]

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        key: Any = item[0]
        value: Any = item[1]
        found = self._mapping._peek(key)
        return found is not MISSING and (found is value or found == value)

    def __iter__(self) -> Iterator[tuple[K, V]]:
        mapping = self._mapping
        for key in mapping:
            yield key, mapping._peek(key)


class _ValuesView(ValuesView[V]):
    _mapping: Cache[Any, V]

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self)

    def __iter__(self) -> Iterator[V]:
        mapping = self._mapping
        for key in mapping:
            yield mapping._peek(key)
