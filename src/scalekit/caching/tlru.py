"""Least recently used eviction with a time to use computed per item."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import Cache
from .ttl import TTLCache

__all__ = ["TLRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


_EXPECTED = (
    "ttu must return an expiry time that compares with the timer's time (a real number, "
    "not a bool or NaN; math.inf for never; a datetime with a datetime timer)"
)


def _refuse(key: Any, expires: Any) -> None:
    """Raise the error for a `ttu` result that is no expiry time (the write changes nothing)."""
    error: type[Exception] = ArgumentTypeError
    try:
        if expires.__class__ is not bool and expires != expires:
            error = ConfigurationError  # NaN: a number, but no time
    except (TypeError, ArithmeticError):
        error = ConfigurationError  # a Decimal NaN refuses even this comparison
    raise error(f"{_EXPECTED}, got {expires!r} ({type(expires).__name__}) for key {key!r}")


class TLRUCache(TTLCache[K, V]):
    """An LRU cache whose entries expire when `ttu` says; drop-in for `cachetools.TLRUCache`.

    On every write, `ttu(key, value, now)` returns the entry's expiry time
    (in the timer's units; `math.inf` for never). An entry whose expiry is
    not after `now` is not stored, and a present entry for that key is
    removed. A result that is no expiry time (`None`, a `str`, a bool, NaN,
    or one that does not compare with the timer's time) makes the write
    raise before it changes anything: a present entry for that key keeps
    its value and deadline. Everything else (expiry at `timer() >= expires`, iteration,
    `expire()`, `with cache.timer`) is [TTLCache][scalekit.caching.TTLCache]'s.

    ```pycon
    >>> from scalekit.testing import FakeClock
    >>> clock = FakeClock()
    >>> ttu = lambda key, value, now: now + (60 if key.startswith("user:") else 5)
    >>> cache = TLRUCache(maxsize=10, ttu=ttu, timer=clock)
    >>> cache["user:1"], cache["page:/"] = "ann", "<html>"
    >>> _ = clock.advance(10)
    >>> sorted(cache)
    ['user:1']

    ```

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        ttu: `ttu(key, value, now)` returns when the entry expires.
        timer: the clock, `time.monotonic` by default.
        getsizeof: optional function giving a value's size.

    Raises:
        ArgumentTypeError: `maxsize` is neither an `int` nor `math.inf` (a bool,
            `None`, a string), or `ttu` is not callable.
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`.

    A write raises `ArgumentTypeError` when `ttu` returns `None`, a bool or
    anything that does not compare with the timer's time, and
    `ConfigurationError` for NaN, each naming `ttu`, the result and the key.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) per read, O(log n) per write (expiry heap).
    """

    _per_item = True

    def __init__(
        self,
        maxsize: int,
        ttu: Callable[[K, V, Any], Any],
        timer: Callable[[], Any] = time.monotonic,
        getsizeof: Callable[[V], int] | None = None,
    ) -> None:
        if not callable(ttu):
            raise ArgumentTypeError(f"ttu must be callable, got {ttu!r}")
        super().__init__(maxsize, ttl=1, timer=timer, getsizeof=getsizeof)
        self._ttu = ttu
        self._computed: Any = None  # the expiry ttu gave for the write in progress

    @property
    def ttu(self) -> Callable[[K, V, Any], Any]:
        """The function giving each entry's expiry time."""
        return self._ttu

    def _expires(self, key: Any, value: Any, now: Any) -> Any:
        return self._computed

    def __setitem__(self, key: K, value: V) -> None:
        with self._clock as now:
            expires = self._ttu(key, value, now)
            try:
                fresh = now < expires
            except (TypeError, ArithmeticError):  # None, a str; a Decimal NaN
                fresh = None
            if fresh is None or expires.__class__ is bool or (not fresh and expires != expires):
                _refuse(key, expires)  # checked before anything changes
            if not fresh:
                # Already expired: not stored, and it replaces any present entry.
                self.expire(now)
                if key in self._data:
                    Cache.__delitem__(self, key)
                return
            self._computed = expires
            try:
                super().__setitem__(key, value)
            finally:
                self._computed = None
