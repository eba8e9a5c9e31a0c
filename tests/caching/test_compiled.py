"""The compiled twins behave exactly as the pure-Python reference they stand in for.

The compiled extension is optional: without it these tests are skipped,
unless `SCALEKIT_REQUIRE_COMPILED=1` (set by `./scripts/test`, hence by CI),
which makes a missing extension an error. `./scripts/test` also runs the
caching suite a second time with `SCALEKIT_PURE_PYTHON=1`, so every cache
test passes against both implementations; in that pass the public classes
are the pure ones, and the tests here build each compiled twin from its
pure class to compare the two side by side.
"""

from __future__ import annotations

import copy
import inspect
import os
import pickle
import random
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from benchmarks._common import TRACES_DIR
from benchmarks.caching.traces import read_trace
from scalekit import _compiled
from scalekit.caching import (
    FIFOCache,
    LFUCache,
    LRUCache,
    S3FIFOCache,
    SIEVECache,
    TinyLFUCache,
    _speedups,
    cached,
    hashkey,
)
from scalekit.caching._sketch import FrequencySketch as PureSketch
from scalekit.exceptions import ConfigurationError

REQUIRE_COMPILED = os.environ.get("SCALEKIT_REQUIRE_COMPILED") == "1"


def _compiled_module() -> ModuleType:
    try:
        import scalekit.caching._csketch as module
    except ImportError as exc:
        if REQUIRE_COMPILED:
            pytest.fail(f"SCALEKIT_REQUIRE_COMPILED=1 but {exc}", pytrace=False)
        pytest.skip(f"the compiled extension is not built ({exc})")
    return module


@pytest.fixture
def compiled_sketch() -> Any:
    return _compiled_module().FrequencySketch


def _keys(rng: random.Random) -> Any:
    # ints (negative, huge), strings, tuples and floats: every hash() path.
    return rng.choice(
        [
            rng.randrange(3000),
            str(rng.randrange(500)),
            (rng.randrange(50), "t"),
            -1,
            -2,
            2**70 + rng.randrange(10),
            rng.random(),
        ]
    )


def _same_state(pure: Any, twin: Any) -> None:
    assert (pure.entries, pure.sample_size, pure.size) == (
        twin.entries,
        twin.sample_size,
        twin.size,
    )
    assert (pure._mask, pure._door_mask) == (twin._mask, twin._door_mask)
    assert pure._rows == twin._rows
    assert pure._door == twin._door


@pytest.mark.parametrize("seed", range(6))
def test_compiled_sketch_matches_the_pure_one_call_for_call(
    compiled_sketch: Any, seed: int
) -> None:
    rng = random.Random(seed)
    doorkeeper = seed % 2 == 0
    entries = (1, 16, 100, 1000, 5, 300)[seed]
    pure, twin = (
        PureSketch(entries, doorkeeper=doorkeeper),
        compiled_sketch(entries, doorkeeper=doorkeeper),
    )
    _same_state(pure, twin)
    for step in range(20_000):
        key = _keys(rng)
        roll = rng.random()
        if roll < 0.6:
            assert pure.increment(key) is twin.increment(key) is None
        elif roll < 0.97:
            assert pure.frequency(key) == twin.frequency(key)
        elif roll < 0.999:
            grow = rng.randrange(1, 4000)
            pure.ensure_capacity(grow)
            twin.ensure_capacity(grow)
        else:
            pure.reset()
            twin.reset()
        if step % 1000 == 0:
            _same_state(pure, twin)
    _same_state(pure, twin)
    assert pure.size > 0  # the sequence reached the counters, not only the doorkeeper
    for key in (0, -1, "a", (1, 2), 2**64 + 3, 0.5):
        assert PureSketch._spread(key) == compiled_sketch._spread(key)


def test_compiled_sketch_ages_as_the_pure_one(compiled_sketch: Any) -> None:
    # Through several automatic resets, with saturated and odd counters.
    pure, twin = PureSketch(10), compiled_sketch(10)
    keys = [i % 7 for i in range(300)] + list(range(1000))
    for key in keys:
        pure.increment(key)
        twin.increment(key)
        assert pure.size == twin.size
    _same_state(pure, twin)
    assert pure.sample_size == twin.sample_size == 100


def test_compiled_sketch_copies_and_pickles_with_its_counters(compiled_sketch: Any) -> None:
    sketch = compiled_sketch(100)
    for i in range(500):
        sketch.increment(i % 40)
    for clone in (pickle.loads(pickle.dumps(sketch)), copy.deepcopy(sketch)):
        # Rebuilt as the implementation active here (pure under SCALEKIT_PURE_PYTHON=1).
        assert type(clone) is _speedups.FrequencySketch
        _same_state(sketch, clone)
        clone.increment(3)
        clone.reset()
        assert clone._rows != sketch._rows  # its own counters
    for fixed in (PureSketch(100), compiled_sketch(100)):
        with pytest.raises(AttributeError):
            fixed.new_attribute = 1


def test_a_cache_pickled_with_the_extension_loads_without_it(compiled_sketch: Any) -> None:
    cache: TinyLFUCache[Any, Any] = TinyLFUCache(100)
    cache._sketch = compiled_sketch(16)
    for i in range(2000):
        cache[i % 150] = i
    expected = [cache._sketch.frequency(key) for key in range(150)]
    code = (
        "import pickle, sys; cache = pickle.loads(sys.stdin.buffer.read()); "
        "print(type(cache._sketch).__module__); "
        "print([cache._sketch.frequency(k) for k in range(150)]); print(sorted(cache))"
    )
    env = {**os.environ, "SCALEKIT_PURE_PYTHON": "1"}
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            input=pickle.dumps(cache),
            capture_output=True,
            check=True,
            env=env,
        )
        .stdout.decode()
        .splitlines()
    )
    assert out == ["scalekit.caching._sketch", str(expected), str(sorted(cache))]


def test_compiled_sketch_refuses_rows_resized_from_outside(compiled_sketch: Any) -> None:
    sketch = compiled_sketch(100, doorkeeper=False)
    sketch._rows[2].clear()
    with pytest.raises(IndexError):
        sketch.increment("a")
    with pytest.raises(IndexError):
        sketch.frequency("a")
    with pytest.raises(ValueError, match="power-of-two"):
        sketch._rows = [bytearray(3)] * 4


def _replay(cache: TinyLFUCache[Any, Any], keys: list[int]) -> int:
    hits = 0
    for key in keys:
        if cache.get(key) is None:
            cache[key] = key
        else:
            hits += 1
    return hits


@pytest.mark.parametrize("trace", ["lirs-gli.trace.gz", "cache2k-web07.trace.gz"])
def test_tinylfu_hits_the_same_requests_with_either_sketch(
    compiled_sketch: Any, trace: str
) -> None:
    # A committed trace and a Zipf stream: the same hits, to the hit, and the same entries.
    keys = read_trace(TRACES_DIR / trace)[:40_000]
    rng = random.Random(7)
    keys += [int(rng.paretovariate(1.0)) for _ in range(20_000)]
    results = []
    for sketch_class in (PureSketch, compiled_sketch):
        cache: TinyLFUCache[Any, Any] = TinyLFUCache(500)
        cache._sketch = sketch_class(16)  # as TinyLFUCache.__init__ builds it
        results.append((_replay(cache, keys), sorted(cache), cache.window_maxsize))
        assert type(cache._sketch) is sketch_class
    assert results[0] == results[1]
    assert 0 < results[0][0] < len(keys)


def test_tinylfu_uses_the_implementation_the_environment_selects() -> None:
    sketch_type = type(TinyLFUCache(100)._sketch)
    assert sketch_type is _speedups.FrequencySketch
    if _compiled.pure_python_requested():
        assert sketch_type is PureSketch
        assert _compiled.implementation() == "pure Python (SCALEKIT_PURE_PYTHON is set)"
    else:
        module = _compiled_module()
        assert sketch_type is module.FrequencySketch
        assert _compiled.implementation().startswith("compiled extension for TinyLFU's")


def test_loading_an_unknown_twin_names_the_known_ones() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"module must be one of \['scalekit\.caching\._cfreq', "
        r"'scalekit\.caching\._clinked', 'scalekit\.caching\._csketch', "
        r"'scalekit\.caching\._ctinylfu'\], got 'scalekit\.nope'",
    ):
        _compiled.load("scalekit.nope")


@pytest.mark.parametrize("pure", [True, False])
def test_python_m_scalekit_names_the_active_implementation(pure: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SCALEKIT_PURE_PYTHON"}
    if pure:
        env["SCALEKIT_PURE_PYTHON"] = "1"
    else:
        _compiled_module()
    out = subprocess.run(
        [sys.executable, "-m", "scalekit"], capture_output=True, text=True, check=True, env=env
    )
    line = out.stdout.splitlines()[1]
    if pure:
        assert line.split() == [
            "hot",
            "paths",
            "pure",
            "Python",
            "(SCALEKIT_PURE_PYTHON",
            "is",
            "set)",
        ]
    else:
        assert "compiled extension for TinyLFU's frequency sketch" in line
    assert out.stderr == ""  # the fallback is silent
    code = (
        "from scalekit.caching import TinyLFUCache; print(type(TinyLFUCache(9)._sketch).__module__)"
    )
    module = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert module == ("scalekit.caching._sketch" if pure else "scalekit.caching._csketch")


# -- the compiled LRUCache, FIFOCache, SIEVECache, LFUCache and S3FIFOCache -------------

# Every cache class with a compiled core, for the tests below.
LINKED = [LRUCache, FIFOCache, SIEVECache, LFUCache, S3FIFOCache]


def _core_of(public: type) -> type:
    import scalekit.caching._cfreq as freq
    import scalekit.caching._clinked as linked

    return {
        "SIEVECache": linked.SieveCore,
        "LFUCache": freq.LFUCore,
        "S3FIFOCache": freq.S3FIFOCore,
    }.get(public.__name__, linked.LinkedCore)


def _policy_state(cache: Any) -> Any:
    """What the policy keeps beyond the order of the keys: counts, queues, the ghost."""
    if type(cache).__name__ == "LFUCache":
        return [(key, cache.frequency(key)) for key in cache]
    if type(cache).__name__ == "S3FIFOCache":
        state = cache.__getstate__()
        return (
            {key: list(node) for key, node in state["_data"].items()},
            list(state["_small"]),
            list(state["_main"]),
            list(state["_ghost"]),
            state["_small_used"],
            state["_main_used"],
            state["_has_evicted"],
        )
    return None


def _linked_pair(public: type) -> tuple[type, type]:
    """(the pure reference class, the compiled public class) of `public`."""
    _compiled_module()  # skipped or failed alike when not built
    core = _core_of(public)
    if not issubclass(public, core):
        # SCALEKIT_PURE_PYTHON=1: the public class is the pure one; build the twin here.
        namespace = {"_reorder": public is LRUCache}
        return public, type(public)(public.__name__, (core, public), namespace)
    return public.__mro__[2], public


@pytest.mark.parametrize("public", LINKED, ids=lambda c: c.__name__)
def test_calling_init_again_empties_a_compiled_cache_as_the_pure_one(public: type) -> None:
    # `__init__` on a live cache starts it over, sizes and entries alike.
    results = []
    for cls in _linked_pair(public):
        cache = cls(10)
        for n in range(5):
            cache[n] = n
        cache.get(1)
        cache.__init__(10, getsizeof=lambda value: 2)
        assert (len(cache), cache.currsize, list(cache), 0 in cache) == (0, 0, [], False)
        with pytest.raises(KeyError):
            del cache[0]
        for n in range(7):
            cache[n] = n
        results.append((list(cache.items()), cache.currsize, _policy_state(cache)))
    assert results[0] == results[1]
    assert results[0][1] == 10


def _drive(rng: random.Random, cache: Any, log: list[Any], steps: int) -> None:
    for _ in range(steps):
        key = rng.randrange(40)
        roll = rng.random()
        if roll < 0.35:
            log.append(("get", cache.get(key)))
        elif roll < 0.45:
            try:
                log.append(("[]", cache[key]))
            except KeyError:
                log.append(("[]", KeyError))
        elif roll < 0.75:
            cache[key] = rng.randrange(1000)
        elif roll < 0.8:
            log.append(("pop", cache.pop(key, None)))
        elif roll < 0.83 and len(cache):
            log.append(("popitem", cache.popitem()))
        elif roll < 0.86:
            log.append(("setdefault", cache.setdefault(key, -key)))
        elif roll < 0.88 and key in cache:
            del cache[key]
        elif roll < 0.9:
            log.append(("peek", cache.peek(key)))
        else:
            log.append(("in", key in cache))
        log.append((list(cache), len(cache), cache.currsize, cache.stats(), _policy_state(cache)))


@pytest.mark.parametrize("public", LINKED)
@pytest.mark.parametrize("seed", range(4))
def test_compiled_linked_cache_matches_the_pure_one_call_for_call(public: type, seed: int) -> None:
    pure_class, twin_class = _linked_pair(public)
    sized = seed % 2 == 1  # weighted entries take the pure Cache code over the core's hooks
    kwargs: dict[str, Any] = {"getsizeof": lambda v: 1 + v % 3} if sized else {}
    logs = []
    for cls in (pure_class, twin_class):
        cache = cls(12, **kwargs)
        log: list[Any] = []
        _drive(random.Random(seed), cache, log, 3000)
        clone = copy.copy(cache)
        _drive(random.Random(seed + 10), clone, log, 300)
        log.append((list(cache), cache.stats()))  # the copy left the source alone
        logs.append(log)
    assert logs[0] == logs[1]


@pytest.mark.parametrize("public", LINKED)
def test_compiled_linked_cache_pickles_to_the_pure_state(public: type) -> None:
    pure_class, twin_class = _linked_pair(public)
    twin = twin_class(5)
    for i in range(9):
        twin[i] = str(i)
    twin.get(5)
    if twin_class is public:  # pickled by name: only the published class can be found
        restored = pickle.loads(pickle.dumps(twin))
        assert type(restored) is public
        assert list(restored) == list(twin) and restored.stats() == twin.stats()
    # The pickled state is the pure class's: loaded into the pure class, it works.
    pure = _load_state(pure_class, twin.__getstate__())
    assert list(pure.items()) == list(twin.items())
    pure[100] = "x"
    twin[100] = "x"
    assert len(pure) == 5 and 100 in pure and list(pure.items()) == list(twin.items())
    # And a pure cache's state loads into the twin.
    back = _load_state(twin_class, pure.__getstate__())
    assert list(back.items()) == list(pure.items()) and back.maxsize == 5
    back[200] = pure[200] = "y"
    assert list(back.items()) == list(pure.items())
    assert _policy_state(back) == _policy_state(pure)
    for i in range(30):  # both carry on alike from the state
        for cache in (back, pure):
            if cache.get(i % 11) is None:
                cache[i % 11] = i
    assert list(back.items()) == list(pure.items()) and back.stats() == pure.stats()
    assert _policy_state(back) == _policy_state(pure)


def _load_state(cls: type, state: Any) -> Any:
    # What unpickling does with a state: __setstate__ if the class has one, else __dict__.
    obj = cls.__new__(cls)
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
    else:
        obj.__dict__.update(state)
    return obj


@pytest.mark.parametrize("public", LINKED)
def test_compiled_linked_cache_frees_a_value_that_refers_to_it(public: type) -> None:
    # The nodes are not GC-tracked; the cache's traversal must still see the cycle.
    import gc
    import weakref

    _, twin_class = _linked_pair(public)

    class Holder:
        cache: Any = None

    cache = twin_class(4)
    holder = Holder()
    holder.cache = cache
    cache["h"] = holder
    ref = weakref.ref(cache)
    del cache, holder
    gc.collect()
    assert ref() is None


def test_cached_over_compiled_lru_counts_in_the_cache_and_binds_as_a_method() -> None:
    _, twin_class = _linked_pair(LRUCache)
    calls: list[Any] = []

    def f(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return (args, sorted(kwargs.items()))

    cache = twin_class(2)
    wrapped = cached(cache)(f)
    if twin_class is LRUCache:  # the public class is the compiled one: the compiled wrapper
        assert type(wrapped).__name__ == "CachedHit"
    assert wrapped(1, 2) == wrapped(1, 2) == ((1, 2), [])
    assert wrapped(1, b=2) == wrapped(1, b=2) == ((1,), [("b", 2)])
    assert set(cache) == {(1, 2), hashkey(1, b=2)}
    assert wrapped.cache_info().hits == 2 and wrapped.cache_info().misses == 2
    wrapped(3)  # evicts (1, 2), the least recent
    assert (1, 2) not in cache and len(calls) == 3
    assert wrapped.__wrapped__ is f and wrapped.__name__ == "f"

    class Shop:
        @cached(twin_class(10))
        def price(self, item: str) -> str:
            return f"{item}!"

    shop = Shop()
    assert shop.price("tea") == shop.price("tea") == "tea!"
    assert Shop.price.cache_info().hits == 1


# -- the compiled TinyLFUCache ----------------------------------------------------------


def _tinylfu_pair() -> tuple[type, type]:
    """(the pure reference TinyLFUCache, the compiled one)."""
    _compiled_module()
    import scalekit.caching._ctinylfu as core

    if not issubclass(TinyLFUCache, core.TinyLFUCore):
        core.bind(TinyLFUCache)
        return TinyLFUCache, type(TinyLFUCache)(
            "TinyLFUCache", (core.TinyLFUCore, TinyLFUCache), {}
        )
    return TinyLFUCache.__mro__[2], TinyLFUCache


def _tinylfu_state(cache: Any) -> Any:
    return (
        list(cache._window.items()),
        list(cache._probation.items()),
        list(cache._protected.items()),
        cache.window_maxsize,
        cache._margin,
        cache.stats(),
        cache.currsize,
    )


@pytest.mark.parametrize("trace", ["lirs-gli.trace.gz", "cache2k-web07.trace.gz"])
@pytest.mark.parametrize("sized", [False, True])
def test_compiled_tinylfu_admits_as_the_pure_one(trace: str, sized: bool) -> None:
    # The same hits to the hit and the same queues, on a trace and a Zipf stream,
    # with unit sizes (the compiled writes) and with weights (the pure writes, compiled reads).
    pure_class, twin_class = _tinylfu_pair()
    keys = read_trace(TRACES_DIR / trace)[:30_000]
    rng = random.Random(5)
    keys += [int(rng.paretovariate(1.0)) for _ in range(15_000)]
    kwargs: dict[str, Any] = {"getsizeof": lambda v: 1 + v % 4} if sized else {}
    results = []
    for cls in (pure_class, twin_class):
        cache = cls(400, rng=random.Random(3), **kwargs)
        hits, states = 0, []
        for step, key in enumerate(keys):
            if cache.get(key) is None:
                cache[key] = key
            else:
                hits += 1
            if step % 7 == 0 and key in cache:
                del cache[key]
            if step % 2000 == 0:
                states.append(_tinylfu_state(cache))
        results.append((hits, states, _tinylfu_state(cache)))
    assert results[0] == results[1]
    assert results[0][0] > 1000  # the stream reached the main area, not only the window


def test_compiled_tinylfu_copies_and_pickles_to_the_pure_state() -> None:
    pure_class, twin_class = _tinylfu_pair()
    twin = twin_class(50, rng=random.Random(1))
    for i in range(400):
        if twin.get(i % 70) is None:
            twin[i % 70] = i
    clone = copy.copy(twin)
    clone[1000] = 1
    assert 1000 not in twin and _tinylfu_state(clone) != _tinylfu_state(twin)
    pure = pure_class.__new__(pure_class)
    pure.__dict__.update(copy.deepcopy(twin.__getstate__()))  # its own queues, sketch and rng
    assert _tinylfu_state(pure) == _tinylfu_state(twin)
    for i in range(300):  # the pure class carries on from the compiled one's state
        pure.get(i % 90) or pure.__setitem__(i % 90, i)
        twin.get(i % 90) or twin.__setitem__(i % 90, i)
    assert _tinylfu_state(pure) == _tinylfu_state(twin)
    if twin_class is TinyLFUCache:
        restored = pickle.loads(pickle.dumps(twin))
        assert type(restored) is TinyLFUCache
        assert _tinylfu_state(restored) == _tinylfu_state(twin)


# -- memory safety: Python code running inside a cache operation -----------------------

# Each case runs in a child process, so that a crash fails the test instead of pytest.
_CHILD_PRELUDE = """
import sys
import scalekit.caching._cfreq as freq
import scalekit.caching._clinked as linked
from scalekit.caching import FIFOCache, LFUCache, LRUCache, S3FIFOCache, SIEVECache

public = {
    "LRU": LRUCache, "FIFO": FIFOCache, "SIEVE": SIEVECache, "LFU": LFUCache, "S3FIFO": S3FIFOCache
}[sys.argv[1]]
core = {
    SIEVECache: linked.SieveCore, LFUCache: freq.LFUCore, S3FIFOCache: freq.S3FIFOCore
}.get(public, linked.LinkedCore)
if issubclass(public, core):
    pure, twin = public.__mro__[2], public
else:
    namespace = {"_reorder": public is LRUCache}
    pure, twin = public, type(public)(public.__name__, (core, public), namespace)
"""


def _child(body: str, name: str, timeout: float = 20.0) -> str:
    _linked_pair(LRUCache)  # skipped or failed alike when not built
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_PRELUDE + body, name],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return done.stdout


@pytest.mark.parametrize("name", ["LRU", "FIFO", "LFU"])
def test_a_values_del_writing_the_key_being_inserted_keeps_the_cache_whole(name: str) -> None:
    # Writing "new" evicts "a", whose value's __del__ writes "new" as well.
    out = _child(
        """
for cls in (pure, twin):
    cache = cls(2)
    class V:
        def __del__(self):
            cache["new"] = "from __del__"
    cache["a"] = V()
    cache["b"] = 2
    cache["new"] = "outer"
    print(cls is twin, len(cache), sorted(cache), sorted(cache.items()))
    for i in range(20):
        cache[f"k{i}"] = i
    print(cls is twin, len(cache), list(cache))
""",
        name,
    )
    pure_lines = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("False")]
    twin_lines = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("True")]
    assert pure_lines == twin_lines and len(twin_lines) == 2
    assert twin_lines[0].startswith("2 ['b', 'new']")


def test_a_values_del_writing_the_key_being_inserted_keeps_a_sieve_cache_whole() -> None:
    # Writing "new" evicts "a", whose value's __del__ writes "new": the eviction
    # loop then finds the cache full again and evicts "b", and the outer write
    # updates the entry the __del__ made. Both implementations, the same state.
    out = _child(
        """
for cls in (pure, twin):
    cache = cls(2)
    class V:
        def __del__(self):
            cache["new"] = "from __del__"
    cache["a"] = V()
    cache["b"] = 2
    cache["new"] = "outer"
    print(cls is twin, len(cache), list(cache), list(cache.items()), cache.currsize)
    for i in range(20):
        cache[f"k{i}"] = i
        assert len(cache) == len(list(cache)) <= 2, (i, len(cache), list(cache))
    del cache["k19"]
    cache.popitem()
    print(cls is twin, len(cache), list(cache), cache.stats())
""",
        "SIEVE",
    )
    lines = out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == [
        line.split(" ", 1)[1] for line in lines[2:]
    ]
    assert lines[2] == "True 1 ['new'] [('new', 'outer')] 1"
    assert lines[3].startswith("True 0 [] ")


def test_a_values_del_writing_the_key_being_inserted_keeps_the_compiled_s3fifo_whole() -> None:
    # As above; the pure S3FIFOCache evicts through the generic popitem loop, so only
    # the compiled one is held to the outcome: the write from __del__ is an update.
    out = _child(
        """
cache = twin(2)
class V:
    def __del__(self):
        cache["new"] = "from __del__"
cache["a"] = V()
cache["b"] = 2
cache["new"] = "outer"
print(len(cache), sorted(cache.items()), cache._small_used + cache._main_used)
for i in range(20):
    cache[f"k{i}"] = i
print(len(cache), list(cache), cache._small_used + cache._main_used)
""",
        "S3FIFO",
    )
    assert out.splitlines() == [
        "2 [('b', 2), ('new', 'outer')] 2",
        "2 ['k18', 'k19'] 2",
    ]


@pytest.mark.parametrize("name", ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"])
def test_a_values_del_deleting_its_overwritten_key_keeps_the_cache_whole(name: str) -> None:
    # The old value is released after the write is done: its __del__ then deletes the key.
    out = _child(
        """
for cls in (pure, twin):
    cache = cls(4)
    class V:
        def __del__(self):
            del cache["k"]
    cache["a"] = 1
    cache["k"] = V()
    cache["z"] = 2
    cache["k"] = "new"
    print(cls is twin, "k" in cache, len(cache), list(cache))
    for i in range(10):
        cache[f"x{i}"] = i
    print(cls is twin, len(cache), list(cache))
""",
        name,
    )
    lines = out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == [
        line.split(" ", 1)[1] for line in lines[2:]
    ]
    assert lines[2] == "True False 2 ['a', 'z']"
    assert lines[3] == "True 4 ['x6', 'x7', 'x8', 'x9']"


@pytest.mark.parametrize("mode", ["clear", "pop"])
@pytest.mark.parametrize("name", ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"])
def test_a_key_changing_the_cache_while_it_is_copied_or_pickled_never_crashes_it(
    name: str, mode: str
) -> None:
    # The first key hashed while the state is built clears the cache or removes itself:
    # the copy and the pickle are of the cache before that, and the cache stays whole.
    out = _child(
        f"""
import copy, pickle
class Key:
    armed = False
    def __init__(self, n):
        self.n = n
    def __hash__(self):
        if Key.armed:
            Key.armed = False
            cache.clear() if {mode!r} == "clear" else cache.pop(self, None)
        return hash(self.n)
    def __eq__(self, other):
        return isinstance(other, Key) and other.n == self.n
    def __reduce__(self):
        return (int, (self.n,))
if getattr(sys.modules.get(twin.__module__), twin.__qualname__, None) is not twin:
    twin.__module__, twin.__qualname__ = "__main__", "Twin"
    Twin = twin
for how in ("copy", "pickle"):
    cache = twin(8)
    for n in range(5):
        cache[Key(n)] = n
    Key.armed = True
    clone = copy.copy(cache) if how == "copy" else pickle.loads(pickle.dumps(cache))
    # Disarmed in case building the state hashed no key (some pure classes pickle so):
    # the check below iterates over a snapshot, which hashes each key to skip removed ones.
    Key.armed = False
    kept = sorted(k if isinstance(k, int) else k.n for k in clone)
    print(how, kept, len(cache) == len(list(cache)))
""",
        name,
    )
    for line, how in zip(out.splitlines(), ("copy", "pickle"), strict=True):
        assert line == f"{how} [0, 1, 2, 3, 4] True"


@pytest.mark.parametrize("name", ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"])
def test_unlocked_threads_never_corrupt_a_compiled_cache(name: str) -> None:
    # About 1 s each: four threads, keys hashing in Python, a switch every microsecond
    # (so inside a key's __hash__/__eq__, in the middle of another thread's lookup).
    out = _child(
        """
import copy, pickle, random, threading, time
sys.setswitchinterval(1e-6)

class Key:
    __slots__ = ("n",)
    def __init__(self, n):
        self.n = n
    def __hash__(self):
        for _ in range(3):
            pass
        return hash(self.n)
    def __eq__(self, other):
        return isinstance(other, Key) and other.n == self.n

if getattr(sys.modules.get(twin.__module__), twin.__qualname__, None) is not twin:
    # The twin built here in the pure-Python pass: picklable by reference from here.
    twin.__module__, twin.__qualname__ = "__main__", "Twin"
    Twin = twin
cache = twin(64)
keys = [Key(i) for i in range(256)]
def work(seed):
    rng = random.Random(seed)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        key = rng.choice(keys)
        roll = rng.random()
        try:
            if roll < 0.45:
                cache.get(key)
            elif roll < 0.85:
                cache[key] = key.n
            elif roll < 0.93:
                cache.pop(key, None)
            elif roll < 0.96:
                cache.popitem()
            elif roll < 0.98:
                cache.clear()  # swaps the dict under the other threads' operations
            elif roll < 0.99:
                list(cache.items())
            elif roll < 0.995:
                clone = pickle.loads(pickle.dumps(cache))  # a state taken mid-race loads
                assert len(clone) == len(list(clone)) <= 64 + 4
            else:
                copy.copy(cache)
        except (KeyError, RuntimeError):
            pass  # unlocked: a key removed meanwhile, a dict changed while iterated
errors = []
threading.excepthook = lambda args: errors.append(repr(args.exc_value))
threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert not errors, errors  # anything but KeyError or RuntimeError, a state that did not load
walk = list(cache)
print(len(cache), len(walk), len({key.n for key in walk}))
for key in walk:
    assert cache.peek(key) == key.n
for n in range(1000, 1100):
    cache[Key(n)] = n
print(len(cache), len(list(cache)), Key(1099) in cache)
""",
        name,
    )
    first, then = out.splitlines()
    size, walked, distinct = map(int, first.split())
    # Unlocked, each of the four threads may have passed the size check before the
    # others' inserts landed: at most one entry each beyond maxsize.
    assert size == walked == distinct and size <= 64 + 4
    # One thread again: the next writes trim it back to maxsize, the newest kept.
    assert then.split() == ["64", "64", "True"]


@pytest.mark.parametrize("name", ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"])
def test_values_running_cache_code_while_the_gc_frees_their_cycle_never_crash(name: str) -> None:
    # The GC clears the cache while its values' __del__ still read and write it.
    out = _child(
        """
import gc
for round in range(3):
    cache = twin(8)
    class V:
        def __init__(self, n):
            self.cache, self.n = cache, n
        def __del__(self):
            c = self.cache
            c.get(self.n)
            c[self.n + 100] = self.n
            c.pop(self.n + 1, None)
            list(c)
            len(c)
    for i in range(8):
        cache[i] = V(i)
    cache.get(3), cache.get(3), cache.get(5)
    del cache, V
    print(gc.collect() > 0)
""",
        name,
    )
    assert out.split() == ["True"] * 3


def test_a_corrupt_lfu_state_is_refused_and_leaves_the_cache_usable() -> None:
    pure_class, twin_class = _linked_pair(LFUCache)
    cache = pure_class(4)
    for key in "abc":
        cache[key] = key
    cache.get("a")
    state = cache.__getstate__()
    bad = dict(state, _data={**state["_data"], "zz": state["_data"]["a"]})  # a key in no bucket
    twin = twin_class(4)
    with pytest.raises(ValueError, match="_data"):
        twin.__setstate__(bad)
    twin["x"] = 1
    assert list(twin) == ["x"] and twin.frequency("x") == 1
    twin.__setstate__(state)
    assert sorted(twin) == ["a", "b", "c"] and twin.frequency("a") == 2


@pytest.mark.parametrize("public", LINKED)
def test_a_missing_tuple_key_raises_keyerror_as_a_dict_does(public: type) -> None:
    for cls in _linked_pair(public):
        cache = cls(4)
        for op in (cache.__getitem__, cache.__delitem__, cache.pop):
            with pytest.raises(KeyError) as info:
                op((1, 2))
            assert info.value.args == ((1, 2),), (cls, op)


_COLLIDING_KEY = """
class K:
    # A constant hash: every lookup of a K compares it with the cached K keys.
    armed = []
    def __init__(self, n):
        self.n = n
    def __hash__(self):
        return 7
    def __eq__(self, other):
        if K.armed:
            K.armed.pop()()
        return self.n == getattr(other, "n", None)
"""


@pytest.mark.parametrize("name", ["LRU", "FIFO"])
def test_cached_hit_path_survives_an_argument_eq_that_clears_the_cache(name: str) -> None:
    # The lookup of f(K(2)) compares K(2) with the cached K(1): that __eq__ clears
    # the cache and allocates dicts, which must not reuse the dict being searched.
    out = _child(
        _COLLIDING_KEY
        + """
from scalekit.caching import cached
for cls in (pure, twin):
    cache = cls(16)
    keep = []
    @cached(cache)
    def f(x):
        return ("computed", x.n)
    f(K(1))
    probe = (K(2),)
    K.armed.append(lambda: (cache.clear(), keep.append({probe: b"A" * 64})))
    print(cls is twin, f(*probe), len(cache), cache.stats().hits)
""",
        name,
    )
    pure_line, twin_line = out.splitlines()
    assert pure_line.split(" ", 1)[1] == twin_line.split(" ", 1)[1]
    assert twin_line == "True ('computed', 2) 1 0"


_HASH_CLEARS = """
class K:
    calls = 0
    clear_on = None
    def __init__(self, n):
        self.n = n
    def __hash__(self):
        K.calls += 1
        if K.calls == K.clear_on:
            cache.clear()
        return hash(self.n)
    def __eq__(self, other):
        return isinstance(other, K) and other.n == self.n
"""


@pytest.mark.parametrize("name", ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"])
@pytest.mark.parametrize("via", ["setitem", "setdefault"])
def test_a_key_whose_hash_clears_the_cache_during_a_write_leaves_it_whole(
    name: str, via: str
) -> None:
    # The clear comes at the first, second or third hash of the key during one write
    # (the lookup, the insert, a second insert): the write lands in the cleared
    # cache, which stays whole through further writes and its own clear. The pure
    # classes built on OrderedDict are left out: CPython's OrderedDict itself loses
    # track of its order when a key's hash clears it during a write.
    out = _child(
        _HASH_CLEARS
        + f"""
import gc
reference = twin if "{name}" in ("LRU", "FIFO") else pure
for nth in (1, 2, 3):
  for cls in (reference, twin):
    cache = cls(8)
    for i in range(4):
        cache[i] = [i]
    K.calls, K.clear_on = 0, nth
    key = K(100 + nth)
    {"cache[key] = 'v'" if via == "setitem" else "cache.setdefault(key, 'v')"}
    cleared, K.clear_on = K.calls >= nth, None  # the reads below hash the key too
    print(cleared, len(cache), len(list(cache)), cache.get(key))
    del key
    gc.collect()
    junk = [[j] * 8 for j in range(10000)]  # reuses freed nodes' memory
    for j in range(20):
        cache[1000 + j] = j
    assert len(cache) == len(list(cache)) == 8, (len(cache), list(cache))
    cache.clear()
print("whole")
""",
        name,
    )
    *lines, last = out.splitlines()
    assert last == "whole"
    # Two lines a step (the reference, then the twin). The first and second hash are
    # in every write, and both agree; a third only in some writes of either.
    assert len(lines) == 6 and lines[:4] == ["True 1 1 v"] * 4
    assert {lines[4], lines[5]} <= {"True 1 1 v", "False 5 5 v"}


class _Releases:
    """A value whose `__del__` calls `action`: it runs when the cache lets go of it."""

    def __init__(self, action: Any) -> None:
        self.action = action

    def __del__(self) -> None:
        self.action()


@pytest.mark.parametrize("public", [*LINKED, TinyLFUCache])
def test_a_values_del_writing_during_clear_finds_the_cache_empty_and_whole(public: type) -> None:
    # clear() lets go of the values only once the cache is empty: a __del__ writing
    # then makes the only entry, in either implementation.
    pair = _tinylfu_pair() if public is TinyLFUCache else _linked_pair(public)
    for cls in pair:
        cache = cls(4)
        cache["a"] = _Releases(lambda c=cache: c.__setitem__("b", 1))
        cache["z"] = 0
        cache.clear()
        assert (len(cache), list(cache), cache.get("b")) == (1, ["b"], 1), cls
        assert cache.popitem() == ("b", 1)
        assert (len(cache), list(cache)) == (0, [])


def test_the_compiled_cached_wrapper_reads_as_the_pure_one_where_it_can() -> None:
    pure_class, twin_class = _linked_pair(LRUCache)

    def double(x: int) -> int:
        return 2 * x

    for cls in (pure_class, twin_class):
        f = cached(cls(4))(double)
        assert repr(f) == f"<function {double.__qualname__} at {id(f):#x}>", cls
        assert inspect.unwrap(f) is double and f.__name__ == "double" and f(2) == 4


def test_an_uninitialised_cached_hit_refuses_to_be_called() -> None:
    out = _child(
        """
hit = linked.CachedHit  # what cached() returns over a compiled LRUCache
try:
    hit.__new__(hit)(1)
except __import__("scalekit").InvalidStateError as exc:  # a RuntimeError
    print(hit.__name__, exc)
""",
        "LRU",
    )
    assert out == "CachedHit CachedHit is not initialised: cached() builds it\n"


_REENTRANT_STATE_CHILD = """
import copy, pickle, sys
from scalekit.caching import FIFOCache, LRUCache, SIEVECache

cls = {"LRUCache": LRUCache, "FIFOCache": FIFOCache, "SIEVECache": SIEVECache}[sys.argv[1]]
mode, how = sys.argv[2], sys.argv[3]
c = cls(maxsize=10)
arm = [False]


class K:
    def __init__(self, n):
        self.n = n

    def __hash__(self):
        if arm[0]:
            arm[0] = False
            c.clear() if mode == "clear" else c.pop(self)
        return self.n

    def __eq__(self, other):
        return isinstance(other, K) and other.n == self.n

    def __reduce__(self):
        return (K, (self.n,))


for i in range(5):
    c[K(i)] = [i]
arm[0] = True
other = copy.copy(c) if how == "copy" else pickle.loads(pickle.dumps(c))
assert not arm[0], "the state was taken without hashing a key"
assert len(list(c)) == len(c), (list(c), len(c))
assert len(list(other)) == len(other), (list(other), len(other))
assert all(other[k] == [k.n] for k in other)
print(len(c), sorted(k.n for k in other))
"""


@pytest.mark.parametrize("how", ["copy", "pickle"])
@pytest.mark.parametrize("mode", ["clear", "pop"])
@pytest.mark.parametrize("public", [LRUCache, FIFOCache, SIEVECache])
def test_state_of_a_compiled_cache_survives_a_key_hash_that_changes_it(
    public: type, mode: str, how: str
) -> None:
    # copy.copy and pickle take the state through __getstate__; the first key
    # hashed while the state is built clears the cache or pops itself. The state
    # is the cache as it was before that hash: all five entries.
    _compiled_module()
    env = {k: v for k, v in os.environ.items() if k != "SCALEKIT_PURE_PYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", _REENTRANT_STATE_CHILD, public.__name__, mode, how],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, (out.returncode, out.stderr)
    left = 0 if mode == "clear" else 4
    assert out.stdout.split("\n")[0] == f"{left} [0, 1, 2, 3, 4]"
