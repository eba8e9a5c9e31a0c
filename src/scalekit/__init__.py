"""scalekit: scalability primitives for Python services.

Four families, each behind a small protocol, each in its own subpackage so
that `import scalekit` needs only the core dependencies:

* `scalekit.caching` - local caches and a Redis tier;
* `scalekit.balancing` - client-side load balancers and health;
* `scalekit.locking` - locks over memory, Redis, Redlock and ZooKeeper;
* `scalekit.sharding` - hash, range and time routers.

`scalekit.testing` starts real Redis and ZooKeeper servers for tests.

Like every library, scalekit's `scalekit` logger has a `logging.NullHandler`:
its events (an ejection, a lost lease, a degraded near cache) are printed only
where the application configures logging.
"""

import logging as _logging

from .exceptions import (
    ArgumentTypeError,
    BackendError,
    BackendUnavailableError,
    CacheLoadTimeoutError,
    ConfigurationError,
    InvalidStateError,
    KeyAbsentError,
    KeyInDoubtError,
    LockError,
    LockLostError,
    LockNotOwnedError,
    LockTimeoutError,
    MissingBackendError,
    MissingDependencyError,
    NoAvailableEndpointError,
    ReentrantCallError,
    RoutingError,
    ScaleKitError,
    StaleStateError,
    StaleTokenError,
)

_logging.getLogger("scalekit").addHandler(_logging.NullHandler())

__version__ = "0.1.0"

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
    "__version__",
]
