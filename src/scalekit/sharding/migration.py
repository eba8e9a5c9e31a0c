"""Resharding plans: exactly what moves between two routers.

`plan` (behind `Router[Any].plan_to`) compares two routers and lists what moves;
`scalekit.sharding.resharding.MigratingRouter` carries the move out.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from ..exceptions import ConfigurationError
from .base import MigrationPlan, Move, Router
from .hash_router import HashRouter
from .placement import KetamaRing, MaglevTable
from .range_router import RangeRouter

__all__ = ["plan"]

_SAMPLE_SIZE = 20000
_MAX_RESIDUES = 2_000_000


def plan(
    old: Router[Any], new: Router[Any], *, sample: Iterable[Any] | None = None
) -> MigrationPlan:
    """Return the `MigrationPlan` from *old*'s placement to *new*'s.

    Exact for two `HashRouter[Any]` of the same strategy (fractions of a
    uniformly hashed keyspace: slot runs, ketama hash ranges, Maglev
    entries, and for jump, rendezvous and modulo the closed-form
    probabilities) and for two `RangeRouter[Any]` (key ranges; the fraction
    needs a *sample*). Other pairs are estimated from *sample*, or from 20000
    seeded random string keys when both are hash routers.

    Raises:
        ConfigurationError: the pair cannot be compared and no *sample* was given.
    """
    keys = None if sample is None else list(sample)
    if isinstance(old, HashRouter) and isinstance(new, HashRouter):
        exact = _hash_plan(old, new)
        if exact is not None:
            return exact
        if keys is None:
            rng = random.Random(0)
            keys = [f"key:{rng.getrandbits(64):016x}" for _ in range(_SAMPLE_SIZE)]
    if isinstance(old, RangeRouter) and isinstance(new, RangeRouter):
        moves = _range_moves(old, new)
        fraction = None if not keys else sum(map(_moved(old, new), keys)) / len(keys)
        return MigrationPlan(old, new, moves, fraction, exact=not keys)
    if keys is None:
        raise ConfigurationError(
            f"cannot compare {type(old).__name__} with {type(new).__name__} exactly; "
            "pass sample=[...] keys to estimate the plan from"
        )
    return _sampled(old, new, keys)


def _moved(old: Router[Any], new: Router[Any]) -> Callable[[Any], bool]:
    return lambda key: old.route(key) != new.route(key)


def _sampled(old: Router[Any], new: Router[Any], keys: list[Any]) -> MigrationPlan:
    if not keys:
        raise ConfigurationError("sample must hold at least one key")
    counts: dict[tuple[Hashable, Hashable], int] = defaultdict(int)
    for key in keys:
        source, target = old.route(key), new.route(key)
        if source != target:
            counts[source, target] += 1
    return _from_weights(old, new, {k: v / len(keys) for k, v in counts.items()}, exact=False)


def _from_weights(
    old: Router[Any],
    new: Router[Any],
    shares: dict[tuple[Hashable, Hashable], float],
    *,
    exact: bool,
    **details: dict[tuple[Hashable, Hashable], Any],
) -> MigrationPlan:
    moves = []
    for (source, target), share in sorted(shares.items(), key=lambda kv: -kv[1]):
        extra = {name: tuple(d.get((source, target), ())) for name, d in details.items()}
        moves.append(Move(source, target, share, **extra))
    return MigrationPlan(old, new, tuple(moves), math.fsum(shares.values()), exact=exact)


def _hash_plan(old: HashRouter[Any], new: HashRouter[Any]) -> MigrationPlan | None:
    if old.strategy != new.strategy:
        return None
    strategy = old.strategy
    shares: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    if strategy == "slots":
        runs: dict[tuple[Hashable, Hashable], list[tuple[int, int]]] = defaultdict(list)
        before, after = old.slot_owners, new.slot_owners
        for slot, (a, b) in enumerate(zip(before, after, strict=True)):
            if a != b:
                shares[a, b] += 1 / len(before)
                pair = runs[a, b]
                if pair and pair[-1][1] == slot - 1:
                    pair[-1] = (pair[-1][0], slot)
                else:
                    pair.append((slot, slot))
        return _from_weights(old, new, shares, exact=True, slots=runs)
    if strategy == "ketama":
        assert isinstance(old.placement, KetamaRing) and isinstance(new.placement, KetamaRing)
        return _ketama_plan(old, new, old.placement, new.placement)
    if strategy == "maglev":
        assert isinstance(old.placement, MaglevTable) and isinstance(new.placement, MaglevTable)
        if old.placement.size != new.placement.size:
            return None
        size = old.placement.size
        for a, b in zip(old.placement.table, new.placement.table, strict=True):
            if a != b:
                shares[a, b] += 1 / size
        return _from_weights(old, new, shares, exact=True)
    if strategy == "jump":
        _jump_shares(old.shards, new.shards, shares)
        return _from_weights(old, new, shares, exact=True)
    if strategy == "rendezvous":
        wa, wb = old.weights, new.weights
        if any(wa[s] != wb[s] for s in wa.keys() & wb.keys()):
            return None  # a reweighted shard: no closed form, sample instead
        _rendezvous_shares(wa, wb, shares)
        return _from_weights(old, new, shares, exact=True)
    n, m = len(old.shards), len(new.shards)
    period = n * m // math.gcd(n, m)
    if period > _MAX_RESIDUES:
        return None
    for r in range(period):
        a, b = old.shards[r % n], new.shards[r % m]
        if a != b:
            shares[a, b] += 1 / period
    return _from_weights(old, new, shares, exact=True)


def _jump_shares(
    before: tuple[Hashable, ...],
    after: tuple[Hashable, ...],
    shares: dict[tuple[Hashable, Hashable], float],
) -> None:
    # Bucket x > 0 is on a key's jump path with probability 1/(x+1), independently
    # of other buckets. So with n <= m buckets: P(same bucket i < n) = 1/m, and a
    # key whose m-bucket is j >= n had its n-bucket uniform: P(i, j) = 1/(n*m).
    n, m = len(before), len(after)
    small, large = min(n, m), max(n, m)
    for i in range(small):
        if before[i] != after[i]:
            shares[before[i], after[i]] += 1 / large
    for j in range(small, large):
        for i in range(small):
            a, b = (before[i], after[j]) if n <= m else (before[j], after[i])
            if a != b:
                shares[a, b] += 1 / (small * large)


def _rendezvous_shares(
    wa: dict[Hashable, float],
    wb: dict[Hashable, float],
    shares: dict[tuple[Hashable, Hashable], float],
) -> None:
    # Scores are w / Exp(1): the winner is an exponential race. Given the winner u
    # of the union, the race among the other side restarts (memorylessness).
    union = {**wa, **wb}
    total_u, total_a, total_b = sum(union.values()), sum(wa.values()), sum(wb.values())
    for u, w in union.items():
        p = w / total_u
        if u in wa and u not in wb:
            for b, wb_b in wb.items():
                shares[u, b] += p * wb_b / total_b
        elif u in wb and u not in wa:
            for a, wa_a in wa.items():
                shares[a, u] += p * wa_a / total_a


def _ketama_plan(
    old: HashRouter[Any], new: HashRouter[Any], ring_a: KetamaRing, ring_b: KetamaRing
) -> MigrationPlan | None:
    if ring_a.compat != ring_b.compat:
        return None
    # libmemcached: hashes in (previous point, point] go to point; uhashring:
    # hashes in [previous point, point) do. Shift the arcs down by one for the latter.
    shift = 1 if ring_a.compat == "uhashring" else 0
    points = sorted({p for p, _ in ring_a.points} | {p for p, _ in ring_b.points})
    shares: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    arcs: dict[tuple[Hashable, Hashable], list[tuple[int, int]]] = defaultdict(list)
    full = 2**32
    for k, point in enumerate(points):
        if k == 0:  # the arc that wraps around zero
            pieces = [(0, point - shift), (points[-1] + 1 - shift, full - 1)]
        else:
            pieces = [(points[k - 1] + 1 - shift, point - shift)]
        for lo, hi in pieces:
            if lo > hi:
                continue
            a, b = ring_a.get_hash(hi), ring_b.get_hash(hi)
            if a != b:
                shares[a, b] += (hi - lo + 1) / full
                arcs[a, b].append((lo, hi))
    return _from_weights(old, new, shares, exact=True, hash_ranges=arcs)


def _range_moves(old: RangeRouter[Any], new: RangeRouter[Any]) -> tuple[Move, ...]:
    cuts = sorted(set(old.split_points) | set(new.split_points))
    bounds: list[Any] = [None, *cuts, None]
    moves: dict[tuple[Hashable, Hashable], list[tuple[Any, Any]]] = defaultdict(list)
    for lo, hi in itertools.pairwise(bounds):
        a = old.shards[0 if lo is None else bisect_right(old.split_points, lo)]
        b = new.shards[0 if lo is None else bisect_right(new.split_points, lo)]
        if a != b:
            pieces = moves[a, b]
            if pieces and pieces[-1][1] == lo:
                pieces[-1] = (pieces[-1][0], hi)
            else:
                pieces.append((lo, hi))
    return tuple(Move(a, b, None, ranges=tuple(r)) for (a, b), r in moves.items())
