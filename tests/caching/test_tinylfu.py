"""W-TinyLFU's parts: the sketch, the admission duel, the segments and the window sizing."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from benchmarks.caching.replay import replay
from benchmarks.caching.traces import read_trace
from scalekit.caching import LRUCache, S3FIFOCache, SIEVECache, TinyLFUCache
from scalekit.caching._sketch import FrequencySketch


def test_sketch_counts_saturate_and_the_doorkeeper_absorbs_first_sightings() -> None:
    sketch = FrequencySketch(1000)
    assert sketch.frequency("a") == 0
    sketch.increment("a")
    assert sketch.frequency("a") == 1 and sketch.size == 0  # doorkeeper only
    for expected in range(2, 17):
        sketch.increment("a")
        assert sketch.frequency("a") == expected
    for _ in range(10):
        sketch.increment("a")
    assert sketch.frequency("a") == 16  # 15 in the counters + the doorkeeper
    assert sketch.frequency("never seen") <= 1


def test_sketch_increments_only_the_counters_at_the_estimate() -> None:
    # Conservative update: a counter that a hotter key also uses (here raised
    # by hand, as a collision would) is left alone.
    sketch = FrequencySketch(100, doorkeeper=False)
    h = sketch._spread("a")
    lo, hi, mask = h & 0xFFFFFFFF, (h >> 32) | 1, sketch._mask
    slots = [(lo + i * hi) & mask for i in range(4)]
    sketch._rows[0][slots[0]] = 5
    sketch.increment("a")
    assert [row[slot] for row, slot in zip(sketch._rows, slots, strict=True)] == [5, 1, 1, 1]
    assert sketch.frequency("a") == 1
    for _ in range(4):
        sketch.increment("a")
    assert [row[slot] for row, slot in zip(sketch._rows, slots, strict=True)] == [5, 5, 5, 5]
    sketch.increment("a")
    assert [row[slot] for row, slot in zip(sketch._rows, slots, strict=True)] == [6, 6, 6, 6]


def test_sketch_reset_halves_counts_and_clears_the_doorkeeper() -> None:
    sketch = FrequencySketch(100)
    for _ in range(9):
        sketch.increment("hot")
    assert sketch.frequency("hot") == 9
    sketch.reset()
    assert sketch.frequency("hot") == 4  # (9 - 1) // 2 in the counters, doorkeeper cleared


def test_sketch_ages_itself_every_sample() -> None:
    sketch = FrequencySketch(10, doorkeeper=False)
    assert sketch.sample_size == 100
    for _ in range(15):
        sketch.increment("hot")
    for i in range(200):
        sketch.increment(i)
    assert sketch.frequency("hot") <= 7  # halved at least once


def test_a_hot_entry_survives_a_scan_that_flushes_lru() -> None:
    tiny: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    lru: LRUCache[int, bool] = LRUCache(100)
    hot = list(range(50))
    for cache in (tiny, lru):
        for _ in range(20):
            for key in hot:
                if cache.get(key) is None:
                    cache[key] = True
        for key in range(1000, 3000):  # a one-pass scan
            if cache.get(key) is None:
                cache[key] = True
    assert sum(key in tiny for key in hot) >= 45
    assert sum(key in lru for key in hot) == 0


def test_new_entries_land_in_the_window_and_hits_promote_to_protected() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(100, rng=random.Random(1))
    for key in range(100):
        cache[key] = key
    assert cache._window_max == 1 and len(cache._window) == 1
    probation = next(iter(cache._probation))
    assert cache.get(probation) == probation
    assert probation in cache._protected and probation not in cache._probation


def _replay(cache: TinyLFUCache[int, bool], keys: list[int]) -> None:
    for key in keys:
        if cache.get(key) is None:
            cache[key] = True


def test_ghost_hits_move_the_window() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(100, rng=random.Random(1))
    for key in range(100):
        cache[key] = key
    for _ in range(3):
        for key in range(100):
            cache.get(key)
    cache[1000] = 0
    cache[1001] = 0  # pushes 1000 out of the window: it loses the duel to a hot victim
    assert 1000 not in cache and list(cache._rejected) == [1000]
    assert cache.window_maxsize == 1
    cache[1000] = 0  # rejected, then wanted again: the window grows one step (1 entry here)
    assert cache.window_maxsize == 2 and list(cache._rejected) == [1001]
    for _ in range(10):
        cache.get(1000)
    for key in (3000, 3001, 3002):
        cache[key] = 0  # 1000, now hot, wins its duel: victim 1 is evicted and remembered
    assert 1000 in cache and list(cache._evicted) == [1] and 1 not in cache
    cache[1] = 1  # evicted to admit a candidate, then wanted again: the window shrinks
    assert cache.window_maxsize == 1 and not cache._evicted


def test_ghost_lists_are_bounded() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(100, rng=random.Random(1))
    for _ in range(3):
        for key in range(100):
            if cache.get(key) is None:
                cache[key] = key
    for key in range(1000, 2000):  # a scan: each key is rejected once and never returns
        cache[key] = key
    assert len(cache._rejected) == 5 and list(cache._rejected) == list(range(1994, 1999))
    assert cache.window_maxsize == 1


def test_recency_heavy_traffic_grows_the_window_past_the_protected_share() -> None:
    # A working set that keeps moving: recent keys are the ones that come back.
    rng = random.Random(3)
    keys = [base + rng.randrange(80) for base in range(0, 40_000, 4) for _ in range(8)]
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, keys)
    assert cache.window_maxsize > 80  # Caffeine's climber stops at the 80% protected share
    assert len(cache._protected) == 0


def test_the_climber_shrinks_the_window_when_a_loop_follows_a_recency_phase() -> None:
    # The loop's keys return too late for the ghosts to remember them; the
    # climber sees the hit ratio collapse and turns the window back.
    rng = random.Random(3)
    recency = [base + rng.randrange(80) for base in range(0, 40_000, 4) for _ in range(8)]
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, recency)
    assert cache.window_maxsize > 80
    _replay(cache, [10**6 + key for key in range(300)] * 400)
    assert cache.window_maxsize < 10


def test_a_loop_keeps_the_window_small() -> None:
    keys = list(range(300)) * 200  # a loop larger than the cache: frequency wins
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, keys)
    assert cache.window_maxsize < 10  # most of the cache stays behind the filter
    assert cache.stats().hit_ratio > 0.30  # LRU gets 0 here


def test_a_loop_larger_than_the_cache_raises_the_admission_margin() -> None:
    # Each sketch reset makes just-seen candidates look a count hotter than the
    # residents: victims evicted for them come straight back, with the window at
    # its minimum, so the margin rises and the main area stops churning. The
    # climber keeps probing: the window ends within one of its steps (6.25% of
    # the capacity) of its minimum.
    keys = list(range(600)) * 40
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    _replay(cache, keys)
    assert cache._margin == 2 and cache.window_maxsize <= 1 + 0.0625 * 100
    loop_hits = cache.stats().hit_ratio
    no_margin: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    no_margin._on_miss = lambda key: None  # type: ignore[method-assign]  # no ghost learning
    _replay(no_margin, keys)
    assert loop_hits > no_margin.stats().hit_ratio + 0.01
    assert loop_hits > 0.9 * (99 / 600)  # near the 99 static entries' share of the loop


def test_a_rejected_ghost_hit_lowers_the_margin_before_the_window_grows() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(100, rng=random.Random(1))
    cache._margin = 2
    cache._rejected[7] = None
    cache[7] = 7
    assert cache._margin == 1 and cache.window_maxsize == 1
    cache._evicted[8] = None
    cache[8] = 8  # the window is at its minimum: a victim ghost hit raises the margin
    assert cache._margin == 2 and cache.window_maxsize == 1


def test_the_climbers_sample_is_long_enough_to_tell_two_hit_ratios_apart() -> None:
    # Caffeine samples 10 * entries requests: for 100 entries, 1,000, whose hit
    # ratio is noise of several points. The sample also takes the requests that
    # bring the standard error of two samples' difference to 0.75 point:
    # 2 * p * (1 - p) / 0.0075**2 at the last sample's hit ratio p (1/2 at first).
    # The climber acts on the first write after that, a few requests later.
    rng = random.Random(7)
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    samples: list[tuple[int, float]] = []
    record = cache._set_previous_hit_rate

    def spy(hit_rate: float) -> None:
        samples.append((cache._hits_in_sample + cache._misses_in_sample, hit_rate))
        record(hit_rate)

    cache._set_previous_hit_rate = spy  # type: ignore[method-assign]
    _replay(cache, [rng.randrange(400) for _ in range(60_000)])
    assert len(samples) >= 3
    assert 8888 <= samples[0][0] <= 8888 + 5  # the first sample: p = 1/2
    for (_, p), (requests, _) in itertools.pairwise(samples):
        floor = int(2 * p * (1 - p) / 0.0075**2)
        assert floor <= requests <= floor + 5
        assert requests > 10 * 100


def _zigzag(n: int, sweeps: int) -> list[int]:
    up = list(range(n))
    return [key for i in range(sweeps) for key in (up if i % 2 == 0 else up[::-1])]


def test_the_shadow_lru_turns_the_cache_into_an_lru_when_recency_wins() -> None:
    # Sweeping a key range up and down: at each turn the most recent keys come
    # back first, so LRU is optimal and a frequency filter keeps the wrong ones.
    keys = _zigzag(1000, 40)
    cache: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    blind: TinyLFUCache[int, bool] = TinyLFUCache(100, rng=random.Random(1))
    blind._recency_wins = lambda: False  # type: ignore[method-assign]
    lru: LRUCache[int, bool] = LRUCache(100)
    half = len(keys) // 2
    ratios = []
    for c in (cache, blind, lru):
        for i, key in enumerate(keys):
            if i == half:
                c.reset_stats()  # judge the second half, after the first samples
            if c.get(key) is None:
                c[key] = True
        ratios.append(c.stats().hit_ratio)
    ours, without_shadow, lru_ratio = ratios
    assert cache.window_maxsize >= 95
    assert ours >= lru_ratio - 0.005
    assert without_shadow < lru_ratio - 0.01


def test_the_shadow_samples_keys_so_it_stays_small() -> None:
    big: TinyLFUCache[int, int] = TinyLFUCache(10**6)
    assert big._shadow_max <= 1024 and big._shadow_shift == 64 - 10
    for key in range(20_000):
        big.get(key)
    assert 0 < len(big._shadow) <= 1024
    small: TinyLFUCache[int, int] = TinyLFUCache(300)
    assert small._shadow_max == 300 and small._shadow_shift == 64  # every key
    sized: TinyLFUCache[int, bytes] = TinyLFUCache(2**24, getsizeof=len)
    assert sized._shadow_max <= 1024


def test_s3fifo_keeps_one_hit_wonders_out_of_main_and_ghost_hits_go_to_main() -> None:
    cache: S3FIFOCache[int, int] = S3FIFOCache(20)
    for key in range(20):
        cache[key] = key  # before the first eviction the small queue overflows into main
    assert len(cache._small) == 2 and len(cache._main) == 18
    cache[100] = 100  # evicts from small: key 0 was never hit, so it goes to the ghost
    assert 0 not in cache and 0 in cache._ghost
    cache[0] = 0  # remembered by the ghost: straight into main
    assert 0 in cache._main and 0 not in cache._ghost


# -- the reference table: TinyLFU against Caffeine and the best other policy ------------

_TRACES = Path(__file__).resolve().parents[2] / "data" / "traces"
# (Caffeine 2.6.2, the best non-Belady column) from the traces' published
# reference table (docs/caching.md): count-bounded, 1% and 10% of the unique keys.
_REFERENCE = {
    ("lirs-gli.trace.gz", 25): (1.01, 1.36),
    ("lirs-gli.trace.gz", 252): (15.15, 16.16),
    ("lirs-multi1.trace.gz", 26): (16.53, 16.53),
    ("lirs-multi1.trace.gz", 260): (48.32, 49.80),
    ("lirs-sprite.trace.gz", 70): (23.81, 23.81),
    ("lirs-sprite.trace.gz", 707): (80.64, 86.48),
    ("lirs-loop.trace.gz", 101): (8.65, 9.87),
    ("cache2k-web07.trace.gz", 204): (40.62, 43.75),
    ("cache2k-web07.trace.gz", 2048): (56.43, 58.22),
    ("cache2k-web12.trace.gz", 137): (36.67, 40.96),
    ("cache2k-web12.trace.gz", 1375): (70.63, 72.12),
}
_SEEDS = range(1, 6)


@pytest.mark.parametrize(
    "row", sorted(_REFERENCE), ids=[f"{t.split('.')[0]}@{c}" for t, c in sorted(_REFERENCE)]
)
def test_tinylfu_over_five_seeds_meets_caffeine_and_is_within_a_point_of_the_best(
    row: tuple[str, int],
) -> None:
    # Replayed as `python -m benchmarks.caching replay` does, once per seed of the
    # admission RNG; the worst seed is held to both targets. The slowest module of
    # the caching tests: about 1.2 million requests per seed (20-30 s in all).
    trace, capacity = row
    keys = read_trace(_TRACES / trace)
    caffeine, best = _REFERENCE[row]
    worst = min(replay(TinyLFUCache(capacity, rng=random.Random(seed)), keys) for seed in _SEEDS)
    assert worst >= caffeine
    assert worst >= best - 1.0


def test_the_default_rng_is_seeded_so_replays_are_reproducible() -> None:
    from scalekit.caching.tinylfu import _DEFAULT_SEED

    keys = read_trace(_TRACES / "lirs-multi1.trace.gz")
    default = TinyLFUCache(26)
    seeded = TinyLFUCache(26, rng=random.Random(_DEFAULT_SEED))
    assert replay(default, keys) == replay(seeded, keys)
    # Pinned (both implementations): an unseeded RNG gives another replay almost
    # every time, and even when its hit count coincides, not the same residents.
    assert default.stats().hits == 3029
    assert sorted(default) == sorted(seeded)


# The committed LIRS traces without a reference row, at 1% and 10% of their
# unique keys, against the policies scalekit has (docs/caching.md, "Hit ratios
# on real traces"): the worst of the 5 seeds is within a point of the best of
# LRU, SIEVE and S3-FIFO, except on the one row pinned to its figures.
_OFF_TABLE = [
    ("multi2", 57),
    ("multi2", 568),
    ("multi3", 75),
    ("multi3", 745),
    ("2_pools", 99),
    ("2_pools", 994),
    ("cpp", 12),
    ("cpp", 122),
    ("cs", 14),
    ("cs", 141),
    ("ps", 31),
    ("ps", 308),
]
# Worst seed, best other policy (S3-FIFO), as the docs give them.
_OFF_TABLE_MISSES = {("cpp", 122): (78.61, 80.36)}


@pytest.mark.parametrize("row", _OFF_TABLE, ids=[f"{t}@{c}" for t, c in _OFF_TABLE])
def test_tinylfu_on_the_traces_without_a_reference_row(row: tuple[str, int]) -> None:
    # About 0.5 s per row: these traces hold 7,000-100,000 requests.
    name, capacity = row
    keys = read_trace(_TRACES / f"lirs-{name}.trace.gz")
    worst = min(replay(TinyLFUCache(capacity, rng=random.Random(seed)), keys) for seed in _SEEDS)
    best = max(replay(cls(capacity), keys) for cls in (LRUCache, SIEVECache, S3FIFOCache))
    if row in _OFF_TABLE_MISSES:
        assert (round(worst, 2), round(best, 2)) == _OFF_TABLE_MISSES[row]
    else:
        assert worst >= best - 1.0
    if row in _OFF_TABLE[0::2] and name != "cs":  # the 1% rows: the best of them all
        assert worst >= best


_HASHED_KEYS = (
    '"k1", b"k1", ("k1",), hashkey("user", page=2), typedkey("a", 1.5), (("x", b"y"), None), '
    '("\\u00e9",), int, KWARGS_MARK'
)
_STR_REPLAY = f"""
import random, sys
from pathlib import Path
from benchmarks.caching.replay import replay
from benchmarks.caching.traces import read_trace
from scalekit.caching import TinyLFUCache
from scalekit.caching._keyhash import stable_hash
from scalekit.caching._speedups import FrequencySketch
from scalekit.caching.keys import KWARGS_MARK, hashkey, typedkey
print([(stable_hash(k), FrequencySketch._spread(k)) for k in ({_HASHED_KEYS})])
# str keys and the tuples cached() builds for a str argument, one or the other per key.
keys = [hashkey("k%d" % k) if k % 2 else "k%d" % k for k in read_trace(Path(sys.argv[1]))]
cache = TinyLFUCache(int(sys.argv[2]), rng=random.Random(1))
print(replay(cache, keys), cache.stats().hits, sorted(map(repr, cache))[:50])
"""


def test_key_hashes_and_replays_do_not_depend_on_the_process_hash_seed() -> None:
    # str hashes are salted per process, and with them those of tuples holding
    # a str (every key cached() builds for a str argument); the sketch and the
    # shadow's sample hash both by their contents, so processes with other
    # PYTHONHASHSEEDs compute this process's hashes, replay the same hits and
    # keep the same entries (web12 @1375 also samples its shadow LRU by hash:
    # 1 key in 2). Two subprocesses, 1-3 s each.
    import os
    import subprocess
    import sys

    from scalekit.caching._keyhash import stable_hash
    from scalekit.caching._speedups import FrequencySketch
    from scalekit.caching.keys import KWARGS_MARK, hashkey, typedkey

    hashed = eval(
        f"({_HASHED_KEYS})",
        {"hashkey": hashkey, "typedkey": typedkey, "int": int, "KWARGS_MARK": KWARGS_MARK},
    )
    here = str([(stable_hash(k), FrequencySketch._spread(k)) for k in hashed])
    root = Path(__file__).resolve().parents[2]
    runs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        result = subprocess.run(
            [sys.executable, "-c", _STR_REPLAY, str(_TRACES / "cache2k-web12.trace.gz"), "1375"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        runs.append(result.stdout)
    assert runs[0] == runs[1]
    assert runs[0].splitlines()[0] == here


def test_the_sketch_hashes_str_and_bytes_by_their_contents() -> None:
    from scalekit.caching import _sketch
    from scalekit.caching._keyhash import stable_hash
    from scalekit.caching._speedups import FrequencySketch as Active

    p61 = (1 << 61) - 1
    assert stable_hash("ab") == (0x6261 % p61 + 2 * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    assert stable_hash(b"ab") == stable_hash("ab") != stable_hash("ab\x00")
    assert stable_hash(7) == hash(7) and stable_hash((1, 2)) == hash((1, 2)) & ((1 << 64) - 1)
    # The compiled sketch (when built) computes the same spread: ASCII in C, the rest via Python.
    pure, active = _sketch.FrequencySketch(64), Active(64)
    for key in ("", "k12345", "é", "日本", "\ud800", b"", b"\x00\xff", "x" * 300, 12, (1, "a")):
        assert active._spread(key) == pure._spread(key)
