"""In-process single-flight: concurrent callers for one key share one call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..exceptions import InvalidStateError


class _Flight:
    __slots__ = ("done", "error", "owner", "result")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Runs at most one call per key at a time in this process; the others wait for it.

    Thread-safe. Followers receive the leader's result, or its exception.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def run(
        self, key: str, fn: Callable[[], Any], timeout: float, on_timeout: Callable[[], Exception]
    ) -> Any:
        """`fn()`, or the result of the call already running for *key*.

        A follower waits at most *timeout* seconds (`inf` for no limit),
        then raises `on_timeout()`.

        Raises:
            InvalidStateError: *fn* itself asked for *key* again in the same
                thread (it would wait for itself).
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.owner == threading.get_ident():
                raise InvalidStateError(
                    f"the load of {key!r} asked for {key!r} again from its own thread "
                    "(a loader calling get_or_load on its own key would wait for itself)"
                )
            if not flight.done.wait(None if timeout == float("inf") else timeout):
                raise on_timeout()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = fn()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.result
