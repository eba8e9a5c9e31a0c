"""The balancer protocol and what every strategy shares.

A balancer is built from endpoints (an iterable of hashable ids, each of
weight 1, or a mapping of id to a positive `int` weight) and hands one of
them out per request:

    ep = lb.pick()                           # one more request in flight on ep
    lb.release(ep, latency=0.012, ok=True)   # that request is over
    with lb.request() as ep: ...             # both, timed by the balancer's clock

`Balancer` owns membership (`add`, `remove`, `reweight`), the
in-flight counts, the lock and the health hooks; a strategy subclass only
says which endpoint comes next (`_select`) and how it keeps its own state
as endpoints come and go.
"""

from __future__ import annotations

import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar

from .._validation import _is_int, wrong_type
from ..exceptions import (
    ArgumentTypeError,
    ConfigurationError,
    NoAvailableEndpointError,
    ScaleKitError,
)
from ..observability import _emit
from ..observability._emit import _deferred as _health_events  # the one list, never rebound

if TYPE_CHECKING:
    from ..observability._emit import BalancerProbe
    from .health import HealthPolicy

__all__ = ["Balancer", "E", "Endpoint", "Endpoints", "parse_endpoints"]

#: The type of a balancer's endpoints (`PeakEWMA[str]` picks `str`).
E = TypeVar("E", bound=Hashable)
Endpoint = Hashable
#: Endpoints as a balancer takes them: ids of weight 1, or a mapping id -> weight.
Endpoints: TypeAlias = Iterable[E] | Mapping[E, int]

_NOTHING: frozenset[Hashable] = frozenset()
_INF = math.inf


def _check_latency(latency: Any) -> float:
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise ArgumentTypeError(
            "latency must be a non-negative finite number of seconds or None, got "
            f"{type(latency).__name__}: {latency!r}"
        )
    try:
        value = float(latency)  # an int too large for a float overflows here
    except OverflowError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        bits = latency.bit_length() if isinstance(latency, int) else 0
        shown = f"an int of {bits} bits" if bits > 64 else repr(latency)  # repr may refuse it
        raise ConfigurationError(
            f"latency must be a non-negative finite number of seconds or None, got {shown}"
        )
    return value


#: The largest endpoint weight: every integer up to it is exact as a float,
#: which the weighted strategies compute with.
MAX_WEIGHT = 2**53


def _check_weight(endpoint: E, weight: Any) -> int:
    if not _is_int(weight):
        raise ArgumentTypeError(
            f"weight must be a positive integer, got {weight!r} for endpoint {endpoint!r} "
            f"({type(weight).__name__})"
        )
    if not 1 <= weight <= MAX_WEIGHT:
        bits = int(weight).bit_length()
        shown = f"an int of {bits} bits" if bits > 64 else repr(weight)  # repr may refuse it
        raise ConfigurationError(
            f"weight must be a positive integer, got {shown} for endpoint {endpoint!r} "
            "(weights go up to 2**53)"
        )
    return int(weight)


def _check_hashable(endpoint: Any) -> Hashable:
    # None is refused too: a pick() that returns None reads as "no endpoint".
    try:
        hash(endpoint)
        ok = endpoint is not None
    except TypeError:
        ok = False
    if not ok:
        raise ArgumentTypeError(
            "endpoint must be a hashable id other than None, got "
            f"{type(endpoint).__name__}: {endpoint!r}"
        )
    if isinstance(endpoint, float) and endpoint != endpoint:
        # NaN is not equal to itself: once added it could never be found again
        raise ConfigurationError(f"endpoint must be an id equal to itself, got {endpoint!r}")
    return endpoint  # type: ignore[no-any-return]


def unknown_endpoint(action: str, endpoint: Any) -> ScaleKitError:
    """The error for *endpoint* not in the balancer: a wrong type, else `ConfigurationError`."""
    try:
        _check_hashable(endpoint)
    except ScaleKitError as exc:
        return exc
    return ConfigurationError(f"cannot {action} unknown endpoint {endpoint!r}")


def parse_endpoints(endpoints: Endpoints[E]) -> dict[E, int]:
    """Turn an iterable of ids or a mapping id -> weight into an ordered dict.

    Raises:
        ConfigurationError: no endpoints, a duplicate id, a weight below 1,
            or a bare string (which would otherwise be read as one endpoint
            per character).
        ArgumentTypeError: an id that is None or unhashable, or a weight
            that is not an `int`.

    Runtime complexity: O(n).
    """
    if isinstance(endpoints, (str, bytes)):
        raise ArgumentTypeError(
            f"endpoints must be an iterable of ids or a mapping id -> weight, got the "
            f"string {endpoints!r}; wrap a single endpoint in a list"
        )
    result: dict[E, int] = {}
    if isinstance(endpoints, Mapping):
        for endpoint, weight in endpoints.items():
            _check_hashable(endpoint)
            result[endpoint] = _check_weight(endpoint, weight)
    else:
        try:
            items = list(endpoints)
        except TypeError:
            raise ArgumentTypeError(
                f"endpoints must be an iterable of ids or a mapping id -> weight, got {endpoints!r}"
            ) from None
        for endpoint in items:
            if _check_hashable(endpoint) in result:
                raise ConfigurationError(f"endpoints must be unique, got {endpoint!r} twice")
            result[endpoint] = 1
    if not result:
        raise ConfigurationError("endpoints must not be empty, got no endpoints")
    return result


class Balancer(ABC, Generic[E]):
    """Base of every load-balancing strategy.

    Args:
        endpoints: hashable ids (weight 1 each) or a mapping id -> weight,
            weights being positive `int`.
        clock: seconds, monotonic; times `request()` and drives
            health, slow start and latency decay.
        rng: the random source of randomised strategies (seed it in tests).
        health: a `HealthPolicy` (outlier
            ejection, active checks, slow start, panic threshold), or `None`.

    Raises:
        ConfigurationError: bad endpoints or weights (see
            `parse_endpoints()`), or a *health* with a slow start given to a
            strategy that cannot ramp (`RoundRobin`, `ConsistentHashBalancer`).

    Thread-safety: every public method takes one lock, so picks, releases
    and membership changes may come from any number of threads.
    """

    #: Whether slow start can scale this strategy's picks (see `SlowStart`).
    _ramps: ClassVar[bool] = True

    def __init__(
        self,
        endpoints: Endpoints[E],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        if not callable(clock):
            raise ArgumentTypeError(f"clock must be callable, got {clock!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise ArgumentTypeError(f"rng must be a random.Random or None, got {rng!r}")
        parsed = parse_endpoints(endpoints)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._weights: dict[E, int] = {}
        self._in_flight: dict[E, int] = {}
        # Removed endpoints whose requests are still out: their release must work.
        self._draining: dict[E, int] = {}
        self._health: HealthPolicy | None = None
        # Set only while `watch_balancer`'s hub has a recorder (under `_lock`):
        # the probe, and its buffers of timed successful releases per endpoint.
        self._probe: BalancerProbe | None = None
        self._latencies: dict[E, Callable[[float], None]] | None = None
        now = clock()
        self._init_state()
        for endpoint, weight in parsed.items():
            self._check_add(endpoint)
            self._weights[endpoint] = weight
            self._in_flight[endpoint] = 0
            self._on_add(endpoint, weight)
        if health is not None:
            from .health import HealthPolicy

            if not isinstance(health, HealthPolicy):
                raise wrong_type("health", health, "a HealthPolicy or None")
            if health.slow_start is not None and not self._ramps:
                raise ConfigurationError(
                    f"health has a slow_start, but {type(self).__name__} cannot ramp an "
                    "endpoint (it has no weights to scale, or routes by key); use "
                    "WeightedRoundRobin, SmoothWeightedRoundRobin, RandomBalancer, "
                    "LeastRequest or PeakEWMA, or a HealthPolicy without slow_start"
                )
            health._bind(self, list(parsed), now)
            self._health = health

    # ------------------------------------------------------------------ picking

    def pick(self, key: Hashable | None = None) -> E:
        """Choose an endpoint for one request and count it in flight.

        Args:
            key: routing key; only key-based strategies (consistent hashing)
                use it, the others ignore it.

        Raises:
            NoAvailableEndpointError: no endpoints, or every endpoint is
                ejected or failing checks and the panic threshold is disabled.

        Runtime complexity: that of the strategy (O(1) or O(log n), O(n) for
        `SmoothWeightedRoundRobin`).
        """
        with self._lock:
            if not self._weights:
                raise NoAvailableEndpointError("cannot pick: the balancer has no endpoints")
            health = self._health
            if health is None:
                endpoint = self._select(_NOTHING, key)
            else:
                now = self._clock()
                excluded = health._excluded(now)
                if excluded and not health._panicking(len(self._weights), len(excluded)):
                    if len(excluded) >= len(self._weights):
                        raise NoAvailableEndpointError(health._why_none(now))
                else:
                    excluded = _NOTHING
                endpoint = self._select(excluded, key)
            self._in_flight[endpoint] += 1
            # Health events raised here (an ejection ending) are logged by the next
            # release, add, remove or check result, with the lock free.
            return endpoint

    def release(self, endpoint: E, *, latency: float | None = None, ok: bool = True) -> None:
        """End one request on *endpoint*, picked before by `pick`.

        Args:
            endpoint: the endpoint `pick` returned.
            latency: seconds the request took; latency-aware strategies
                learn from it, `None` means not measured.
            ok: whether the request succeeded; feeds outlier detection.

        Raises:
            ConfigurationError: *endpoint* is unknown or has nothing in flight,
                or *latency* is not a finite number >= 0.
            ArgumentTypeError: *latency* is not a number (nor None), or *ok*
                is not a bool.

        On any of these errors nothing changes: the request is still counted
        in flight, and a `release` with valid arguments ends it.

        Runtime complexity: O(1).
        """
        if (latency is not None and not (latency.__class__ is float and 0.0 <= latency < _INF)) or (
            ok is not True and ok is not False
        ):
            latency = self._check_release(latency, ok)
        with self._lock:
            count = self._in_flight.get(endpoint)
            if count is None:
                draining = self._draining.get(endpoint)
                if draining is None:
                    raise unknown_endpoint("release", endpoint)
                if draining == 1:
                    del self._draining[endpoint]
                else:
                    self._draining[endpoint] = draining - 1
                if self._probe is not None:  # a removed endpoint's request still counts
                    self._probe.released_one(endpoint, latency, ok)
                return
            if count == 0:
                raise ConfigurationError(
                    f"cannot release endpoint {endpoint!r}: it has nothing in flight"
                )
            self._in_flight[endpoint] = count - 1
            self._on_release(endpoint, latency, ok)
            latencies = self._latencies
            if latencies is not None:
                if ok and latency is not None:
                    # One dict read and one bound append per request; bucketed at
                    # collection, the buffers kept short by `_emit`'s drain.
                    try:
                        latencies[endpoint](latency)
                    except KeyError:  # an endpoint added since the probe was set
                        self._latency_other(endpoint, latency, ok)
                else:
                    self._latency_other(endpoint, latency, ok)
            health = self._health
            if health is not None:
                health._record(endpoint, ok, self._clock())
        if health is not None and _health_events:  # an ejection's event, logged unlocked
            _emit.flush_events()

    def _latency_other(self, endpoint: E, latency: float | None, ok: bool) -> None:
        """Count a release the fast append does not take: failed, untimed, new endpoint."""
        probe = self._probe
        if probe is not None:
            probe.released_one(endpoint, latency, ok)

    @staticmethod
    def _check_release(latency: Any, ok: Any) -> float | None:
        """Validate a release's arguments before anything is counted."""
        if ok is not True and ok is not False:
            raise ArgumentTypeError(f"ok must be a bool, got {type(ok).__name__}: {ok!r}")
        return None if latency is None else _check_latency(latency)

    @contextmanager
    def request(self, key: Hashable | None = None) -> Iterator[E]:
        """Pick an endpoint for the `with` block and release it afterwards.

        The block is timed with the balancer's clock; an exception escaping
        the block releases with `ok=False` and propagates.

        ```pycon
        >>> from scalekit.balancing import RoundRobin
        >>> lb = RoundRobin(["a", "b"])
        >>> with lb.request() as ep:
        ...     ep
        'a'
        >>> lb.in_flight("a")
        0

        ```
        """
        endpoint = self.pick(key)
        start = self._clock()
        try:
            yield endpoint
        except BaseException:
            self.release(endpoint, latency=max(self._clock() - start, 0.0), ok=False)
            raise
        self.release(endpoint, latency=max(self._clock() - start, 0.0), ok=True)

    # --------------------------------------------------------------- membership

    def add(self, endpoint: E, weight: int = 1) -> None:
        """Add *endpoint* with *weight*; the others keep their state.

        Raises:
            ConfigurationError: *endpoint* is already present, or *weight*
                is below 1.
            ArgumentTypeError: *endpoint* is None or unhashable, or *weight*
                is not an `int`.

        Runtime complexity: O(1) amortised for most strategies.
        """
        _check_hashable(endpoint)
        weight = _check_weight(endpoint, weight)
        with self._lock:
            if endpoint in self._weights:
                raise ConfigurationError(f"endpoint {endpoint!r} is already in the balancer")
            self._check_add(endpoint)
            self._weights[endpoint] = weight
            self._in_flight[endpoint] = self._draining.pop(endpoint, 0)
            self._on_add(endpoint, weight)
            if self._health is not None:
                self._health._added(endpoint, self._clock())
        _emit.flush_events()

    def remove(self, endpoint: E) -> None:
        """Remove *endpoint*; its requests still in flight may be released later.

        Raises:
            ConfigurationError: *endpoint* is not in the balancer.

        Runtime complexity: O(n) at worst (list removal), O(1) for most strategies.
        """
        with self._lock:
            if endpoint not in self._weights:
                raise unknown_endpoint("remove", endpoint)
            weight = self._weights.pop(endpoint)
            count = self._in_flight.pop(endpoint)
            if count:
                self._draining[endpoint] = count
            self._on_remove(endpoint, weight)
            if self._health is not None:
                self._health._removed(endpoint)
        _emit.flush_events()

    def reweight(self, endpoint: E, weight: int) -> None:
        """Change the weight of *endpoint*, keeping every other piece of state.

        Raises:
            ConfigurationError: *endpoint* is not in the balancer.
            ConfigurationError: *weight* is not a positive `int`.

        Runtime complexity: O(1) for most strategies.
        """
        weight = _check_weight(endpoint, weight)
        with self._lock:
            old = self._weights.get(endpoint)
            if old is None:
                raise unknown_endpoint("reweight", endpoint)
            self._weights[endpoint] = weight
            self._on_reweight(endpoint, old, weight)

    # ------------------------------------------------------------------ queries

    @property
    def endpoints(self) -> dict[E, int]:
        """A copy of the current endpoints and their weights, in insertion order.

        Runtime complexity: O(n).
        """
        with self._lock:
            return dict(self._weights)

    @property
    def health(self) -> HealthPolicy | None:
        """The health policy given at construction, or `None`."""
        return self._health

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the balancer times requests and health with."""
        return self._clock

    def in_flight(self, endpoint: E | None = None) -> int:
        """Requests in flight on *endpoint*, or on all endpoints when `None`.

        Requests on removed endpoints count until they are released.

        Runtime complexity: O(1) for one endpoint, O(n) for all.
        """
        with self._lock:
            if endpoint is None:
                return sum(self._in_flight.values()) + sum(self._draining.values())
            if endpoint in self._in_flight:
                return self._in_flight[endpoint]
            return self._draining.get(endpoint, 0)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self._weights

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._weights)!r})"

    # ----------------------------------------------------- hooks for strategies

    @abstractmethod
    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        """Return the next endpoint, skipping *excluded* (never all of them).

        Called with the lock held and at least one endpoint present.
        """

    def _init_state(self) -> None:
        """Create the strategy's own structures, before any endpoint is added."""

    def _check_add(self, endpoint: E) -> None:
        """Refuse *endpoint* before anything changes (lock held); raise ConfigurationError."""

    def _on_add(self, endpoint: E, weight: int) -> None:
        """A new endpoint joined (lock held)."""

    def _on_remove(self, endpoint: E, weight: int) -> None:
        """An endpoint left (lock held)."""

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        """An endpoint's weight changed (lock held)."""

    def _on_release(self, endpoint: E, latency: float | None, ok: bool) -> None:
        """A request ended (lock held); the in-flight count is already lowered."""

    def _factor(self, endpoint: E, now: float) -> float:
        """The slow-start factor of *endpoint* in (0, 1] (1 without slow start)."""
        health = self._health
        if health is None:
            return 1.0
        return health._factor(endpoint, now)

    def _slow_starting(self) -> bool:
        """Whether any endpoint may currently be in its slow-start window."""
        health = self._health
        return health is not None and health._any_slow_start()
