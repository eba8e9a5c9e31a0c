"""`FrequencySketch`'s documented sizes and ageing, each found by a mutant of `_sketch.py`.

The class docstring promises 32 one-byte counters per entry (four rows,
rounded up to a power of two, at least 16 entries), a doorkeeper of 8 bits
per key of a sample of `10 * entries` events, and an ageing step every
`sample_size` counted events that halves the counters and discounts the
truncated odd ones as Caffeine does. Fast: no cache, no trace.
"""

from __future__ import annotations

import pytest

from scalekit.caching._sketch import FrequencySketch


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


@pytest.mark.parametrize("entries", [1, 15, 16, 17, 1000, 5000])
def test_the_sketch_has_32_counters_per_entry_and_8_door_bits_per_sampled_key(
    entries: int,
) -> None:
    sketch = FrequencySketch(entries)
    assert sketch.entries == entries and sketch.sample_size == 10 * entries
    rows = sketch._rows
    assert len(rows) == 4
    assert [len(row) for row in rows] == [8 * _pow2(max(entries, 16))] * 4
    assert sketch._door is not None and len(sketch._door) * 8 == 8 * _pow2(10 * entries)
    assert FrequencySketch(entries, doorkeeper=False)._door is None


def test_a_sketch_for_one_entry_counts_and_ages_every_ten_events() -> None:
    sketch = FrequencySketch(1, doorkeeper=False)
    assert sketch.sample_size == 10
    for expected in range(1, 10):
        sketch.increment(502)
        assert sketch.frequency(502) == expected
    sketch.increment(502)  # the 10th counted event halves the counters
    assert sketch.frequency(502) == 5


def test_the_sketch_ages_exactly_at_its_sample_size() -> None:
    # 100 counted events: 15 of a hot key, then 84 distinct keys leave it at 15;
    # the 100th halves it. Keys that share a counter only make the others
    # count higher, never the halving come earlier.
    sketch = FrequencySketch(10, doorkeeper=False)
    for _ in range(15):
        sketch.increment(500)
    for key in range(84):
        sketch.increment(key)
    assert sketch.size == 99 and sketch.frequency(500) == 15
    sketch.increment(501)
    assert sketch.frequency(500) == 7
    assert sketch.size < 50


def test_a_saturated_counter_does_not_advance_the_sample() -> None:
    sketch = FrequencySketch(10, doorkeeper=False)
    for _ in range(40):
        sketch.increment(500)
    assert sketch.frequency(500) == 15 and sketch.size == 15


def test_ageing_discounts_the_odd_counters_before_halving() -> None:
    # One key counted 3 times: its four counters are 3 (odd). Caffeine's reset
    # sets size = (size - odd_counters / 4) / 2 = (3 - 1) / 2 = 1. Int keys
    # throughout: their hashes, so their slots, are the same in every run.
    sketch = FrequencySketch(100, doorkeeper=False)
    for _ in range(3):
        sketch.increment(502)
    assert sketch.size == 3
    sketch.reset()
    assert sketch.frequency(502) == 1 and sketch.size == 1
    # Even counts: nothing to discount, size halves: (1 + 4) // 2 == 2.
    for _ in range(4):
        sketch.increment(503)
    sketch.reset()
    assert sketch.frequency(503) == 2 and sketch.size == 2


def test_reset_clears_every_doorkeeper_bit() -> None:
    sketch = FrequencySketch(100)
    for key in range(300):
        sketch.increment(key)
    sketch.reset()
    assert sketch._door is not None and not any(sketch._door)
    assert all(sketch.frequency(key) == 0 for key in range(300))


def test_ageing_a_sketch_of_one_event_starts_the_next_sample_from_zero() -> None:
    sketch = FrequencySketch(10, doorkeeper=False)
    sketch.increment(502)
    sketch.reset()  # (1 - 4 odd counters / 4) / 2 == 0
    assert sketch.size == 0 and sketch.frequency(502) == 0


@pytest.mark.parametrize("row", range(4))
def test_the_estimate_is_the_least_of_all_four_counters(row: int) -> None:
    # Count-min: a key whose counters in three rows were raised (by hand, as
    # collisions with hotter keys would) is estimated by the fourth.
    sketch = FrequencySketch(100, doorkeeper=False)
    h = sketch._spread(502)
    lo, hi, mask = h & 0xFFFFFFFF, (h >> 32) | 1, sketch._mask
    for i, counters in enumerate(sketch._rows):
        counters[(lo + i * hi) & mask] = 0 if i == row else 5
    assert sketch.frequency(502) == 0
