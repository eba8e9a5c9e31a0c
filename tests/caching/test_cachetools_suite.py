"""cachetools' own test suite (8.0.2), run against scalekit's drop-in caches.

The suite comes from the cachetools 8.0.2 sdist, which ``scripts/test``
downloads into ``.cache/cachetools-8.0.2`` (or set
``SCALEKIT_CACHETOOLS_SUITE`` to an unpacked sdist). Its ``tests/`` package
is loaded under a private name, each TestCase's ``Cache`` and the
module-level class names are pointed at scalekit's classes, and the
TestCases are collected here as they are.

The tests listed in ``DIFFERENCES`` are deliberate differences, documented
in docs/caching.md ("Compatibility with cachetools") and asserted by
tests/caching/test_compat.py; they are strict xfails, so the run fails if
any other test fails or if a listed one starts passing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import scalekit.caching as sk

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(os.environ.get("SCALEKIT_CACHETOOLS_SUITE", ROOT / ".cache" / "cachetools-8.0.2"))
PACKAGE = "_cachetools_suite"

if not (SUITE / "tests" / "__init__.py").is_file():
    raise RuntimeError(
        f"cachetools' test suite not found in {SUITE}: run ./scripts/test, or "
        "`python -m pip download --no-binary :all: --no-deps cachetools==8.0.2 -d .cache "
        "&& tar -xzf .cache/cachetools-8.0.2.tar.gz -C .cache`"
    )


def _load(name: str) -> ModuleType:
    """Import ``tests/<name>.py`` of the suite as ``_cachetools_suite.<name>``."""
    full = PACKAGE if name == "__init__" else f"{PACKAGE}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    path = SUITE / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(
        full, path, submodule_search_locations=[str(path.parent)] if name == "__init__" else None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


_load("__init__")
_lru, _lfu, _fifo, _rr, _ttl = (
    _load(n) for n in ("test_lru", "test_lfu", "test_fifo", "test_rr", "test_ttl")
)

_lru.LRUCache = sk.LRUCache
_lfu.LFUCache = sk.LFUCache
_fifo.FIFOCache = sk.FIFOCache
_rr.RRCache = sk.RRCache
_ttl.TTLCache = sk.TTLCache


class _TTLTestCache(sk.TTLCache[Any, Any]):
    """The suite's ``TTLTestCache``: an unbounded ttl and the suite's own ``Timer``."""

    def __init__(self, maxsize: Any, ttl: Any = math.inf, **kwargs: Any) -> None:
        super().__init__(maxsize, ttl=ttl, timer=_ttl.Timer(), **kwargs)


_ttl.TTLTestCache = _TTLTestCache


class LRUCacheTest(_lru.LRUCacheTest):  # type: ignore[misc,name-defined]
    Cache = sk.LRUCache


class LFUCacheTest(_lfu.LFUCacheTest):  # type: ignore[misc,name-defined]
    Cache = sk.LFUCache


class FIFOCacheTest(_fifo.FIFOCacheTest):  # type: ignore[misc,name-defined]
    Cache = sk.FIFOCache


class RRCacheTest(_rr.RRCacheTest):  # type: ignore[misc,name-defined]
    Cache = sk.RRCache


class TTLCacheTest(_ttl.TTLCacheTest):  # type: ignore[misc,name-defined]
    Cache = _TTLTestCache


# Deliberate differences: test id -> why (docs/caching.md lists the same).
DIFFERENCES: dict[str, str] = {
    "TTLCacheTest::test_ttl_copy": (
        "TTLCache iterates in recency order (least recently used first, the next "
        "victim first), as LRUCache does; cachetools iterates a TTLCache in insertion "
        "order, which would need a second ordered map per entry. The rest of the test "
        "is asserted by test_compat.py::test_ttl_copy_is_independent_in_recency_order."
    ),
}

SUITE_CLASSES = (LRUCacheTest, LFUCacheTest, FIFOCacheTest, RRCacheTest, TTLCacheTest)


def _mark_differences() -> None:
    classes = {cls.__name__: cls for cls in SUITE_CLASSES}
    for test_id, reason in DIFFERENCES.items():
        cls_name, method = test_id.split("::")
        cls = classes[cls_name]
        setattr(cls, method, pytest.mark.xfail(strict=True, reason=reason)(getattr(cls, method)))


_mark_differences()


def test_every_listed_difference_names_a_test() -> None:
    classes = {cls.__name__: cls for cls in SUITE_CLASSES}
    for test_id in DIFFERENCES:
        cls_name, method = test_id.split("::")
        assert method.startswith("test_") and hasattr(classes[cls_name], method), test_id
