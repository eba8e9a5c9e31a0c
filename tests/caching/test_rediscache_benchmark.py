"""The Redis tier benchmark's --quick mode runs, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs(redis_server: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.rediscache",
            "--quick",
            "--no-plot",
            "--url",
            redis_server.url,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "rediscache-quick.txt").read_text()
    assert "RedisCache.get / (GET + json.loads)" in text
    # the stampede result is a correctness property, so it must hold even in the smoke run
    assert "database calls per 100 concurrent misses with get_or_load: 1   target 1  MET" in text
