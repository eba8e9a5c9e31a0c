"""In-process single-flight: concurrent callers for one key share one call."""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from ..exceptions import InvalidStateError


class _ForkAware(Protocol):
    def after_fork(self) -> None: ...


# Single-flight tables to empty in a forked child: the threads whose calls
# they record (and which may hold their locks) exist only in the parent.
_TABLES: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_in_forked_child(table: _ForkAware) -> None:
    """Have `table.after_fork()` called in every child this process forks from now on."""
    _TABLES.add(table)


def _after_fork_in_child() -> None:
    for table in list(_TABLES):
        table.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def own_copy(exc: BaseException) -> BaseException:
    """A copy of *exc* for one more caller, chained to it as `__cause__`.

    Raising one exception object in several threads (or tasks) makes its
    traceback grow with every caller's frames; each waiter raises its own
    copy. `copy.copy` makes it when it can; for a class that cannot be rebuilt
    from its `args` (an `__init__` or `__new__` taking other arguments, a
    `__reduce__` that refuses) the copy is made without calling the class's
    constructor: the same class, `args` and attributes. *exc* itself is
    returned only if neither works (a class whose builtin base refuses to be
    instantiated that way), which no pure-Python exception class does.
    """
    clone = _copy_of(exc)
    if clone is None:
        return exc
    clone.__cause__ = exc
    clone.__traceback__ = None
    return clone


def _copy_of(exc: BaseException) -> BaseException | None:
    cls = type(exc)
    try:
        clone = copy.copy(exc)
        if type(clone) is cls and clone is not exc:
            # A constructor that formats its arguments rebuilds other args.
            clone.args = exc.args
            return clone
    except Exception:  # any failure: build it without the constructor
        pass
    # The nearest builtin exception class allocates the object (its layout),
    # skipping every __new__ and __init__ the class defines in Python.
    base = next(k for k in cls.__mro__ if k.__module__ == "builtins")
    try:
        clone = base.__new__(cls, *exc.args)
    except Exception:
        try:
            clone = base.__new__(cls)  # type: ignore[call-overload]
        except Exception:
            return None
    clone.args = exc.args
    if hasattr(exc, "__dict__"):
        clone.__dict__.update(exc.__dict__)
    clone.__context__ = exc.__context__
    clone.__suppress_context__ = exc.__suppress_context__
    return clone


class _Flight:
    __slots__ = ("abandoned", "done", "error", "owner", "result")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        # The leader left with a BaseException that is no Exception (KeyboardInterrupt,
        # SystemExit): it is the leader's own, and the followers start over.
        self.abandoned = False


class SingleFlight:
    """Runs at most one call per key at a time in this process; the others wait for it.

    Thread-safe. Followers receive the leader's result, or each their own copy
    of its exception (`own_copy`): its `__cause__` is the leader's cause (the
    driver's exception a `BackendError` wraps) when it has one, with the
    leader's exception as `__context__`; otherwise the leader's exception.
    Only an `Exception` is passed on: a leader interrupted by another
    `BaseException` (`KeyboardInterrupt`, `SystemExit`) re-raises it in its
    own thread, and the followers start over, one of them leading.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        reset_in_forked_child(self)

    def after_fork(self) -> None:
        """Forget the loads in progress (called in a forked child: their threads are gone)."""
        for flight in self._flights.values():
            flight.done = threading.Event()
        self._lock = threading.Lock()
        self._flights = {}

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
        while True:
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    break
            if flight.owner == threading.get_ident():
                raise InvalidStateError(
                    f"the load of {key!r} asked for {key!r} again from its own thread "
                    "(a loader calling get_or_load on its own key would wait for itself)"
                )
            if not flight.done.wait(None if timeout == float("inf") else timeout):
                raise on_timeout()
            if flight.abandoned:
                continue  # one of the followers leads a new call
            error = flight.error
            if error is not None:
                clone = own_copy(error)
                if clone is not error and error.__cause__ is not None:
                    # A BackendError keeps the driver's exception as its cause;
                    # the leader's exception is then the copy's context.
                    clone.__cause__ = error.__cause__
                    clone.__context__ = error
                raise clone
            return flight.result
        try:
            flight.result = fn()
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:  # gone in a child forked meanwhile
                    del self._flights[key]
            flight.done.set()
        return flight.result
