# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled core of `TinyLFUCache`: lookups, writes, admission and the queue moves.

As for `LRUCache`, `scalekit.caching._speedups.tinylfu` makes the public
class `TinyLFUCache(TinyLFUCore, pure TinyLFUCache)`: the core's methods
come first, and everything else (the constructor, weighted writes, the
window sizing of `_tinylfu_sizing`: ghosts, shadow LRU, hill climber) is
the pure code, reading and writing the same attributes. The core is a
transcription of the pure methods it replaces, statement for statement, so
both make the same admission decisions: the same hits, to the hit, on
every replay (`tests/caching/test_compiled.py`).

The queues stay `OrderedDict`s (the pure sizing code moves entries between
them); the core reads them through the dict C API (an `OrderedDict` is a
dict subclass) and writes them only through their own methods. The
attributes the hot paths use are C fields of the core, exposed under their
pure names; `__getstate__` folds them into the pure class's `__dict__`
shape, so copies and pickles are the pure ones.
"""

cimport cython
from cpython.dict cimport PyDict_Contains, PyDict_GetItemWithError, PyDict_Size
from cpython.object cimport PyObject_Hash
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t

__all__ = ["TinyLFUCore", "bind"]

cdef extern from *:
    """
    #define SK_GOLDEN 0x9E3779B97F4A7C15ULL
    static inline unsigned long long sk_text_hash(const unsigned char* p, Py_ssize_t n) {
        /* _keyhash.stable_hash: the bytes as a little-endian number mod 2**61 - 1,
           plus n times an odd constant, mod 2**64 (Horner from the last byte). */
        const unsigned long long P = (1ULL << 61) - 1;
        unsigned long long h = 0, r;
        Py_ssize_t i;
        for (i = n - 1; i >= 0; i--) {
            r = ((h & ((1ULL << 53) - 1)) << 8) + (h >> 53) + p[i];
            r = (r & P) + (r >> 61);
            h = r >= P ? r - P : r;
        }
        return h + (unsigned long long)n * 0x9E3779B97F4A7C15ULL;
    }
    """
    const uint64_t SK_GOLDEN
    unsigned long long sk_text_hash(const unsigned char* p, Py_ssize_t n)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    char* PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)

from ._ccore cimport type_of as _type_of
from ._keyhash import stable_hash
from .base import Cache

include "_keyhash.pxi"

cdef int _WARM = 6
cdef object _cache_delitem = Cache.__delitem__
cdef object _pure_setitem = None

# The core's fields, which the pure class keeps in its __dict__.
cdef tuple _FIELDS = (
    "_maxsize", "_sizes", "_hits", "_misses", "_evictions", "_hits_in_sample",
    "_window", "_probation", "_protected", "_sketch", "_rng", "_entry_bound",
    "_window_used", "_protected_used", "_window_max", "_protected_max",
    "_margin", "_shadow_shift", "_window_fifo",
)


def bind(cls):
    """Give the core the pure class's `__setitem__`, which weighted writes go through."""
    global _pure_setitem
    _pure_setitem = cls.__setitem__


@cython.auto_pickle(False)
cdef class TinyLFUCore:
    """The hot paths of `TinyLFUCache` over its three `OrderedDict` queues."""

    cdef public object _maxsize
    cdef public object _sizes
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef public Py_ssize_t _evictions
    cdef public Py_ssize_t _hits_in_sample
    cdef public object _window
    cdef public object _probation
    cdef public object _protected
    cdef public object _sketch
    cdef public object _rng
    cdef public object _entry_bound
    cdef public object _window_used
    cdef public object _protected_used
    cdef public object _window_max
    cdef public object _protected_max
    cdef public object _margin
    cdef public long _shadow_shift
    cdef public bint _window_fifo
    cdef void* _flags_type  # the class _hooked was read from
    cdef bint _hooked  # a subclass overrides popitem or __delitem__: evict through them

    cdef inline bint _sampled(self, object key) except -1:
        cdef long shift = self._shadow_shift
        if shift == 64:
            return True
        if shift <= 0:
            return False
        cdef uint64_t h
        if type(key) is str and PyUnicode_IS_COMPACT_ASCII(key):
            h = sk_text_hash(<const unsigned char*>PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key))
        elif type(key) is bytes:
            h = sk_text_hash(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        elif type(key) is str:
            h = <uint64_t>stable_hash(key)  # as the pure class (see _keyhash)
        else:
            h = skh_stable_hash(key)  # tuples, None, ... (see _keyhash)
        h *= SK_GOLDEN
        return (h >> shift) == 0

    cdef object _queue(self, object key):
        if PyDict_Contains(self._protected, key) == 1:
            return self._protected
        if PyDict_Contains(self._window, key) == 1:
            return self._window
        if PyDict_Contains(self._probation, key) == 1:
            return self._probation
        return None

    cdef inline object _weight(self, object key):
        sizes = self._sizes
        return 1 if sizes is None else sizes[key]

    cdef Py_ssize_t _count(self) except -1:
        return PyDict_Size(self._window) + PyDict_Size(self._probation) + PyDict_Size(
            self._protected
        )

    def __contains__(self, key):
        return self._queue(key) is not None

    def __len__(self):
        return self._count()

    def get(self, key, default=None):
        """Return the value for `key` (recording the access), or `default`.

        Runtime complexity: O(1).
        """
        cdef object queue = self._protected
        cdef PyObject* found = PyDict_GetItemWithError(queue, key)
        if found is NULL:
            queue = self._window
            found = PyDict_GetItemWithError(queue, key)
            if found is NULL:
                queue = self._probation
                if PyDict_Contains(queue, key) != 1:
                    self._misses += 1
                    if self._sampled(key):
                        self._observe(key, False)
                    return default
                self._hits += 1
                if self._sampled(key):
                    self._observe(key, True)
                return self._access(key, queue)
        value = <object>found
        self._hits += 1
        if self._sampled(key):
            self._observe(key, True)
        self._sketch.increment(key)
        if queue is not self._window or not self._window_fifo:
            queue.move_to_end(key)
        self._hits_in_sample += 1
        return value

    def __setitem__(self, key, value):
        cdef PyObject* found
        if self._sizes is not None:
            _pure_setitem(self, key, value)
            return
        if 1 > self._maxsize:
            raise ValueError("value too large")
        queue = self._queue(key)
        if queue is not None:
            # The old value is released once the write is done (its __del__ may use
            # the cache), as in the pure class.
            found = PyDict_GetItemWithError(queue, key)
            old = None if found is NULL else <object>found
            queue[key] = value
            self._access(key, queue)
        else:
            self._window[key] = value
            self._window_used = self._window_used + 1
            if self._sketch.entries < self._entry_bound:
                self._grow_sketch()
            self._sketch.increment(key)
            self._on_miss(key)
        self._evict_entries()
        self._climb()

    def __delitem__(self, key):
        # A C __setitem__ takes the deletion slot too: hand deletions to Cache's.
        _cache_delitem(self, key)

    cdef object _access(self, object key, object queue):
        self._sketch.increment(key)
        self._hits_in_sample += 1
        if queue is self._probation:
            weight = self._weight(key)
            if weight <= self._protected_max:
                value = queue.pop(key)
                self._protected[key] = value
                self._protected_used = self._protected_used + weight
                return value
        if queue is not self._window or not self._window_fifo:
            queue.move_to_end(key)
        return queue[key]

    def _on_access(self, key, queue):
        return self._access(key, queue)

    def _remove(self, key):
        return self._take(key)

    cdef object _take(self, object key):
        queue = self._queue(key)
        if queue is None:
            raise KeyError(key)
        value = queue.pop(key)
        if queue is self._window:
            self._window_used = self._window_used - self._weight(key)
        elif queue is self._protected:
            self._protected_used = self._protected_used - self._weight(key)
        return value

    cdef int _drop(self, object key) except -1:
        if _type_of(self) != self._flags_type:
            # Per class, and read again when `__class__` is assigned.
            self._hooked = type(self)._hooked_evictions
            self._flags_type = _type_of(self)
        if self._hooked:
            self._evict_hooked(key)
            return 0
        # The pure _evict: remove, forget the size, count an eviction; the value is
        # released once the books are kept (its __del__ may use the cache).
        value = self._take(key)
        sizes = self._sizes
        if sizes is not None:
            self._currsize -= sizes.pop(key)
        self._evictions += 1
        return 0

    def _evict(self, key):
        self._drop(key)

    cdef object _currsize_now(self):
        if self._sizes is None:
            return self._count()
        return self._currsize

    def _evict_entries(self):
        window, probation = self._window, self._probation
        cdef list candidates = []
        while self._window_used > self._window_max and PyDict_Size(window):
            key, value = window.popitem(False)
            probation[key] = value
            self._window_used = self._window_used - self._weight(key)
            candidates.append(key)
        # Candidates are tried newest first; the victim is the LRU end of the queues.
        queues = (probation, self._protected, window)
        cdef int qi = 0
        maximum = self._maxsize
        while self._currsize_now() > maximum:
            candidate = None
            while candidates:
                # A candidate may have been evicted as a victim earlier in this loop.
                candidate = candidates.pop()
                if PyDict_Contains(probation, candidate) == 1:
                    break
                candidate = None
            if candidate is None:
                candidate = next(reversed(window), None)
            victim = None
            while qi < 3:
                victim = next(iter(queues[qi]), None)
                if victim is not None:
                    break
                qi += 1
            if victim is None:
                if candidate is None:
                    break
                self._drop(candidate)
            elif candidate is None or candidate == victim:
                self._drop(victim)
            elif self._admits(candidate, victim):
                self._drop(victim)
                self._remember_evicted(victim)
            else:
                self._drop(candidate)
                self._remember_rejected(candidate)

    cdef bint _admits(self, object candidate, object victim) except -1:
        sketch = self._sketch
        victim_freq = sketch.frequency(victim)
        candidate_freq = sketch.frequency(candidate)
        if candidate_freq > victim_freq + self._margin:
            return True
        if candidate_freq < _WARM:
            return False
        return self._rng.getrandbits(7) == 0

    def _admit(self, candidate, victim):
        return self._admits(candidate, victim)

    # -- state: the same as the pure class's __dict__ --------------------------------

    def __getstate__(self):
        """The pure class's state: its `__dict__`, with the core's fields in it."""
        state = dict(self.__dict__)
        for name in _FIELDS:
            state[name] = getattr(self, name)
        return state

    def __setstate__(self, state):
        state = dict(state)
        for name in _FIELDS:
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self),), self.__getstate__()
