"""The caching benchmark's --quick mode runs, so the benchmark cannot rot."""

from __future__ import annotations

from pathlib import Path

from benchmarks.caching.__main__ import main


def test_quick_benchmark_writes_tables_and_plots(tmp_path: Path) -> None:
    assert main(["--quick", "--repeat", "1", "--out", str(tmp_path)]) == 0
    replay = (tmp_path / "caching-replay-quick.txt").read_text()
    speed = (tmp_path / "caching-speed-quick.txt").read_text()
    assert "TinyLFU vs the README's reference columns" in replay
    assert "speed-up vs cachetools" in speed and "Decorator hit path" in speed
    for peer in ("cachebox.LRUCache", "cachebox.TTLCache", "theine.Cache"):  # same run
        assert peer in speed
    assert (tmp_path / "caching-hit-ratio-gli.png").stat().st_size > 1000
    assert (tmp_path / "caching-hit-ratio-multi1.png").stat().st_size > 1000
