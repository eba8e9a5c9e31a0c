"""The trace readers: the shared folder's formats and libCacheSim's oracleGeneral and text."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from benchmarks._common import TRACES_DIR
from benchmarks.caching.replay import capacity_for, parse_capacities
from benchmarks.caching.traces import detect_format, read_trace, short_name


@pytest.mark.parametrize(
    ("name", "requests", "unique"),
    [("lirs-gli.trace.gz", 6015, 2529), ("cache2k-web07.trace.gz", 76118, 20484)],
)
def test_shared_traces_have_the_readme_counts(name: str, requests: int, unique: int) -> None:
    keys = read_trace(TRACES_DIR / name)
    assert (len(keys), len(set(keys))) == (requests, unique)


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
