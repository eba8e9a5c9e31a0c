# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled twin of `scalekit.caching._sketch.FrequencySketch`.

Same constructor, attributes, methods and counter semantics as the pure
class, which stays the reference: the same 64-bit spread of `stable_hash(key)` (in C: `_keyhash.pxi`),
the same four rows of one-byte counters that saturate at 15, the same
doorkeeper bits, conservative update and ageing. A cache holding either one
makes the same admission decisions, so hit ratios are identical;
`tests/caching/test_compiled.py` replays random operation sequences on both
and compares every estimate and every counter.

The rows and the doorkeeper are `bytearray`s, as in the pure class; their
buffers are looked up on every call, so resizing one from outside cannot
make the sketch read out of bounds (it raises `IndexError` instead).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memset

from ..exceptions import ConfigurationError

cdef extern from *:
    """
    #define SK_MIX1 0xBF58476D1CE4E5B9ULL
    #define SK_MIX2 0x94D049BB133111EBULL
    """
    const uint64_t SK_MIX1
    const uint64_t SK_MIX2

include "_keyhash.pxi"

__all__ = ["FrequencySketch"]

cdef int _MAX_COUNT = 15
cdef Py_ssize_t _COUNTERS_PER_ROW = 8
cdef Py_ssize_t _SAMPLE_FACTOR = 10
cdef Py_ssize_t _DOOR_BITS = 8
cdef Py_ssize_t _MIN_ENTRIES = 16


cdef inline Py_ssize_t _ceil_pow2(Py_ssize_t n):
    cdef Py_ssize_t p = 1
    while p < n:
        p <<= 1
    return p


cdef inline uint64_t _spread_hash(object key) except? 0:
    # _keyhash.stable_hash, the same in every process for the usual keys.
    cdef uint64_t h = skh_stable_hash(key)
    h = (h ^ (h >> 30)) * SK_MIX1
    h = (h ^ (h >> 27)) * SK_MIX2
    return h ^ (h >> 31)


cdef inline unsigned char* _row(bytearray row, uint64_t mask) except NULL:
    if row is None or <uint64_t>PyByteArray_GET_SIZE(row) <= mask:
        raise IndexError("bytearray index out of range")
    return <unsigned char*>PyByteArray_AS_STRING(row)


cdef inline unsigned char* _door_bits(bytearray door, uint64_t mask) except NULL:
    if <uint64_t>PyByteArray_GET_SIZE(door) * 8 <= mask:
        raise IndexError("bytearray index out of range")
    return <unsigned char*>PyByteArray_AS_STRING(door)


cdef class FrequencySketch:
    """Estimates how often each key was seen in the recent past (compiled).

    The twin of the pure `FrequencySketch`: see its docstring for the
    algorithm and sizing. Thread-safety: not thread-safe. Runtime
    complexity: O(1) per call; growing is O(entries).
    """

    cdef public Py_ssize_t entries
    cdef public Py_ssize_t sample_size
    cdef public Py_ssize_t size
    cdef public uint64_t _mask
    cdef public uint64_t _door_mask
    cdef bytearray _r0, _r1, _r2, _r3
    cdef bytearray _door_

    def __init__(self, Py_ssize_t entries=_MIN_ENTRIES, *, bint doorkeeper=True):
        self.entries = 0
        self.sample_size = 0
        self.size = 0
        self._mask = _COUNTERS_PER_ROW * _MIN_ENTRIES - 1
        self._r0 = bytearray(self._mask + 1)
        self._r1 = bytearray(self._mask + 1)
        self._r2 = bytearray(self._mask + 1)
        self._r3 = bytearray(self._mask + 1)
        self._door_ = bytearray(1) if doorkeeper else None
        self._door_mask = 7
        self.ensure_capacity(max(entries, 1))

    @property
    def _rows(self):
        return [self._r0, self._r1, self._r2, self._r3]

    @_rows.setter
    def _rows(self, rows):
        r0, r1, r2, r3 = rows
        width = len(r0)
        if width & (width - 1) or any(len(r) != width for r in (r1, r2, r3)):
            raise ConfigurationError(f"rows must be four bytearrays of one power-of-two length")
        self._r0, self._r1, self._r2, self._r3 = r0, r1, r2, r3
        self._mask = width - 1

    @property
    def _door(self):
        return self._door_

    @_door.setter
    def _door(self, door):
        if door is not None:
            bits = len(door) * 8
            if bits & (bits - 1):
                raise ConfigurationError("the doorkeeper must be a bytearray of a power-of-two length")
            self._door_mask = bits - 1
        self._door_ = door

    def ensure_capacity(self, Py_ssize_t entries):
        """Size the sketch for at least *entries* keys (it never shrinks)."""
        if entries <= self.entries:
            return
        self.entries = entries
        self.sample_size = _SAMPLE_FACTOR * entries
        cdef Py_ssize_t width = _ceil_pow2(max(entries, _MIN_ENTRIES)) * _COUNTERS_PER_ROW
        while PyByteArray_GET_SIZE(self._r0) < width:
            self._r0 = self._r0 + self._r0
            self._r1 = self._r1 + self._r1
            self._r2 = self._r2 + self._r2
            self._r3 = self._r3 + self._r3
        self._mask = <uint64_t>PyByteArray_GET_SIZE(self._r0) - 1
        cdef bytearray door = self._door_
        cdef Py_ssize_t bits
        if door is not None:
            bits = _ceil_pow2(self.sample_size) * _DOOR_BITS
            while PyByteArray_GET_SIZE(door) * 8 < bits:
                door = door + door
            self._door_ = door
            self._door_mask = <uint64_t>PyByteArray_GET_SIZE(door) * 8 - 1

    @staticmethod
    def _spread(key):
        return _spread_hash(key)

    def frequency(self, key):
        """The estimated count of *key*, 0..16."""
        cdef uint64_t h = _spread_hash(key)
        cdef uint64_t mask = self._mask
        cdef uint64_t lo = h & 0xFFFFFFFFULL
        cdef uint64_t hi = (h >> 32) | 1
        cdef int count = _row(self._r0, mask)[lo & mask]
        cdef int c = _row(self._r1, mask)[(lo + hi) & mask]
        if c < count:
            count = c
        c = _row(self._r2, mask)[(lo + 2 * hi) & mask]
        if c < count:
            count = c
        c = _row(self._r3, mask)[(lo + 3 * hi) & mask]
        if c < count:
            count = c
        cdef uint64_t d, i, j
        cdef unsigned char* bits
        if self._door_ is not None:
            d = self._door_mask
            bits = _door_bits(self._door_, d)
            i = h & d
            j = (h >> 21) & d
            if (bits[i >> 3] >> (i & 7)) & 1 and (bits[j >> 3] >> (j & 7)) & 1:
                count += 1
        return count

    def increment(self, key):
        """Record one occurrence of *key*; ages the sketch every `sample_size` events."""
        cdef uint64_t h = _spread_hash(key)
        cdef uint64_t d, i, j
        cdef unsigned char* bits
        if self._door_ is not None:
            d = self._door_mask
            bits = _door_bits(self._door_, d)
            i = h & d
            j = (h >> 21) & d
            if not ((bits[i >> 3] >> (i & 7)) & 1 and (bits[j >> 3] >> (j & 7)) & 1):
                # A first sighting only sets the doorkeeper (and does not age).
                bits[i >> 3] |= <unsigned char>(1 << (i & 7))
                bits[j >> 3] |= <unsigned char>(1 << (j & 7))
                return
        cdef uint64_t mask = self._mask
        cdef uint64_t lo = h & 0xFFFFFFFFULL
        cdef uint64_t hi = (h >> 32) | 1
        cdef unsigned char* p0 = _row(self._r0, mask)
        cdef unsigned char* p1 = _row(self._r1, mask)
        cdef unsigned char* p2 = _row(self._r2, mask)
        cdef unsigned char* p3 = _row(self._r3, mask)
        cdef uint64_t i0 = lo & mask
        cdef uint64_t i1 = (lo + hi) & mask
        cdef uint64_t i2 = (lo + 2 * hi) & mask
        cdef uint64_t i3 = (lo + 3 * hi) & mask
        cdef int c0 = p0[i0], c1 = p1[i1], c2 = p2[i2], c3 = p3[i3]
        cdef int least = c0
        if c1 < least:
            least = c1
        if c2 < least:
            least = c2
        if c3 < least:
            least = c3
        if least < _MAX_COUNT:
            # Conservative update: only the counters at the estimate rise.
            if c0 == least:
                p0[i0] = <unsigned char>(least + 1)
            if c1 == least:
                p1[i1] = <unsigned char>(least + 1)
            if c2 == least:
                p2[i2] = <unsigned char>(least + 1)
            if c3 == least:
                p3[i3] = <unsigned char>(least + 1)
            self.size += 1
            if self.size >= self.sample_size:
                self.reset()

    def reset(self):
        """Halve every counter and clear the doorkeeper (TinyLFU's ageing step)."""
        cdef Py_ssize_t odd = 0
        cdef Py_ssize_t k, n
        cdef unsigned char* p
        cdef unsigned char c
        cdef bytearray row
        for row in (self._r0, self._r1, self._r2, self._r3):
            p = <unsigned char*>PyByteArray_AS_STRING(row)
            n = PyByteArray_GET_SIZE(row)
            for k in range(n):
                c = p[k]
                odd += c & 1
                p[k] = c >> 1
        if self._door_ is not None:
            memset(PyByteArray_AS_STRING(self._door_), 0, PyByteArray_GET_SIZE(self._door_))
        # As the pure class: discount the truncation of odd counters, then halve.
        cdef Py_ssize_t rest = self.size - (odd >> 2)
        self.size = rest >> 1 if rest > 0 else 0

    def __reduce__(self):
        # Restored as the implementation active where it is loaded, so a
        # pickle made with the extension loads without it (and the reverse).
        from scalekit.caching._speedups import _restore_sketch

        return (
            _restore_sketch,
            (
                self.entries,
                self.sample_size,
                self.size,
                self._rows,
                self._door_,
                self._door_mask,
            ),
        )
