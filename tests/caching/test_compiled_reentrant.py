"""A seeded fuzzer: keys and values that re-enter the cache they are in, for the compiled cores.

Each key's `__hash__` and `__eq__`, and each value's `__del__`, may run
random operations on the same cache (reads, writes, deletes, `popitem()`,
`clear()`, iteration, `copy.copy`, a pickle round trip), nested up to
three levels deep; several keys share a hash, so lookups compare keys and
run `__eq__`. What must hold, for every compiled cache: the process never
crashes, every operation returns or raises `KeyError` or the `RuntimeError`
that says the cache changed during it, and after each top-level operation
the cache is whole (its length is the number of keys it iterates, each
readable, at most `maxsize` of them once plain writes have trimmed it).
With `getsizeof` (values of size 0 to 3), the books balance too:
`currsize` is the sum of the recorded sizes, and plain writes succeed and
bring it back under `maxsize`.

Each seed runs in a child process, so that a crash fails the test instead
of pytest. Run by hand over many seeds with
`python tests/caching/test_compiled_reentrant.py CLASS FIRST_SEED LAST_SEED [STEPS]`
(`SCALEKIT_PURE_PYTHON=1` runs the pure classes instead; `... 400 compiled sized`
runs them with `getsizeof`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import random
import subprocess
import sys
from typing import Any

import pytest

# TinyLFUCache keeps its segments in `collections.OrderedDict`s, which CPython does not
# make safe against keys that change them from their own __hash__/__eq__ (the C
# OrderedDict itself then crashes: python/cpython#142637), with or without the
# extension; so it is run by hand (`... TinyLFU 0 9`), not here.
NAMES = ["LRU", "FIFO", "SIEVE", "LFU", "S3FIFO"]
MAXSIZE = 6
DEPTH = 3
# Where an operation is unlocked from its Python code (the cache changed under it),
# these are what it may raise: a key removed meanwhile, or the cache's own report.
ALLOWED = (KeyError, RuntimeError)


class _Fuzz:
    def __init__(self, name: str, seed: int, sized: bool = False) -> None:
        from scalekit import caching

        self.cls = getattr(caching, f"{name}Cache")
        self.rng = random.Random(seed)
        self.sized = sized
        self.cache: Any = self.cls(MAXSIZE, getsizeof=_size_of) if sized else self.cls(MAXSIZE)
        self.depth = 0
        self.keys = [_Key(self, n) for n in range(12)]
        self.trace: list[str] = []
        self.unraisable: list[BaseException | None] = []

    def nested(self, rate: float) -> None:
        # Up to two operations, from a hash, a comparison or a release.
        if self.depth >= DEPTH:
            return
        for _ in range(2):
            if self.rng.random() < rate:
                self.depth += 1
                try:
                    self.op()
                except ALLOWED:
                    pass
                finally:
                    self.depth -= 1

    def op(self) -> None:
        rng, cache = self.rng, self.cache
        key = rng.choice(self.keys)
        roll = rng.random()
        if os.environ.get("FUZZ_TRACE"):
            self.trace.append(f"{'  ' * self.depth}{roll:.3f} {key.n}")
        if roll < 0.22:
            cache.get(key)
        elif roll < 0.34:
            cache[key]
        elif roll < 0.56:
            cache[key] = _Value(self)
        elif roll < 0.62:
            cache.setdefault(key, _Value(self))
        elif roll < 0.66:
            cache.update({key: _Value(self), rng.choice(self.keys): _Value(self)})
        elif roll < 0.72:
            del cache[key]
        elif roll < 0.77:
            cache.pop(key, None)
        elif roll < 0.80:
            cache.popitem()
        elif roll < 0.84:
            cache.clear()
        elif roll < 0.88:
            _ = key in cache
        elif roll < 0.91:
            list(cache.items())
        elif roll < 0.93:
            cache.peek(key)
        elif roll < 0.96:
            copy.copy(cache)
        else:
            pickle.loads(pickle.dumps(cache))

    def check(self) -> None:
        # With no Python code of the fuzzer's running (depth 0 stops nesting).
        cache = self.cache
        self.depth = DEPTH
        try:
            walk = list(cache)
            assert len(walk) == len(cache), (len(walk), len(cache))
            # Not "each key once": CPython's dict itself may store a key twice when a
            # comparison inside its insert mutates it (the lookup misses an entry made
            # meanwhile), with the pure classes as with the compiled ones.
            for key in walk:
                assert key in cache, key
                cache.peek(key)
            sizes = cache._sizes
            if sizes is not None:
                # Not "a size per key": the sizes are a dict too (see above).
                assert cache.currsize == sum(sizes.values()), (cache.currsize, dict(sizes))
        finally:
            self.depth = 0

    def run(self, steps: int) -> None:
        for step in range(steps):
            with contextlib.suppress(*ALLOWED):
                self.op()
            self.check()
            assert not self.unraisable, self.unraisable
            if step % 50 == 49:
                # Plain writes trim the cache back to maxsize.
                self.depth = DEPTH
                try:
                    for n in range(MAXSIZE + 1):
                        self.cache[_Key(self, 100 + n)] = n
                    # With getsizeof, entries of size 0 may stay besides them.
                    assert self.sized or len(self.cache) <= MAXSIZE, len(self.cache)
                    assert self.cache.currsize <= MAXSIZE, self.cache.currsize
                    self.cache.clear()
                finally:
                    self.depth = 0


class _Key:
    __slots__ = ("fuzz", "n")

    def __init__(self, fuzz: _Fuzz, n: int) -> None:
        self.fuzz = fuzz
        self.n = n

    def __hash__(self) -> int:
        self.fuzz.nested(0.2)
        return self.n % 5  # keys 0, 5 and 10 share a hash, and so on

    def __eq__(self, other: object) -> bool:
        self.fuzz.nested(0.25)
        return isinstance(other, _Key) and other.n == self.n

    def __reduce__(self) -> Any:
        return (_plain_key, (self.n,))

    def __repr__(self) -> str:
        return f"k{self.n}"


def _plain_key(n: int) -> int:
    return n


def _size_of(value: Any) -> int:
    return getattr(value, "size", 1)  # the plain writes' int values: 1


class _Value:
    __slots__ = ("fuzz", "size")

    def __init__(self, fuzz: _Fuzz) -> None:
        self.fuzz = fuzz
        self.size = fuzz.rng.choice([0, 1, 2, 3]) if fuzz.sized else 1

    def __del__(self) -> None:
        fuzz = self.fuzz
        if fuzz.depth < DEPTH:
            fuzz.nested(0.1)

    def __reduce__(self) -> Any:
        return (int, ())


def _run_seed(
    name: str, seed: int, steps: int, sized: bool = False
) -> subprocess.CompletedProcess[str]:
    # The compiled classes even in the suite's pure-Python pass (the child checks).
    env = {k: v for k, v in os.environ.items() if k != "SCALEKIT_PURE_PYTHON"}
    extra = ["sized"] if sized else []
    return subprocess.run(
        [sys.executable, __file__, name, str(seed), str(seed), str(steps), "compiled", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


# About 0.5 s a seed (a child process each): 5 classes x 4 fixed seeds, about 10 s in
# all. Many more seeds are run by hand.
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", NAMES)
def test_reentrant_keys_and_values_never_crash_or_corrupt_a_compiled_cache(
    name: str, seed: int
) -> None:
    from tests.caching.test_compiled import _compiled_module

    _compiled_module()  # skipped, or failed with SCALEKIT_REQUIRE_COMPILED=1, when not built
    done = _run_seed(name, seed, 400)
    assert done.returncode == 0, (done.returncode, done.stdout[-1000:], done.stderr[-3000:])


# With getsizeof: 5 classes x 2 fixed seeds, about 5 s more.
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", NAMES)
def test_reentrant_keys_and_values_keep_a_weighted_compiled_cache_balanced(
    name: str, seed: int
) -> None:
    from tests.caching.test_compiled import _compiled_module

    _compiled_module()
    done = _run_seed(name, seed, 400, sized=True)
    assert done.returncode == 0, (done.returncode, done.stdout[-1000:], done.stderr[-3000:])


def main(argv: list[str]) -> int:
    name, first, last = argv[0], int(argv[1]), int(argv[2])
    steps = int(argv[3]) if len(argv) > 3 else 400
    sized = "sized" in argv[4:]
    if "compiled" in argv[4:]:
        from scalekit import caching

        cls = getattr(caching, f"{name}Cache")
        cores = [c for c in cls.__mro__ if c.__module__.startswith("scalekit.caching._c")]
        assert cores, f"{cls} is not compiled"
    unraisable: list[BaseException | None] = []

    def hook(info: Any) -> None:
        # A value's __del__ that raised: it may raise what an operation may.
        if not isinstance(info.exc_value, ALLOWED):
            unraisable.append(info.exc_value)

    sys.unraisablehook = hook
    for seed in range(first, last + 1):
        fuzz = _Fuzz(name, seed, sized)
        fuzz.unraisable = unraisable
        try:
            fuzz.run(steps)
        except BaseException:
            print(f"{name} seed {seed}: failed", flush=True)
            print("\n".join(fuzz.trace[-40:]))
            raise
    print(f"{name} seeds {first}-{last}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


@pytest.mark.parametrize("name", [*NAMES, "TinyLFU"])
def test_plain_weighted_writes_and_deletes_never_recount_the_sizes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recount walks every entry: it is for re-entrant code only, not for a
    # write's own evictions.
    from scalekit import caching
    from scalekit.caching.base import Cache

    recounts: list[int] = []
    settle = Cache._settle_sizes
    monkeypatch.setattr(Cache, "_settle_sizes", lambda self: recounts.append(1) or settle(self))
    cache = getattr(caching, f"{name}Cache")(20, getsizeof=lambda value: value)
    for n in range(200):
        cache[n % 37] = n % 3 + 1
        if n % 5 == 0:
            cache.pop((n * 7) % 37, None)
    cache.clear()
    assert recounts == []
    assert cache.currsize == 0
