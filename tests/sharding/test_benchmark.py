"""The sharding benchmark's --quick mode runs, so the benchmark cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_quick_mode_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sharding", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "sharding-quick.txt").read_text()
    sections = (
        "Lookups",
        "Balance",
        "Keys moved",
        "uhashring ketama (peer)",
        "modulo",
        "TimeRouter",
    )
    for section in sections:
        assert section in text
    assert (tmp_path / "sharding.png").stat().st_size > 10_000
