"""Sticky routing by key: a ketama ring or a Maglev table, with bounded loads."""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from .._hashing import key_bytes
from .._validation import wrong_type
from ..exceptions import ArgumentTypeError, ConfigurationError
from ..sharding.ketama import KETAMA_POINTS_PER_SERVER, KetamaRing, check_points_per_server
from ..sharding.maglev import DEFAULT_MAGLEV_SIZE, MaglevTable, check_maglev_size
from .base import Balancer, E, Endpoints

if TYPE_CHECKING:
    from .health import HealthPolicy

__all__ = ["ConsistentHashBalancer", "endpoint_name"]

#: The lookup table of a ConsistentHashBalancer.
Table = Literal["ring", "maglev"]
_TABLES = ("ring", "maglev")


def endpoint_name(endpoint: E) -> str | bytes | int:
    """The stable name a consistent-hash table hashes *endpoint* by.

    `str`, `bytes` and `int` endpoints are their own names (hashed through
    `scalekit._hashing.key_bytes`, so `1` and `"1"` are the same name); a
    tuple of `str` and `int` parts, such as `("10.0.0.1", 8080)`, is named by
    its parts joined with `:` (`"10.0.0.1:8080"`), so it lands where the
    endpoint `"10.0.0.1:8080"` would.

    Raises:
        ArgumentTypeError: any other endpoint: no encoding every process
            agrees on (the builtin `hash()` is salted per process).
    """
    if isinstance(endpoint, (str, bytes)) or (
        isinstance(endpoint, int) and not isinstance(endpoint, bool)
    ):
        return endpoint
    if (
        isinstance(endpoint, tuple)
        and endpoint
        and all(
            isinstance(part, str) or (isinstance(part, int) and not isinstance(part, bool))
            for part in endpoint
        )
    ):
        return ":".join(map(str, endpoint))
    raise ArgumentTypeError(
        f"endpoint {endpoint!r} of type {type(endpoint).__name__} cannot be hashed stably; "
        "use str, bytes, int or a (host, port) tuple"
    )


class ConsistentHashBalancer(Balancer[E]):
    """Send every request with the same key to the same endpoint, as far as possible.

    `pick(key)` looks the key up in a ketama ring (`table="ring"`,
    libmemcached's continuum with 160 points per endpoint at equal weight)
    or a Maglev table (`table="maglev"`, 65537 entries by default), both
    from `scalekit.sharding`. When membership changes, only the keys of
    the endpoints that came or went move. A pick without a key draws a
    random hash, as Envoy's ring hash does when a request has none.

    Ejected endpoints (see [HealthPolicy][scalekit.balancing.HealthPolicy]) are
    skipped in table order, so an ejection moves only the ejected endpoint's
    keys, and they come back when it does.

    Bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing
    with Bounded Loads", 2016; HAProxy's `hash-balance-factor`): with
    `balance_factor=c` an endpoint of weight `w` out of `W` takes a
    new request only while its requests in flight are below
    `ceil(c * (in_flight_total + 1) * w / W)`; otherwise the key moves on
    to the next endpoint in table order. A hot key then spills over to
    neighbours instead of overloading one endpoint, and no endpoint carries
    more than about `c` times its share. HAProxy's `hash-balance-factor
    125` is `balance_factor=1.25`.

    Endpoints are hashed by their `endpoint_name`: `str`, `bytes` and `int`
    as themselves, `(host, port)` tuples as `"host:port"`. Endpoints whose
    names collide, other types and more endpoints than *maglev_size* are
    refused before anything changes.

    Args:
        endpoints: ids (weight 1) or a mapping id -> positive `int` weight.
        table: `"ring"` or `"maglev"`.
        balance_factor: `c` > 1, or `None` (default) for no bound.
        points_per_server: ring points per endpoint at equal weight.
        maglev_size: Maglev table size, a prime.
        clock: see [Balancer][scalekit.balancing.Balancer].
        rng: see [Balancer][scalekit.balancing.Balancer].
        health: see [Balancer][scalekit.balancing.Balancer].

    Raises:
        ConfigurationError: see [Balancer][scalekit.balancing.Balancer]; an
            unknown *table*, *balance_factor* <= 1, endpoints the table cannot
            tell apart, more endpoints than *maglev_size*.
        ArgumentTypeError: an endpoint the table cannot hash stably (see
            [endpoint_name][scalekit.balancing.endpoint_name]).

    Thread-safety: see [Balancer][scalekit.balancing.Balancer]. Runtime complexity: O(1)
    expected per pick (ring: O(log points)); a membership change rebuilds
    the table on the next pick, O(points log points) for the ring and
    O(M log M) for Maglev.
    """

    _ramps = False  # it routes by key: a slow start has no weight to scale

    def __init__(
        self,
        endpoints: Endpoints[E],
        *,
        table: Table = "ring",
        balance_factor: float | None = None,
        points_per_server: int = KETAMA_POINTS_PER_SERVER,
        maglev_size: int = DEFAULT_MAGLEV_SIZE,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        health: HealthPolicy | None = None,
    ) -> None:
        if not isinstance(table, str):
            raise wrong_type("table", table, "'ring' or 'maglev'")
        if table not in _TABLES:
            raise ConfigurationError(f"table must be 'ring' or 'maglev', got {table!r}")
        # both tables' settings are checked whichever is used: a typo shows now
        check_points_per_server("points_per_server", points_per_server)
        check_maglev_size("maglev_size", maglev_size)
        if balance_factor is not None and (
            isinstance(balance_factor, bool) or not isinstance(balance_factor, (int, float))
        ):
            raise wrong_type("balance_factor", balance_factor, "a number > 1 or None")
        if balance_factor is not None and (
            (isinstance(balance_factor, int) and balance_factor > sys.float_info.max)
            or not math.isfinite(balance_factor)
            or balance_factor <= 1
        ):
            raise ConfigurationError(
                f"balance_factor must be a number > 1 or None, got {balance_factor!r}"
            )
        self.table = table
        self.balance_factor = None if balance_factor is None else float(balance_factor)
        self._points_per_server = points_per_server
        self._maglev_size = maglev_size
        super().__init__(endpoints, clock=clock, rng=rng, health=health)
        self._build()  # bad table settings fail here, not on the first pick

    # -- the table ------------------------------------------------------------
    def _init_state(self) -> None:
        self._lookup: KetamaRing | MaglevTable | None = None
        # Stable name -> endpoint; the tables hold names, picks return endpoints.
        self._by_name: dict[bytes, E] = {}
        self._names: dict[E, str | bytes | int] = {}
        self._renamed = 0  # endpoints whose name is not the endpoint itself
        # Running totals keep the bounded-load check O(1): the members' weight
        # and their requests in flight (not those of removed, draining ones).
        self._total_weight = 0
        self._live = 0

    def _check_add(self, endpoint: E) -> None:
        name = endpoint_name(endpoint)
        other = self._by_name.get(key_bytes(name))
        if other is not None:
            raise ConfigurationError(
                f"endpoint {endpoint!r} has the same name {name!r} as endpoint {other!r} in the "
                "hash table: give endpoints distinct names"
            )
        if self.table == "maglev" and len(self._weights) >= self._maglev_size:
            raise ConfigurationError(
                f"a Maglev table of maglev_size {self._maglev_size} holds at most that many "
                f"endpoints; cannot add {endpoint!r} as endpoint {len(self._weights) + 1}"
            )

    def _build(self) -> KetamaRing | MaglevTable:
        names = self._names
        nodes = [(names[ep], w) for ep, w in self._weights.items()]
        lookup: KetamaRing | MaglevTable
        if self.table == "ring":
            lookup = KetamaRing(nodes, points_per_server=self._points_per_server)
        else:
            lookup = MaglevTable(nodes, size=self._maglev_size)
        self._lookup = lookup
        return lookup

    def _on_add(self, endpoint: E, weight: int) -> None:
        name = endpoint_name(endpoint)
        self._names[endpoint] = name
        self._by_name[key_bytes(name)] = endpoint
        self._renamed += name is not endpoint
        self._lookup = None
        self._total_weight += weight
        self._live += self._in_flight[endpoint]

    def _on_remove(self, endpoint: E, weight: int) -> None:
        name = self._names.pop(endpoint)
        del self._by_name[key_bytes(name)]
        self._renamed -= name is not endpoint
        self._lookup = None
        self._total_weight -= weight
        self._live -= self._draining.get(endpoint, 0)

    def _on_reweight(self, endpoint: E, old: int, new: int) -> None:
        self._lookup = None
        self._total_weight += new - old

    def _on_release(self, endpoint: E, latency: float | None, ok: bool) -> None:
        self._live -= 1

    # -- picking ----------------------------------------------------------------
    def _select(self, excluded: frozenset[Hashable], key: Hashable | None) -> E:
        lookup = self._lookup or self._build()
        if key is None:
            key = self._rng.getrandbits(64)
        # Count the pick in self._live only once the key has been looked up: a
        # key the table cannot hash raises and must leave nothing behind.
        # Without renamed endpoints the tables hold the endpoints themselves.
        if self._renamed:
            endpoint = self._select_renamed(lookup, excluded, key)
        elif self.balance_factor is None:
            if not excluded:
                endpoint = lookup.get(key)  # type: ignore[assignment]
            else:
                endpoint = next(ep for ep in lookup.successors(key) if ep not in excluded)  # type: ignore[assignment]
        else:
            endpoint = self._bounded(lookup.get(key), lookup, key, excluded, None)  # type: ignore[arg-type]
        self._live += 1
        return endpoint

    def _select_renamed(
        self, lookup: KetamaRing | MaglevTable, excluded: frozenset[Hashable], key: Any
    ) -> E:
        by_name = self._by_name
        home = by_name[key_bytes(lookup.get(key))]
        if self.balance_factor is None:
            if home not in excluded:
                return home
            walk = (by_name[key_bytes(name)] for name in lookup.successors(key))
            return next(ep for ep in walk if ep not in excluded)
        return self._bounded(home, lookup, key, excluded, by_name)

    def _bounded(
        self,
        home: E,
        lookup: KetamaRing | MaglevTable,
        key: Any,
        excluded: frozenset[Hashable],
        by_name: dict[bytes, E] | None,
    ) -> E:
        assert self.balance_factor is not None
        in_flight, weights = self._in_flight, self._weights
        total_weight = self._total_weight
        if excluded:
            excluded_weights: dict[Hashable, int] = weights  # type: ignore[assignment]
            total_weight -= sum(excluded_weights.get(ep, 0) for ep in excluded)
        # The bound is on the load after this pick, hence the + 1.
        room = self.balance_factor * (self._live + 1) / total_weight
        # For an integer count n, n < ceil(x) exactly when n < x: no ceil needed.
        if home not in excluded and in_flight[home] < room * weights[home]:
            return home  # the common case: no walk needed
        walk: Iterator[E]
        if by_name is None:
            walk = lookup.successors(key)  # type: ignore[assignment]
        else:
            walk = (by_name[key_bytes(name)] for name in lookup.successors(key))
        first: E | None = None
        for endpoint in walk:
            if endpoint in excluded:
                continue
            if in_flight[endpoint] < room * weights[endpoint]:
                return endpoint
            if first is None:
                first = endpoint
        # Unreachable with c > 1 (the capacities add up to more than the load),
        # but a rounding edge must not fail a pick.
        assert first is not None
        return first

    def lookup(self, key: Hashable) -> E:
        """Where *key* goes with no endpoint ejected or full, without picking it.

        Runtime complexity: that of the table's lookup.
        """
        with self._lock:
            name = (self._lookup or self._build()).get(key)
            return self._by_name[key_bytes(name)]
