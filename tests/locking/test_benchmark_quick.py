"""The lock benchmark's --quick mode runs, so the benchmark cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.redis
@pytest.mark.zookeeper
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.locking",
            "--quick",
            "--no-plot",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "locking_quick.txt").read_text()
    for heading in (
        "Uncontended acquire+release",
        "8 workers, one lock",
        "8 workers over 64",
        "Semaphores and read-write locks",
        "one semaphore of 2 places",
    ):
        assert heading in text
    for contender in (
        "scalekit RedisLock",
        "redis-py Lock",
        "python-redis-lock",
        "scalekit ZooKeeperLock",
        "kazoo Lock",
        "kazoo Semaphore(4)",
        "kazoo ReadLock",
        "kazoo WriteLock",
        "scalekit RedisRWLock write",
    ):
        assert contender in text
