"""The caching benchmark's --quick mode runs, so the benchmark cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.caching.__main__ import main


def test_quick_benchmark_writes_tables_and_plots(tmp_path: Path) -> None:
    assert main(["--quick", "--repeat", "1", "--out", str(tmp_path)]) == 0
    replay = (tmp_path / "caching-replay-quick.txt").read_text()
    (written,) = tmp_path.glob("caching-speed-*-quick.txt")  # -compiled- or -pure-
    speed = written.read_text()
    assert "TinyLFU vs the README's reference columns" in replay
    assert "speed-up vs cachetools" in speed and "Decorator hit path" in speed
    for peer in ("cachebox.LRUCache", "cachebox.TTLCache", "theine.Cache"):  # same run
        assert peer in speed
    assert (tmp_path / "caching-hit-ratio-gli.png").stat().st_size > 1000
    assert (tmp_path / "caching-hit-ratio-multi1.png").stat().st_size > 1000


def test_only_a_full_or_recorded_speed_run_writes_the_committed_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.caching.__main__ as cli
    from scalekit._compiled import implementation

    monkeypatch.setattr(cli, "run_speed", lambda **kwargs: f"report {kwargs['n_ops']}")
    tag = "pure" if implementation().startswith("pure Python") else "compiled"
    runs = [
        (["--quick"], f"caching-speed-{tag}-quick"),
        (["--quick", "--record"], f"caching-speed-{tag}-quick"),
        (["--ops", "300000"], f"caching-speed-{tag}-quick"),
        (["--repeat", "3"], f"caching-speed-{tag}-quick"),
        (["--ops", "300000", "--record"], f"caching-speed-{tag}"),
        ([], f"caching-speed-{tag}"),  # the default full run
    ]
    for args, name in runs:
        out = tmp_path / "-".join(args or ["default"])
        assert cli.main(["speed", *args, "--out", str(out)]) == 0
        assert [p.stem for p in out.glob("*.txt")] == [name], args


def test_every_time_is_whole_nanoseconds_with_thousands_separators() -> None:
    # One format for every time the speed benchmark prints: ns/op or ns/call,
    # whole nanoseconds, grouped by thousands as its other counts are.
    from benchmarks.caching import speed

    calls = speed.DECORATOR_CALLS
    decorator = {"scalekit cached(LRUCache)": 2.5e-6 * calls, "functools.lru_cache": 3.5e-8 * calls}
    table = speed._decorator_table(decorator)
    assert "ns/call" in table.splitlines()[1]
    assert " 2,500 " in table and " 35 " in table
    row = ["TinyLFUCache", "1,234", "76.2%", "-", "-", "theine.Cache", "1,160", "1.0%", "0.94x"]
    median = speed._median_table(
        [[[*row, "0.50x"]], [[*row[:1], "12,345", *row[2:], "0.70x"]]], [decorator] * 2, 2
    )
    assert " 6,790 " in median  # the median of 1,234 and 12,345 ns/op
    assert " 2,500 " in median
    assert speed._ns(0.001, 1) == "1,000,000" and speed._ns(7e-8, 1) == "70"
