# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled prototypes: what a compiled `LRUCache` and `cached` hit path can reach.

Neither is used by the public classes yet (the pure ones stay the
implementation); `python -m benchmarks.caching speed` times them next to
`LRUCache`, `cached`, `functools.lru_cache` and cachebox, so the figure of
a compiled LRU is measured, not guessed.

`LRUPrototype`: a dict
maps each key to a node of an intrusive doubly linked list in recency
order (a sentinel node closes the ring); a hit is one dict lookup and four
pointer moves, a miss past capacity unlinks the least recent node.

Unit-sized entries only (no `getsizeof`), and only the operations the
benchmark drives: `get`, `[]`, `[]=`, `del`, `in`, `len`, `popitem`.
"""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport PyObject

__all__ = ["CachedPrototype", "LRUPrototype"]

cdef object _MISSING = object()
cdef tuple _KWMARK = None


cdef class _Node:
    cdef _Node prev
    cdef _Node next
    cdef object key
    cdef object value


cdef class LRUPrototype:
    """Least recently used eviction over a dict and a linked list (prototype)."""

    cdef dict _map
    cdef _Node _root
    cdef Py_ssize_t _maxsize
    cdef public Py_ssize_t hits
    cdef public Py_ssize_t misses

    def __init__(self, Py_ssize_t maxsize):
        if maxsize < 1:
            raise ValueError(f"maxsize must be a positive integer, got {maxsize}")
        self._maxsize = maxsize
        self._map = {}
        self._root = _Node()
        self._root.prev = self._root
        self._root.next = self._root
        self.hits = 0
        self.misses = 0

    @property
    def maxsize(self):
        return self._maxsize

    cdef inline void _move_to_front(self, _Node node):
        cdef _Node root = self._root
        if root.next is node:
            return
        node.prev.next = node.next
        node.next.prev = node.prev
        node.next = root.next
        node.prev = root
        root.next.prev = node
        root.next = node

    cdef _Node _unlink_last(self):
        cdef _Node root = self._root
        cdef _Node node = root.prev
        root.prev = node.prev
        node.prev.next = root
        node.prev = None
        node.next = None
        del self._map[node.key]
        return node

    def get(self, key, default=None):
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            self.misses += 1
            return default
        cdef _Node node = <_Node>found
        self._move_to_front(node)
        self.hits += 1
        return node.value

    def __getitem__(self, key):
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            self.misses += 1
            raise KeyError(key)
        cdef _Node node = <_Node>found
        self._move_to_front(node)
        self.hits += 1
        return node.value

    def __setitem__(self, key, value):
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        cdef _Node node
        cdef _Node root = self._root
        if found is not NULL:
            node = <_Node>found
            node.value = value
            self._move_to_front(node)
            return
        if len(self._map) >= self._maxsize:
            node = self._unlink_last()  # reuse the evicted node: no allocation
        else:
            node = _Node.__new__(_Node)
        node.key = key
        node.value = value
        self._map[key] = node
        node.next = root.next
        node.prev = root
        root.next.prev = node
        root.next = node

    def __delitem__(self, key):
        cdef _Node node = self._map.pop(key)
        node.prev.next = node.next
        node.next.prev = node.prev
        node.prev = None
        node.next = None

    def __contains__(self, key):
        return key in self._map

    def __len__(self):
        return len(self._map)

    def popitem(self):
        """Remove and return the least recently used `(key, value)`."""
        if not self._map:
            raise KeyError(f"{type(self).__name__} is empty")
        cdef _Node node = self._unlink_last()
        return node.key, node.value


cdef class CachedPrototype:
    """The hit path of `cached(LRUCache(...))`, compiled (prototype).

    Wraps `func` over a pure `LRUCache` or an `LRUPrototype`, with
    `cached`'s default key (the positional arguments; keyword arguments as
    `hashkey`). Over `LRUCache`, a hit is one dict lookup on the cache's
    `OrderedDict` (a dict subclass, read through the dict C API), one
    `move_to_end` and a C counter (`hits`; the cache's own statistics are
    not updated, which a compiled cache core would do in C too). Over
    `LRUPrototype`, a hit is the prototype's own lookup and relink, in C,
    counted in the prototype's `hits`. A miss calls `func` and stores the
    value, without `cached`'s single-flight.
    """

    cdef public Py_ssize_t hits
    cdef public Py_ssize_t misses

    cdef object _func
    cdef object _cache
    cdef object _data  # an OrderedDict: a dict subclass
    cdef object _move
    cdef LRUPrototype _core

    def __init__(self, func, cache):
        from .decorators import hashkey
        global _KWMARK
        _KWMARK = hashkey(k=0)[:1]
        self._func = func
        self._cache = cache
        if isinstance(cache, LRUPrototype):
            self._core = cache
        else:
            self._data = cache._data
            self._move = cache._data.move_to_end

    def __call__(self, *args, **kwargs):
        cdef object k = args
        if kwargs:
            k = args + _KWMARK + tuple(sorted(kwargs.items()))
        cdef PyObject* found
        cdef _Node node
        cdef LRUPrototype core = self._core
        if core is not None:
            found = PyDict_GetItemWithError(core._map, k)
            if found is not NULL:
                node = <_Node>found
                core._move_to_front(node)
                core.hits += 1
                return node.value
            core.misses += 1
            value = self._func(*args, **kwargs)
            core[k] = value
            return value
        found = PyDict_GetItemWithError(self._data, k)
        if found is not NULL:
            self._move(k)
            self.hits += 1
            return <object>found
        self.misses += 1
        value = self._func(*args, **kwargs)
        self._cache[k] = value
        return value
