"""The docs' benchmark figures are the committed results files' figures.

docs/caching.md says its speed tables come from
`benchmarks/results/caching-speed-compiled.txt` and
`benchmarks/results/caching-speed-pure.txt` (the median ratios of several
runs of each implementation) and its hit-ratio table from the replay
(`benchmarks/results/caching-replay.txt`); every figure in those tables
must be in that file, to its printed precision.
The results files record no machine path, and a plot carries the run id of
the text it illustrates.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _common

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CACHING = (ROOT / "docs" / "caching.md").read_text()


def _section(text: str, heading: str) -> str:
    return text.partition(heading)[2].partition("\n## ")[0]


def _doc_table(text: str, first_header: str) -> list[list[str]]:
    """The Markdown table whose first header cell is *first_header*, as rows of cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def _text_table(text: str, header_start: str) -> dict[str, list[str]]:
    """A plain-text results table (columns 2+ spaces apart), keyed by its first column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 3:
            break
        rows[cells[0]] = cells
    return rows


def _num(text: str) -> float:
    return float(text.replace(",", "").rstrip("x%*\\"))


def _agrees(doc: str, value: float) -> bool:
    """True when *doc* is *value* rounded to *doc*'s printed decimals."""
    figure = re.search(r"-?[\d,]+(?:\.(\d+))?", doc)
    assert figure, doc
    decimals = len(figure.group(1) or "")
    return abs(_num(figure.group()) - value) <= 0.5 * 10**-decimals + 1e-9


def _first_figure(cell: str) -> str:
    found = re.search(r"[\d,.]+[x%]", cell)
    assert found, cell
    return found.group()


# The speed runs of both implementations, each with the median of its runs' ratios.
SPEED_FILES = {
    "compiled": RESULTS / "caching-speed-compiled.txt",
    "pure": RESULTS / "caching-speed-pure.txt",
}
SPEED = {impl: path.read_text() for impl, path in SPEED_FILES.items()}
SPEED_DOC = _section(CACHING, "## Speed and memory")


def _table_after(text: str, marker: str) -> dict[str, list[str]]:
    """The plain-text table on the lines after the line holding *marker*, by first column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line) + 1
    rows = {}
    for line in lines[start + 2 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 3:
            break
        rows[cells[0]] = cells
    return rows


MEDIANS = {impl: _table_after(text, "Median over the") for impl, text in SPEED.items()}
DECORATOR = {
    impl: next(
        re.split(r"\s{2,}", line.strip())
        for line in text.partition("Median over the")[2].splitlines()
        if line.startswith("scalekit cached(LRUCache) hit")
    )
    for impl, text in SPEED.items()
}
MEMORY = {impl: _text_table(text, "cache         scalekit B/entry") for impl, text in SPEED.items()}


def _pair(cell: str) -> tuple[str, str]:
    """The compiled and the pure figure of a `compiled / pure` cell."""
    compiled, _, pure = cell.partition(" / ")
    return compiled, pure.split(" (")[0]


def test_the_speed_section_cites_the_files_command_and_runs_it_is_checked_against() -> None:
    for impl, path in SPEED_FILES.items():
        assert f"`benchmarks/results/{path.name}`" in SPEED_DOC
        assert "Median over the" in SPEED[impl]
        run = _common.run_id_of(path)
        assert run is not None and f"`{run}`" in SPEED_DOC, (impl, run)
        command = SPEED[impl].splitlines()[0].removeprefix("$ ")
        assert f"`{command}`" in SPEED_DOC, command
    assert SPEED["compiled"].splitlines()[2].startswith("scalekit's hot paths: compiled")
    assert SPEED["pure"].splitlines()[2].startswith("scalekit's hot paths: pure Python")


@pytest.mark.parametrize("row", _doc_table(SPEED_DOC, "cache"), ids=lambda r: r[0])
def test_speed_table_rows_are_the_results_files(row: list[str]) -> None:
    cache, hit, lru, rust, namesake, memory = row
    compiled, pure = MEDIANS["compiled"][cache], MEDIANS["pure"][cache]
    assert compiled[2] == pure[2] and _agrees(hit, _num(compiled[2])), (cache, hit)
    for cell, column in ((lru, 6), (rust, 5), (namesake, 3)):
        if cell == "(none)":
            assert compiled[column] == "-", (cache, cell)
            continue
        ours, theirs = _pair(cell)
        assert _agrees(ours, _num(compiled[column])), (cache, cell, compiled[column])
        assert _agrees(theirs, _num(pure[column])), (cache, cell, pure[column])
    if rust != "(none)":
        assert f"`{compiled[4]}`" in rust and compiled[4] == pure[4], (cache, rust)
    mem_compiled, mem_pure = _pair(memory)
    assert _agrees(mem_compiled, _num(MEMORY["compiled"][cache][1])), (cache, memory)
    assert _agrees(mem_pure, _num(MEMORY["pure"][cache][1])), (cache, memory)


@pytest.mark.parametrize("row", _doc_table(SPEED_DOC, "decorator"), ids=lambda r: r[0])
def test_decorator_rows_are_the_results_files(row: list[str]) -> None:
    name, lru, ns = row
    assert name.replace("`", "") == "cached(LRUCache) hit"
    compiled, pure = DECORATOR["compiled"], DECORATOR["pure"]
    for cell, column in ((lru, 2), (ns, 1)):
        ours, theirs = _pair(cell)
        assert _agrees(ours, _num(compiled[column])), (cell, compiled[column])
        assert _agrees(theirs, _num(pure[column])), (cell, pure[column])


REPLAY = (RESULTS / "caching-replay.txt").read_text()
HIT_DOC = _section(CACHING, "## Hit ratios on real traces")
# The docs' column names for the replay summary's.
HIT_COLUMNS = {
    "TinyLFU worst of 5": "TinyLFU min",
    "best of 5": "TinyLFU max",
    ">= Caffeine": ">=Caffeine",
    ">= best - 1": "best-1",
}
VERDICTS = {"yes": "ok", "**no**": {"BELOW", "SHORT"}}


def _replay_summary() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for block in REPLAY.split("TinyLFU vs the README's reference columns")[1:]:
        lines = block.splitlines()[1:]
        header = re.split(r"\s{2,}", lines[0].strip())
        for line in lines[2:]:
            cells = re.split(r"\s{2,}", line.strip())
            if len(cells) != len(header):
                break
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_the_hit_ratio_table_is_every_row_of_the_replay_summary() -> None:
    summary = _replay_summary()
    doc_rows = [row[0] for row in _doc_table(HIT_DOC, "trace @ capacity")]
    assert sorted(doc_rows) == sorted(summary)
    assert "python -m benchmarks.caching replay" in HIT_DOC


@pytest.mark.parametrize(
    "row", _doc_table(HIT_DOC, "trace @ capacity"), ids=lambda r: r[0].replace(" ", "")
)
def test_hit_ratio_rows_are_the_replay_summary(row: list[str]) -> None:
    lines = HIT_DOC.splitlines()
    header = next(line for line in lines if line.startswith("| trace @ capacity |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    result = _replay_summary()[row[0]]
    for column, cell in zip(columns[1:], row[1:], strict=True):
        name = HIT_COLUMNS.get(column, column)
        if name in (">=Caffeine", "best-1"):
            expected = VERDICTS[cell]
            assert result[name] in (expected if isinstance(expected, set) else {expected})
        else:
            assert _agrees(cell.strip("*"), float(result[name])), (row[0], column, cell)


def test_committed_results_record_no_machine_path() -> None:
    for path in sorted(RESULTS.glob("*.txt")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = _common.MACHINE_PATH.search(line)
            assert not found, f"{path.name}:{number} records {found.group()!r}"


def test_paths_in_results_are_repository_relative_or_a_name(tmp_path: Path) -> None:
    assert _common.display_path(RESULTS / "x.txt") == "benchmarks/results/x.txt"
    assert _common.display_path(Path("/srv/traces/cache2k/orm-busy.trace.xz")) == (
        "orm-busy.trace.xz"
    )
    line = _common.command_line(
        "caching", ["replay", "--traces", "/srv/traces", "--only", "gli,/srv/t/w106.trace.gz"]
    )
    assert line == "$ python -m benchmarks.caching replay --traces traces --only gli,w106.trace.gz"
    written = _common.write_result(
        tmp_path, "x", "replayed /srv/traces/gli.trace.gz and ../shared/traces (--out=/tmp/r/p)"
    )
    assert written.read_text().startswith("replayed gli.trace.gz and traces (--out=p)\n")


def _plot(path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    _common.save_figure(fig, path)
    plt.close(fig)


def test_a_plot_and_its_text_carry_the_same_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _plot(tmp_path / "sharding.png")
    text = _common.write_result(tmp_path, "sharding", "table")
    assert _common.run_id_of(text) == _common.run_id_of(tmp_path / "sharding.png")
    assert _common.run_id_of(text) == _common.RUN_ID
    assert _common.plots_from_other_runs(text) == []
    assert "warning" not in capsys.readouterr().err

    # A later run that writes the text but not the plot (--no-plot, or a crash
    # after the table): the old plot is reported.
    monkeypatch.setattr(_common, "RUN_ID", "2026-12-01T12:00:00Z-later")
    _common.write_result(tmp_path, "sharding", "table")
    assert _common.plots_from_other_runs(text) == [tmp_path / "sharding.png"]
    assert "sharding.png is from another run" in capsys.readouterr().err


#: Committed results whose plots predate run ids, kept because a run to
#: regenerate them is too expensive here; each says why. A file regenerated
#: since (its text has a run id) must leave this list.
NOT_REGENERATED = {
    "caching-replay": (
        "two runs side by side (20 traces, about 10 minutes on 2 cores), and 9"
        " of the traces are downloads that are not committed (see docs/caching.md)"
    ),
    "locking": (
        "starts Redis and ZooKeeper and runs every lock and its peers under 8"
        " contending workers, 3 s x 3 runs per contender: more than 6 minutes"
        " on the 2-core machine the results come from"
    ),
    "shop": (
        "a full run starts Redis and ZooKeeper and measures 7 configurations under"
        " load; its figures are quoted in docs/shop.md, whose plot is redrawn"
        " from the text (`--replot`)"
    ),
}


@pytest.mark.parametrize("stem", sorted(_common.PLOTS))
def test_committed_plots_come_from_the_run_of_their_text(stem: str) -> None:
    """Every committed plot carries the run id of the committed text it illustrates."""
    text = RESULTS / f"{stem}.txt"
    plots = [png for pattern in _common.PLOTS[stem] for png in RESULTS.glob(pattern)]
    assert plots, f"{stem} has no committed plot"
    run = _common.run_id_of(text)
    if stem in NOT_REGENERATED:
        assert run is None, f"{stem}.txt has a run id now: take it off NOT_REGENERATED"
        return
    assert run is not None, f"{stem}.txt has no run id: regenerate it with its plots"
    assert _common.plots_from_other_runs(text) == [], stem


#: Every benchmark command that writes results: (module:function, argv before --quick).
BENCHMARK_MAINS = [
    ("benchmarks.balancing.__main__:main", []),
    ("benchmarks.caching.__main__:main", []),
    ("benchmarks.locking.run:main", []),
    ("benchmarks.observability.__main__:main", []),
    ("benchmarks.rediscache.__main__:main", []),
    ("benchmarks.sharding.__main__:main", []),
    ("benchmarks.shop.__main__:main", []),
]


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def _parsed(target: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The arguments *target* would run with (it is stopped right after parsing)."""
    parse = _common._BenchmarkParser.parse_known_args

    def stop(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(parse(self, *args, **kwargs)[0])

    monkeypatch.setattr(_common._BenchmarkParser, "parse_known_args", stop)
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    module, _, name = target.partition(":")
    main = getattr(importlib.import_module(module), name)
    with pytest.raises(_Parsed) as caught:
        main(argv) if "observability" not in module else main()
    return caught.value.namespace


@pytest.mark.parametrize(("target", "argv"), BENCHMARK_MAINS, ids=lambda t: str(t).split(":")[0])
def test_a_quick_run_writes_nothing_over_the_committed_results(
    target: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    quick = _parsed(target, [*argv, "--quick"], monkeypatch)
    assert quick.quick and quick.out == _common.QUICK_DIR
    assert _common.QUICK_DIR.relative_to(RESULTS) == Path("tmp")
    assert "benchmarks/results/tmp/" in (ROOT / ".gitignore").read_text().splitlines()
    aimed = _parsed(target, [*argv, "--quick", "--out", str(RESULTS)], monkeypatch)
    assert aimed.out == _common.QUICK_DIR
    elsewhere = _parsed(target, [*argv, "--quick", "--out", str(tmp_path)], monkeypatch)
    assert elsewhere.out == tmp_path
    full = _parsed(target, argv, monkeypatch)
    assert not full.quick and full.out == RESULTS
