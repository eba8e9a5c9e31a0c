"""A count-min sketch with small saturating counters, ageing and a doorkeeper (TinyLFU)."""

from __future__ import annotations

from collections.abc import Hashable

from ._keyhash import stable_hash

__all__ = ["FrequencySketch"]

_M64 = (1 << 64) - 1
_MAX_COUNT = 15  # a 4-bit counter saturates at 15, as in Caffeine's FrequencySketch
_COUNTERS_PER_ROW = 8  # per entry: 4 rows x 8 = 32 counters per entry, twice Caffeine's 16
_SAMPLE_FACTOR = 10  # the sketch ages every 10 x entries recorded events, as Caffeine
_DOOR_BITS = 8  # doorkeeper bits per key of a sample period (~5% false positives)
_MIN_ENTRIES = 16

_HALVE = bytes(c >> 1 for c in range(256))
_ODD = bytes(c & 1 for c in range(256))


def _ceil_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class FrequencySketch:
    """Estimates how often each key was seen in the recent past.

    Four counters per key (in four rows of a count-min sketch) that stop at
    15; a key's estimate is the minimum of its counters, plus one if the
    doorkeeper (a Bloom filter that absorbs each key's first occurrence) has
    it. An increment raises only the counters equal to the current estimate
    (the conservative update that TinyLFU's paper calls a minimal increment),
    so a key does not inflate the counters it shares with hotter keys. After
    `sample_size` recorded events every counter is halved and the
    doorkeeper cleared, so old popularity fades (TinyLFU's reset).

    The sketch is sized by a number of *entries*, as Caffeine's is: 32
    one-byte counters per entry (rounded up to a power of two; twice
    Caffeine's 16, which over the reference traces lost up to 0.5 point on
    the recency-heavy rows for 16 bytes per entry) and a
    doorkeeper of 8 bits per key of a sample period, where the sample is
    `10 * entries` events. Its tables start at 16 entries and
    `ensure_capacity` grows them as the cache fills: a table doubles by repeating itself, so
    every key keeps its counters (a key's slot in the doubled table holds
    the same count as its slot before) and growing never forgets.

    Thread-safety: not thread-safe. Runtime complexity: O(1) per call;
    growing is O(entries), amortized O(1) per entry added.
    """

    __slots__ = ("_door", "_door_mask", "_mask", "_rows", "entries", "sample_size", "size")

    def __init__(self, entries: int = _MIN_ENTRIES, *, doorkeeper: bool = True) -> None:
        self.entries = 0
        self.sample_size = 0
        self.size = 0
        self._mask = _COUNTERS_PER_ROW * _MIN_ENTRIES - 1
        self._rows = [bytearray(self._mask + 1) for _ in range(4)]
        self._door: bytearray | None = bytearray(1) if doorkeeper else None
        self._door_mask = 7
        self.ensure_capacity(max(entries, 1))

    def ensure_capacity(self, entries: int) -> None:
        """Size the sketch for at least *entries* keys (it never shrinks).

        Runtime complexity: O(1) unless the tables double, then O(entries).
        """
        if entries <= self.entries:
            return
        self.entries = entries
        self.sample_size = _SAMPLE_FACTOR * entries
        width = _ceil_pow2(max(entries, _MIN_ENTRIES)) * _COUNTERS_PER_ROW
        rows = self._rows
        while len(rows[0]) < width:
            rows = [row + row for row in rows]
        self._rows = rows
        self._mask = len(rows[0]) - 1
        door = self._door
        if door is not None:
            bits = _ceil_pow2(self.sample_size) * _DOOR_BITS
            while len(door) * 8 < bits:
                door = door + door
            self._door = door
            self._door_mask = len(door) * 8 - 1

    @staticmethod
    def _spread(key: Hashable) -> int:
        h = stable_hash(key)
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        return h ^ (h >> 31)

    def frequency(self, key: Hashable) -> int:
        """The estimated count of *key*, 0..16."""
        h = self._spread(key)
        mask = self._mask
        r0, r1, r2, r3 = self._rows
        lo, hi = h & 0xFFFFFFFF, (h >> 32) | 1
        count = min(
            r0[lo & mask],
            r1[(lo + hi) & mask],
            r2[(lo + 2 * hi) & mask],
            r3[(lo + 3 * hi) & mask],
        )
        door = self._door
        if door is not None:
            d = self._door_mask
            i, j = h & d, (h >> 21) & d
            if door[i >> 3] >> (i & 7) & 1 and door[j >> 3] >> (j & 7) & 1:
                count += 1
        return count

    def increment(self, key: Hashable) -> None:
        """Record one occurrence of *key*; ages the sketch every `sample_size` events."""
        # _spread, inlined: this runs on every access of a TinyLFUCache.
        kind = type(key)
        h = hash(key) & _M64 if kind is int else stable_hash(key)
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 31
        door = self._door
        if door is not None:
            d = self._door_mask
            i, j = h & d, (h >> 21) & d
            if not (door[i >> 3] >> (i & 7) & 1 and door[j >> 3] >> (j & 7) & 1):
                # A first sighting only sets the doorkeeper; like a saturated
                # counter in Caffeine, it does not advance the sample.
                door[i >> 3] |= 1 << (i & 7)
                door[j >> 3] |= 1 << (j & 7)
                return
        mask = self._mask
        lo, hi = h & 0xFFFFFFFF, (h >> 32) | 1
        r0, r1, r2, r3 = self._rows
        i0, i1, i2, i3 = lo & mask, (lo + hi) & mask, (lo + 2 * hi) & mask, (lo + 3 * hi) & mask
        c0, c1, c2, c3 = r0[i0], r1[i1], r2[i2], r3[i3]
        # Conservative update (TinyLFU's "minimal increment"): only the counters
        # at the estimate rise, so a key sharing a counter with a hotter one
        # does not inflate it further.
        least = min(c0, c1, c2, c3)
        if least < _MAX_COUNT:
            if c0 == least:
                r0[i0] = least + 1
            if c1 == least:
                r1[i1] = least + 1
            if c2 == least:
                r2[i2] = least + 1
            if c3 == least:
                r3[i3] = least + 1
            self.size += 1
            if self.size >= self.sample_size:
                self.reset()

    def reset(self) -> None:
        """Halve every counter and clear the doorkeeper (TinyLFU's ageing step)."""
        odd = sum(row.translate(_ODD).count(1) for row in self._rows)
        self._rows = [bytearray(row.translate(_HALVE)) for row in self._rows]
        if self._door is not None:
            self._door = bytearray(len(self._door))
        # As Caffeine: discount the truncation of odd counters, then halve.
        self.size = max(0, (self.size - (odd >> 2)) >> 1)
