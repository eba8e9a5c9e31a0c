"""The overhead benchmark runs end to end and prints its ratio table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_every_workload() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.observability", "--quick", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = ("LRUCache get/set", "TinyLFUCache get/set", "cached hit path", "RoundRobin", "PeakEWMA")
    rows = (*rows, "RoundRobin+HealthPolicy")
    for row in (*rows, "MemoryLock acquire+release", "fastest rounds", "scrape"):
        assert row in out
