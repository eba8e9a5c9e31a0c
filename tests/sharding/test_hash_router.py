"""HashRouter: strategies, weights, shard changes and exact migration plans."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from scalekit import ArgumentTypeError, ConfigurationError
from scalekit._hashing import hash64
from scalekit.sharding import HashRouter, cluster_slot_ranges, jump_hash, key_slot
from scalekit.sharding.hash_router import STRATEGIES
from scalekit.sharding.placement import ketama_hash

CONSISTENT = ["jump", "rendezvous", "ketama"]
KEYS = st.one_of(
    st.text(max_size=30), st.binary(max_size=30), st.integers(min_value=-(2**70), max_value=2**70)
)
SHARD_SETS = st.lists(
    st.text(alphabet="abcdefgh0123456789", min_size=1, max_size=6),
    min_size=1,
    max_size=12,
    unique=True,
)


def random_keys(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"user:{rng.getrandbits(64):x}" for _ in range(count)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_routes_to_a_shard_deterministically(strategy: str) -> None:
    shards = [f"db{i}" for i in range(7)]
    a, b = HashRouter(shards, strategy=strategy), HashRouter(list(shards), strategy=strategy)
    for key in [*random_keys(500), b"raw\x00bytes", 12345, -7, "ünï"]:
        assert a.route(key) in shards
        assert a.route(key) == b.route(key) == a.route(key)
    for raw in (b"user:1", b"\x00\xff", b""):
        assert a.route(bytearray(raw)) == a.route(memoryview(raw)) == a.route(raw)
    assert a.route(77) == a.route("77") == a.route(b"77")


def test_placement_does_not_depend_on_the_process_hash_seed() -> None:
    code = (
        "from scalekit.sharding import HashRouter\n"
        "for s in ('jump','rendezvous','ketama','maglev','slots','modulo'):\n"
        "    r = HashRouter(['a','b','c','d','e'], strategy=s)\n"
        "    print(s, [r.route(f'k{i}') for i in range(200)])\n"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_jump_and_slots_routes_are_the_placement_functions() -> None:
    shards = [f"s{i}" for i in range(10)]
    jump, slots = HashRouter(shards), HashRouter(shards, strategy="slots")
    ranges = cluster_slot_ranges(10)
    for key in random_keys(2000):
        assert jump.route(key) == shards[jump_hash(hash64(key), 10)]
        slot = key_slot(key)
        assert (
            slots.route(key)
            == shards[next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)]
        )
    assert slots.route(42) == slots.route("42")  # ints are sent as their decimal digits
    assert slots.slot_ranges() == [(lo, hi, shards[i]) for i, (lo, hi) in enumerate(ranges)]


@settings(max_examples=60, deadline=None)
@given(
    shards=SHARD_SETS,
    new=st.text(alphabet="xyz", min_size=1, max_size=4),
    keys=st.lists(KEYS, min_size=1, max_size=40),
    strategy=st.sampled_from(CONSISTENT),
)
def test_adding_a_shard_moves_keys_only_onto_it(
    shards: list[str], new: str, keys: list[object], strategy: str
) -> None:
    before = HashRouter(shards, strategy=strategy)
    after = before.copy()
    after.add_shard(new)
    for key in keys:
        assert after.route(key) in (before.route(key), new)


@settings(max_examples=40, deadline=None)
@given(
    shards=SHARD_SETS.filter(lambda s: len(s) > 1),
    data=st.data(),
    keys=st.lists(KEYS, min_size=1, max_size=40),
    strategy=st.sampled_from(["rendezvous", "ketama", "slots"]),
)
def test_removing_a_shard_moves_only_its_keys(
    shards: list[str], data: st.DataObject, keys: list[object], strategy: str
) -> None:
    gone = data.draw(st.sampled_from(shards))
    before = HashRouter(shards, strategy=strategy)
    after = before.copy()
    after.remove_shard(gone)
    for key in keys:
        if before.route(key) != gone:
            assert after.route(key) == before.route(key)
        else:
            assert after.route(key) != gone


@settings(max_examples=40, deadline=None)
@given(
    shards=SHARD_SETS,
    keys=st.lists(KEYS, min_size=1, max_size=30),
    strategy=st.sampled_from(STRATEGIES),
)
def test_routing_is_a_pure_function_of_key_and_shards(
    shards: list[str], keys: list[object], strategy: str
) -> None:
    a = HashRouter(shards, strategy=strategy)
    if strategy in ("jump", "modulo", "slots"):
        b = HashRouter(list(shards), strategy=strategy)  # order is part of their configuration
    else:
        b = HashRouter(list(reversed(shards)), strategy=strategy)
    assert [a.route(k) for k in keys] == [b.route(k) for k in keys]


def test_slots_add_takes_a_fair_share_from_every_shard() -> None:
    router = HashRouter(["a", "b", "c"], strategy="slots")
    before = router.slot_owners
    router.add_shard("d")
    after = router.slot_owners
    counts = Counter(after)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(a == b or b == "d" for a, b in zip(before, after, strict=True))
    router.remove_shard("b")
    assert "b" not in router.slot_owners
    assert all(x == y or x == "b" for x, y in zip(after, router.slot_owners, strict=True))


def test_from_slot_ranges_mirrors_a_cluster() -> None:
    router = HashRouter.from_slot_ranges([(0, 99, "x"), (100, 16383, "y")])
    assert router.slot_ranges() == [(0, 99, "x"), (100, 16383, "y")]
    key = next(k for k in random_keys(5000) if key_slot(k) < 100)
    assert router.route(key) == "x"
    with pytest.raises(ConfigurationError, match="every slot must be assigned; 1 are not"):
        HashRouter.from_slot_ranges([(0, 16382, "x")])
    with pytest.raises(ConfigurationError, match="slot 5 is assigned twice"):
        HashRouter.from_slot_ranges([(0, 5, "x"), (5, 16383, "y")])


@pytest.mark.parametrize("strategy", ["rendezvous", "ketama", "maglev", "slots"])
def test_weights_set_the_share_of_keys(strategy: str) -> None:
    router = HashRouter(["a", "b", "c"], strategy=strategy, weights={"c": 2})
    assert router.weights == {"a": 1, "b": 1, "c": 2}
    share = Counter(router.route(k) for k in random_keys(20000))
    # ketama's 160-point arcs vary by several percent; the others are within sampling noise.
    tolerance = 0.06 if strategy == "ketama" else 0.02
    assert abs(share["c"] / 20000 - 0.5) < tolerance


def test_bad_configuration_is_rejected_with_clear_messages() -> None:
    with pytest.raises(ConfigurationError, match="shards must not be empty"):
        HashRouter([])
    with pytest.raises(ConfigurationError, match="shards must be distinct, got 'a' twice"):
        HashRouter(["a", "b", "a"])
    with pytest.raises(ArgumentTypeError, match="got the string 'abc'"):
        HashRouter("abc")
    with pytest.raises(ConfigurationError, match=r"strategy must be one of .* got 'crc'"):
        HashRouter(["a"], strategy="crc")
    with pytest.raises(ConfigurationError, match="strategy 'jump' does not support weights"):
        HashRouter(["a", "b"], weights={"a": 2})
    with pytest.raises(ConfigurationError, match="weight must be a positive whole number"):
        HashRouter(["a", "b"], strategy="maglev", weights={"a": -3})
    with pytest.raises(ConfigurationError, match="weights name an unknown shard 'z'"):
        HashRouter(["a", "b"], strategy="maglev", weights={"z": 1})
    with pytest.raises(ConfigurationError, match="weight must be a positive whole number"):
        HashRouter(["a", "b"], strategy="ketama", weights={"a": 1.5})
    router = HashRouter(["a"])
    with pytest.raises(ConfigurationError, match="already routed to"):
        router.add_shard("a")
    with pytest.raises(ConfigurationError, match="'q' is not routed to"):
        router.remove_shard("q")
    with pytest.raises(ConfigurationError, match="cannot remove the last shard"):
        router.remove_shard("a")
    with pytest.raises(TypeError, match="key must be str, bytes or int"):
        router.route(1.5)


def test_jump_removal_of_a_middle_shard_reuses_its_bucket() -> None:
    router = HashRouter(["a", "b", "c", "d"])
    router.remove_shard("b")
    assert router.shards == ("a", "d", "c")


# ---------------------------------------------------------------- plans


def empirical(old: HashRouter, new: HashRouter, keys: list[str]) -> Counter[tuple[str, str]]:
    return Counter(
        (old.route(k), new.route(k))
        for k in keys  # type: ignore[misc]
        if old.route(k) != new.route(k)
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("change", ["add", "remove_last", "remove_middle"])
def test_plan_fraction_matches_the_keys_that_move(strategy: str, change: str) -> None:
    old = HashRouter(
        [f"s{i}" for i in range(6)],
        strategy=strategy,
        weights={"s1": 2} if strategy in ("rendezvous", "maglev", "slots") else None,
    )
    new = old.copy()
    if change == "add":
        new.add_shard("s6")
    else:
        new.remove_shard("s5" if change == "remove_last" else "s2")
    plan = old.plan_to(new)
    assert plan.exact
    keys = random_keys(20000, seed=7)
    moved = empirical(old, new, keys)
    assert plan.fraction is not None
    assert abs(sum(moved.values()) / len(keys) - plan.fraction) < 0.015  # ~5 sigma
    for move in plan.moves:
        assert abs(moved[move.source, move.target] / len(keys) - move.fraction) < 0.01
    assert {(m.source, m.target) for m in plan.moves} >= set(moved)


@pytest.mark.parametrize(
    ("strategy", "compat"),
    [("slots", "libmemcached"), ("ketama", "libmemcached"), ("ketama", "uhashring")],
)
def test_slot_and_ketama_plans_name_exactly_the_moving_keys(strategy: str, compat: str) -> None:
    old = HashRouter(["a", "b", "c"], strategy=strategy, ketama_compat=compat)
    new = old.copy()
    new.add_shard("d")
    plan = old.plan_to(new)
    # "<shard>-<k>" hashes exactly onto ring points: the arcs' ends must be right too
    keys = random_keys(3000, seed=3) + [f"{s}-{k}" for s in "abcd" for k in range(40)]
    for key in keys:
        if strategy == "slots":
            point = key_slot(key)
            spans = [(m, r) for m in plan.moves for r in m.slots]
        else:
            point = ketama_hash(key.encode())
            spans = [(m, r) for m in plan.moves for r in m.hash_ranges]
        inside = [m for m, (lo, hi) in spans if lo <= point <= hi]
        assert bool(inside) == plan.moved(key), key
        if inside:
            assert (inside[0].source, inside[0].target) == (old.route(key), new.route(key))


def test_plan_between_strategies_is_sampled() -> None:
    old = HashRouter([f"s{i}" for i in range(10)], strategy="modulo")
    new = HashRouter([f"s{i}" for i in range(10)], strategy="jump")
    plan = old.plan_to(new)
    assert not plan.exact and plan.fraction is not None
    assert 0.85 < plan.fraction < 0.95  # two unrelated placements agree on 1/10
    grow = HashRouter([f"s{i}" for i in range(11)], strategy="modulo")
    assert old.plan_to(grow).fraction == pytest.approx(10 / 11)


class HashRouterMachine(RuleBasedStateMachine):
    """add_shard / remove_shard against a model: the shard list, rebuilt from scratch."""

    keys = random_keys(150, seed=11)

    @initialize(strategy=st.sampled_from(STRATEGIES), count=st.integers(1, 5))
    def start(self, strategy: str, count: int) -> None:
        self.strategy = strategy
        self.model = [f"n{i}" for i in range(count)]
        self.next_id = count
        self.router = HashRouter(self.model, strategy=strategy, maglev_size=1009)

    def snapshot(self) -> list[object]:
        return [self.router.route(k) for k in self.keys]

    @rule()
    def add(self) -> None:
        shard = f"n{self.next_id}"
        self.next_id += 1
        before = self.snapshot()
        self.router.add_shard(shard)
        self.model.append(shard)
        if self.strategy in ("jump", "rendezvous", "ketama", "slots"):
            assert all(b in (a, shard) for a, b in zip(before, self.snapshot(), strict=True))

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(self.model))
        before = self.snapshot()
        self.router.remove_shard(shard)
        index = self.model.index(shard)
        if self.strategy == "jump" and index != len(self.model) - 1:
            self.model[index] = self.model.pop()
        else:
            self.model.remove(shard)
        after = self.snapshot()
        assert shard not in after
        if self.strategy in ("rendezvous", "ketama", "slots") or (
            self.strategy == "jump" and index == len(self.model)
        ):
            assert all(a == b for a, b in zip(before, after, strict=True) if a != shard)

    @invariant()
    def agrees_with_a_router_built_from_the_model(self) -> None:
        assert list(self.router.shards) == self.model
        if self.strategy == "slots":
            counts = Counter(self.router.slot_owners)
            assert set(counts) == set(self.model)
            assert max(counts.values()) - min(counts.values()) <= 1
            return
        fresh = HashRouter(self.model, strategy=self.strategy, maglev_size=1009)
        assert self.snapshot() == [fresh.route(k) for k in self.keys]


HashRouterMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, deadline=None
)
TestHashRouterMachine = HashRouterMachine.TestCase


def test_a_failed_add_shard_leaves_nothing_behind() -> None:
    router = HashRouter(["a", "b"], strategy="ketama")
    before = (router.shards, router.weights, [router.route(f"k{i}") for i in range(200)])
    with pytest.raises(ConfigurationError, match="weight must be a positive whole number"):
        router.add_shard("c", 1.5)
    assert (router.shards, router.weights, [router.route(f"k{i}") for i in range(200)]) == before
    router.add_shard("c")  # the same shard, valid this time
    assert router.weights == {"a": 1, "b": 1, "c": 1}
    slots = HashRouter(["a", "b"], strategy="slots")
    owners = slots.slot_owners
    with pytest.raises(ConfigurationError):
        slots.add_shard("c", float("nan"))
    assert slots.slot_owners == owners and slots.weights == {"a": 1, "b": 1}


WEIGHTED = ("rendezvous", "ketama", "maglev", "slots")
BAD_SHARDS: list[object] = [None, 1.5, ("db", 1), True, frozenset()]
BAD_WEIGHT_TYPES: list[object] = ["2", [2], True, b"2"]
BAD_WEIGHT_VALUES: list[object] = [0, -1, 1.5, float("nan"), float("inf"), 10**400, 2**32]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_add_shard_and_the_constructor_apply_one_rule_to_every_strategy(strategy: str) -> None:
    """Shard ids are str, bytes or int and weights whole numbers, whatever the strategy."""
    router = HashRouter(["a", "b"], strategy=strategy)  # type: ignore[arg-type]
    keys = [f"k{i}" for i in range(200)]
    before = (router.shards, router.weights, [router.route(k) for k in keys])
    for shard in BAD_SHARDS:
        with pytest.raises(ArgumentTypeError, match=r"shard must be a str, bytes or int"):
            router.add_shard(shard)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match=r"shard must be a str, bytes or int"):
            HashRouter(["a", shard], strategy=strategy)  # type: ignore[arg-type, list-item]
    for weight in BAD_WEIGHT_TYPES:
        with pytest.raises(ArgumentTypeError, match=r"weight must be a positive whole number"):
            router.add_shard("c", weight)  # type: ignore[arg-type]
    for weight in BAD_WEIGHT_VALUES:
        with pytest.raises(ConfigurationError, match=r"weight must be a positive whole number"):
            router.add_shard("c", weight)  # type: ignore[arg-type]
        if strategy in WEIGHTED:
            with pytest.raises(ConfigurationError, match=r"weight must be a positive whole number"):
                HashRouter(["a", "b"], strategy=strategy, weights={"a": weight})  # type: ignore[arg-type, dict-item]
    assert (router.shards, router.weights, [router.route(k) for k in keys]) == before
    if strategy in WEIGHTED:
        router.add_shard("c", 2)
        router.add_shard(7, 3.0)  # a whole float is a whole number
        assert router.weights == {"a": 1, "b": 1, "c": 2, 7: 3}
    else:
        with pytest.raises(ConfigurationError, match=f"strategy {strategy!r} does not support"):
            router.add_shard("c", 2)
        assert (router.shards, router.weights) == before[:2]
        router.add_shard("c")
        router.add_shard(7)
        assert router.shards == ("a", "b", "c", 7)
    assert {router.route(k) for k in keys} <= set(router.shards)
