# The compiled `_keyhash.stable_hash`, included by `_csketch.pyx` and `_ctinylfu.pyx`.
#
# It computes the value the pure function defines (see its module docstring)
# for exact tuples, ASCII `str`, `bytes`, `None`, the kwargs marker and the
# numbers in C, and calls the pure function for a non-ASCII `str`, a `type` and
# a subclass of `tuple`, `str` or `bytes`.
# `tests/caching/test_keyhash.py` checks both against known answers.

from cpython.object cimport PyObject_Hash
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #define SKH_P1 11400714785074694791ULL
    #define SKH_P2 14029467366897019727ULL
    #define SKH_P5 2870177450012600261ULL
    static inline unsigned long long skh_text(const unsigned char* p, Py_ssize_t n) {
        /* The bytes as a little-endian number mod 2**61 - 1 (Horner from the
           last byte), plus n times an odd constant, mod 2**64. */
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
    const uint64_t SKH_P1
    const uint64_t SKH_P2
    const uint64_t SKH_P5
    unsigned long long skh_text(const unsigned char* p, Py_ssize_t n)
    bint skh_is_ascii "PyUnicode_IS_COMPACT_ASCII"(object o)
    void* skh_udata "PyUnicode_DATA"(object o)
    Py_ssize_t skh_ulen "PyUnicode_GET_LENGTH"(object o)
    char* skh_bdata "PyBytes_AS_STRING"(object o)
    Py_ssize_t skh_blen "PyBytes_GET_SIZE"(object o)
    int skh_enter "Py_EnterRecursiveCall"(const char* where)
    void skh_leave "Py_LeaveRecursiveCall"()

from ._keyhash import stable_hash as _skh_pure
from .keys import KWARGS_MARK as _SKH_MARK

cdef uint64_t _SKH_NONE = 0xF0E1D2C3B4A59687ULL
cdef uint64_t _SKH_MARK_HASH = 0x6B7761726773D00DULL
cdef uint64_t _SKH_TAIL = SKH_P5 ^ 3527539ULL


cdef uint64_t skh_stable_hash(object key) except? 0:
    """`_keyhash.stable_hash(key)`, in C for the common keys."""
    cdef object kind = type(key)
    cdef uint64_t acc
    cdef Py_ssize_t i, n
    if kind is str:
        if skh_is_ascii(key):
            return skh_text(<const unsigned char*>skh_udata(key), skh_ulen(key))
        return <uint64_t>_skh_pure(key)
    if kind is tuple:
        n = PyTuple_GET_SIZE(key)
        acc = SKH_P5
        if skh_enter(" in the stable hash of a tuple"):
            return 0  # RecursionError is set
        try:
            for i in range(n):
                acc += skh_stable_hash(<object>PyTuple_GET_ITEM(key, i)) * SKH_P2
                acc = ((acc << 31) | (acc >> 33)) * SKH_P1
        finally:
            skh_leave()
        acc += <uint64_t>n ^ _SKH_TAIL
        return 1546275796 if acc == 0xFFFFFFFFFFFFFFFFULL else acc
    if kind is bytes:
        return skh_text(<const unsigned char*>skh_bdata(key), skh_blen(key))
    if key is None:
        return _SKH_NONE
    if key is _SKH_MARK:
        return _SKH_MARK_HASH
    if kind is type or isinstance(key, (tuple, str, bytes)):  # a type, a subclass
        return <uint64_t>_skh_pure(key)
    return <uint64_t>PyObject_Hash(key)
