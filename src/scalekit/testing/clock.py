"""A manual clock for tests and simulations."""

from __future__ import annotations

import threading

from .._validation import finite_number, non_negative_number
from ..exceptions import ConfigurationError

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to.

    Pass it wherever scalekit takes `clock=` or `timer=`: calling it
    returns the current time in seconds, like `time.monotonic()`.

    ```pycon
    >>> clock = FakeClock(start=100.0)
    >>> clock()
    100.0
    >>> clock.advance(2.5)
    102.5
    >>> clock()
    102.5

    ```

    Thread-safe: `advance` and `set` take a lock, so readers in other
    threads see either the old or the new time, never a torn value.
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float = 0.0) -> None:
        self._now = finite_number("start", start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def time(self) -> float:
        """The current time; the same as calling the clock."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by *seconds* (>= 0) and return the new time."""
        non_negative_number("seconds", seconds)
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Set the time to *now*, which must not be earlier than the current time."""
        now = finite_number("now", now)
        with self._lock:
            if now < self._now:
                raise ConfigurationError(
                    f"now must not go backwards: {now!r} < current {self._now!r}"
                )
            self._now = float(now)

    def __reduce__(self) -> tuple[type[FakeClock], tuple[float]]:
        # The lock cannot be pickled or copied; a copy gets a lock of its own.
        return (FakeClock, (self._now,))

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
