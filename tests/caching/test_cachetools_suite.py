"""cachetools' own test suite (8.0.2), run against scalekit's drop-in caches.

The suite comes from the cachetools 8.0.2 sdist, which ``scripts/test``
downloads into ``.cache/cachetools-8.0.2`` (or set
``SCALEKIT_CACHETOOLS_SUITE`` to an unpacked sdist). Its ``tests/`` package
is loaded under a private name, each TestCase's ``Cache`` and the
module-level class names are pointed at scalekit's classes, and the
TestCases are collected here as they are. ``test_cache.py``,
``test_cached.py``, ``test_cachedmethod.py`` and ``test_threading.py`` are
loaded with ``import cachetools`` resolving to a stand-in of scalekit's
names: the suite's whole ``tests/`` directory is collected. The whole module
runs in about two seconds.

The tests listed in ``DIFFERENCES`` are deliberate differences, documented
in docs/caching.md ("Compatibility with cachetools") and asserted by
tests/caching/test_compat.py; they are strict xfails, so the run fails if
any other test fails or if a listed one starts passing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import scalekit.caching as sk
import scalekit.caching.func as sk_func
import scalekit.caching.keys as sk_keys

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


def _load_over(name: str, **modules: ModuleType) -> ModuleType:
    """Load a suite module whose `import cachetools.<sub>` must find scalekit's modules.

    Its defaults and class attributes are evaluated while loading, so the
    submodules are swapped in for that time; its global `cachetools` is then
    a namespace of scalekit's modules, for the names looked up at call time.
    """
    import cachetools

    for sub in modules:
        importlib.import_module(f"cachetools.{sub}")
    saved = {sub: getattr(cachetools, sub) for sub in modules}
    try:
        for sub, module in modules.items():
            setattr(cachetools, sub, module)
        loaded = _load(name)
    finally:
        for sub, module in saved.items():
            setattr(cachetools, sub, module)
    loaded.cachetools = SimpleNamespace(**modules)
    return loaded


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

_tlru = _load("test_tlru")
_tlru.TLRUCache = sk.TLRUCache


class _TLRUTestCache(sk.TLRUCache[Any, Any]):
    """The suite's ``TLRUTestCache``: its default ttu (never expires) and ``Timer``."""

    def __init__(self, maxsize: Any, ttu: Any = _tlru.default_ttu, **kwargs: Any) -> None:
        super().__init__(maxsize, ttu, timer=_tlru.Timer(), **kwargs)


_tlru.TLRUTestCache = _TLRUTestCache
_keys = _load_over("test_keys", keys=sk_keys)
_func = _load_over("test_func", func=sk_func)


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


class TLRUCacheTest(_tlru.TLRUCacheTest):  # type: ignore[misc,name-defined]
    Cache = _TLRUTestCache


class CacheKeysTest(_keys.CacheKeysTest):  # type: ignore[misc,name-defined]
    pass


def _load_as_cachetools(name: str) -> ModuleType:
    """Load a suite module whose `import cachetools` must be scalekit.caching.

    While it loads, `cachetools` (and `cachetools.keys`) resolve to a
    stand-in holding scalekit's names; the real cachetools is put back after.
    """
    standin = ModuleType("cachetools")
    standin.__dict__.update({n: getattr(sk, n) for n in sk.__all__})
    standin.keys = sk_keys  # type: ignore[attr-defined]
    standin.func = sk_func  # type: ignore[attr-defined]
    names = ("cachetools", "cachetools.keys", "cachetools.func")
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(
        {"cachetools": standin, "cachetools.keys": sk_keys, "cachetools.func": sk_func}
    )
    try:
        return _load(name)
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


_cache, _cached, _cachedmethod, _threading = (
    _load_as_cachetools(n)
    for n in ("test_cache", "test_cached", "test_cachedmethod", "test_threading")
)

CacheTest = _cache.CacheTest
PickleTest = _cached.PickleTest
InvalidCacheTest = _cached.InvalidCacheTest
CacheWrapperTest = _cached.CacheWrapperTest
DictTest = _cached.DictTest
CustomCacheTest = _cached.CustomCacheTest
NoneMethodTest = _cachedmethod.NoneMethodTest
WeakRefMethodTest = _cachedmethod.WeakRefMethodTest
UnboundMethodTest = _cachedmethod.UnboundMethodTest
CacheMethodTest = _cachedmethod.CacheMethodTest
DictMethodTest = _cachedmethod.DictMethodTest
ClassMethodTest = _cachedmethod.ClassMethodTest


class ThreadingTest(_threading.ThreadingTest):  # type: ignore[misc,name-defined]
    # Every one of its tests is a listed difference that fails by waiting out this
    # timeout (a barrier, or a condition nobody waits on): 0.05 s instead of 10 keeps
    # the module fast; a passing run needs microseconds.
    TIMEOUT = 0.05

    @contextlib.contextmanager
    def subTest(self, msg: Any = None, **params: Any) -> Iterator[None]:
        # A failing subtest fails the test itself, so that its strict xfail
        # sees it (pytest counts an xfail's failed subtests apart from it).
        yield


FIFODecoratorTest = _func.FIFODecoratorTest
LFUDecoratorTest = _func.LFUDecoratorTest
LRUDecoratorTest = _func.LRUDecoratorTest
RRDecoratorTest = _func.RRDecoratorTest
TTLDecoratorTest = _func.TTLDecoratorTest


_NONE_CACHE = (
    "cached(None), and a cachedmethod whose cache function returns None, are accepted: "
    "no caching, single-flight only; cachetools 8 refuses cached(None) and has "
    "cache_info() of a None cache raise TypeError."
)

_COUNTS = (
    "cached takes the lock (or condition) as single-flight needs: a different number "
    "of acquisitions, waits and notifies than cachetools' CountedLock/CountedCondition "
    "counts; what a user relies on (one call per key, errors not cached) is asserted "
    "by test_cached_contract.py."
)
_CACHE_INFO = (
    "cached's wrapper always has cache_info() and cache_clear() (without info=True "
    "cache_info() reports a scalekit cache's own stats); cachetools adds cache_info only "
    "with info=True. The other attributes (cache, cache_key, cache_lock, "
    "cache_condition) are cachetools'."
)
_REPR = (
    "cached's wrapper is a function (compiled: a callable object) with the wrapped "
    "function's repr; cachetools' wrapper reprs as <cached <function ...>>."
)

_BOUND_IN_DICT = (
    "cachedmethod stores nothing in the instance: obj.method gives a new bound object on "
    "each access, as a plain method does, and super().method reaches the parent's cache "
    "through it; cachetools stores each bound wrapper in the instance's __dict__ and "
    "tests their identity. Calls share the instance's cache either way "
    "(test_compat.py::test_cachedmethod_binds_like_a_method_and_shares_the_cache)."
)
_NO_INSTANCE_DICT = (
    "cachedmethod works on instances without a writable __dict__ (__slots__, a read-only "
    "__dict__) since it stores nothing there; cachetools raises TypeError "
    "(test_compat.py::test_cachedmethod_works_without_an_instance_dict)."
)
_NO_NAME = (
    "cachedmethod needs no attribute name: the same descriptor under two names, or one "
    "assigned to the class after its creation (no __set_name__), works; cachetools needs "
    "the name to store its wrapper in the instance and raises TypeError "
    "(test_compat.py::test_cachedmethod_needs_no_attribute_name)."
)
_KEY_CHECKED_EARLY = (
    "A key that is not callable is refused when decorating (ArgumentTypeError, a "
    "TypeError), so the class body fails; cachetools raises TypeError at the first call "
    "(test_compat.py::test_cachedmethod_refuses_a_bad_key_when_decorating)."
)
_ONE_COMPUTATION = (
    "Single-flight: concurrent misses on one key run the function once, so the suite's "
    "barrier, which needs every thread inside the function at once, breaks; cachetools "
    "lets each thread compute and keeps the first result "
    "(test_cached_contract.py asserts one call per key under concurrency)."
)
_FLIGHT_NOT_CONDITION = (
    "A caller waiting for a call in progress waits on the key's flight, not on the "
    "condition (which only guards the cache, as the lock does), so a condition not built "
    "on the lock is never waited on and raises nothing; the one call and the shared "
    "result are asserted by test_cached_contract.py."
)

# Deliberate differences: test id -> why (docs/caching.md lists the same).
DIFFERENCES: dict[str, str] = {
    "TTLCacheTest::test_ttl_copy": (
        "TTLCache iterates in recency order (least recently used first, the next "
        "victim first), as LRUCache does; cachetools iterates a TTLCache in insertion "
        "order, which would need a second ordered map per entry. The rest of the test "
        "is asserted by test_compat.py::test_ttl_copy_is_independent_in_recency_order."
    ),
    "PickleTest::test_copy_partial": (
        "The wrapper of a callable without __qualname__ (a functools.partial) has one "
        "(its type's): the pure wrapper is a function, which always has one. The rest "
        "of the test (copy and deepcopy give the wrapper itself, the call works) is "
        "asserted by test_cachetools_base.py::test_cached_over_a_partial_is_copied_by_reference."
    ),
    "CacheWrapperTest::test_decorator_attributes": _CACHE_INFO,
    "CacheWrapperTest::test_decorator_attributes_cond": _CACHE_INFO,
    "CacheWrapperTest::test_decorator_attributes_lock": _CACHE_INFO,
    "CacheWrapperTest::test_decorator_clear_lock": _COUNTS,
    "CacheWrapperTest::test_decorator_cond": _COUNTS,
    "CacheWrapperTest::test_decorator_cond_error": _COUNTS,
    "CacheWrapperTest::test_decorator_cond_error_info": _COUNTS,
    "CacheWrapperTest::test_decorator_cond_info": _COUNTS,
    "CacheWrapperTest::test_decorator_lock": _COUNTS,
    "CacheWrapperTest::test_decorator_lock_cond": _COUNTS,
    "CacheWrapperTest::test_decorator_lock_cond_info": _COUNTS,
    "CacheWrapperTest::test_decorator_lock_info": _COUNTS,
    "CacheWrapperTest::test_decorator_repr": _REPR,
    "CacheWrapperTest::test_zero_size_cache_decorator_cond_info": _COUNTS,
    "CacheWrapperTest::test_zero_size_cache_decorator_lock": _COUNTS,
    "CacheWrapperTest::test_zero_size_cache_decorator_lock_info": _COUNTS,
    "DictTest::test_decorator_attributes": _CACHE_INFO,
    "DictTest::test_decorator_attributes_cond": _CACHE_INFO,
    "DictTest::test_decorator_attributes_lock": _CACHE_INFO,
    "DictTest::test_decorator_clear_lock": _COUNTS,
    "DictTest::test_decorator_cond": _COUNTS,
    "DictTest::test_decorator_cond_error": _COUNTS,
    "DictTest::test_decorator_cond_error_info": _COUNTS,
    "DictTest::test_decorator_lock": _COUNTS,
    "DictTest::test_decorator_lock_cond": _COUNTS,
    "DictTest::test_decorator_repr": _REPR,
    "CustomCacheTest::test_decorator_attributes": _CACHE_INFO,
    "CustomCacheTest::test_decorator_attributes_cond": _CACHE_INFO,
    "CustomCacheTest::test_decorator_attributes_lock": _CACHE_INFO,
    "CustomCacheTest::test_decorator_clear_lock": _COUNTS,
    "CustomCacheTest::test_decorator_cond": _COUNTS,
    "CustomCacheTest::test_decorator_cond_error": _COUNTS,
    "CustomCacheTest::test_decorator_cond_error_info": _COUNTS,
    "CustomCacheTest::test_decorator_lock": _COUNTS,
    "CustomCacheTest::test_decorator_lock_cond": _COUNTS,
    "CustomCacheTest::test_decorator_repr": _REPR,
    "InvalidCacheTest::test_decorator": _NONE_CACHE,
    "InvalidCacheTest::test_decorator_info": _NONE_CACHE,
    "NoneMethodTest::test_none_info": _NONE_CACHE,
    "UnboundMethodTest::test_class_access_alias": (
        "obj.method gives a new bound object on each access, as a plain method does; "
        "cachetools stores the bound wrapper in the instance's __dict__ on first access. "
        "Calls through the alias share the instance's cache either way."
    ),
    **{
        f"{case}::{test}": reason
        for case in ("CacheMethodTest", "DictMethodTest")
        for test, reason in {
            "test_decorator_attributes": _CACHE_INFO,
            "test_decorator_cond": _COUNTS,
            "test_decorator_cond_error": _COUNTS,
            "test_decorator_cond_error_info": _COUNTS,
            "test_decorator_cond_info": _COUNTS,
            "test_decorator_lock": _COUNTS,
            "test_decorator_lock_clear": _COUNTS,
            "test_decorator_lock_cond_info": _COUNTS,
            "test_decorator_lock_info": _COUNTS,
            "test_decorator_pickle_super": _BOUND_IN_DICT,
            "test_decorator_deepcopy_super": _BOUND_IN_DICT,
            "test_decorator_slots": _NO_INSTANCE_DICT,
            "test_decorator_immutable_dict": _NO_INSTANCE_DICT,
            "test_decorator_different_names": _NO_NAME,
            "test_decorator_no_set_name": _NO_NAME,
            "test_decorator_wrapper_error": _KEY_CHECKED_EARLY,
        }.items()
    },
    "CacheMethodTest::test_cond_nospace": _COUNTS,
    "CacheMethodTest::test_lock_nospace": _COUNTS,
    "CacheMethodTest::test_decorated_override": _BOUND_IN_DICT,
    "ThreadingTest::test_cached_lock": _ONE_COMPUTATION,
    "ThreadingTest::test_cachedmethod_lock": _ONE_COMPUTATION,
    "ThreadingTest::test_cached_cond": _FLIGHT_NOT_CONDITION,
    "ThreadingTest::test_cachedmethod_cond": _FLIGHT_NOT_CONDITION,
    "ThreadingTest::test_cached_lock_cond": _FLIGHT_NOT_CONDITION,
    "ThreadingTest::test_cachedmethod_lock_cond": _FLIGHT_NOT_CONDITION,
    "ThreadingTest::test_cached_unrelated_lock_cond": _FLIGHT_NOT_CONDITION,
    "ThreadingTest::test_cachedmethod_unrelated_lock_cond": _FLIGHT_NOT_CONDITION,
}

SUITE_CLASSES = (
    LRUCacheTest,
    LFUCacheTest,
    FIFOCacheTest,
    RRCacheTest,
    TTLCacheTest,
    TLRUCacheTest,
    CacheKeysTest,
    FIFODecoratorTest,
    LFUDecoratorTest,
    LRUDecoratorTest,
    RRDecoratorTest,
    TTLDecoratorTest,
    CacheTest,
    PickleTest,
    InvalidCacheTest,
    CacheWrapperTest,
    DictTest,
    CustomCacheTest,
    NoneMethodTest,
    WeakRefMethodTest,
    UnboundMethodTest,
    CacheMethodTest,
    DictMethodTest,
    ClassMethodTest,
    ThreadingTest,
)


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
