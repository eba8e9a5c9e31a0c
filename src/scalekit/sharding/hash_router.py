"""HashRouter: hash a key, place it with a consistent-hash strategy."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import mmh3

from .._hashing import MASK64, hash64, key_bytes
from .._validation import iterable, wrong_type
from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import Router, S, check_shards
from .ketama import KetamaCompat, check_compat
from .maglev import check_maglev_size
from .placement import (
    DEFAULT_MAGLEV_SIZE,
    SLOT_COUNT,
    KetamaRing,
    MaglevTable,
    Rendezvous,
    cluster_slot_ranges,
    key_slot,
)

__all__ = ["STRATEGIES", "HashKey", "HashRouter", "Strategy"]

#: What `HashRouter.route` accepts: the types `key_bytes` hashes stably
#: (`bool` is an `int` to a type checker but is refused at run time).
HashKey = str | bytes | bytearray | memoryview | int

#: A placement strategy's name.
Strategy = Literal["jump", "rendezvous", "ketama", "maglev", "slots", "modulo"]
STRATEGIES: tuple[Strategy, ...] = ("jump", "rendezvous", "ketama", "maglev", "slots", "modulo")
_WEIGHTED = ("rendezvous", "ketama", "maglev", "slots")
_JUMP_MULTIPLIER = 2862933555777941757
# libmemcached keeps a weight in a uint32; one rule for every strategy.
_MAX_WEIGHT = 2**32 - 1
_WEIGHT_RULE = f"a positive whole number up to {_MAX_WEIGHT}"


class HashRouter(Router[S]):
    """Route keys to shards by a stable hash and a placement strategy.

    Keys are str, bytes or int, hashed as documented in `scalekit._hashing`
    (never with the builtin `hash()`), so every process agrees.

    Strategies:

    * `"jump"` (default): jump consistent hash of `hash64(key)`; no
      weights; adding a shard at the end moves 1/(n+1) of the keys, all onto it.
    * `"rendezvous"`: highest random weight; weights; O(n) per lookup.
    * `"ketama"`: libmemcached's weighted ketama ring (MD5 of the key); integer weights.
    * `"maglev"`: a Maglev table of `maglev_size` entries; weights.
    * `"slots"`: Redis Cluster's 16384 slots (`key_slot`, hash tags
      honoured), assigned in contiguous ranges as `redis-cli --cluster
      create` does, or in proportion to weights.
    * `"modulo"`: `hash64(key) % n`, for comparison only: a change of n
      moves about n/(n+1) of the keys.

    Args:
        shards: distinct shard ids, each a str, bytes or int (for every
            strategy, so that a router can change strategy and every
            strategy hashes the same ids).
        strategy: one of `STRATEGIES`.
        weights: optional mapping shard -> weight, a positive whole number
            up to 2**32 - 1 (an int, or a float with no fraction) for
            strategies rendezvous, ketama, maglev and slots; missing shards
            weigh 1.
        maglev_size: the Maglev table size, a prime.
        ketama_compat: `"libmemcached"` or `"uhashring"`, see `KetamaRing`.

    Raises:
        ArgumentTypeError: a shard id or a weight of the wrong type.
        ConfigurationError: empty or duplicate shards, an unknown
            strategy, weights the strategy cannot honour, bad weights.

    Thread-safety: `route()` may run concurrently with itself and with
    `add_shard()` / `remove_shard()`, which build the new placement
    aside and swap it in with one assignment; serialize the changes themselves.

    ```pycon
    >>> router = HashRouter(["db0", "db1", "db2"], strategy="jump")
    >>> router.route("user:42") in router.shards
    True

    ```
    """

    _placement: KetamaRing | MaglevTable | Rendezvous | None

    def __init__(
        self,
        shards: Iterable[S],
        *,
        strategy: Strategy = "jump",
        weights: Mapping[S, float] | None = None,
        maglev_size: int = DEFAULT_MAGLEV_SIZE,
        ketama_compat: KetamaCompat = "libmemcached",
    ) -> None:
        if strategy not in STRATEGIES:
            error = ArgumentTypeError if not isinstance(strategy, str) else ConfigurationError
            raise error(
                f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}"
            )
        self.strategy = strategy
        self._shards = check_shards("shards", shards)
        for shard in self._shards:
            _check_shard_id(shard)
        self._weights: dict[S, float] = {}
        self.maglev_size = check_maglev_size("maglev_size", maglev_size)
        self.ketama_compat = check_compat("ketama_compat", ketama_compat)
        if weights is not None and not isinstance(weights, Mapping):
            raise wrong_type("weights", weights, "a mapping of shard to weight, or None")
        if weights:
            if strategy not in _WEIGHTED:
                raise ConfigurationError(
                    f"strategy {strategy!r} does not support weights; use one of "
                    f"{', '.join(map(repr, _WEIGHTED))}"
                )
            for shard, weight in weights.items():
                if shard not in self._shards:
                    raise ConfigurationError(f"weights name an unknown shard {shard!r}")
                self._weights[shard] = self._check_weight(shard, weight)
        self._slots: list[int] = []
        if strategy == "slots":
            self._slots = self._initial_slots()
        self._install(self._build())

    # -- configuration ---------------------------------------------------------------

    @classmethod
    def from_slot_ranges(cls, ranges: Iterable[tuple[int, int, S]]) -> HashRouter[S]:
        """A `"slots"` router from inclusive `(first, last, shard)` ranges.

        Mirrors a live cluster's `CLUSTER SLOTS`. Every slot must be covered once.

        Raises:
            ConfigurationError: a slot uncovered, covered twice or out of range.
        """
        owner: list[S | None] = [None] * SLOT_COUNT
        shards: list[S] = []
        items = iterable("ranges", ranges, "a collection of (first, last, shard) tuples")
        for item in items:
            if not isinstance(item, tuple) or len(item) != 3:
                raise wrong_type("ranges item", item, "a (first, last, shard) tuple")
        for first, last, shard in items:
            if not (
                isinstance(first, int) and isinstance(last, int) and 0 <= first <= last < SLOT_COUNT
            ):
                raise ConfigurationError(
                    "slot range must satisfy 0 <= first <= last <= 16383, "
                    f"got ({first!r}, {last!r})"
                )
            for slot in range(first, last + 1):
                if owner[slot] is not None:
                    raise ConfigurationError(f"slot {slot} is assigned twice")
                owner[slot] = shard
            if shard not in shards:
                shards.append(shard)
        missing = [slot for slot, shard in enumerate(owner) if shard is None]
        if missing:
            raise ConfigurationError(
                f"every slot must be assigned; {len(missing)} are not, first {missing[0]}"
            )
        router = cls(shards, strategy="slots")
        index = {shard: i for i, shard in enumerate(shards)}
        router._slots = [index[shard] for shard in owner if shard is not None]
        router._install(router._build())
        return router

    def copy(self) -> HashRouter[S]:
        """Return an independent router with the same placement (plan changes on the copy)."""
        clone = HashRouter.__new__(HashRouter)
        clone.strategy = self.strategy
        clone._shards = self._shards
        clone._weights = dict(self._weights)
        clone.maglev_size = self.maglev_size
        clone.ketama_compat = self.ketama_compat
        clone._slots = list(self._slots)
        clone._install(clone._build())
        return clone

    @property
    def shards(self) -> tuple[S, ...]:
        return self._shards

    @property
    def placement(self) -> KetamaRing | MaglevTable | Rendezvous | None:
        """The ketama ring, Maglev table or rendezvous set behind this router, if any."""
        return self._placement

    @property
    def slot_owners(self) -> tuple[S, ...]:
        """For strategy `"slots"`: the owner of each of the 16384 slots."""
        return tuple(self._shards[i] for i in self._slots)

    @property
    def weights(self) -> dict[S, float]:
        """Each shard's weight (1 unless given)."""
        return {shard: self._weights.get(shard, 1) for shard in self._shards}

    def slot_ranges(self) -> list[tuple[int, int, S]]:
        """The `"slots"` assignment as inclusive `(first, last, shard)` runs."""
        if self.strategy != "slots":
            raise ConfigurationError(f"slot_ranges needs strategy 'slots', not {self.strategy!r}")
        return _runs([self._shards[i] for i in self._slots])

    def add_shard(self, shard: S, weight: float | None = None) -> None:
        """Add *shard* (with *weight*, where the strategy supports weights).

        Jump appends it as the last bucket; slots hands it its share of slots
        taken from the shards holding most (as `redis-cli --cluster rebalance`).

        The same rule holds for every strategy (and for the constructor):
        *shard* is a str, bytes or int, *weight* None (weight 1) or a
        positive whole number up to 2**32 - 1, and strategies jump and
        modulo take no weight. A refused shard leaves the router as it was.

        Raises:
            ArgumentTypeError: *shard* is not a str, bytes or int, or *weight*
                is not a number.
            ConfigurationError: *shard* already present; *weight* not a
                positive whole number up to 2**32 - 1, or given to a strategy
                without weights.

        Runtime complexity: a rebuild, O(n) to O(M log M) for Maglev.
        """
        _check_shard_id(shard)
        if shard in self._shards:
            raise ConfigurationError(f"shard {shard!r} is already routed to")
        weights = dict(self._weights)
        if weight is not None:
            checked = self._check_weight(shard, weight)
            if self.strategy not in _WEIGHTED:
                raise ConfigurationError(
                    f"strategy {self.strategy!r} does not support weights, got weight "
                    f"{weight!r} for shard {shard!r}; use one of {', '.join(map(repr, _WEIGHTED))}"
                )
            weights[shard] = checked
        self._change((*self._shards, shard), self._slots, weights)

    def remove_shard(self, shard: S) -> None:
        """Remove *shard*; its keys spread over the others.

        With jump, removing the last shard is minimal; removing another puts
        the last shard into its bucket, which also moves part of the last
        shard's keys (see the docs).

        Raises:
            ConfigurationError: unknown shard, or it is the only one.
        """
        if shard not in self._shards:
            raise ConfigurationError(f"shard {shard!r} is not routed to; shards: {self._shards!r}")
        if len(self._shards) == 1:
            raise ConfigurationError("cannot remove the last shard: a router needs one")
        index = self._shards.index(shard)
        shards = list(self._shards)
        slots = list(self._slots)
        if self.strategy == "jump" and index != len(shards) - 1:
            shards[index] = shards.pop()
        else:
            shards.pop(index)
            # Renumber slot owners past the removed index; its slots become unowned (-1).
            slots = [-1 if s == index else s - (s > index) for s in slots]
        weights = dict(self._weights)
        weights.pop(shard, None)
        self._change(tuple(shards), slots, weights)

    # -- routing ---------------------------------------------------------------------

    def route(self, key: HashKey) -> S:
        """Return the shard that owns *key*.

        Raises:
            ArgumentTypeError: *key* is not str, bytes or int (a `TypeError`).

        Runtime complexity: O(1) for slots, modulo, maglev; O(log n) jump and
        ketama; O(n) rendezvous (plus hashing the key).
        """
        return self._route(key)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _check_weight(shard: S, weight: Any) -> float:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ArgumentTypeError(
                f"weight must be {_WEIGHT_RULE} for shard {shard!r}, got "
                f"{type(weight).__name__}: {weight!r}"
            )
        whole = not isinstance(weight, float) or (math.isfinite(weight) and weight.is_integer())
        if not (whole and 1 <= weight <= _MAX_WEIGHT):
            bits = weight.bit_length() if isinstance(weight, int) else 0
            shown = f"an int of {bits} bits" if bits > 64 else repr(weight)  # repr may refuse it
            raise ConfigurationError(
                f"weight must be {_WEIGHT_RULE} for shard {shard!r}, got {shown}"
            )
        return int(weight)

    def _install(self, route: Callable[[Any], S]) -> None:
        self._route = route
        # The placement function itself answers route() calls: one Python call
        # less per lookup, which is most of the cost at this size.
        self.route = route  # type: ignore[method-assign,assignment]

    def _change(self, shards: tuple[S, ...], slots: list[int], weights: dict[S, float]) -> None:
        # Build the new placement first and commit it only if that succeeds:
        # a failed change leaves the router exactly as it was.
        saved = (self._shards, self._weights, self._slots, self._placement)
        self._shards, self._weights = shards, weights
        try:
            if self.strategy == "slots":
                self._slots = _rebalance(slots, self._slot_targets())
            route = self._build()
        except BaseException:
            self._shards, self._weights, self._slots, self._placement = saved
            raise
        self._install(route)

    def _slot_targets(self) -> list[int]:
        weights = [self._weights.get(s, 1) for s in self._shards]
        if len(set(weights)) == 1:
            return [hi - lo + 1 for lo, hi in cluster_slot_ranges(len(weights))]
        total = sum(weights)
        exact = [SLOT_COUNT * w / total for w in weights]
        counts = [math.floor(e) for e in exact]
        # Largest remainder, so the counts add up to 16384.
        for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[
            : SLOT_COUNT - sum(counts)
        ]:
            counts[i] += 1
        return counts

    def _initial_slots(self) -> list[int]:
        slots: list[int] = []
        for index, count in enumerate(self._slot_targets()):
            slots.extend([index] * count)
        return slots

    def _build(self) -> Callable[[Any], S]:
        shards = self._shards
        n = len(shards)
        strategy = self.strategy
        self._placement = None
        weighted = [(s, self._weights.get(s, 1)) for s in shards]
        if strategy == "jump":
            hash128 = mmh3.hash128
            mask, multiplier = MASK64, _JUMP_MULTIPLIER  # closure cells: faster than globals

            def route_jump(key: Any) -> S:
                # jump_hash() unrolled: the first turn always gives b = 0, and b is
                # kept as a float, which is exact (b < 2**31) and what C computes.
                # The low 64 bits of hash128 * multiplier do not depend on the
                # high 64 bits of hash128, so the key's hash needs no mask first.
                # hash128's defaults (seed 0, x64, unsigned) are hash64's; mmh3 takes
                # str and bytes keys itself and raises TypeError for the rest.
                try:
                    h = (hash128(key) * multiplier + 1) & mask
                except TypeError:
                    h = (hash128(key_bytes(key)) * multiplier + 1) & mask
                b = 0.0
                j = 2147483648.0 / ((h >> 33) + 1)
                while j < n:
                    b = j // 1.0
                    h = (h * multiplier + 1) & mask
                    j = (b + 1.0) * (2147483648.0 / ((h >> 33) + 1))
                return shards[int(b)]

            return route_jump
        if strategy == "modulo":
            return lambda key: shards[hash64(key) % n]
        if strategy == "slots":
            owners = tuple(shards[i] for i in self._slots)

            def route_slots(key: Any) -> S:
                if type(key) is not str and type(key) is not bytes:
                    key = key_bytes(key)
                return owners[key_slot(key)]

            return route_slots
        if strategy == "ketama":
            self._placement = KetamaRing(
                [(s, int(w)) for s, w in weighted], compat=self.ketama_compat
            )
            return cast("Callable[[Any], S]", self._placement.get)
        if strategy == "maglev":
            self._placement = MaglevTable(weighted, size=self.maglev_size)
            return cast("Callable[[Any], S]", self._placement.get)
        self._placement = Rendezvous(weighted)
        return cast("Callable[[Any], S]", self._placement.get)

    def __repr__(self) -> str:
        return f"HashRouter({list(self._shards)!r}, strategy={self.strategy!r})"


def _check_shard_id(shard: Any) -> None:
    if isinstance(shard, bool) or not isinstance(shard, (str, bytes, int)):
        raise wrong_type("shard", shard, "a str, bytes or int")


def _runs(owners: Sequence[S]) -> list[tuple[int, int, S]]:
    runs: list[tuple[int, int, S]] = []
    start = 0
    for slot in range(1, len(owners) + 1):
        if slot == len(owners) or owners[slot] != owners[start]:
            runs.append((start, slot - 1, owners[start]))
            start = slot
    return runs


def _rebalance(slots: list[int], targets: list[int]) -> list[int]:
    """Move the fewest slots so shard i owns targets[i]; -1 marks an unowned slot.

    Shards over target release their highest slots; shards under target take
    the lowest released slots, the neediest first, in contiguous runs.
    """
    owned: list[list[int]] = [[] for _ in targets]
    pool: list[int] = []
    for slot, owner in enumerate(slots):
        if owner < 0 or owner >= len(targets):
            pool.append(slot)
        else:
            owned[owner].append(slot)
    for index, mine in enumerate(owned):
        surplus = len(mine) - targets[index]
        if surplus > 0:
            pool.extend(mine[-surplus:])
    pool.sort()
    result = list(slots)
    need = [(len(mine) - targets[i], i) for i, mine in enumerate(owned)]
    heapq.heapify(need)
    cursor = 0
    while need:
        deficit, index = heapq.heappop(need)
        if deficit >= 0:
            continue
        for slot in pool[cursor : cursor - deficit]:
            result[slot] = index
        cursor -= deficit
    return result
