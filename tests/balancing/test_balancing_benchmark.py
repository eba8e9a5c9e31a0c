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
