"""Readers for cache traces: the LIRS and cache2k files and libCacheSim's formats.

Every reader returns the trace as a list of integer keys, read in place
(gzip- or xz-compressed, or not compressed).

* ``lirs``: text, one integer key per line, ``*`` lines are markers (skipped);
* ``cache2k``: a binary stream of big-endian signed int32 keys;
* ``oracleGeneral``: libCacheSim's binary records, little-endian
  ``<uint32 timestamp, uint64 obj_id, uint32 obj_size, int64 next_access_vtime>``;
* ``txt``: libCacheSim's plain text, one object id per line (a CSV line
  contributes its first field).
"""

from __future__ import annotations

import gzip
import lzma
import struct
from array import array
from pathlib import Path
from typing import IO

__all__ = ["FORMATS", "detect_format", "read_trace", "short_name"]

FORMATS = ("lirs", "cache2k", "oracleGeneral", "txt")


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".xz":  # as Caffeine's simulator ships the cache2k traces
        return lzma.open(path, "rb")
    return path.open("rb")


def detect_format(path: Path) -> str:
    """Guess a trace's format from its file name or its folder's."""
    name = path.name
    # "cache2k-web07.trace.gz" here, or "cache2k/web07.trace.xz" in Caffeine's simulator.
    if name.startswith("cache2k-") or path.parent.name == "cache2k":
        return "cache2k"
    if name.startswith("lirs-") or path.parent.name == "lirs":
        return "lirs"
    if "oracleGeneral" in name:
        return "oracleGeneral"
    return "txt"


def short_name(path: Path) -> str:
    """``lirs-gli.trace.gz`` -> ``gli``, as the README's table names traces."""
    name = path.name.split(".")[0]
    for prefix in ("lirs-", "cache2k-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def read_trace(path: Path, fmt: str | None = None) -> list[int]:
    """Return the keys of the trace at *path* in request order."""
    fmt = fmt or detect_format(path)
    with _open(path) as fh:
        raw = fh.read()
    if fmt == "cache2k":
        keys = array("i")
        keys.frombytes(raw[: len(raw) - len(raw) % 4])
        keys.byteswap()  # stored big-endian; array uses the machine's (little-endian) order
        return keys.tolist()
    if fmt == "oracleGeneral":
        record = struct.Struct("<IQIq")
        return [rec[1] for rec in record.iter_unpack(raw[: len(raw) - len(raw) % record.size])]
    if fmt in ("lirs", "txt"):
        keys_out: list[int] = []
        for line in raw.split(b"\n"):
            field = line.split(b",", 1)[0].strip()
            if not field or field == b"*":
                continue
            keys_out.append(int(field))
        return keys_out
    raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
