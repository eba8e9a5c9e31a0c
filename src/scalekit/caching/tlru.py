"""Least recently used eviction with a time to use computed per item."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ..exceptions import ArgumentTypeError
from .base import Cache
from .ttl import TTLCache

__all__ = ["TLRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TLRUCache(TTLCache[K, V]):
    """An LRU cache whose entries expire when `ttu` says; drop-in for `cachetools.TLRUCache`.

    On every write, `ttu(key, value, now)` returns the entry's expiry time
    (in the timer's units; `math.inf` for never). An entry whose expiry is
    not after `now` is not stored, and a present entry for that key is
    removed. Everything else (expiry at `timer() >= expires`, iteration,
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
            if not now < expires:
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
