"""Every strategy with slow start follows Envoy's ramp, window by window, on a fake clock.

Envoy's load balancing docs ("Slow start mode"): an endpoint's weight is
``weight * max(min_weight_percent, time_factor ** (1 / aggression))`` with
``time_factor = max(time_since_start, 1) / slow_start_window``. With four
endpoints of weight w and a fifth that just joined, the new one's share of
picks at time t is ``w * f(t) / (4 * w + w * f(t))``.

About 8 s for all five strategies at three settings (70,000 picks each).
"""

from __future__ import annotations

import heapq
import math
import random

import pytest

from scalekit.balancing import (
    Balancer,
    HealthPolicy,
    LeastRequest,
    PeakEWMA,
    RandomBalancer,
    SlowStart,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)
from scalekit.testing import FakeClock

WINDOW = 60.0
SPAN = 10.0  # seconds per measured window
PICKS = 10_000  # per measured window
RANDOMIZED = {RandomBalancer, PeakEWMA}


def envoy_factor(elapsed: float, aggression: float, min_percent: float) -> float:
    if elapsed >= WINDOW:
        return 1.0
    time_factor = max(elapsed, 1.0) / WINDOW
    return max(min_percent / 100.0, time_factor ** (1.0 / aggression))


@pytest.mark.parametrize(
    "cls",
    [RandomBalancer, SmoothWeightedRoundRobin, WeightedRoundRobin, LeastRequest, PeakEWMA],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize(
    ("weight", "aggression", "min_percent"), [(1, 1.0, 10.0), (3, 2.0, 20.0), (1, 0.5, 0.0)]
)
def test_a_new_endpoint_ramps_as_envoy_defines_it(
    cls: type[Balancer], weight: int, aggression: float, min_percent: float
) -> None:
    clock = FakeClock()
    policy = HealthPolicy(
        slow_start=SlowStart(window=WINDOW, aggression=aggression, min_weight_percent=min_percent)
    )
    lb = cls({ep: weight for ep in "abcd"}, clock=clock, rng=random.Random(7), health=policy)
    lb.add("e", weight)
    step = SPAN / PICKS
    for window in range(7):
        new = 0
        expected = 0.0
        for i in range(PICKS):
            clock.set(window * SPAN + i * step)
            f = envoy_factor(clock(), aggression, min_percent)
            expected += f / (4 + f)
            ep = lb.pick()
            new += ep == "e"
            lb.release(ep, latency=0.010)
        expected /= PICKS
        share = new / PICKS
        # A few percent of the ramp; randomized strategies also get three
        # standard deviations of binomial sampling noise.
        noise = 3 * math.sqrt(expected * (1 - expected) / PICKS) if cls in RANDOMIZED else 0.0
        assert abs(share - expected) <= 0.04 * expected + noise, (
            f"window {window}: the new endpoint had {share:.4f} of picks, "
            f"Envoy's ramp {expected:.4f}"
        )


def test_the_time_factor_counts_at_least_one_second_as_envoy_does() -> None:
    slow = SlowStart(window=WINDOW, aggression=1.0, min_weight_percent=0.0)
    assert slow.factor(0.0) == pytest.approx(1 / WINDOW)
    assert slow.factor(0.5) == pytest.approx(1 / WINDOW)
    assert slow.factor(30.0) == pytest.approx(0.5)
    assert SlowStart(window=WINDOW, aggression=2.0, min_weight_percent=0.0).factor(15.0) == (
        pytest.approx(0.5)
    )
    assert slow.factor(WINDOW) == 1.0
    # aggression 0.5 squares the time factor; min_weight_percent is a floor.
    square = SlowStart(window=WINDOW, aggression=0.5, min_weight_percent=0.0)
    assert square.factor(0.0) == pytest.approx((1 / WINDOW) ** 2)
    assert square.factor(30.0) == pytest.approx(0.25)
    floored = SlowStart(window=WINDOW, aggression=0.5, min_weight_percent=10.0)
    assert floored.factor(6.0) == pytest.approx(0.1)
    assert floored.factor(30.0) == pytest.approx(0.25)


def _share_of_a_slow_new_endpoint(slow_start: bool) -> list[float]:
    """Share of picks per 10 s window of a new endpoint answering in 2 s (others 10 ms).

    An event-driven run at 200 requests/s on a fake clock: each request
    is released with its endpoint's latency when it completes.
    """
    latency = {"a": 0.010, "b": 0.010, "c": 0.010, "d": 0.010, "e": 2.0}
    clock = FakeClock()
    policy = HealthPolicy(slow_start=SlowStart(window=WINDOW)) if slow_start else None
    lb = PeakEWMA(list("abcd"), clock=clock, rng=random.Random(1), health=policy)
    lb.add("e")
    pending: list[tuple[float, str]] = []
    shares = []
    tick = 0
    for window in range(7):
        new = total = 0
        while tick < (window + 1) * 2000:
            tick += 1
            now = tick * 0.005
            while pending and pending[0][0] <= now:
                done, ep = heapq.heappop(pending)
                clock.set(done)
                lb.release(ep, latency=latency[ep])
            clock.set(now)
            ep = lb.pick()
            total += 1
            new += ep == "e"
            heapq.heappush(pending, (now + latency[ep], ep))
        shares.append(new / total)
    return shares


def test_peak_ewma_keeps_a_ramping_endpoint_load_aware() -> None:
    # Slow start only ever takes traffic away from a new endpoint: one that
    # answers 200 times slower than its peers gets no more picks while it
    # ramps than the latency-aware pick gives it without slow start.
    without = _share_of_a_slow_new_endpoint(slow_start=False)
    with_ramp = _share_of_a_slow_new_endpoint(slow_start=True)
    for window, (plain, ramped) in enumerate(zip(without, with_ramp, strict=True)):
        assert ramped <= plain + 0.002, (
            f"window {window}: the slow new endpoint had {ramped:.4f} of picks with slow "
            f"start, {plain:.4f} without"
        )


def _peak_ewma_shares(
    weights: dict[str, int], new_weight: int, spans: list[tuple[float, float]], picks: int
) -> list[float]:
    """The new endpoint's share of picks in each (start, end) span of a fake clock."""
    clock = FakeClock()
    policy = HealthPolicy(slow_start=SlowStart(window=WINDOW))
    lb = PeakEWMA(weights, clock=clock, rng=random.Random(5), health=policy)
    lb.add("e", new_weight)
    shares = []
    for start, end in spans:
        new = 0
        for i in range(picks):
            clock.set(start + (end - start) * i / picks)
            ep = lb.pick()
            new += ep == "e"
            lb.release(ep, latency=0.010)
        shares.append(new / picks)
    return shares


@pytest.mark.parametrize(
    ("weights", "new_weight"),
    [({"a": 5, "b": 1, "c": 1, "d": 1}, 2), ({"a": 1, "b": 1, "c": 1, "d": 1}, 3)],
    ids=["5-1-1-1+2", "1-1-1-1+3"],
)
def test_peak_ewma_share_does_not_step_when_the_ramp_ends(
    weights: dict[str, int], new_weight: int
) -> None:
    # Envoy's factor is continuous at the end of the window (it reaches 1 there),
    # so the share must be too: the last 2 s of the ramp and the first 2 s after
    # it differ by what the factor changes in between (58/60 to 1, under 4%
    # relative) plus three standard deviations of sampling noise.
    picks = 20_000
    before, after = _peak_ewma_shares(
        weights, new_weight, [(WINDOW - 2.0, WINDOW - 0.001), (WINDOW, WINDOW + 2.0)], picks
    )
    noise = 3 * math.sqrt(2 * after * (1 - after) / picks)
    assert abs(after - before) <= 0.04 * after + noise, (
        f"the new endpoint had {before:.4f} of picks just before the ramp ended, "
        f"{after:.4f} just after"
    )


def _all_ramping_shares(lb: PeakEWMA[str], clock: FakeClock, picks: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(picks):
        ep = lb.pick()
        counts[ep] = counts.get(ep, 0) + 1
        clock.advance(0.001)
        lb.release(ep, latency=0.010)
    return counts


@pytest.mark.parametrize("weights", [1, 3], ids=["equal-weights", "weight-3"])
def test_peak_ewma_spreads_the_picks_when_every_available_endpoint_ramps(weights: int) -> None:
    # A rolling replacement: every endpoint is new, all at the same factor, so
    # the factor applies equally (Envoy: no skew) and P2C shares them evenly.
    clock = FakeClock()
    policy = HealthPolicy(slow_start=SlowStart(window=WINDOW))
    lb = PeakEWMA({"old": weights}, clock=clock, rng=random.Random(1), health=policy)
    for ep in ("new-1", "new-2", "new-3"):
        lb.add(ep, weights)
    lb.remove("old")
    clock.advance(WINDOW / 2)
    picks = 9_000
    counts = _all_ramping_shares(lb, clock, picks)
    noise = 3 * math.sqrt(picks * (1 / 3) * (2 / 3))
    for ep in ("new-1", "new-2", "new-3"):
        assert abs(counts.get(ep, 0) - picks / 3) <= 0.04 * picks / 3 + noise, counts


def test_peak_ewma_spreads_the_picks_when_the_only_old_endpoint_fails_its_checks() -> None:
    clock = FakeClock()
    policy = HealthPolicy(slow_start=SlowStart(window=WINDOW), panic_threshold=0)
    lb = PeakEWMA(["old"], clock=clock, rng=random.Random(2), health=policy)
    lb.add("new-1")
    lb.add("new-2")
    lb.health.set_check_result("old", False)
    clock.advance(WINDOW / 2)
    picks = 8_000
    counts = _all_ramping_shares(lb, clock, picks)
    assert "old" not in counts
    noise = 3 * math.sqrt(picks * 0.25)
    for ep in ("new-1", "new-2"):
        assert abs(counts.get(ep, 0) - picks / 2) <= 0.04 * picks / 2 + noise, counts


def _closed_loop_ramp_shares(
    new_latency: float, spans: list[tuple[float, float]], in_flight: int = 8
) -> list[float]:
    """The new endpoint's share of picks in each (start, end) span, equal weights.

    Four endpoints answer in 10 ms, the new one (added at 0 s) in
    *new_latency*, each with up to 50% jitter; *in_flight* requests are out
    at all times on a fake clock, each picked as the previous one completes.
    """
    clock = FakeClock()
    policy = HealthPolicy(slow_start=SlowStart(window=WINDOW))
    lb = PeakEWMA(list("abcd"), clock=clock, rng=random.Random(3), health=policy)
    lb.add("e")
    latency = {"a": 0.010, "b": 0.010, "c": 0.010, "d": 0.010, "e": new_latency}
    jitter = random.Random(3)
    pending: list[tuple[float, int, str, float]] = []
    for i in range(in_flight):
        ep = lb.pick()
        heapq.heappush(pending, (latency[ep] * (0.5 + jitter.random()), i, ep, 0.0))
    counts = [[0, 0] for _ in spans]
    end = spans[-1][1]
    while True:
        done, i, ep, start = heapq.heappop(pending)
        if done > end:
            break
        clock.set(done)
        lb.release(ep, latency=done - start)
        ep = lb.pick()
        for span, count in zip(spans, counts, strict=True):
            if span[0] <= done < span[1]:
                count[0] += ep == "e"
                count[1] += 1
        heapq.heappush(pending, (done + latency[ep] * (0.5 + jitter.random()), i, ep, done))
    return [new / total for new, total in counts]


@pytest.mark.parametrize(
    "new_latency", [0.005, 0.010, 0.020], ids=["2x-faster", "same", "2x-slower"]
)
def test_peak_ewma_share_does_not_step_when_the_ramp_ends_with_equal_weights(
    new_latency: float,
) -> None:
    # With equal weights, P2C gives a faster endpoint more than its peers' share
    # and a slower one less; the ramp blends into P2C over the last fifth of the
    # factor's rise, so the share reaches P2C's without a step. The last 2 s of
    # the ramp and the first 2 s after it differ by under 10% of the share
    # after plus three standard deviations of sampling noise. About 1 s.
    before, after = _closed_loop_ramp_shares(
        new_latency, [(WINDOW - 2.0, WINDOW), (WINDOW, WINDOW + 2.0)]
    )
    picks = 2.0 * 8 / 0.010  # about this many in each span
    noise = 3 * math.sqrt(2 * after * (1 - after) / picks)
    assert abs(after - before) <= 0.10 * after + noise, (
        f"the new endpoint had {before:.4f} of picks just before the ramp ended, "
        f"{after:.4f} just after"
    )
