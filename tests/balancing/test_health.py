"""Outlier ejection, active checks, slow start and panic: timelines on a fake clock."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from scalekit.balancing import (
    ActiveHealthChecker,
    Balancer,
    ConsistentHashBalancer,
    HealthPolicy,
    LeastRequest,
    OutlierDetection,
    PeakEWMA,
    RandomBalancer,
    RoundRobin,
    SlowStart,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
)
from scalekit.exceptions import ConfigurationError, NoAvailableEndpointError
from scalekit.testing import FakeClock

Factory = Callable[..., Balancer]
STRATEGIES: list[type[Balancer]] = [
    RoundRobin,
    RandomBalancer,
    SmoothWeightedRoundRobin,
    WeightedRoundRobin,
    LeastRequest,
    PeakEWMA,
]


def detection(**kwargs: object) -> OutlierDetection:
    settings: dict[str, object] = {
        "consecutive_failures": 3,
        "base_ejection_time": 30.0,
        "interval": 10.0,
        "max_ejection_percent": 100.0,
        "success_rate_stdev_factor": None,
    }
    settings.update(kwargs)
    return OutlierDetection(**settings)  # type: ignore[arg-type]


def fail(lb: Balancer, ep: str, times: int) -> None:
    for _ in range(times):
        lb._in_flight[ep] += 1
        lb.release(ep, latency=0.001, ok=False)


def picked(lb: Balancer, n: int) -> Counter[object]:
    counts: Counter[object] = Counter()
    for _ in range(n):
        ep = lb.pick()
        counts[ep] += 1
        lb.release(ep, latency=0.001)
    return counts


def test_consecutive_failures_eject_for_base_time_times_ejections() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(), panic_threshold=0)
    lb = RoundRobin(["a", "b", "c"], clock=clock, health=policy)
    clock.set(1.0)
    fail(lb, "a", 2)
    assert policy.ejected() == {}
    fail(lb, "a", 1)
    assert policy.ejected() == {"a": 31.0}
    assert policy.ejection_count("a") == 1
    assert set(picked(lb, 20)) == {"b", "c"}
    clock.set(35.0)  # time is up, but Envoy brings it back at the next interval tick
    assert set(picked(lb, 20)) == {"b", "c"}
    clock.set(40.0)
    assert set(picked(lb, 30)) == {"a", "b", "c"}
    clock.set(41.0)
    fail(lb, "a", 3)  # ejected again before a tick lowered the multiplier: 2 x 30 s
    assert policy.ejected() == {"a": 101.0}
    clock.set(100.0)
    assert "a" not in picked(lb, 20)
    clock.set(110.0)
    assert "a" in picked(lb, 20)
    assert policy.ejection_count("a") == 2
    clock.set(120.0)
    lb.pick()
    assert policy.ejection_count("a") == 1  # healthy at a tick: the multiplier falls
    clock.set(130.0)
    lb.pick()
    assert policy.ejection_count("a") == 0


def test_ejection_time_is_capped_and_success_resets_the_count() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(max_ejection_time=45.0), panic_threshold=0)
    lb = RoundRobin(["a", "b"], clock=clock, health=policy)
    fail(lb, "a", 2)
    lb._in_flight["a"] += 1
    lb.release("a", ok=True)
    fail(lb, "a", 2)
    assert policy.ejected() == {}
    fail(lb, "a", 1)
    assert policy.ejected() == {"a": 30.0}
    clock.set(30.0)
    lb.pick()
    fail(lb, "a", 3)
    assert policy.ejected() == {"a": 75.0}  # min(2 x 30, 45)


def test_max_ejection_percent_refuses_ejections_but_always_allows_one() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(max_ejection_percent=25.0), panic_threshold=0)
    lb = RoundRobin(["a", "b", "c", "d"], clock=clock, health=policy)
    fail(lb, "a", 3)
    fail(lb, "b", 3)
    assert set(policy.ejected()) == {"a"}
    tiny = HealthPolicy(outlier=detection(max_ejection_percent=0.0), panic_threshold=0)
    lb2 = RoundRobin(["a", "b", "c"], clock=clock, health=tiny)
    fail(lb2, "c", 3)
    fail(lb2, "b", 3)
    assert set(tiny.ejected()) == {"c"}


def test_success_rate_ejects_below_mean_minus_stdev_factor_stdev() -> None:
    clock = FakeClock(0.0)
    outlier = detection(
        consecutive_failures=None,
        success_rate_stdev_factor=1.9,
        success_rate_minimum_hosts=5,
        success_rate_request_volume=10,
    )
    policy = HealthPolicy(outlier=outlier, panic_threshold=0)
    hosts = ["a", "b", "c", "d", "e", "f"]
    lb = RoundRobin(hosts, clock=clock, health=policy)
    for i in range(120):  # 20 each; f fails every other request
        ep = lb.pick()
        lb.release(ep, ok=not (ep == "f" and i % 2))
    # rates 100 x5 and 50: mean 91.67, stdev 18.63, threshold 56.27 > 50
    assert policy.ejected() == {}
    clock.set(10.0)
    lb.pick()
    assert policy.ejected() == {"f": 40.0}


def test_success_rate_needs_enough_hosts_with_enough_volume() -> None:
    clock = FakeClock(0.0)
    outlier = detection(
        consecutive_failures=None,
        success_rate_stdev_factor=1.9,
        success_rate_minimum_hosts=5,
        success_rate_request_volume=30,
    )
    policy = HealthPolicy(outlier=outlier, panic_threshold=0)
    lb = RoundRobin(["a", "b", "c", "d", "e", "f"], clock=clock, health=policy)
    for i in range(120):  # only 20 each: below the volume, nobody is judged
        ep = lb.pick()
        lb.release(ep, ok=not (ep == "f" and i % 2))
    clock.set(10.0)
    lb.pick()
    assert policy.ejected() == {}


def test_panic_threshold_uses_everything_when_too_few_are_healthy() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(), panic_threshold=50.0)
    lb = RoundRobin(["a", "b", "c", "d"], clock=clock, health=policy)
    fail(lb, "a", 3)
    fail(lb, "b", 3)
    assert set(picked(lb, 40)) == {"c", "d"}  # 50% healthy is not below 50%
    fail(lb, "c", 3)
    assert set(picked(lb, 40)) == {"a", "b", "c", "d"}  # 25%: panic, all of them


def test_no_available_endpoint_says_why() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(), panic_threshold=0)
    lb = RoundRobin(["a", "b"], clock=clock, health=policy)
    fail(lb, "a", 3)
    policy.set_check_result("b", False)
    with pytest.raises(NoAvailableEndpointError) as info:
        lb.pick()
    message = str(info.value)
    assert "'a' ejected until 30 (3 consecutive failures)" in message
    assert "'b' failing active health checks" in message
    assert "panic threshold is 0%" in message


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.__name__)
def test_every_strategy_skips_ejected_endpoints(cls: type[Balancer]) -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(), panic_threshold=0)
    lb = cls({"a": 2, "b": 1, "c": 3}, clock=clock, rng=random.Random(4), health=policy)
    fail(lb, "c", 3)
    counts = picked(lb, 300)
    assert set(counts) == {"a", "b"}
    clock.set(30.0)
    assert set(picked(lb, 300)) == {"a", "b", "c"}


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.__name__)
def test_eight_threads_with_health(cls: type[Balancer]) -> None:
    policy = HealthPolicy(outlier=detection(consecutive_failures=4), panic_threshold=30)
    lb = cls({f"e{i}": 1 + i % 2 for i in range(6)}, rng=random.Random(2), health=policy)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(1500):
            with_ep = lb.pick()
            lb.release(with_ep, latency=rng.random() / 100, ok=rng.random() > 0.2)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lb.in_flight() == 0


def test_slow_start_factor_follows_envoys_formula() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(slow_start=SlowStart(window=10.0, aggression=2.0, min_weight_percent=40))
    lb = WeightedRoundRobin(["a"], clock=clock, health=policy)
    lb.add("b")
    assert policy.slow_start_factor("a") == 1.0
    assert policy.slow_start_factor("b") == pytest.approx(0.4)  # the floor over (1/10) ** (1/2)
    clock.set(0.5)
    assert policy.slow_start_factor("b") == pytest.approx(0.4)
    clock.set(2.5)
    assert policy.slow_start_factor("b") == pytest.approx(0.5)  # (0.25) ** (1 / 2)
    clock.set(4.9)
    assert policy.slow_start_factor("b") == pytest.approx(0.7)  # (0.49) ** (1 / 2)
    clock.set(10.0)
    assert policy.slow_start_factor("b") == 1.0


def test_slow_start_scales_the_weight_in_smooth_wrr() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(slow_start=SlowStart(window=10.0))
    lb = SmoothWeightedRoundRobin({"a": 10, "b": 10}, clock=clock, health=policy)
    lb.add("c", 10)
    clock.set(5.0)  # factor 0.5: effective weights 10, 10, 5
    assert Counter(lb.pick() for _ in range(25)) == {"a": 10, "b": 10, "c": 5}
    clock.set(10.0)
    assert Counter(lb.pick() for _ in range(30)) == {"a": 10, "b": 10, "c": 10}


@pytest.mark.parametrize("cls", [RandomBalancer, LeastRequest])
def test_slow_start_holds_a_new_endpoint_back(cls: type[Balancer]) -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(slow_start=SlowStart(window=100.0, min_weight_percent=5))
    lb = cls(["a", "b", "c"], clock=clock, rng=random.Random(8), health=policy)
    lb.add("new")
    clock.set(10.0)  # factor 0.1
    counts = picked(lb, 4000)
    assert counts["new"] < 0.1 * counts["a"] + 60


def test_active_checks_take_out_and_bring_back_with_thresholds() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(slow_start=SlowStart(window=10.0), panic_threshold=0)
    lb = WeightedRoundRobin(["a", "b", "c"], clock=clock, health=policy)
    healthy = {"a": True, "b": True, "c": True}
    checker = ActiveHealthChecker(
        lb, lambda ep: healthy[ep], unhealthy_threshold=2, healthy_threshold=2
    )
    healthy["b"] = False
    checker.run_once()
    assert policy.available() == ["a", "b", "c"]
    checker.run_once()
    assert policy.available() == ["a", "c"]
    healthy["b"] = True
    checker.run_once()
    assert policy.available() == ["a", "c"]
    checker.run_once()
    assert policy.available() == ["a", "b", "c"]
    assert policy.slow_start_factor("b") == pytest.approx(0.1)  # back: slow start again


def test_a_passing_check_unejects_an_outlier() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(outlier=detection(), panic_threshold=0)
    lb = RoundRobin(["a", "b"], clock=clock, health=policy)
    fail(lb, "a", 3)
    checker = ActiveHealthChecker(lb, lambda ep: True)
    checker.run_once()
    assert policy.ejected() == {}


def test_a_raising_check_counts_as_failing() -> None:
    policy = HealthPolicy(panic_threshold=0)
    lb = RoundRobin(["a", "b"], health=policy)

    def check(ep: object) -> bool:
        if ep == "a":
            raise ConnectionError("refused")
        return True

    checker = ActiveHealthChecker(lb, check, unhealthy_threshold=1)
    checker.run_once()
    assert policy.available() == ["b"]


def test_async_checks_with_timeout() -> None:
    policy = HealthPolicy(panic_threshold=0)
    lb = RoundRobin(["fast", "slow"], health=policy)

    async def check(ep: object) -> bool:
        if ep == "slow":
            await asyncio.sleep(5)
        return True

    checker = ActiveHealthChecker(lb, check, timeout=0.05, unhealthy_threshold=1)
    asyncio.run(checker.run_once_async())
    assert policy.available() == ["fast"]

    async def run_task() -> None:
        task = asyncio.create_task(checker.run())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run_task())
    with pytest.raises(ConfigurationError, match="check is async"):
        checker.run_once()


def test_background_thread_checks_until_stopped() -> None:
    policy = HealthPolicy(panic_threshold=0)
    lb = RoundRobin(["a", "b"], health=policy)
    down = threading.Event()
    checker = ActiveHealthChecker(
        lb, lambda ep: not (ep == "b" and down.is_set()), interval=0.01, unhealthy_threshold=1
    )
    checker.start()
    try:
        down.set()
        deadline = time.monotonic() + 5
        while policy.available() != ["a"] and time.monotonic() < deadline:
            time.sleep(0.005)
        assert policy.available() == ["a"]
    finally:
        checker.stop(timeout=5)
    with pytest.raises(ConfigurationError, match="health=HealthPolicy"):
        ActiveHealthChecker(RoundRobin(["a"]), lambda ep: True)


def test_bad_health_settings() -> None:
    with pytest.raises(ConfigurationError, match="consecutive_failures must be a positive"):
        OutlierDetection(consecutive_failures=0)
    with pytest.raises(ConfigurationError, match="max_ejection_percent must be a percentage"):
        OutlierDetection(max_ejection_percent=150)
    with pytest.raises(ConfigurationError, match="window must be a positive"):
        SlowStart(window=0)
    with pytest.raises(ConfigurationError, match="panic_threshold must be a percentage"):
        HealthPolicy(panic_threshold=101)
    policy = HealthPolicy()
    RoundRobin(["a"], health=policy)
    with pytest.raises(ConfigurationError, match="serves one balancer"):
        RoundRobin(["b"], health=policy)


@pytest.mark.parametrize("cls", [RoundRobin, ConsistentHashBalancer])
def test_slow_start_on_a_strategy_that_cannot_ramp_is_refused(cls: type[Balancer]) -> None:
    """A slow start that would silently do nothing is a configuration error."""
    policy = HealthPolicy(slow_start=SlowStart(window=10.0))
    with pytest.raises(ConfigurationError, match=f"{cls.__name__} cannot ramp"):
        cls(["a", "b"], health=policy)
    lb = cls(["a", "b"], health=HealthPolicy())  # the rest of health is fine
    assert lb.pick("k") in ("a", "b")


def test_least_request_returns_to_two_choices_when_slow_start_ends() -> None:
    clock = FakeClock(0.0)
    policy = HealthPolicy(slow_start=SlowStart(window=10.0))
    lb = LeastRequest(["a", "b"], clock=clock, rng=random.Random(1), health=policy)
    lb.add("c")
    picked(lb, 10)
    assert lb._edf is not None
    clock.set(10.0)
    picked(lb, 10)
    assert not policy._any_slow_start()
    assert lb._edf is None
