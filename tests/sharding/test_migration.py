"""Migration plans between routers (the live move is in test_resharding.py)."""

from __future__ import annotations

import pytest

from scalekit import ConfigurationError
from scalekit.sharding import HashRouter, RangeRouter, TimeRouter


def test_range_plan_lists_the_moving_ranges() -> None:
    old = RangeRouter([10, 20], ["a", "b", "c"])
    new = RangeRouter([10, 15, 20], ["a", "b", "d", "c"])
    plan = old.plan_to(new)
    assert [(m.source, m.target, m.ranges) for m in plan.moves] == [("b", "d", ((15, 20),))]
    assert plan.fraction is None and plan.exact
    assert plan.moved(17) and not plan.moved(12)
    sampled = old.plan_to(new, sample=range(0, 30))
    assert sampled.fraction == pytest.approx(5 / 30) and not sampled.exact
    merged = RangeRouter([20], ["a", "c"])
    plan = old.plan_to(merged)
    assert [(m.source, m.target, m.ranges) for m in plan.moves] == [("b", "a", ((10, 20),))]
    shifted = RangeRouter([5, 25], ["a", "b", "c"])
    plan = old.plan_to(shifted)
    assert {(m.source, m.target, m.ranges) for m in plan.moves} == {
        ("a", "b", ((5, 10),)),
        ("c", "b", ((20, 25),)),
    }


def test_plan_between_unrelated_routers_needs_a_sample() -> None:
    ranges = RangeRouter(["m"], ["a", "b"])
    hashed = HashRouter(["a", "b"])
    with pytest.raises(ConfigurationError, match="pass sample="):
        ranges.plan_to(hashed)
    plan = ranges.plan_to(hashed, sample=[f"k{i}" for i in range(1000)])
    assert not plan.exact and plan.fraction is not None and 0.3 < plan.fraction < 0.7


def test_time_routers_compare_by_sample() -> None:
    from datetime import datetime, timedelta, timezone

    months = TimeRouter("month", "o_{:%Y_%m}")
    days = TimeRouter("day", "o_{:%Y_%m_%d}")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sample = [start + timedelta(hours=h) for h in range(0, 24 * 60, 7)]
    assert months.plan_to(days, sample=sample).fraction == 1.0
