"""Hypothesis: exact shares per cycle, shares kept after membership changes, a model machine."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from scalekit.balancing import (
    Balancer,
    HealthPolicy,
    LeastRequest,
    OutlierDetection,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)
from scalekit.exceptions import NoAvailableEndpointError
from scalekit.testing import FakeClock

WEIGHTS = st.dictionaries(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=12),
    min_size=1,
    max_size=7,
)
CYCLIC = st.sampled_from(["swrr", "wrr"])


def build(kind: str, weights: dict[Hashable, int], offset: int = 0) -> Balancer:
    if kind == "swrr":
        return SmoothWeightedRoundRobin(weights)
    return WeightedRoundRobin(weights, offset=offset)


def exact_from(
    sequence: list[Hashable], weights: dict[Hashable, int], start: int, blocks: int
) -> bool:
    total = sum(weights.values())
    for b in range(blocks):
        block = Counter(sequence[start + b * total : start + (b + 1) * total])
        if block != Counter(weights):
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(kind=CYCLIC, weights=WEIGHTS, cycles=st.integers(min_value=1, max_value=3))
def test_every_full_cycle_from_the_start_has_exact_shares(
    kind: str, weights: dict[Hashable, int], cycles: int
) -> None:
    lb = build(kind, weights)
    total = sum(weights.values())
    sequence = [lb.pick() for _ in range(total * cycles)]
    assert exact_from(sequence, weights, 0, cycles)


@settings(max_examples=150, deadline=None)
@given(weights=WEIGHTS, offset=st.integers(min_value=0, max_value=2**32 - 1))
def test_envoy_start_offset_keeps_exact_cycles(weights: dict[Hashable, int], offset: int) -> None:
    lb = build("wrr", weights, offset)
    total = sum(weights.values())
    sequence = [lb.pick() for _ in range(total * 6)]
    assert any(exact_from(sequence, weights, start, 3) for start in range(total + 1))


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "reweight"]),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=0, max_value=25),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=CYCLIC, weights=WEIGHTS, ops=OPS)
def test_after_membership_changes_every_cycle_has_exact_shares(
    kind: str, weights: dict[Hashable, int], ops: list[tuple[str, int, int, int]]
) -> None:
    lb = build(kind, weights)
    model = dict(weights)
    for op, ident, weight, picks_before in ops:
        for _ in range(picks_before):
            lb.pick()
        if op == "add" and ident not in model:
            lb.add(ident, weight)
            model[ident] = weight
        elif op == "remove" and ident in model and len(model) > 1:
            lb.remove(ident)
            del model[ident]
        elif op == "reweight" and ident in model:
            lb.reweight(ident, weight)
            model[ident] = weight
    total = sum(model.values())
    sequence = [lb.pick() for _ in range(total * 7)]
    # The schedule settles within two cycles; from then on each cycle is exact.
    assert any(exact_from(sequence, model, start, 3) for start in range(2 * total + 1))


class MembershipMachine(RuleBasedStateMachine):
    """Any strategy against a dict of weights and a Counter of requests in flight."""

    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.lb: Balancer
        self.weights: dict[Hashable, int] = {}
        self.flying: Counter[Hashable] = Counter()
        self.next_id = 100

    @initialize(
        cls=st.sampled_from(
            [
                RoundRobin,
                RandomBalancer,
                SmoothWeightedRoundRobin,
                WeightedRoundRobin,
                LeastRequest,
                PeakEWMA,
            ]
        ),
        weights=WEIGHTS,
        seed=st.integers(0, 2**16),
        panic=st.sampled_from([None, 0.0, 50.0]),
    )
    def start(
        self, cls: type[Balancer], weights: dict[Hashable, int], seed: int, panic: float | None
    ) -> None:
        self.clock = FakeClock(0.0)
        self.policy = None
        if panic is not None:
            outlier = OutlierDetection(
                consecutive_failures=2,
                max_ejection_percent=100,
                success_rate_stdev_factor=None,
            )
            self.policy = HealthPolicy(outlier=outlier, panic_threshold=panic)
        self.lb = cls(weights, rng=random.Random(seed), clock=self.clock, health=self.policy)
        self.weights = dict(weights)

    @rule(seconds=st.floats(0, 40))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def checked_pick(self) -> Hashable:
        """Pick, checking the result against health: None when nothing may be picked."""
        if self.policy is None:
            ep = self.lb.pick()
            assert ep in self.weights
            self.flying[ep] += 1
            return ep
        available = self.policy.available()
        panicking = len(available) * 100 < self.policy.panic_threshold * len(self.weights)
        if not available and not panicking:
            try:
                self.lb.pick()
            except NoAvailableEndpointError:
                return None
            raise AssertionError("picked although every endpoint is out and panic is off")
        ep = self.lb.pick()
        assert ep in self.weights
        if not panicking:
            assert ep in available, (ep, available)
        self.flying[ep] += 1
        return ep

    @precondition(lambda self: bool(self.weights))
    @rule(target=held)
    def pick(self) -> Hashable:
        return self.checked_pick()

    @precondition(lambda self: bool(self.weights))
    @rule(times=st.integers(1, 8))
    def pick_and_fail(self, times: int) -> None:
        for _ in range(times):
            ep = self.checked_pick()
            if ep is None:
                return
            self.lb.release(ep, latency=0.001, ok=False)
            self.flying[ep] -= 1

    @rule(ep=held, latency=st.floats(0, 2), ok=st.booleans())
    def release(self, ep: Hashable, latency: float, ok: bool) -> None:
        if ep is None:
            return
        if self.flying[ep] > 0:
            self.lb.release(ep, latency=latency, ok=ok)
            self.flying[ep] -= 1
        else:
            try:
                self.lb.release(ep)
            except ValueError:
                pass
            else:
                raise AssertionError(f"released {ep!r} with nothing in flight")

    @rule(weight=st.integers(1, 9))
    def add(self, weight: int) -> None:
        self.lb.add(self.next_id, weight)
        self.weights[self.next_id] = weight
        self.next_id += 1

    @precondition(lambda self: bool(self.weights))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        ep = data.draw(st.sampled_from(sorted(self.weights)))
        self.lb.remove(ep)
        del self.weights[ep]

    @precondition(lambda self: bool(self.weights))
    @rule(data=st.data(), weight=st.integers(1, 9))
    def reweight(self, data: st.DataObject, weight: int) -> None:
        ep = data.draw(st.sampled_from(sorted(self.weights)))
        self.lb.reweight(ep, weight)
        self.weights[ep] = weight

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "lb"):
            return
        assert self.lb.endpoints == self.weights
        assert self.lb.in_flight() == sum(self.flying.values())
        for ep, count in self.flying.items():
            assert self.lb.in_flight(ep) == count


MembershipMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None
)
test_membership_machine = MembershipMachine.TestCase
