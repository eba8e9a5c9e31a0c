"""Edges of membership and input: what the table can hash, bad keys, bad latencies, caps."""

from __future__ import annotations

import math
import random

import pytest

from scalekit import ArgumentTypeError, ConfigurationError
from scalekit.balancing import (
    ConsistentHashBalancer,
    HealthPolicy,
    OutlierDetection,
    PeakEWMA,
    RoundRobin,
)
from scalekit.testing import FakeClock

from .conftest import Factory


@pytest.mark.parametrize("table", ["ring", "maglev"])
def test_host_port_tuples_are_endpoints_hashed_as_host_colon_port(table: str) -> None:
    lb = ConsistentHashBalancer([("10.0.0.1", 80), ("10.0.0.2", 80)], table=table, maglev_size=251)
    lb.add(("10.0.0.3", 80))
    named = ConsistentHashBalancer(
        ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], table=table, maglev_size=251
    )
    for i in range(300):
        ep = lb.pick(f"user:{i}")
        assert isinstance(ep, tuple)
        assert f"{ep[0]}:{ep[1]}" == named.lookup(f"user:{i}")
        lb.release(ep)
    assert lb.in_flight() == 0


@pytest.mark.parametrize("table", ["ring", "maglev"])
def test_endpoints_the_table_cannot_tell_apart_are_refused_on_add(table: str) -> None:
    lb = ConsistentHashBalancer(["1", "b"], table=table, maglev_size=7)
    with pytest.raises(ConfigurationError, match="same name"):
        lb.add(1)
    with pytest.raises(ArgumentTypeError, match="cannot be hashed stably"):
        lb.add(1.5)
    assert lb.endpoints == {"1": 1, "b": 1}
    assert lb.pick("k") in ("1", "b")  # still picks: nothing was left behind
    with pytest.raises(ConfigurationError, match="same name"):
        ConsistentHashBalancer([("a", 1), "a:1"], table=table)
    with pytest.raises(ArgumentTypeError, match="cannot be hashed stably"):
        ConsistentHashBalancer([object()], table=table)


def test_more_endpoints_than_maglev_entries_are_refused() -> None:
    lb = ConsistentHashBalancer([f"e{i}" for i in range(7)], table="maglev", maglev_size=7)
    with pytest.raises(ConfigurationError, match="maglev_size 7"):
        lb.add("e7")
    with pytest.raises(ConfigurationError, match="maglev_size 7"):
        ConsistentHashBalancer([f"e{i}" for i in range(8)], table="maglev", maglev_size=7)
    assert lb.pick("k") in lb


@pytest.mark.parametrize("factor", [None, 1.25])
def test_a_pick_with_a_bad_key_counts_nothing_in_flight(factor: float | None) -> None:
    lb = ConsistentHashBalancer(["a", "b", "c"], balance_factor=factor)
    for _ in range(3):
        with pytest.raises(TypeError):
            lb.pick(1.5)  # type: ignore[arg-type]
    assert lb.in_flight() == 0 and lb._live == 0
    ep = lb.pick("user:1")
    assert lb._live == 1
    lb.release(ep)
    assert lb._live == 0


def test_the_ejection_multiplier_stops_growing_as_envoys_does() -> None:
    clock = FakeClock()
    outlier = OutlierDetection(
        consecutive_failures=1,
        base_ejection_time=10,
        max_ejection_time=30,
        interval=1,
        max_ejection_percent=100,
        success_rate_stdev_factor=None,
    )
    policy = HealthPolicy(outlier=outlier, panic_threshold=0)
    lb = RoundRobin(["a", "b"], clock=clock, health=policy)
    multipliers, spans = [], []
    for _ in range(6):
        while "a" in policy.ejected():  # wait the ejection out on the fake clock
            clock.advance(1)
        ep = lb.pick()
        while ep != "a":
            lb.release(ep)
            ep = lb.pick()
        lb.release("a", ok=False)  # one failure ejects it again at once
        multipliers.append(policy.ejection_count("a"))
        spans.append(policy.ejected()["a"] - clock())
    # Envoy raises the multiplier only while multiplier * base < max + base.
    assert multipliers == [1, 2, 3, 4, 4, 4]
    assert spans == [10, 20, 30, 30, 30, 30]


def test_max_ejection_time_below_base_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_ejection_time"):
        OutlierDetection(base_ejection_time=30, max_ejection_time=10)


def test_a_release_with_a_bad_latency_leaves_the_request_in_flight(make: Factory) -> None:
    lb = make(["a", "b"], rng=random.Random(3))
    ep = lb.pick("k")
    for bad in (math.nan, -1.0, math.inf, "fast", 10**400, -(10**5000)):
        with pytest.raises((ConfigurationError, ArgumentTypeError), match="latency"):
            lb.release(ep, latency=bad)  # type: ignore[arg-type]
        assert lb.in_flight(ep) == 1 and lb.in_flight() == 1
    lb.release(ep, latency=0.01)
    assert lb.in_flight() == 0


def test_peak_ewma_refuses_a_total_weight_its_float_draw_cannot_hold() -> None:
    # The weighted draw keeps running sums of the weights as floats: past
    # 2**53 in total they round, and an endpoint's interval can vanish.
    with pytest.raises(
        ConfigurationError, match=r"total weight must be at most 2\*\*53, got 9007199254740993"
    ):
        PeakEWMA({"a": 2**53, "b": 1})
    lb = PeakEWMA({"a": 2**53 - 1, "b": 1})
    with pytest.raises(ConfigurationError, match=r"total weight .*9007199254740993.*'c'"):
        lb.add("c")
    assert lb.endpoints == {"a": 2**53 - 1, "b": 1}
    with pytest.raises(ConfigurationError, match=r"total weight .*9007199254740994.*'b'"):
        lb.reweight("b", 3)
    assert lb.endpoints == {"a": 2**53 - 1, "b": 1}
    lb.reweight("a", 2**53 - 2)
    lb.add("c")
    assert {lb.pick() for _ in range(200)} >= {"a"}
