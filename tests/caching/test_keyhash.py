"""The stable key hash of TinyLFU's sketch and shadow sample: known answers, both builds.

`_keyhash.stable_hash` is defined in its module docstring; the compiled
sketch and TinyLFU core compute it in C (`_keyhash.pxi`). The answers below
are pinned: a change to them changes every TinyLFU replay, so it must be
deliberate. `test_tinylfu.py::test_key_hashes_and_replays_do_not_depend_on_the_process_hash_seed`
checks them in processes with other `PYTHONHASHSEED`s.
"""

from __future__ import annotations

import enum
import random
from typing import Any, NamedTuple

import cachetools.keys
import pytest

from scalekit.caching import _sketch
from scalekit.caching._keyhash import stable_hash
from scalekit.caching._speedups import FrequencySketch as ActiveSketch
from scalekit.caching.keys import KWARGS_MARK, hashkey, methodkey, typedkey

M64 = (1 << 64) - 1

# (key, stable_hash(key)): what a process gives whatever its PYTHONHASHSEED.
KNOWN_ANSWERS: list[tuple[Any, int]] = [
    ("k1", (0x316B + 2 * 0x9E3779B97F4A7C15) & M64),
    (b"k1", (0x316B + 2 * 0x9E3779B97F4A7C15) & M64),
    (("k1",), 0xEC32002B3674F4C2),
    (hashkey("user", page=2), 0x28AB7AE2DD3B3A75),
    (typedkey("a", 1.5), 0x9E5EBEE2AD26CE8C),
    ((("x", b"y"), None, True, -1), 0xFCB4D3746B6E4B0C),
    (("é",), 0xA8F1265943531231),
    ((), 0x4FA9D65E2CBA1C7B),
    (None, 0xF0E1D2C3B4A59687),
    (KWARGS_MARK, 0x6B7761726773D00D),
    (int, 0x7E081E2A075A8FD1),
    (str, 0x7E081E29F78ADFD1),
    (-1, M64 - 1),  # hash(-1) is -2
    (2**70, 2**9),  # hash() of an int is its value modulo 2**61 - 1
]


def _tuple_rule(items: tuple[Any, ...]) -> int:
    # The tuple rule transcribed from the docstring, over stable_hash of the items.
    acc = 2870177450012600261
    for item in items:
        acc = (acc + stable_hash(item) * 14029467366897019727) & M64
        acc = (((acc << 31) | (acc >> 33)) & M64) * 11400714785074694791 & M64
    acc = (acc + (len(items) ^ 2870177450012600261 ^ 3527539)) & M64
    return 1546275796 if acc == M64 else acc


@pytest.mark.parametrize(("key", "expected"), KNOWN_ANSWERS, ids=lambda v: repr(v)[:30])
def test_stable_hash_known_answers(key: Any, expected: int) -> None:
    assert stable_hash(key) == expected


def test_the_tuple_rule_is_the_documented_one_and_keeps_the_hash_of_number_tuples() -> None:
    for key in [("k1",), hashkey("a", b=b"x"), (("x",), None), (1, ("y", 2.5))]:
        assert stable_hash(key) == _tuple_rule(key)
    rng = random.Random(7)
    for _ in range(200):
        key = tuple(
            rng.choice([rng.randrange(-(2**70), 2**70), rng.random(), True, ()])
            for _ in range(rng.randrange(6))
        )
        assert stable_hash(key) == hash(key) & M64
    # A frozenset, like a user's own key type, keeps its hash().
    assert stable_hash(frozenset({3})) == hash(frozenset({3})) & M64


class _Point(NamedTuple):
    name: str
    n: int


class _Colour(str, enum.Enum):
    RED = "k1"


class _Raw(bytes):
    def __hash__(self) -> int:
        return id(self)


def test_subclasses_of_tuple_str_and_bytes_hash_as_their_contents() -> None:
    # namedtuples, cachetools' hashed tuple (it caches a salted hash()), a
    # StrEnum-style member (whose hash() is its name's, salted): their contents.
    assert stable_hash(_Point("k1", 2)) == stable_hash(("k1", 2))
    assert stable_hash(cachetools.keys.hashkey("k1", b=2)) == stable_hash(
        tuple(cachetools.keys.hashkey("k1", b=2))
    )
    assert stable_hash(_Colour.RED) == stable_hash("k1")
    assert stable_hash(_Raw(b"k1")) == stable_hash(b"k1")
    assert stable_hash((_Point("a", 1), _Colour.RED)) == stable_hash((("a", 1), "k1"))


def test_the_keys_cached_builds_hash_by_their_contents() -> None:
    # Equal keys built separately (the key of each call) hash alike, and the
    # marker and the argument types do not hash by address.
    assert stable_hash(hashkey("a", 1, x="b")) == stable_hash(("a", 1, KWARGS_MARK, ("x", "b")))
    assert stable_hash(methodkey(object(), "a", x=1)) == stable_hash(hashkey("a", x=1))
    assert stable_hash(typedkey("a", x=1)) == _tuple_rule(("a", KWARGS_MARK, ("x", 1), int, str))
    assert stable_hash(hashkey("a")) != stable_hash("a") != stable_hash(hashkey("a", "a"))


def test_the_active_sketch_spreads_every_key_as_the_pure_one() -> None:
    # The compiled sketch (when built) computes stable_hash in C: ASCII text,
    # bytes, tuples, None and the marker there, non-ASCII text and types via Python.
    pure, active = _sketch.FrequencySketch(64), ActiveSketch(64)
    keys = [key for key, _ in KNOWN_ANSWERS]
    keys += [
        "",
        "\ud800",
        "日本",
        "x" * 300,
        (("\ud800",),),
        typedkey(b"", None, x=()),
        _Point("é", 1),
        _Colour.RED,
        _Raw(b"\x00"),
        cachetools.keys.hashkey("a", x=1),
        0.5,
        -(2**64),
    ]
    for key in keys:
        assert active._spread(key) == pure._spread(key)
    for bad in (([],), ("a", ({},))):
        for sketch in (pure, active):
            with pytest.raises(TypeError, match="unhashable"):
                sketch.increment(bad)


def test_a_key_nested_past_the_recursion_limit_raises_in_both_builds() -> None:
    deep: Any = ()
    for _ in range(100_000):
        deep = (deep,)
    for sketch in (_sketch.FrequencySketch(16), ActiveSketch(16)):
        with pytest.raises(RecursionError):
            sketch.frequency(deep)


def test_compiled_tinylfu_samples_its_shadow_as_the_pure_one_with_tuple_keys() -> None:
    # Above 1,024 entries the shadow LRU samples keys by stable_hash (1 in 2 here);
    # the compiled core's sample must be the pure one's, so both hit alike.
    from scalekit.caching import TinyLFUCache

    # The compiled class (when built) is TinyLFUCache(TinyLFUCore, pure TinyLFUCache).
    classes = [c for c in TinyLFUCache.__mro__ if c.__name__ == "TinyLFUCache"]
    rng = random.Random(11)
    keys = [hashkey(f"k{int(rng.paretovariate(0.6))}", n=None) for _ in range(25_000)]
    keys[::3] = [_Point(k[0], 1) for k in keys[::3]]
    results = []
    for cls in classes:
        cache = cls(2048, rng=random.Random(1))
        hits = 0
        for key in keys:
            if cache.get(key) is None:
                cache[key] = 1
            else:
                hits += 1
        assert 0 < cache._shadow_shift < 64
        results.append((hits, list(cache._window), list(cache._protected)))
    assert all(result == results[0] for result in results)
