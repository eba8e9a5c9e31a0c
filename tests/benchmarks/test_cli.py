"""Every benchmark's --help: the command users type, plain-text help, no bare positionals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["balancing", "caching", "locking", "rediscache", "sharding", "shop"]


@pytest.mark.parametrize("name", NAMES)
def test_help_names_the_command_and_has_no_markup(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    text = proc.stdout
    assert text.startswith(f"usage: python -m benchmarks.{name} ")
    assert "``" not in text and not re.search(r":(class|func|meth|mod):", text)
    description = text.split("\n\n")[1]
    assert description.rstrip().endswith("."), description  # a whole sentence
    positionals = text.partition("positional arguments:\n")[2].partition("\n\n")[0]
    for line in positionals.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            assert len(line.split()) > 1, f"positional without help: {line.strip()}"


def test_shop_plot_is_redrawn_from_the_committed_results(tmp_path: Path) -> None:
    from benchmarks.shop.__main__ import _points_from_table, main

    results = ROOT / "benchmarks" / "results" / "shop.txt"
    points = _points_from_table(results.read_text())
    assert len(points) == 7 and all(rate > 0 and p99 > 0 for rate, p99 in points.values())
    assert main(["--replot", str(results), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "shop-scaling.png").stat().st_size > 10_000
