"""Least recently used eviction with a time to live per entry."""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import numbers
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import MISSING, Cache

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_INF = math.inf


def check_ttl(value: Any) -> Any:
    """Return *value* if it is a valid time to live: a number (`math.inf` too) or a timedelta.

    As in cachetools, a ttl of zero or less is valid: every entry written
    with it expires at once (an entry is never served at its deadline).

    Raises:
        ArgumentTypeError: for a bool or a non-number.
        ConfigurationError: for NaN or an int too large for a float.
    """
    if isinstance(value, timedelta):
        return value
    expected = "a number (zero or less expires at once, math.inf never) or a timedelta"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"ttl must be {expected}, got {value!r} ({type(value).__name__})")
    number: Any = value  # a Real: ordered
    try:
        if (isinstance(number, float) and not math.isnan(number)) or (
            not isinstance(number, float) and -sys.float_info.max <= number <= sys.float_info.max
        ):
            return float(value)
    except ArithmeticError:  # a Decimal NaN refuses to compare
        pass
    raise ConfigurationError(f"ttl must be {expected}, got {value!r}")


def _check_timedelta_timer(ttl: timedelta, timer: Callable[[], Any]) -> None:
    """Refuse a `timedelta` ttl that the timer's times cannot be added to.

    The timer is read once, and only for a `timedelta` ttl: a numeric ttl
    goes with the default timer of seconds, and a test clock that moves on
    each read (cachetools' suite has one) is left where it is.

    Raises:
        ArgumentTypeError: `timer() + ttl` is not defined (a timer of seconds).
    """
    now = timer()
    try:
        now + ttl
    except ArithmeticError:  # the types add up; this time is past the last one (datetime.max)
        return
    except TypeError:
        raise ArgumentTypeError(
            f"ttl {ttl!r} cannot be added to the time {now!r} ({type(now).__name__}) that "
            f"timer {timer!r} returns: a timedelta ttl needs a timer of datetimes "
            "(datetime.now); with a timer of seconds, give ttl in seconds "
            f"({ttl.total_seconds()!r})"
        ) from None


class Timer:
    """The clock of a timed cache, as cachetools' `cache.timer` is.

    Calling it reads the clock it wraps; `with cache.timer as now:` freezes
    the time for a batch of operations (nested blocks share the outer time).
    Other attributes are those of the wrapped clock (`cache.timer.tick()` on
    a test clock). A copy of the cache gets a timer of its own around the
    same clock.
    """

    __slots__ = ("_depth", "_now", "_owner", "_timer")

    def __init__(self, timer: Callable[[], Any], owner: Any = None) -> None:
        self._timer = timer
        self._now: Any = None  # the frozen time inside a `with` block
        self._depth = 0
        # The cache reading this timer: it keeps the frozen time in its own
        # `_frozen` too, one attribute load on its hot paths.
        self._owner = owner

    def _set(self, now: Any) -> None:
        self._now = now
        owner = self._owner
        if owner is not None:
            owner._frozen = now

    def __call__(self) -> Any:
        now = self._now
        return self._timer() if now is None else now

    def __enter__(self) -> Any:
        if self._depth == 0:
            self._set(self._timer())
        self._depth += 1
        return self._now

    def _freeze(self, now: Any) -> None:
        """Enter a block at *now*, a time the caller has just read from this clock."""
        if self._depth == 0:
            self._set(now)
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._set(None)

    def __copy__(self) -> Timer:
        return Timer(self._timer)

    def __deepcopy__(self, memo: dict[int, Any]) -> Timer:
        return Timer(copy.deepcopy(self._timer, memo))

    def __reduce__(self) -> Any:
        return Timer, (self._timer,)

    def __getattr__(self, name: str) -> Any:
        if name in Timer.__slots__:  # not set yet (while unpickling)
            raise AttributeError(name)
        return getattr(self._timer, name)

    def __repr__(self) -> str:
        return f"Timer({self._timer!r})"


class TTLCache(Cache[K, V]):
    """An LRU cache whose entries expire; drop-in for `cachetools.TTLCache`.

    An entry written at time *t* expires at `t + ttl` (`ttl` from the
    constructor, or per entry with `set()`). As in cachetools, an entry
    is expired when `timer() >= expires`: it is then invisible (`in`,
    `[]`, `get` and iteration ignore it) although it may still be stored;
    `expire()` drops the expired entries, and every write, `len()`,
    `currsize`, `popitem()` and `repr()` run it first. Within the live
    entries the least recently used is evicted when the cache is full.

    The timer may return any ordered time that supports `+ ttl`: seconds
    from `time.monotonic` (the default) with a numeric `ttl`
    (`math.inf`: never expires), or `datetime.now` with a `timedelta`.
    `cache.timer` is a `Timer`:
    `with cache.timer as now:` runs several operations at one frozen time.

    ```pycon
    >>> from scalekit.testing import FakeClock
    >>> clock = FakeClock()
    >>> cache = TTLCache(maxsize=10, ttl=5, timer=clock)
    >>> cache["a"] = 1
    >>> cache.set("b", 2, ttl=60)
    >>> _ = clock.advance(10)
    >>> sorted(cache)
    ['b']

    ```

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        ttl: default time to live, in the timer's units (seconds), or a `timedelta`.
        timer: the clock, `time.monotonic` by default.
        getsizeof: optional function giving a value's size.

    Raises:
        ArgumentTypeError: `maxsize` or `ttl` is neither an `int` nor `math.inf`, or `ttl` neither
            a number nor a `timedelta`, or `ttl` is a `timedelta` and the timer's
            time (read once, for this check) cannot be added to it (a timer of seconds).
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`, or `ttl` is not positive.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) per read, O(log n) per write (expiry heap).
    """

    #: False when a subclass overrides popitem or __delitem__ again (cachetools
    #: users hook evictions that way): then __setitem__ evicts through popitem().
    _ttl_inline: ClassVar[bool] = True

    _state: ClassVar[tuple[str, ...] | None] = ("_data", "_heap", "_sizes", "_clock")

    #: True when each entry's expiry comes from `_expires` (TLRUCache's ttu).
    _per_item: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._ttl_inline = (
            cls.popitem is TTLCache.popitem and cls.__delitem__ is TTLCache.__delitem__
        )

    if not TYPE_CHECKING:

        def __class_getitem__(cls, params):
            # cachetools 8 also parametrizes the time type: TTLCache[K, V, T].
            if isinstance(params, tuple) and len(params) == 3:
                params = params[:2]
            return super().__class_getitem__(params)

    def __init__(
        self,
        maxsize: int,
        ttl: float | timedelta,
        timer: Callable[[], Any] = time.monotonic,
        getsizeof: Callable[[V], int] | None = None,
    ) -> None:
        super().__init__(maxsize, getsizeof)
        self._ttl = check_ttl(ttl)
        if not callable(timer):
            raise ArgumentTypeError(f"timer must be callable, got {timer!r}")
        if isinstance(self._ttl, timedelta) and not self._per_item:
            _check_timedelta_timer(self._ttl, timer)
        self._timer = timer
        self._frozen: Any = None  # the time inside a `with cache.timer` block
        self._clock = Timer(timer, self)
        # key -> [value, expires], in recency order; the heap holds
        # (expires, seq, key, node) and is cleaned lazily. seq comes from a
        # count (its ints are 4 bytes smaller than those of `seq + 1`), which
        # __getstate__ turns into an int: itertools objects cannot be pickled
        # or copied from Python 3.14.
        self._data: OrderedDict[Any, list[Any]] = OrderedDict()
        self._heap: list[tuple[Any, int, Any, list[Any]]] = []
        self._seq = itertools.count()
        self._write_ttl: Any = self._ttl
        # The inline write: unit sizes and room for at least one entry.
        self._unit_writes = self._sizes is None and self._maxsize >= 1

    def __getstate__(self) -> dict[str, Any]:
        """The state to pickle or copy: the sequence counter as an int."""
        state = self.__dict__.copy()
        state["_seq"] = next(self._seq)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._seq = itertools.count(state["_seq"])
        self._frozen = None
        self._clock._owner = self  # a copied timer is this cache's own

    def _now(self) -> Any:
        now = self._frozen
        return self._timer() if now is None else now

    def _expires(self, key: Any, value: Any, now: Any) -> Any:
        """When an entry written now expires (TLRUCache computes it per item)."""
        return now + self._write_ttl

    @property
    def ttl(self) -> Any:
        """The default time to live."""
        return self._ttl

    @property
    def timer(self) -> Timer:
        """The cache's clock: call it for the time, `with` it to freeze the time."""
        return self._clock

    def set(self, key: K, value: V, ttl: float | timedelta | None = None) -> None:
        """Store *value* for *ttl* (default: the cache's `ttl`).

        Raises:
            ConfigurationError: if *ttl* is NaN (`ArgumentTypeError` if it is
                neither a number nor a timedelta).
            ValueError: `"value too large"` as for `[]=`.

        Runtime complexity: O(log n).
        """
        self._write_ttl = self._ttl if ttl is None else check_ttl(ttl)
        try:
            self[key] = value
        finally:
            self._write_ttl = self._ttl

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* if it has not expired (making it most recent), or *default*.

        Runtime complexity: O(1).
        """
        data = self._data
        node = data.get(key)
        if node is not None:
            now = self._frozen
            if (self._timer() if now is None else now) < node[1]:
                data.move_to_end(key)
                self._hits += 1
                return node[0]
        self._misses += 1
        return default

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __getitem__(self, key: K) -> V:
        data = self._data
        node = data.get(key)
        if node is not None:
            now = self._frozen
            if (self._timer() if now is None else now) < node[1]:
                data.move_to_end(key)
                self._hits += 1
                return node[0]  # type: ignore[no-any-return]
        self._misses += 1
        return self.__missing__(key)

    def __setitem__(self, key: K, value: V) -> None:
        frozen = self._frozen
        now = self._timer() if frozen is None else frozen
        # Computed first: a time that overflows (datetime.max + ttl) changes nothing.
        expires = self._expires(key, value, now) if self._per_item else now + self._write_ttl
        self.expire(now)
        if self._unit_writes and self._ttl_inline:
            # Unit sizes: every entry left is live (expire(now) ran), so this is
            # LRU's write -- at most one eviction, the least recent entry.
            data = self._data
            node = [value, expires]
            if key in data:
                data[key] = node
                data.move_to_end(key)
            else:
                if len(data) >= self._maxsize:
                    data.popitem(False)
                    self._evictions += 1
                data[key] = node
            self._push(key, node)
            return
        clock = self._clock
        clock._freeze(now)
        self._write_expires = expires
        try:
            Cache.__setitem__(self, key, value)
        finally:
            clock.__exit__()
            del self._write_expires

    def __delitem__(self, key: K) -> None:
        node = self._data.get(key)
        Cache.__delitem__(self, key)
        if node is not None and not self._now() < node[1]:
            raise KeyError(key)  # it had already expired, as cachetools reports

    def expire(self, time: Any = None) -> list[tuple[K, V]]:
        """Remove the entries expired at *time* (default: now) and return them.

        Runtime complexity: O(k log n) for k expired entries.
        """
        if time is None:
            time = self._now()
        elif isinstance(time, (bool, str, bytes)):
            raise ArgumentTypeError(
                f"time must be a number on the cache's timer, got {time!r} ({type(time).__name__})"
            )
        elif isinstance(time, float) and math.isnan(time):
            raise ConfigurationError(f"time must be a number on the cache's timer, got {time!r}")
        elif not isinstance(time, (int, float)):  # a custom timer's type: it must compare
            try:
                time < self._now()  # noqa: B015
            except TypeError:
                raise ArgumentTypeError(
                    f"time must be a value of the cache's timer, got {time!r} "
                    f"({type(time).__name__}), which does not compare with {self._now()!r}"
                ) from None
        heap = self._heap
        expired: list[tuple[K, V]] = []
        data = self._data
        while heap and not time < heap[0][0]:
            _, _, key, node = heapq.heappop(heap)
            if data.get(key) is node:
                expired.append((key, node[0]))
                Cache.__delitem__(self, key)
        return expired

    def __contains__(self, key: object) -> bool:
        node = self._data.get(key)
        return node is not None and self._now() < node[1]

    def __iter__(self) -> Iterator[K]:
        """The live keys, least recently used first, over a snapshot.

        A key written while iterating is visited once, a key added is not
        visited, and a key removed or expired meanwhile is skipped (not purged).
        """
        data = self._data
        for key in list(data):
            node = data.get(key)
            if node is not None and self._now() < node[1]:
                yield key

    def __len__(self) -> int:
        with self._clock as now:
            self.expire(now)
            return len(self._data)

    @property
    def currsize(self) -> Any:
        """The total size of the live entries (expired ones are dropped first)."""
        with self._clock as now:
            self.expire(now)
            return len(self._data) if self._sizes is None else self._currsize

    def __repr__(self) -> str:
        with self._clock as now:
            self.expire(now)
            return Cache.__repr__(self)

    def _pop(self, key: K, default: Any = MISSING) -> Any:
        """Remove *key* and return its value (or *default*), at one frozen time."""
        with self._clock:
            return Cache.pop(self, key, default)

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.pop
        pop = _pop

    def _get_through_getitem(self, key: K, default: Any = None) -> Any:
        """`get()` of a subclass overriding `__getitem__`, at one frozen time."""
        with self._clock:
            return Cache._get_through_getitem(self, key, default)

    def _setdefault(self, key: K, default: Any = None) -> Any:
        """Return the value of *key*, storing *default* first if it is absent (or expired)."""
        with self._clock:
            return Cache.setdefault(self, key, default)

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.setdefault
        setdefault = _setdefault

    def _touch(self, key: Any) -> Any:
        data = self._data
        node = data.get(key)
        if node is None or not self._now() < node[1]:
            return MISSING
        data.move_to_end(key)
        return node[0]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None or not self._now() < node[1]:
            return MISSING
        return node[0]

    def _update(self, key: Any, value: Any) -> bool:
        data = self._data
        if key not in data:
            return False
        node = [value, self._write_expires]
        data[key] = node
        data.move_to_end(key)
        self._push(key, node)
        return True

    def _insert(self, key: Any, value: Any) -> None:
        node = [value, self._write_expires]
        self._data[key] = node
        self._push(key, node)

    def _push(self, key: Any, node: list[Any]) -> None:
        heap = self._heap
        if node[1] != _INF:  # an entry that never expires needs no heap slot
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

        Raises:
            KeyError: if no live entry is left.
        """
        with self._clock as now:
            self.expire(now)
            return Cache.popitem(self)

    def _clear(self) -> None:
        self._data.clear()
        self._heap.clear()
