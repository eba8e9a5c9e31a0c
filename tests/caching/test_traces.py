"""The trace readers: the committed LIRS and cache2k files, libCacheSim's oracleGeneral and text."""

from __future__ import annotations

import gzip
import lzma
import re
import struct
from pathlib import Path

import pytest

from benchmarks._common import TRACES_DIR
from benchmarks.caching.__main__ import main
from benchmarks.caching.replay import capacity_for, parse_capacities
from benchmarks.caching.traces import detect_format, read_trace, short_name


@pytest.mark.parametrize(
    ("name", "requests", "unique"),
    [("lirs-gli.trace.gz", 6015, 2529), ("cache2k-web07.trace.gz", 76118, 20484)],
)
def test_committed_traces_have_the_readme_counts(name: str, requests: int, unique: int) -> None:
    keys = read_trace(TRACES_DIR / name)
    assert (len(keys), len(set(keys))) == (requests, unique)


def test_every_committed_trace_is_listed_with_its_counts() -> None:
    listed = {
        match.group(1): (int(match.group(2).replace(",", "")), int(match.group(3).replace(",", "")))
        for match in re.finditer(
            r"^\| (\S+\.trace\.gz) \|[^|]*\|[^|]*\| ([\d,]+) \| ([\d,]+) \|",
            (TRACES_DIR / "README.md").read_text(),
            re.MULTILINE,
        )
    }
    assert sorted(listed) == sorted(p.name for p in TRACES_DIR.glob("*.trace.gz"))
    for name, counts in listed.items():
        keys = read_trace(TRACES_DIR / name)
        assert (len(keys), len(set(keys))) == counts, name


def test_xz_traces_in_a_cache2k_folder_read_as_caffeine_ships_them(tmp_path: Path) -> None:
    folder = tmp_path / "cache2k"
    folder.mkdir()
    with lzma.open(folder / "web99.trace.xz", "wb") as fh:
        fh.write(struct.pack(">3i", 5, -1, 5))
    assert detect_format(folder / "web99.trace.xz") == "cache2k"
    assert short_name(folder / "web99.trace.xz") == "web99"
    assert read_trace(folder / "web99.trace.xz") == [5, -1, 5]


def test_replay_takes_a_traces_folder_and_names_in_it(tmp_path: Path) -> None:
    folder = tmp_path / "downloaded"
    folder.mkdir()
    with gzip.open(folder / "lirs-tiny.trace.gz", "wt") as fh:
        fh.write("1\n2\n1\n3\n1\n")
    out = tmp_path / "out"
    args = ["replay", "--traces", str(folder), "--capacities", "2", "--no-plot", "--out", str(out)]
    assert main([*args, "--only", "tiny"]) == 0
    report = (out / "caching-replay.txt").read_text()
    assert "tiny (5 requests, 3 unique keys)" in report
    with pytest.raises(SystemExit, match="no trace named 'gli'"):
        main([*args, "--only", "gli"])
    with pytest.raises(SystemExit, match="not a directory"):
        main(["replay", "--traces", str(tmp_path / "missing"), "--out", str(out)])


def test_oracle_general_records_are_read_in_place(tmp_path: Path) -> None:
    record = struct.Struct("<IQIq")
    path = tmp_path / "w.oracleGeneral.bin"
    path.write_bytes(b"".join(record.pack(t, key, 4096, -1) for t, key in enumerate([7, 2**40, 7])))
    assert detect_format(path) == "oracleGeneral"
    assert read_trace(path) == [7, 2**40, 7]


def test_plain_text_gzip_and_csv_first_field(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1\n*\n2,100\n\n3\n")
    assert detect_format(path) == "txt" and short_name(path) == "keys"
    assert read_trace(path) == [1, 2, 3]


def test_capacities_are_counts_or_fractions() -> None:
    assert parse_capacities("0.01,0.1,500") == [0.01, 0.1, 500.0]
    assert [capacity_for(c, 2529) for c in (0.01, 0.1, 500)] == [25, 252, 500]
    with pytest.raises(ValueError):
        parse_capacities("0,-1")
