"""RangeRouter: routing, scans, split/merge against a model, load-based split hints."""

from __future__ import annotations

import bisect
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from scalekit import ConfigurationError
from scalekit.sharding import RangeRouter

INTS = st.integers(min_value=-1000, max_value=1000)


def contains(lo: Any, hi: Any, key: Any) -> bool:
    return (lo is None or lo <= key) and (hi is None or key < hi)


def test_routes_to_half_open_ranges() -> None:
    router = RangeRouter([10, 20], ["low", "mid", "high"])
    assert [router.route(k) for k in (-5, 9, 10, 19, 20, 10**9)] == [
        "low",
        "low",
        "mid",
        "mid",
        "high",
        "high",
    ]
    assert router.ranges() == [(None, 10, "low"), (10, 20, "mid"), (20, None, "high")]
    assert router.range_of("mid") == (10, 20)
    assert RangeRouter([], ["only"]).route("anything") == "only"


def test_route_range_lists_every_shard_a_scan_visits() -> None:
    router = RangeRouter([10, 20, 30], ["a", "b", "c", "d"])
    assert router.route_range(5, 10) == ["a"]
    assert router.route_range(5, 10, inclusive=True) == ["a", "b"]
    assert router.route_range(10, 30) == ["b", "c"]
    assert router.route_range(None, 15) == ["a", "b"]
    assert router.route_range(25, None) == ["c", "d"]
    assert router.route_range(None, None) == ["a", "b", "c", "d"]
    assert router.route_range(12, 12) == [] and router.route_range(12, 12, inclusive=True) == ["b"]
    assert router.route_range(30, 10) == []


@settings(max_examples=100, deadline=None)
@given(points=st.lists(INTS, max_size=12, unique=True), keys=st.lists(INTS, min_size=1))
def test_never_routes_to_a_shard_whose_range_lacks_the_key(
    points: list[int], keys: list[int]
) -> None:
    points.sort()
    router = RangeRouter(points, [f"s{i}" for i in range(len(points) + 1)])
    ranges = {shard: (lo, hi) for lo, hi, shard in router.ranges()}
    for key in keys:
        lo, hi = ranges[router.route(key)]
        assert contains(lo, hi, key)


@settings(max_examples=100, deadline=None)
@given(points=st.lists(INTS, max_size=10, unique=True), lo=INTS, hi=INTS, inclusive=st.booleans())
def test_route_range_is_exactly_the_shards_holding_keys_in_the_interval(
    points: list[int], lo: int, hi: int, inclusive: bool
) -> None:
    points.sort()
    router = RangeRouter(points, list(range(len(points) + 1)))
    keys = range(lo, hi + 1 if inclusive else hi)
    expected = sorted({router.route(k) for k in keys})  # integer keys: the scan is enumerable
    assert router.route_range(lo, hi, inclusive=inclusive) == expected


def test_works_for_any_totally_ordered_key_type() -> None:
    router = RangeRouter([(2026, 1), (2026, 7)], ["old", "h1", "h2"])
    assert router.route((2026, 3)) == "h1"
    words = RangeRouter(["m"], ["a-l", "m-z"])
    assert words.route("kiwi") == "a-l" and words.route("mango") == "m-z"


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(ConfigurationError, match=r"shards must number len\(split_points\) \+ 1"):
        RangeRouter([1, 2], ["a", "b"])
    with pytest.raises(ConfigurationError, match="strictly increasing, got 5 before 3"):
        RangeRouter([5, 3], ["a", "b", "c"])
    with pytest.raises(ConfigurationError, match="strictly increasing, got 3 before 3"):
        RangeRouter([3, 3], ["a", "b", "c"])
    with pytest.raises(TypeError, match="one totally ordered type; cannot compare 1"):
        RangeRouter([1, "b"], ["a", "b", "c"])
    with pytest.raises(ConfigurationError, match="shards must be distinct"):
        RangeRouter([1], ["a", "a"])
    with pytest.raises(ConfigurationError, match="None is not a boundary"):
        RangeRouter([None], ["a", "b"])
    router = RangeRouter([10], ["a", "b"])
    with pytest.raises(
        TypeError,
        match=r"key 'x' \(str\) cannot be compared with split points "
        "of type int",
    ):
        router.route("x")
    with pytest.raises(TypeError, match="cannot be compared"):
        router.route_range("a", "z")
    with pytest.raises(ConfigurationError, match="already a split point"):
        router.split(10, "c")
    with pytest.raises(ConfigurationError, match="'a' is already routed to"):
        router.split(5, "a")
    with pytest.raises(ConfigurationError, match="merge needs adjacent ranges"):
        router.merge("b", "a")
    with pytest.raises(ConfigurationError, match="shard 'zz' is not routed to"):
        router.merge("a", "zz")


def test_from_ranges_accepts_a_tiling_and_rejects_overlaps_and_gaps() -> None:
    router = RangeRouter.from_ranges([(20, None, "c"), (None, 10, "a"), (10, 20, "b")])
    assert router.ranges() == [(None, 10, "a"), (10, 20, "b"), (20, None, "c")]
    with pytest.raises(ConfigurationError, match="ranges overlap: \\[None, 15\\)"):
        RangeRouter.from_ranges([(None, 15, "a"), (10, None, "b")])
    with pytest.raises(ConfigurationError, match="gap between 10 and 12"):
        RangeRouter.from_ranges([(None, 10, "a"), (12, None, "b")])
    with pytest.raises(ConfigurationError, match="exactly one range must start at None"):
        RangeRouter.from_ranges([(0, 10, "a"), (10, None, "b")])
    with pytest.raises(ConfigurationError, match="must end at None"):
        RangeRouter.from_ranges([(None, 10, "a"), (10, 20, "b")])
    with pytest.raises(ConfigurationError, match=r"range \[5, 5\) is empty"):
        RangeRouter.from_ranges([(None, 5, "a"), (5, 5, "b"), (5, None, "c")])
    with pytest.raises(ConfigurationError, match="ranges must not be empty"):
        RangeRouter.from_ranges([])
    with pytest.raises(TypeError, match="cannot compare"):
        RangeRouter.from_ranges([(None, 5, "a"), (5, "m", "b"), ("m", None, "c")])


def test_suggest_split_proposes_the_sampled_median_of_the_hottest_range() -> None:
    router = RangeRouter([1000], ["cold", "hot"], rng=random.Random(1), sample_size=200)
    rng = random.Random(2)
    for _ in range(50):
        router.record(rng.randrange(0, 1000))
    for _ in range(5000):
        router.record(rng.randrange(1000, 2000))
    assert router.load() == {"cold": 50, "hot": 5000}
    shard, key = router.suggest_split(min_requests=100)  # type: ignore[misc]
    assert shard == "hot" and 1400 <= key <= 1600
    router.split(key, "hot2")
    assert router.load()["hot"] == 0 and router.load()["hot2"] == 0
    assert router.suggest_split(min_requests=100) is None  # counts restart after a split
    router.reset_load()
    assert router.suggest_split() is None


def test_one_hot_key_cannot_be_split() -> None:
    router = RangeRouter([10], ["a", "b"], rng=random.Random(1))
    for _ in range(100):
        router.record(10)
    assert router.suggest_split() is None


class RangeRouterMachine(RuleBasedStateMachine):
    """Split and merge against a sorted list of (lower bound, shard) pairs."""

    @initialize(points=st.lists(INTS, max_size=4, unique=True))
    def start(self, points: list[int]) -> None:
        points.sort()
        self.next_id = len(points) + 1
        self.router = RangeRouter(points, [f"s{i}" for i in range(len(points) + 1)])
        self.model: list[tuple[int | None, str]] = [(None, "s0")] + [
            (p, f"s{i + 1}") for i, p in enumerate(points)
        ]

    def model_route(self, key: int) -> str:
        owner = self.model[0][1]
        for lo, shard in self.model[1:]:
            if lo is not None and lo <= key:
                owner = shard
        return owner

    @rule(at=INTS)
    def split(self, at: int) -> None:
        shard = f"s{self.next_id}"
        if any(lo == at for lo, _ in self.model):
            with pytest.raises(ConfigurationError):
                self.router.split(at, shard)
            return
        self.next_id += 1
        self.router.split(at, shard)
        bounds = [lo for lo, _ in self.model[1:]]
        self.model.insert(bisect.bisect(bounds, at) + 1, (at, shard))

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(min_value=0, max_value=len(self.model) - 2))
        self.router.merge(self.model[i][1], self.model[i + 1][1])
        del self.model[i + 1]

    @precondition(lambda self: len(self.model) > 2)
    @rule(data=st.data())
    def merge_non_adjacent_fails(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(min_value=0, max_value=len(self.model) - 3))
        with pytest.raises(ConfigurationError):
            self.router.merge(self.model[i][1], self.model[i + 2][1])

    @rule(key=INTS)
    def route(self, key: int) -> None:
        assert self.router.route(key) == self.model_route(key)

    @rule(lo=INTS, hi=INTS)
    def route_range(self, lo: int, hi: int) -> None:
        expected = (
            []
            if hi <= lo
            else sorted(
                {self.model_route(k) for k in range(lo, hi)}, key=[s for _, s in self.model].index
            )
        )
        assert self.router.route_range(lo, hi) == expected

    @invariant()
    def same_ranges(self) -> None:
        bounds = [lo for lo, _ in self.model[1:]]
        assert self.router.split_points == bounds
        assert list(self.router.shards) == [s for _, s in self.model]


RangeRouterMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestRangeRouterMachine = RangeRouterMachine.TestCase
