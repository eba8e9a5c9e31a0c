"""The balancing benchmark's --quick mode runs, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs_and_meets_the_simulator_targets(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.balancing", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    simulation = (tmp_path / "balancing_simulation_quick.txt").read_text()
    assert "NOT MET" not in simulation
    assert simulation.count("[met]") == 9
    assert (tmp_path / "balancing_latency_cdf.png").stat().st_size > 10_000
    overhead = (tmp_path / "balancing_overhead_quick.txt").read_text()
    assert "PeakEWMA" in overhead and "1000" in overhead


def test_the_simulator_counts_a_pick_with_no_endpoint_as_a_failed_request() -> None:
    from benchmarks.balancing.simulator import EndpointModel, Scenario, service_time, simulate
    from scalekit.balancing import HealthPolicy, OutlierDetection, RoundRobin

    failing = EndpointModel("e0", service_time("constant", 0.01), None, error_rate=1.0)
    scenario = Scenario("all failing", [failing], rate=100.0, requests=400)
    outlier = OutlierDetection(consecutive_failures=1, base_ejection_time=100, interval=1)

    def make(clock: object, rng: object) -> RoundRobin:
        policy = HealthPolicy(outlier=outlier, panic_threshold=0)
        return RoundRobin(["e0"], clock=clock, health=policy)  # type: ignore[arg-type]

    result = simulate(scenario, make, seed=1)
    assert result.unavailable > 300  # ejected after its first failure, for the whole run
    assert 0.0 not in result.latencies  # no request is a 0 ms success
    assert result.error_rate == 1.0
