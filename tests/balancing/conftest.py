"""Every strategy, as a factory, for the balancing conformance tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.balancing import (
    Balancer,
    ConsistentHashBalancer,
    LeastRequest,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)

STRATEGIES: list[type[Balancer]] = [
    RoundRobin,
    RandomBalancer,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
    LeastRequest,
    PeakEWMA,
    ConsistentHashBalancer,
]

Factory = Callable[..., Balancer]


@pytest.fixture(params=STRATEGIES, ids=lambda cls: cls.__name__)
def make(request: pytest.FixtureRequest) -> Factory:
    """Build the parametrized strategy with a seeded rng unless one is given."""
    cls = request.param

    def factory(endpoints: Any, **kwargs: Any) -> Balancer:
        kwargs.setdefault("rng", random.Random(1234))
        return cls(endpoints, **kwargs)  # type: ignore[no-any-return]

    return factory
