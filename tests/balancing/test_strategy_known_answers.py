"""Known-answer sequences: each strategy against its reference's own rules."""

from __future__ import annotations

import heapq
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.balancing import (
    LeastRequest,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)
from scalekit.balancing.peak_ewma import PENALTY
from scalekit.testing import FakeClock


def picks(lb: object, n: int) -> str:
    return "".join(str(lb.pick()) for _ in range(n))  # type: ignore[attr-defined]


# --------------------------------------------------------------- round robin


def test_round_robin_cycles_in_insertion_order_and_survives_removal() -> None:
    lb = RoundRobin(["a", "b", "c", "d"])
    assert picks(lb, 6) == "abcdab"
    lb.remove("b")  # the next would have been c
    assert picks(lb, 4) == "cdac"
    lb.add("e")
    assert picks(lb, 4) == "deac"  # e joins at the end of the ring


# -------------------------------------------------------- nginx smooth WRR


def test_swrr_nginx_documented_sequence() -> None:
    # nginx commit 52327e0627f4: weights { 5, 1, 1 } give { a, a, b, a, c, a, a }.
    lb = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    assert picks(lb, 21) == "aabacaa" * 3
    assert lb.current_weights() == {"a": 0, "b": 0, "c": 0}


def test_swrr_hand_computed_sequence_and_state() -> None:
    # current_weight by hand: (4,2,1) a (-3,2,1); (1,4,2) b (1,-3,2); (5,-1,3) a ...
    lb = SmoothWeightedRoundRobin({"a": 4, "b": 2, "c": 1})
    assert lb.pick() == "a"
    assert lb.current_weights() == {"a": -3, "b": 2, "c": 1}
    assert lb.pick() == "b"
    assert lb.current_weights() == {"a": 1, "b": -3, "c": 2}
    assert picks(lb, 5) == "acaba"
    assert lb.current_weights() == {"a": 0, "b": 0, "c": 0}


def test_swrr_ties_go_to_the_first_endpoint() -> None:
    assert picks(SmoothWeightedRoundRobin(["x", "y", "z"]), 6) == "xyzxyz"


def test_swrr_new_endpoint_starts_at_zero_and_others_keep_state() -> None:
    lb = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    assert picks(lb, 2) == "aa"
    before = lb.current_weights()
    lb.add("d", 2)
    assert lb.current_weights() == {**before, "d": 0}


# ------------------------------------------------------------ Envoy EDF WRR


def test_wrr_edf_sequence_for_5_1_1() -> None:
    # deadlines a: 1/5, 2/5, ... b and c: 1; at 1 the earlier-queued b and c go first.
    lb = WeightedRoundRobin({"a": 5, "b": 1, "c": 1}, offset=0)
    assert picks(lb, 14) == "aaaabca" * 2


def test_wrr_edf_sequence_for_3_2() -> None:
    lb = WeightedRoundRobin({"a": 3, "b": 2}, offset=0)
    assert picks(lb, 10) == "ababa" * 2
    assert lb.deadlines() == {"a": Fraction(7, 3), "b": Fraction(5, 2)}


def test_wrr_arithmetic_is_exact_where_doubles_are_not() -> None:
    # With doubles ten steps of 0.1 reach 0.9999999999999999 < 1.0, so Envoy picks
    # a ten times before b. Exactly, a's tenth deadline ties b's at 1 and b,
    # queued first, wins the tie.
    lb = WeightedRoundRobin({"a": 10, "b": 1}, offset=0)
    assert picks(lb, 11) == "a" * 9 + "b" + "a"
    assert sum([0.1] * 10) < 1.0


def test_wrr_offset_is_envoys_create_with_picks() -> None:
    # Weights a=3 b=1 c=2, 4 picks, time unit 1/6 (steps a=2, b=6, c=3).
    # Emulated picks: a floor(4*3/6)=2, minus 1 by Envoy's guard (2/3 == 4/6);
    # b 0; c floor(4*2/6)=1. Time = max(1*2, 0, 1*3) = 3; queue a@4 b@6 c@6.
    # Two picks are left: a (-> 6), then b (-> 12); next come c a a c a b.
    lb = WeightedRoundRobin({"a": 3, "b": 1, "c": 2}, offset=4)
    assert lb.deadlines() == {"a": 1, "b": 2, "c": 1}
    assert picks(lb, 8) == "caacabca"
    # Here the result equals making the four picks for real:
    fresh = WeightedRoundRobin({"a": 3, "b": 1, "c": 2}, offset=0)
    assert picks(fresh, 12) == "acab" + "caacabca"


def test_wrr_offset_zero_is_a_fresh_schedule_and_default_draws_a_seed() -> None:
    weights = {"a": 3, "b": 1, "c": 2}
    assert picks(WeightedRoundRobin(weights, offset=0), 6) == "acabca"
    seed = random.Random(99).getrandbits(32)
    expected = picks(WeightedRoundRobin(weights, offset=seed), 12)
    assert picks(WeightedRoundRobin(weights, rng=random.Random(99)), 12) == expected
    with pytest.raises(ValueError, match="offset must be a non-negative integer, got -1"):
        WeightedRoundRobin(weights, offset=-1)
    with pytest.raises(ValueError, match="offset must be a non-negative integer, got -1"):
        LeastRequest(weights, offset=-1)


def test_wrr_reweight_takes_effect_when_next_scheduled() -> None:
    lb = WeightedRoundRobin({"a": 1, "b": 1}, offset=0)
    assert picks(lb, 2) == "ab"  # a due at 2, b at 2
    lb.reweight("a", 4)  # a's queued deadline stays 2; after its turn it comes every 1/4
    assert lb.deadlines() == {"a": 2, "b": 2}
    assert picks(lb, 7) == "abaaaba"  # at 3, b (queued at 2) beats a (queued at 2.75)


# ------------------------------------------------------- Envoy least request


def test_least_request_p2c_matches_envoys_rule() -> None:
    hosts = [f"h{i}" for i in range(5)]
    lb = LeastRequest(hosts, rng=random.Random(5))
    model_rng = random.Random(5)
    active = dict.fromkeys(hosts, 0)
    for step in range(300):
        first = hosts[int(model_rng.random() * 5)]
        second = hosts[int(model_rng.random() * 5)]
        expected = second if active[second] < active[first] else first
        got = lb.pick()
        assert got == expected, step
        active[got] += 1
        if step % 3 == 2:  # release the busiest so counts keep moving
            busiest = max(active, key=lambda h: active[h])
            lb.release(busiest)
            active[busiest] -= 1


def test_least_request_many_choices_always_finds_the_idle_one() -> None:
    lb = LeastRequest(["a", "b", "c"], choice_count=64, rng=random.Random(1))
    for _ in range(3):
        lb.pick()
    lb.release("c")
    assert lb.in_flight("c") == 0
    assert lb.pick() == "c"


def test_least_request_weighted_uses_weight_over_active_plus_one() -> None:
    # EDF with weight / (active + 1), recomputed as each host is requeued:
    # a(1/2, w 2) b(1) a(1) b(2, then w 1/2) a(2, then w 2/3 -> 3.5) a(3.5) b(4).
    lb = LeastRequest({"a": 2, "b": 1}, offset=0)
    assert picks(lb, 7) == "ababaab"
    plain = LeastRequest({"a": 2, "b": 1}, offset=0, active_request_bias=0.0)
    assert picks(plain, 6) == "abaaba"


def test_least_request_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="choice_count must be a positive integer, got 0"):
        LeastRequest(["a"], choice_count=0)
    with pytest.raises(ValueError, match="active_request_bias must be a non-negative"):
        LeastRequest(["a"], active_request_bias=-1)


# ---------------------------------------------------------------- Peak EWMA


def test_peak_ewma_jumps_to_peaks_and_decays_with_tau() -> None:
    clock = FakeClock(0.0)
    lb = PeakEWMA(["a"], decay=10.0, clock=clock)
    lb.pick()
    lb.release("a", latency=0.1)
    assert lb.cost("a") == 0.1
    clock.advance(5.0)
    lb.pick()
    lb.release("a", latency=0.02)
    w = math.exp(-0.5)
    expected = 0.1 * w + 0.02 * (1 - w)
    assert lb.cost("a") == pytest.approx(expected, rel=1e-12)
    clock.advance(10.0)
    assert lb.cost("a") == pytest.approx(expected * math.exp(-1.0), rel=1e-12)
    lb.pick()
    lb.release("a", latency=0.5)  # a new peak replaces the average outright
    assert lb.cost("a") == 0.5


def test_peak_ewma_penalises_an_endpoint_with_requests_but_no_latency_yet() -> None:
    lb = PeakEWMA(["a", "b"], clock=FakeClock(0.0), rng=random.Random(3))
    first = lb.pick()
    other = "b" if first == "a" else "a"
    assert lb.pick() == other  # PENALTY + 1 against 0
    assert pytest.approx(140737.48835532, rel=1e-9) == PENALTY


def test_peak_ewma_chooses_the_lower_cost_times_pending_plus_one() -> None:
    clock = FakeClock(0.0)
    lb = PeakEWMA(["a", "b"], clock=clock, rng=random.Random(0))
    lb._in_flight["a"] += 1
    lb.release("a", latency=0.1)
    lb._in_flight["b"] += 1
    lb.release("b", latency=0.3)
    # a: 0.1 * 1 < b: 0.3 * 1
    assert lb.pick() == "a"
    assert lb.pick() == "a"  # 0.1 * 2 = 0.2 < 0.3
    assert lb.pick() == "b"  # 0.1 * 3 = 0.3 is not < 0.3 * 1: ties go to the second draw
    assert lb.pick() == "a"  # 0.3 < 0.3 * 2


# ------------------------------------------------------------------- random


def test_random_shares_follow_weights() -> None:
    lb = RandomBalancer({"a": 5, "b": 1, "c": 1}, rng=random.Random(11))
    counts = dict.fromkeys("abc", 0)
    for _ in range(70_000):
        counts[lb.pick()] += 1  # type: ignore[index]
    assert counts["a"] == pytest.approx(50_000, rel=0.02)
    assert counts["b"] == pytest.approx(10_000, rel=0.05)
    assert counts["c"] == pytest.approx(10_000, rel=0.05)


class _Scripted(random.Random):
    """A random source that returns the given values from `random()`, in order."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


def test_peak_ewma_with_unequal_weights_draws_by_weight_and_compares_load_per_unit() -> None:
    # Weights 2 and 1: the running sums are [2, 3]. A draw u picks the first
    # endpoint whose sum exceeds u * 3; the second is drawn among the others; the
    # first is kept if cost * (in_flight / weight + 1) is not higher than the
    # second's, else with probability theirs / its.
    rng = _Scripted([0.5, 0.0, 0.5, 0.9, 0.1, 0.1, 0.0, 0.85])
    lb = PeakEWMA({"a": 2, "b": 1}, clock=FakeClock(0.0), rng=rng)
    for ep, latency in (("a", 0.1), ("b", 0.06)):
        lb._in_flight[ep] += 1
        lb.release(ep, latency=latency)
    # 1.5 -> a, then b; a's 0.1 > b's 0.06: kept since 0.5 * 0.1 < 0.06.
    assert lb.pick() == "a"
    # 2.7 -> b, then a; b's 0.06 <= a's 0.1 * (1/2 + 1) = 0.15: kept outright.
    assert lb.pick() == "b"
    # 0.3 -> a, then b; a's 0.15 > b's 0.06 * 2 = 0.12, and 0.85 * 0.15 >= 0.12: b.
    assert lb.pick() == "b"
    assert rng._values == []


@pytest.mark.parametrize("in_flight", [0, 1, 8])
def test_peak_ewma_shares_follow_unequal_weights_when_latencies_match(in_flight: int) -> None:
    # docs/balancing.md: one request at a time the shares are the weights'
    # (sampling noise aside, plus 2%); with requests in flight, within 15% of them.
    lb = PeakEWMA({"a": 3, "b": 1, "c": 1}, clock=FakeClock(0.0), rng=random.Random(4))
    counts = dict.fromkeys("abc", 0)
    out: list[str] = []
    picks = 50_000
    for _ in range(picks):
        ep = lb.pick()
        counts[ep] += 1
        out.append(ep)
        if len(out) > in_flight:
            lb.release(out.pop(0), latency=0.010)
    bound = 0.02 if in_flight == 0 else 0.15
    for ep, weight in (("a", 3), ("b", 1), ("c", 1)):
        share = weight / 5
        noise = 3 * (share * (1 - share) / picks) ** 0.5
        assert abs(counts[ep] / picks - share) <= bound * share + noise, counts


def _closed_loop_shares(
    weights: dict[str, int], in_flight: int, picks: int = 20_000
) -> dict[str, float]:
    """Each endpoint's share of picks over its weight share, *in_flight* requests out.

    All endpoints answer in 10 ms plus up to 50% jitter; a request is
    released when it completes, on a fake clock, and a new one is picked.
    """
    clock = FakeClock(0.0)
    jitter = random.Random(4)
    lb = PeakEWMA(weights, clock=clock, rng=random.Random(4))
    counts = dict.fromkeys(weights, 0)
    pending: list[tuple[float, int, str, float]] = []
    for i in range(picks):
        if len(pending) >= in_flight:
            done, _, ep, start = heapq.heappop(pending)
            clock.set(done)
            lb.release(ep, latency=done - start)
        ep = lb.pick()
        counts[ep] += 1
        now = clock()
        heapq.heappush(pending, (now + 0.010 * (1 + 0.5 * jitter.random()), i, ep, now))
    total = sum(weights.values())
    return {ep: counts[ep] / picks / (w / total) for ep, w in weights.items()}


# docs/balancing.md, the shares PeakEWMA gives unequal weights whose latencies match:
# (weights, the lightest endpoints' share over their weight share: lowest, highest,
# the heaviest's lowest). Light endpoints are over-served, more so the larger the ratio.
_WEIGHTED_SHARE_BOUNDS = [
    ({"a": 2, "b": 1}, 0.75, 1.25, 0.75),
    ({"a": 3, "b": 1, "c": 1}, 0.75, 1.25, 0.75),
    ({"a": 10, "b": 1}, 1.0, 2.2, 0.85),
    ({"a": 100, "b": 1, "c": 1}, 1.0, 6.0, 0.85),
]


@pytest.mark.parametrize("in_flight", [1, 2, 4, 8])
@pytest.mark.parametrize(
    ("weights", "light_low", "light_high", "heavy_low"),
    _WEIGHTED_SHARE_BOUNDS,
    ids=["2:1", "3:1:1", "10:1", "100:1:1"],
)
def test_peak_ewma_unequal_weight_shares_stay_within_the_documented_bounds(
    weights: dict[str, int], light_low: float, light_high: float, heavy_low: float, in_flight: int
) -> None:
    # About 0.1 s per case (20,000 picks).
    ratios = _closed_loop_shares(weights, in_flight)
    heavy = max(weights, key=weights.__getitem__)
    assert ratios[heavy] >= heavy_low, ratios
    for ep, weight in weights.items():
        if weight == 1:
            assert light_low <= ratios[ep] <= light_high, ratios


def _nginx_reference(weights: dict[str, int], events: list[tuple[str, str, int]]) -> list[str]:
    """nginx's loop, literally: every peer gains its weight, the first maximum wins and pays.

    *events* are ("pick", "", 0), ("add", name, weight), ("remove", name, 0) and
    ("reweight", name, weight), applied in order.
    """
    peers = [[name, w, 0] for name, w in weights.items()]
    out = []
    for kind, name, weight in events:
        if kind == "pick":
            total, best = 0, None
            for peer in peers:
                peer[2] += peer[1]
                total += peer[1]
                if best is None or peer[2] > best[2]:
                    best = peer
            assert best is not None
            best[2] -= total
            out.append(best[0])
        elif kind == "add":
            peers.append([name, weight, 0])
        elif kind == "remove":
            peers = [p for p in peers if p[0] != name]
        else:
            next(p for p in peers if p[0] == name)[1] = weight
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=120),
    distinct=st.integers(min_value=1, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_swrr_matches_nginx_on_long_lists_and_membership_changes(
    n: int, distinct: int, seed: int
) -> None:
    """Long lists take the per-weight heap path; it must pick exactly as nginx's loop."""
    rng = random.Random(seed)
    weights = {f"e{i}": rng.randint(1, distinct) for i in range(n)}
    events: list[tuple[str, str, int]] = []
    extra = 0
    removed: set[str] = set()
    names = list(weights)
    for _ in range(600):
        roll = rng.random()
        if roll < 0.01:
            extra += 1
            events.append(("add", f"x{extra}", rng.randint(1, distinct)))
        elif roll < 0.02 and len(names) > 1:
            events.append(("remove", rng.choice(names), 0))
            removed.add(events[-1][1])
            names = [e for e in weights if e not in removed]
        elif roll < 0.03 and names:
            events.append(("reweight", rng.choice(names), rng.randint(1, distinct)))
        else:
            events.append(("pick", "", 0))
    lb = SmoothWeightedRoundRobin(weights)
    got = []
    for kind, name, weight in events:
        if kind == "pick":
            got.append(lb.pick())
            lb.release(got[-1])
        elif kind == "add":
            lb.add(name, weight)
        elif kind == "remove":
            lb.remove(name)
        else:
            lb.reweight(name, weight)
    assert got == _nginx_reference(weights, events)
