"""What stays bounded while nobody scrapes, and which series go when their object does."""

from __future__ import annotations

import time
from typing import Any

from scalekit.balancing import RoundRobin
from scalekit.observability import MemoryRecorder, Telemetry, watch_balancer
from scalekit.observability._emit import DRAIN_INTERVAL, BalancerProbe

LATENCY = "scalekit_balancer_request_duration_seconds"


def poll(condition: Any, within: float) -> bool:
    """Whether *condition()* became true within *within* seconds (checked every 1 ms)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_latency_buffers_stay_bounded_without_a_scrape() -> None:
    # A release only appends; the drain thread hands a full buffer to the hub
    # within DRAIN_INTERVAL, so memory stays bounded when nobody collects.
    hub, memory = Telemetry(), MemoryRecorder()
    hub.subscribe(memory)
    lb = RoundRobin(["a"])
    watch_balancer(lb, "pay", telemetry=hub)
    probe = lb._probe
    assert isinstance(probe, BalancerProbe)
    n = 3 * BalancerProbe.BATCH
    for _ in range(n):
        lb.release(lb.pick(), latency=0.002)
    series = (LATENCY, (("balancer", "pay"), ("endpoint", "a"), ("outcome", "ok")))

    def drained() -> int:
        state = memory.snapshot()[2].get(series)
        return 0 if state is None else state.count

    # The documented bound (a drain every DRAIN_INTERVAL), plus a margin for a busy machine.
    assert poll(lambda: drained() >= n - BalancerProbe.BATCH, within=DRAIN_INTERVAL + 2.0)
    assert probe.buffered() <= BalancerProbe.BATCH
    # Nothing is lost or counted twice: a collection hands over the rest.
    list(hub.collect())
    assert memory.histograms[series].count == n
    picks = {s.labels["endpoint"]: s.value for s in hub.collect() if s.metric.endswith("picks")}
    assert picks == {"a": n}
    hub.unsubscribe(memory)
