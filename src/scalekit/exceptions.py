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
    ├── KeyAbsentError(ScaleKitError, LookupError)
    ├── KeyInDoubtError(ScaleKitError, LookupError)
    ├── StaleStateError(ScaleKitError, RuntimeError)
    ├── NoAvailableEndpointError(ScaleKitError, LookupError)
    ├── MissingDependencyError(ScaleKitError, ModuleNotFoundError)
    └── MissingBackendError(ScaleKitError, AttributeError)

Backend errors wrap the driver's exception (`raise BackendError(...) from
exc`), so the original stays reachable as `__cause__`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

__all__ = [
    "ArgumentTypeError",
    "BackendError",
    "BackendUnavailableError",
    "CacheLoadTimeoutError",
    "ConfigurationError",
    "InvalidStateError",
    "KeyAbsentError",
    "KeyInDoubtError",
    "LockError",
    "LockLostError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "MissingBackendError",
    "MissingDependencyError",
    "NoAvailableEndpointError",
    "ReentrantCallError",
    "RoutingError",
    "ScaleKitError",
    "StaleStateError",
    "StaleTokenError",
]


#: A run of digits too long to read: an int such as `10**400` in a message.
_LONG_INT = re.compile(r"\d{50,}")


def _abbreviated(match: re.Match[str]) -> str:
    digits = match.group(0)
    return f"{digits[:3]}...{digits[-3:]} (an int of {len(digits)} digits)"


class ScaleKitError(Exception):
    """Base class of every exception scalekit raises on purpose.

    Its message shows an integer of 50 digits or more abbreviated
    (`100...000 (an int of 401 digits)` for `10**400`), so a huge value
    passed as an argument does not fill the screen; `args` keeps the text
    as it was built.
    """

    def __str__(self) -> str:
        text = super().__str__()
        return _LONG_INT.sub(_abbreviated, text) if len(text) >= 50 else text


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


class KeyAbsentError(ScaleKitError, LookupError):
    """A resharding source was asked to serve a key it does not hold.

    [MigratingRouter][scalekit.sharding.MigratingRouter] answers it by
    sending the command to the key's target (Redis Cluster's ASK redirect);
    a store's `execute` raises it.
    """


class KeyInDoubtError(ScaleKitError, LookupError):
    """A store began moving a key and does not know yet whether it moved.

    The caller settles the key with `ShardStore.resolve` and retries;
    [MigratingRouter][scalekit.sharding.MigratingRouter] does so itself.
    """


class StaleStateError(ScaleKitError, RuntimeError):
    """A shard store records another migration state than the caller routes by.

    `state` is the recorded [MigrationState][scalekit.sharding.MigrationState]
    (None when the store records none); a caller whose state is older adopts
    it and retries.
    """

    def __init__(self, state: Any) -> None:
        super().__init__(f"the store records state {state!r}")
        self.state = state


class NoAvailableEndpointError(ScaleKitError, LookupError):
    """A balancer has no endpoint it may pick; the message says why."""


class MissingDependencyError(ScaleKitError, ModuleNotFoundError):
    """A backend's optional driver is not installed; `extra` names the extra that installs it.

    Raised by `from scalekit.locking import RedisLock` (and the other lazily
    exported backends), by importing a backend module such as
    `scalekit.locking.redis_lock`, and by a backend that loads its driver when
    constructed, all without the driver; `name` is the missing module, as on
    `ModuleNotFoundError`, and the message gives the `pip install` command.
    Looking the backend up as an attribute raises
    [MissingBackendError][scalekit.exceptions.MissingBackendError] instead.
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class MissingBackendError(ScaleKitError, AttributeError):
    """A lazily exported backend was looked up as an attribute without its driver.

    `scalekit.locking.RedisLock`, `getattr(scalekit.locking, "RedisLock")`
    and `hasattr(...)` without redis-py raise this rather than
    [MissingDependencyError][scalekit.exceptions.MissingDependencyError]
    (`from scalekit.locking import RedisLock` still raises that one): being an
    `AttributeError`, it lets `hasattr`, `getattr(module, name, default)`,
    `inspect.getmembers` and `help()` pass over a backend `dir()` lists but
    this environment cannot load. The message is the same `pip install`
    line; `name` is the backend's name and `obj` its package, as on
    `AttributeError`, `driver` the missing module and `extra` the extra that
    installs it. (No class can be both a `ModuleNotFoundError` and an
    `AttributeError`: their builtin layouts conflict.)
    """

    def __init__(
        self, message: str, *, name: str, obj: object, driver: str, extra: str | None
    ) -> None:
        super().__init__(message, name=name, obj=obj)
        self.driver = driver
        self.extra = extra
