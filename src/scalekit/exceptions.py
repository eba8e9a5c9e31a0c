"""The one exception hierarchy of scalekit.

Every class that a builtin describes also subclasses the builtin a caller
would naturally catch, so `except ValueError` keeps working around a bad
constructor argument and `except ConnectionError` around an unreachable
backend; the family bases and the lock errors no builtin describes derive
from `ScaleKitError` alone:

    ScaleKitError
    ├── ConfigurationError(ScaleKitError, ValueError)
    ├── ArgumentTypeError(ScaleKitError, TypeError)
    ├── InvalidStateError(ScaleKitError, RuntimeError)
    ├── ReentrantCallError(ScaleKitError, RecursionError)
    ├── BackendError(ScaleKitError)
    │   ├── BackendUnavailableError(BackendError, ConnectionError)
    │   └── CacheLoadTimeoutError(BackendError, TimeoutError)
    ├── LockError(ScaleKitError)
    │   ├── LockTimeoutError(LockError, TimeoutError)
    │   ├── LockNotOwnedError(LockError)
    │   ├── LockLostError(LockError)
    │   └── StaleTokenError(LockError)
    ├── RoutingError(ScaleKitError, LookupError)
    ├── NoAvailableEndpointError(ScaleKitError, LookupError)
    └── MissingDependencyError(ScaleKitError, ModuleNotFoundError)

Backend errors wrap the driver's exception (`raise BackendError(...) from
exc`), so the original stays reachable as `__cause__`.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = [
    "ArgumentTypeError",
    "BackendError",
    "BackendUnavailableError",
    "CacheLoadTimeoutError",
    "ConfigurationError",
    "InvalidStateError",
    "LockError",
    "LockLostError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "MissingDependencyError",
    "NoAvailableEndpointError",
    "ReentrantCallError",
    "RoutingError",
    "ScaleKitError",
    "StaleTokenError",
]


class ScaleKitError(Exception):
    """Base class of every exception scalekit raises on purpose."""


class ConfigurationError(ScaleKitError, ValueError):
    """A constructor or method argument is invalid.

    The message names the argument, the value given and what was expected,
    e.g. `maxsize must be a positive integer, got 0`.
    """


class ArgumentTypeError(ScaleKitError, TypeError):
    """An argument has a type scalekit does not accept.

    The message names the argument, the type given and the types expected,
    e.g. `key must be str, bytes or int to be hashed stably, got float: 1.5`.
    """


class InvalidStateError(ScaleKitError, RuntimeError):
    """A method was called in a state that does not allow it.

    For example `ActiveHealthChecker.start()` on a checker that is already
    running.
    """


class ReentrantCallError(ScaleKitError, RecursionError):
    """A memoized call needs its own result: it asked for its own key while computing it.

    Raised by `scalekit.caching.cached` and `cachedmethod` when the call
    computing a key asks for that key again, directly or through a task it
    started: waiting for that result would wait forever (single-flight makes
    the inner call wait for the outer one), so the inner call raises this at
    once instead. cachetools raises `RecursionError` in the same case, and
    this is one.
    """


class BackendError(ScaleKitError):
    """A backend (Redis, ZooKeeper, a database) failed to carry out a call."""


class BackendUnavailableError(BackendError, ConnectionError):
    """A backend could not be reached within the configured, bounded time."""


class CacheLoadTimeoutError(BackendError, TimeoutError):
    """Another caller held a cache's load lease and no value appeared within the wait."""


class LockError(ScaleKitError):
    """A lock operation failed; `name` is the lock's name."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class LockTimeoutError(LockError, TimeoutError):
    """A blocking acquire did not get the lock within its timeout."""


class LockNotOwnedError(LockError):
    """Release or extend of a lock the caller does not hold."""


class LockLostError(LockError):
    """The lease was lost (expired, failed renewal, session lost) before release."""


class StaleTokenError(LockError):
    """A fenced store refused a fencing token older than one it had already seen.

    The lease that carried `token` was lost: a newer holder has since
    read or written `key` with `fence` (the highest token the store has
    seen for it), so acting on what this holder read would lose an update.
    """

    def __init__(self, message: str, key: str, token: int, fence: int) -> None:
        super().__init__(message)
        self.key = key
        self.token = token
        self.fence = fence


class RoutingError(ScaleKitError, LookupError):
    """A key could not be routed to a shard; `key` is the key."""

    def __init__(self, message: str, key: Hashable | None = None) -> None:
        super().__init__(message)
        self.key = key


class NoAvailableEndpointError(ScaleKitError, LookupError):
    """A balancer has no endpoint it may pick; the message says why."""


class MissingDependencyError(ScaleKitError, ModuleNotFoundError):
    """A backend's optional driver is not installed; `extra` names the extra that installs it.

    Raised when a lazily exported backend such as `scalekit.locking.RedisLock`
    is first looked up without its driver; `name` is the missing module, as on
    `ModuleNotFoundError`, and the message gives the `pip install` command.
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra
