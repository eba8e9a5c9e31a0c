"""A discrete-event simulator that drives the real balancers with an injected clock.

Requests arrive as a Poisson process; each endpoint is a FIFO queue with a
number of workers (or unlimited workers: a pure delay) and a service-time
distribution; an endpoint may be slow or may fail fast. The balancer under
test is the real scalekit class: ``pick()`` on arrival, ``release(ep,
latency=, ok=)`` on completion, with ``clock=`` reading simulated time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from scalekit.balancing import Balancer
from scalekit.exceptions import NoAvailableEndpointError

Sampler = Callable[[random.Random], float]


def service_time(dist: str, mean: float, sigma: float = 1.0) -> Sampler:
    """A sampler of service times in seconds with the given mean."""
    if dist == "exponential":
        rate = 1.0 / mean
        return lambda rng: rng.expovariate(rate)
    if dist == "lognormal":
        mu = math.log(mean) - sigma * sigma / 2.0
        return lambda rng: rng.lognormvariate(mu, sigma)
    if dist == "constant":
        return lambda rng: mean
    raise ValueError(f"dist must be exponential, lognormal or constant, got {dist!r}")


@dataclass
class EndpointModel:
    """One simulated backend."""

    name: str
    service: Sampler
    workers: int | None  # None: unlimited, the endpoint is a pure delay
    error_rate: float = 0.0  # share of requests that fail
    fail_latency: float | None = None  # failures answer after this long (fail fast)


@dataclass
class Scenario:
    """Endpoints, an arrival rate and how many requests to send."""

    name: str
    endpoints: list[EndpointModel]
    rate: float
    requests: int


@dataclass
class Result:
    """What one balancer did in one scenario."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0  # failed requests, including those no endpoint could take
    unavailable: int = 0  # picks that raised NoAvailableEndpointError
    late_errors: int = 0  # errors in the second half of the run
    late_requests: int = 0
    share: dict[str, int] = field(default_factory=dict)
    first_ejection: float | None = None  # simulated time the failing endpoint was ejected
    failures_before_ejection: int = 0
    duration: float = 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of all request latencies, in seconds."""
        ordered = self.sorted()
        index = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
        return ordered[index]

    def sorted(self) -> list[float]:
        cached: list[float] | None = getattr(self, "_sorted", None)
        if cached is None or len(cached) != len(self.latencies):
            cached = sorted(self.latencies)
            self._sorted = cached
        return cached

    @property
    def error_rate(self) -> float:
        return self.errors / max(1, len(self.latencies) + self.unavailable)

    @property
    def late_error_rate(self) -> float:
        return self.late_errors / max(1, self.late_requests)


class SimClock:
    """Simulated seconds; the balancer reads it through ``clock=``."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(
    scenario: Scenario,
    make_balancer: Callable[[SimClock, random.Random], Balancer],
    *,
    seed: int,
    watch: str | None = None,
) -> Result:
    """Run *scenario* through the balancer *make_balancer* builds; return the result.

    *watch* names an endpoint whose first ejection (by the balancer's health
    policy) is recorded with the number of its failures before it.
    """
    rng = random.Random(seed)
    clock = SimClock()
    lb = make_balancer(clock, random.Random(seed + 1))
    models = {m.name: m for m in scenario.endpoints}
    busy = dict.fromkeys(models, 0)
    queues: dict[str, deque[float]] = {name: deque() for name in models}
    result = Result(share=dict.fromkeys(models, 0))
    events: list[tuple[float, int, int, str, float, bool]] = []  # time, seq, kind, ep, t0, ok
    seq = 0
    arrivals = 0
    half = scenario.requests // 2
    health = lb.health

    def start(name: str, arrived: float) -> None:
        nonlocal seq
        model = models[name]
        busy[name] += 1
        ok = not (model.error_rate and rng.random() < model.error_rate)
        if not ok and model.fail_latency is not None:
            duration = model.fail_latency
        else:
            duration = model.service(rng)
        seq += 1
        heapq.heappush(events, (clock.now + duration, seq, 1, name, arrived, ok))

    heapq.heappush(events, (rng.expovariate(scenario.rate), 0, 0, "", 0.0, True))
    while events:
        now, _, kind, name, arrived, ok = heapq.heappop(events)
        clock.now = now
        if kind == 0:  # an arrival
            arrivals += 1
            if arrivals < scenario.requests:
                seq += 1
                heapq.heappush(
                    events, (now + rng.expovariate(scenario.rate), seq, 0, "", 0.0, True)
                )
            try:
                ep = str(lb.pick())
            except NoAvailableEndpointError:
                # A failed request, not a 0 ms one: it adds no latency sample.
                result.errors += 1
                result.unavailable += 1
                if arrivals > half:
                    result.late_requests += 1
                    result.late_errors += 1
                continue
            result.share[ep] += 1
            model = models[ep]
            if model.workers is None or busy[ep] < model.workers:
                start(ep, now)
            else:
                queues[ep].append(now)
            continue
        # a completion
        latency = now - arrived
        lb.release(name, latency=latency, ok=ok)
        result.latencies.append(latency)
        late = len(result.latencies) > half
        if late:
            result.late_requests += 1
        if not ok:
            result.errors += 1
            if late:
                result.late_errors += 1
            if name == watch and result.first_ejection is None and health is not None:
                result.failures_before_ejection += 1
                if name in health.ejected():
                    result.first_ejection = now
        busy[name] -= 1
        if queues[name]:
            start(name, queues[name].popleft())
    result.duration = clock.now
    return result
