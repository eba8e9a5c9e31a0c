"""What every router shares: the `Router` protocol and migration plans.

A router maps a key to one shard, as a pure function of the key and the
router's configuration: the same on every machine and in every process.
Routers compare with `Router.plan_to()`, which says exactly what moves
when the configuration changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .._validation import iterable
from ..exceptions import ArgumentTypeError, ConfigurationError

__all__ = ["MigrationPlan", "Move", "Router", "S", "check_shards"]

#: The type of a router's shard ids (`HashRouter[str]` routes to `str`).
S = TypeVar("S", bound=Hashable)


def check_shards(name: str, shards: Iterable[S]) -> tuple[S, ...]:
    """Return *shards* as a tuple if it is non-empty and has no duplicates.

    Raises:
        ArgumentTypeError: not a collection (a string is not one).
        ConfigurationError: empty, or a duplicate.
    """
    if isinstance(shards, (str, bytes)):
        raise ArgumentTypeError(
            f"{name} must be a sequence of shards, got the string {shards!r}; "
            f"wrap it in a list: [{shards!r}]"
        )
    try:
        result = tuple(shards)
    except TypeError:
        raise ArgumentTypeError(
            f"{name} must be a sequence of shards, got {shards!r} ({type(shards).__name__})"
        ) from None
    if not result:
        raise ConfigurationError(f"{name} must not be empty: give at least one shard")
    seen: set[Hashable] = set()
    for shard in result:
        try:
            duplicate = shard in seen
        except TypeError:
            raise ConfigurationError(
                f"{name} must hold hashable shard ids, got {type(shard).__name__}"
            ) from None
        if duplicate:
            raise ConfigurationError(f"{name} must be distinct, got {shard!r} twice")
        seen.add(shard)
    return result


class Router(ABC, Generic[S]):
    """A deterministic map from keys to shards.

    Subclasses implement `route()`; routers over a finite set of shards
    also expose them as `shards`. The family's shared behaviour (grouping
    keys, planning migrations) lives here.
    """

    @abstractmethod
    def route(self, key: Any) -> S:
        """Return the shard that owns *key*."""

    def route_many(self, keys: Iterable[Any]) -> dict[S, list[Any]]:
        """Group *keys* by the shard that owns them (for multi-key reads and writes).

        Runtime complexity: O(k) routes.
        """
        groups: dict[S, list[Any]] = {}
        for key in iterable("keys", keys, "a collection of keys"):
            groups.setdefault(self.route(key), []).append(key)
        return groups

    def plan_to(self, new: Router[Any], *, sample: Iterable[Any] | None = None) -> MigrationPlan:
        """Return the moves that take keys from this router's placement to *new*'s.

        Args:
            new: the router after the change.
            sample: keys to estimate the moved fraction from, when the two
                routers cannot be compared exactly (different kinds, or ranges
                where the fraction depends on the key distribution).

        Raises:
            ConfigurationError: the routers cannot be compared and no
                *sample* was given.
        """
        from .migration import plan

        return plan(self, new, sample=sample)


@dataclass(frozen=True)
class Move:
    """One movement of part of the keyspace from *source* to *target*.

    `fraction` is the share of a uniformly hashed keyspace that moves (or
    of the sample, for sampled plans; None for range moves without a
    sample). The detail fields say which part moves, depending on the router:
    `slots` as inclusive Redis slot ranges, `ranges` as half-open key
    ranges `(lo, hi)` (None for unbounded), `hash_ranges` as inclusive
    32-bit ketama hash ranges.
    """

    source: Hashable
    target: Hashable
    fraction: float | None
    slots: tuple[tuple[int, int], ...] = ()
    ranges: tuple[tuple[Any, Any], ...] = ()
    hash_ranges: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class MigrationPlan:
    """The exact difference between two routers' placements.

    `moves` lists each (source, target) movement; `fraction` is the
    total share of the keyspace that changes shard (None if unknown);
    `exact` says whether the fractions are computed rather than sampled.
    `moved()` answers for a single key whatever the router kind.
    """

    old: Router[Any]
    new: Router[Any]
    moves: tuple[Move, ...]
    fraction: float | None
    exact: bool
    notes: tuple[str, ...] = field(default=())

    def moved(self, key: Any) -> bool:
        """True if *key* changes shard. Runtime complexity: two routes."""
        return bool(self.old.route(key) != self.new.route(key))

    def source(self, key: Any) -> Hashable:
        """The shard *key* lives on before the change."""
        shard: Hashable = self.old.route(key)
        return shard

    def target(self, key: Any) -> Hashable:
        """The shard *key* lives on after the change."""
        shard: Hashable = self.new.route(key)
        return shard

    def sources(self) -> set[Hashable]:
        """Every shard that gives keys away."""
        return {m.source for m in self.moves}

    def targets(self) -> set[Hashable]:
        """Every shard that receives keys."""
        return {m.target for m in self.moves}
