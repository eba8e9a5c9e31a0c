# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled cores of `LFUCache` and `S3FIFOCache`, the policies that count uses.

As for `LRUCache`, `scalekit.caching._speedups` makes each public class
`LFUCache(LFUCore, pure LFUCache)` (and `S3FIFOCache(S3FIFOCore, ...)`):
the core defines the hot methods and the hooks the pure `Cache` methods
call, so `pop`, `setdefault`, `peek`, `popitem`, `stats`, the views,
`copy.copy` and weighted writes are the pure code. The cores are
transcriptions of the pure classes' methods: the same victims, the same
iteration order, the same statistics; `__getstate__` gives the pure
class's state, so a cache pickled with the extension loads without it.

Storage: a dict maps each key to a node the dict owns; the nodes' links
are borrowed pointers, so nodes form no reference cycle among themselves
and carry no GC header (the core's traversal visits their keys and
values). `LFUCache`'s frequency buckets are C structs: each bucket holds
the entries used exactly `count` times, oldest first, in a ring of
buckets ordered by count (Shah, Mitra and Matani's O(1) LFU).
`S3FIFOCache` links its entries in two rings (small and main); the ghost
stays an `OrderedDict` of keys.

Memory safety, for both: a node is in the current dict exactly while it
is linked. A dict operation may run Python code (a key's
`__hash__`/`__eq__`, and with it other threads), so each works on a dict
held in a local (a clear meanwhile swaps `_map`) and its result is
checked afterwards, with no Python code between the check and the link
change: an insert into a dict that a clear discarded meanwhile is made
again in the new one (or dropped), a removed node is unlinked only if
still linked. Whatever a link change needs that could fail (a new
bucket) is taken before the dict operation; removed nodes and replaced
values are released once the structure is consistent again.
"""

cimport cython
from cpython.dict cimport (
    PyDict_Clear,
    PyDict_Contains,
    PyDict_DelItem,
    PyDict_GetItemWithError,
    PyDict_Keys,
    PyDict_Size,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject

import math
from collections import OrderedDict

from ._ccore cimport (
    ATTEMPTS as _ATTEMPTS,
    TypeObject as _TypeObject,
    capacity as _capacity,
    changed as _changed,
    check_layout,
    find_again,
    has_key,
    dict_next as _dict_next,
    dict_setdefault as _setdefault,
    ring_clear,
    ring_cut,
    ring_init,
    ring_push,
    traverseproc as _traverseproc,
    type_of as _type_of,
    visitproc as _visitproc,
)
from .._validation import fraction, non_negative_number
from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import MISSING, Cache

__all__ = ["LFUCore", "S3FIFOCore"]

cdef object _MISSING = MISSING
cdef object _cache_init = Cache.__init__
cdef object _cache_setitem = Cache.__setitem__
cdef object _cache_delitem = Cache.__delitem__
cdef object _cache_missing = Cache.__missing__
cdef object _cache_popitem = Cache.popitem

# The fields of the cores that the pure classes keep in their __dict__.
cdef tuple _FIELDS = ("_maxsize", "_sizes", "_hits", "_misses", "_evictions")
cdef tuple _S3_FIELDS = _FIELDS + (
    "_small_cap", "_main_cap", "_ghost_cap", "_ghost", "_has_evicted", "_ghost_hit",
)




cdef extern from "Python.h":
    ctypedef struct _DictObject "PyDictObject":
        void* ma_keys


cdef inline void* _dict_table(dict d) noexcept:
    # The dict's key table: replaced when an insert resizes it (or a clear empties it).
    return (<_DictObject*>d).ma_keys


# -- LFU ------------------------------------------------------------------------------


ctypedef struct _Freq:
    # The entries used exactly `count` times, oldest first; never empty while in
    # the ring (the sentinel, count 0, excepted). Entry pointers are borrowed.
    Py_ssize_t count
    _Freq* prev
    _Freq* next
    PyObject* head
    PyObject* tail


@cython.final
@cython.no_gc
@cython.auto_pickle(False)
cdef class _Use:
    # An LFU entry. Borrowed links within its bucket; `freq` is NULL while unlinked.
    cdef PyObject* prev
    cdef PyObject* next
    cdef _Freq* freq
    cdef object key
    cdef object value


cdef inline void _detach(_Use node) noexcept:
    cdef _Freq* f = node.freq
    if node.prev is NULL:
        f.head = node.next
    else:
        (<_Use>node.prev).next = node.next
    if node.next is NULL:
        f.tail = node.prev
    else:
        (<_Use>node.next).prev = node.prev
    node.prev = NULL
    node.next = NULL
    node.freq = NULL


cdef inline void _attach(_Freq* f, _Use node) noexcept:
    # At the newest end of `f`.
    node.prev = f.tail
    node.next = NULL
    if f.tail is NULL:
        f.head = <PyObject*>node
    else:
        (<_Use>f.tail).next = <PyObject*>node
    f.tail = <PyObject*>node
    node.freq = f


cdef inline void _link_after(_Freq* prev, _Freq* f, Py_ssize_t count) noexcept:
    f.count = count
    f.head = NULL
    f.tail = NULL
    f.prev = prev
    f.next = prev.next
    prev.next.prev = f
    prev.next = f


@cython.auto_pickle(False)
cdef class LFUCore:
    """Entries in frequency buckets, oldest first in each; evicts the oldest of the least used.

    Every read and every write of a present key counts one use; a new entry
    starts at one; counts are forgotten on eviction (the pure `LFUCache`).
    """

    cdef dict _map
    cdef _Freq _root
    cdef _Freq* _spare  # one emptied bucket kept for the next new count
    cdef object _max
    cdef Py_ssize_t _cap
    cdef void* _flags_type
    cdef bint _inline_evict
    cdef bint _plain_missing
    cdef public object _sizes
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef public Py_ssize_t _evictions

    def __cinit__(self, *args, **kwargs):
        self._map = {}
        self._root.count = 0
        self._root.prev = &self._root
        self._root.next = &self._root
        self._root.head = NULL
        self._root.tail = NULL
        self._spare = NULL
        self._max = 0
        self._cap = 0
        self._refresh()

    def __dealloc__(self):
        self._free_buckets()
        if self._spare is not NULL:
            PyMem_Free(self._spare)
            self._spare = NULL

    cdef void _free_buckets(self) noexcept:
        # Unlinks every node and frees every bucket; the ring is empty after.
        cdef _Freq* f = self._root.next
        cdef _Freq* nxt
        cdef PyObject* p
        cdef PyObject* q
        while f != &self._root:
            p = f.head
            while p is not NULL:
                q = (<_Use>p).next
                (<_Use>p).prev = NULL
                (<_Use>p).next = NULL
                (<_Use>p).freq = NULL
                p = q
            nxt = f.next
            PyMem_Free(f)
            f = nxt
        self._root.prev = &self._root
        self._root.next = &self._root

    # -- lookups: revalidated after the key's Python code ---------------------------

    @cython.final
    cdef inline PyObject* _find(self, object key) except? NULL:
        # The node for `key` in the current dict (borrowed), or NULL. The lookup
        # runs the key's __hash__/__eq__ (Python code, and with it other threads);
        # if that cleared the cache, the result came from the discarded dict (held
        # here, so it is still alive) and is looked up again in the current one.
        # The caller runs no Python code before it is done with the node.
        cdef dict d = self._map
        cdef PyObject* found = PyDict_GetItemWithError(d, key)
        if d is self._map:
            return found
        return self._find_again(key)

    cdef PyObject* _find_again(self, object key) except? NULL:
        return find_again(self, _lfu_map, key)

    cdef bint _has(self, object key) except -1:
        return has_key(self, _lfu_map, key)

    cdef int _refresh(self) except -1:
        cls = type(self)
        self._flags_type = _type_of(self)
        self._inline_evict = (
            cls.popitem is _cache_popitem and cls.__delitem__ is LFUCore.__delitem__
        )
        self._plain_missing = cls.__missing__ is _cache_missing
        return 0

    def __init__(self, maxsize, getsizeof=None):
        self._clear()  # called again on a live cache: it starts empty, as the pure one
        _cache_init(self, maxsize, getsizeof)

    @property
    def _maxsize(self):
        return self._max

    @_maxsize.setter
    def _maxsize(self, value):
        self._cap = _capacity(value)
        self._max = value

    cdef inline void _keep(self, _Freq* f) noexcept:
        if self._spare is NULL:
            self._spare = f
        else:
            PyMem_Free(f)

    cdef inline _Freq* _take_spare(self) except NULL:
        cdef _Freq* f = self._spare
        if f is NULL:
            f = <_Freq*>PyMem_Malloc(sizeof(_Freq))
            if f is NULL:
                raise MemoryError()
        else:
            self._spare = NULL
        return f

    cdef inline void _drop_if_empty(self, _Freq* f) noexcept:
        if f.head is not NULL or f == &self._root:
            return
        f.prev.next = f.next
        f.next.prev = f.prev
        self._keep(f)

    cdef int _use(self, _Use node) except -1:
        # One use: to the newest end of the bucket of count + 1 (the pure _use).
        cdef _Freq* f = node.freq
        if f is NULL:
            return 0  # removed meanwhile
        cdef _Freq* nxt = f.next
        cdef Py_ssize_t count = f.count + 1
        if nxt.count != count:
            if f.head == f.tail:
                f.count = count  # sole member: renumber the bucket in place
                return 0
            nxt = self._take_spare()  # may raise MemoryError: nothing changed yet
            _link_after(f, nxt, count)
        _detach(node)
        _attach(nxt, node)
        self._drop_if_empty(f)
        return 0

    cdef inline void _unlink(self, _Use node) noexcept:
        cdef _Freq* f = node.freq
        if f is NULL:
            return
        _detach(node)
        self._drop_if_empty(f)

    cdef int _insert_node(self, object key, object value) except -1:
        cdef _Use node
        # The bucket a new count-1 entry may need, taken before the dict operation:
        # nothing that can fail comes between the insert and the link.
        cdef _Freq* fresh = self._take_spare()
        cdef PyObject* found
        cdef dict d
        cdef int attempt
        try:
            # Made again if the key's __hash__/__eq__ cleared the cache meanwhile (the
            # node then went into the discarded dict, unlinked); dropped if twice.
            for attempt in range(2):
                node = _Use.__new__(_Use)
                node.key = key
                node.value = value
                d = self._map
                found = _setdefault(d, key, node)
                if d is self._map:
                    break
                # Cleared meanwhile: the node went into the discarded dict. Emptied here,
                # where no node is held, so that releasing it later runs no Python code.
                PyDict_Clear(d)
            else:
                self._keep(fresh)
                return 0
        except BaseException:
            self._keep(fresh)
            raise
        cdef _Use other
        cdef object old
        if found != <PyObject*>node:  # the key was written meanwhile: an update
            self._keep(fresh)
            other = <_Use>found
            old = other.value
            other.value = value
            self._use(other)
            return 0
        cdef _Freq* first = self._root.next
        if first.count != 1:
            _link_after(&self._root, fresh, 1)
            first = fresh
            fresh = NULL
        _attach(first, node)
        if fresh is not NULL:
            self._keep(fresh)
        return 0

    # -- the hot paths -------------------------------------------------------------

    def get(self, key, default=None):
        """Return the value for `key` (counting a use), or `default`.

        Runtime complexity: O(1).
        """
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            return default
        cdef _Use node = <_Use>found
        self._hits += 1
        self._use(node)
        return node.value

    def __getitem__(self, key):
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        cdef _Use node
        if found is NULL:
            self._misses += 1
            if self._plain_missing:
                raise KeyError(key)
            value = self.__missing__(key)
            # A __missing__ that stores the key makes this lookup its first use.
            found = self._find(key)
            if found is not NULL:
                self._use(<_Use>found)
            return value
        node = <_Use>found
        self._hits += 1
        self._use(node)
        return node.value

    def __setitem__(self, key, value):
        if self._sizes is not None:
            _cache_setitem(self, key, value)
            return
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        cdef _Use node
        cdef object old  # released at return, once the links are consistent
        cdef object victim = None
        cdef dict d
        if found is not NULL:
            node = <_Use>found
            old = node.value
            node.value = value
            self._use(node)
            return
        if PyDict_Size(self._map) >= self._cap:
            # A loop: unlocked threads racing past the size check are trimmed back here.
            while (
                self._inline_evict and PyDict_Size(self._map) >= self._cap
                and self._root.next != &self._root
            ):
                node = <_Use>self._root.next.head  # the oldest of the least used
                # The pop may run the key's __eq__ (and other threads): it returns
                # whichever node the dict held, unlinked at once.
                d = self._map
                victim = d.pop(node.key, None)
                if victim is not None:
                    self._unlink(<_Use>victim)
                    self._evictions += 1
                    victim = None  # consistent again: its __del__ may run now
            node = None  # the last victim's __del__ may run now, before the insert
            found = self._find(key)
            if found is not NULL:  # ... and wrote this key: the write is an update
                node = <_Use>found
                old = node.value
                node.value = value
                self._use(node)
                return
            if not self._inline_evict or PyDict_Size(self._map) >= self._cap:
                self._make_room()  # hooked evictions, or nothing left to evict (maxsize 0)
        self._insert_node(key, value)

    def __delitem__(self, key):
        if self._sizes is not None:
            _cache_delitem(self, key)
            return
        self._remove(key)

    def __contains__(self, key):
        return self._has(key) == 1

    def __len__(self):
        return PyDict_Size(self._map)

    def __iter__(self):
        # The dict's order is the pure class's `_data` order (a use never re-inserts).
        # Over a snapshot, as the pure class: a key added is not visited, one removed skipped.
        for key in PyDict_Keys(self._map):
            if self._has(key):  # runs the key's __eq__: the dict is held meanwhile
                yield key

    def frequency(self, key):
        """How many uses `key` has in the cache (0 if absent). Runtime complexity: O(1)."""
        cdef PyObject* found = self._find(key)
        if found is NULL or (<_Use>found).freq is NULL:
            return 0
        return (<_Use>found).freq.count

    # -- the hooks the pure Cache methods call --------------------------------------

    def _touch(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        cdef _Use node = <_Use>found
        self._use(node)
        return node.value

    def _peek(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        return (<_Use>found).value

    def _update(self, key, value):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return False
        cdef _Use node = <_Use>found
        old = node.value
        node.value = value
        self._use(node)
        return True

    def _insert(self, key, value):
        self._insert_node(key, value)

    def _remove(self, key):
        cdef dict d = self._map
        cdef _Use node = d.pop(key)
        self._unlink(node)
        return node.value

    def _victim(self):
        if self._root.next == &self._root:
            raise KeyError(f"{type(self).__name__} is empty")
        return (<_Use>self._root.next.head).key

    def _clear(self):
        cdef dict old = self._map
        self._free_buckets()
        self._map = {}
        old.clear()  # values' __del__ run here, against an empty, consistent cache

    # -- state: the pure LFUCache's __dict__ ------------------------------------------

    def __getstate__(self):
        """The pure class's state: `_data` maps each key to its `_Bucket`, linked from `_root`.

        One consistent snapshot: the dict's items and the buckets' nodes are
        read with no Python code between their reads that could change them
        (a collection, another thread); a snapshot whose two reads disagree
        is taken again, and a key the dict holds twice (see `_entries`) is
        kept once, so the state always loads.
        """
        from .lfu import _Bucket

        cdef int attempt
        cdef list items, nodes, counts
        for attempt in range(_ATTEMPTS):
            items, nodes, counts = self._snapshot()
            if {id(node) for _, node in items} == {id(node) for node in nodes}:
                break
        else:
            raise RuntimeError(_changed(self, "__getstate__"))
        state = dict(self.__dict__)
        # From here on only the snapshot is read: keys' __hash__/__eq__ may run.
        kept = {}
        for key, node in items:
            kept.setdefault(key, node)
        root = _Bucket()
        root.count = 0
        prev = root
        owner = {}
        cdef _Use entry
        cdef Py_ssize_t i
        bucket = None
        last = -1
        for i in range(len(nodes)):
            entry = <_Use>nodes[i]
            if kept.get(entry.key) is not entry:
                continue  # the other entry of a key held twice
            if counts[i] != last:
                bucket = _Bucket()
                bucket.count = last = counts[i]
                bucket.prev = prev
                prev.next = bucket
                prev = bucket
            bucket[entry.key] = entry.value
            owner[entry.key] = bucket
        prev.next = root
        root.prev = prev
        state["_data"] = {key: owner[key] for key in kept}
        state["_root"] = root
        for name in _FIELDS:
            state[name] = getattr(self, name)
        return state

    cdef tuple _snapshot(self):
        # The dict's items (the dict copies them consistently), then every node in
        # bucket order with its count, into lists made beforehand (making them may
        # run a collection, and so any code: a walk that finds another length is
        # made again). The walk itself runs no Python code.
        cdef dict d = self._map
        cdef list items = list(d.items())
        cdef _Freq* f
        cdef PyObject* p
        cdef Py_ssize_t n, i
        cdef list nodes, counts
        while True:
            n = 0
            f = self._root.next
            while f != &self._root:
                p = f.head
                while p is not NULL:
                    n += 1
                    p = (<_Use>p).next
                f = f.next
            nodes = [None] * n
            counts = [0] * n
            i = 0
            f = self._root.next
            while f != &self._root:
                p = f.head
                while p is not NULL and i < n:
                    nodes[i] = <object>p
                    counts[i] = f.count  # a small int object: allocating one runs no collection
                    i += 1
                    p = (<_Use>p).next
                if p is not NULL:
                    break
                f = f.next
            if i == n and f == &self._root:
                return items, nodes, counts

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_data")
        state.pop("_root", None)
        for name in _FIELDS:
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)
        self._clear()
        # Built apart (a private dict and bucket chain no other code can reach),
        # then spliced in with no Python code between.
        buckets = sorted({id(b): b for b in data.values()}.values(), key=lambda b: b.count)
        cdef _Freq head
        head.prev = &head
        head.next = &head
        head.count = 0
        cdef _Freq* f
        cdef _Use node
        nodes = {}
        try:
            for bucket in buckets:
                if not len(bucket):
                    continue
                f = <_Freq*>PyMem_Malloc(sizeof(_Freq))
                if f is NULL:
                    raise MemoryError()
                _link_after(head.prev, f, bucket.count)
                for key, value in bucket.items():
                    if key in nodes:
                        raise ConfigurationError(f"LFUCache state: key {key!r} is in two buckets")
                    node = _Use.__new__(_Use)
                    node.key = key
                    node.value = value
                    _attach(f, node)
                    nodes[key] = node
            mapping = {}
            for key in data:
                found_node = nodes.get(key)
                if found_node is None:
                    raise ConfigurationError(f"LFUCache state: _data key {key!r} is in no bucket")
                mapping[key] = found_node
            if len(mapping) != len(nodes):
                raise ConfigurationError("LFUCache state: the buckets hold keys that _data does not")
        except BaseException:
            f = head.next
            while f != &head:
                head.next = f.next
                PyMem_Free(f)
                f = head.next
            raise
        self._free_buckets()  # anything linked meanwhile (re-entrantly) goes with the old dict
        if head.next != &head:
            self._root.next = head.next
            self._root.prev = head.prev
            head.next.prev = &self._root
            head.prev.next = &self._root
        self._map = mapping

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self),), self.__getstate__()


cdef _traverseproc _lfu_traverse = NULL


cdef int _traverse_lfu(PyObject* o, _visitproc visit, void* arg) noexcept:
    # The generated traversal, then what the untracked nodes hold: their
    # references are the cache's, as far as the GC goes.
    cdef int r = _lfu_traverse(o, visit, arg)
    if r:
        return r
    cdef LFUCore core = <LFUCore>o
    if core._map is None:
        return 0
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* node
    while _dict_next(<PyObject*>core._map, &pos, &key, &node):
        r = visit(<PyObject*>(<_Use>node).key, arg)
        if r:
            return r
        r = visit(<PyObject*>(<_Use>node).value, arg)
        if r:
            return r
    return 0


cdef int _clear_lfu(PyObject* o) noexcept:
    # The GC breaking a cycle: the ring is emptied, then the dict in place (the
    # values' __del__ run then, against an empty, consistent cache). The other
    # fields stay: what they hold is cleared by the GC itself.
    cdef LFUCore core = <LFUCore>o
    core._free_buckets()
    if core._map is not None:
        PyDict_Clear(core._map)
    return 0


_lfu_traverse = (<_TypeObject*>LFUCore).tp_traverse
(<_TypeObject*>LFUCore).tp_traverse = _traverse_lfu
(<_TypeObject*>LFUCore).tp_clear = _clear_lfu


# -- S3-FIFO --------------------------------------------------------------------------

cdef enum:
    _UNLINKED = -1
    _SMALL = 0
    _MAIN = 1


@cython.final
@cython.no_gc
@cython.auto_pickle(False)
cdef class _Entry:
    # An S3-FIFO entry: borrowed links in its queue's ring, its hit counter (0-3).
    cdef PyObject* prev
    cdef PyObject* next
    cdef object key
    cdef object value
    cdef int freq
    cdef int queue


cdef inline void _push(_Entry root, _Entry node, int queue) noexcept:
    ring_push(<PyObject*>root, <PyObject*>node)
    node.queue = queue


cdef inline void _cut(_Entry node) noexcept:
    ring_cut(<PyObject*>node)
    node.queue = _UNLINKED


cdef void _empty_ring(_Entry root) noexcept:
    cdef PyObject* p = root.next
    while p != <PyObject*>root:
        (<_Entry>p).queue = _UNLINKED
        p = (<_Entry>p).next
    ring_clear(<PyObject*>root)


cdef _Entry _sentinel():
    cdef _Entry root = _Entry.__new__(_Entry)
    root.key = _MISSING
    root.value = _MISSING
    root.queue = _UNLINKED
    ring_init(<PyObject*>root)
    return root


@cython.auto_pickle(False)
cdef class S3FIFOCore:
    """The hot paths of `S3FIFOCache`: two rings of linked entries and the ghost of keys.

    A transcription of the pure `S3FIFOCache` (libCacheSim's S3-FIFO): the
    same queue moves, the same victims and the same ghost.
    """

    cdef dict _map
    cdef _Entry _small_root
    cdef _Entry _main_root
    cdef object _max
    cdef Py_ssize_t _cap
    cdef void* _flags_type
    cdef bint _inline_evict
    cdef bint _plain_missing
    # The ghost: a plain dict of keys, oldest first (the dict's own order), read
    # from `_ghost_pos`, the index of its oldest entry as far as known (every
    # entry before it is deleted), valid while the dict keeps its key table
    # `_ghost_table` (an insert that resizes it compacts the entries: back to 0).
    cdef dict _ghost_d
    cdef Py_ssize_t _ghost_pos
    cdef void* _ghost_table
    cdef size_t _inserted  # nodes inserted so far: did a write's eviction insert any?
    cdef object _small_cap_o
    cdef object _main_cap_o
    cdef object _ghost_cap_o
    cdef Py_ssize_t _small_c
    cdef Py_ssize_t _main_c
    cdef Py_ssize_t _ghost_c
    # Entries per queue, and (with getsizeof) their total size.
    cdef Py_ssize_t _small_n
    cdef Py_ssize_t _main_n
    cdef object _small_w
    cdef object _main_w
    cdef public object _sizes
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef public Py_ssize_t _evictions
    cdef public bint _has_evicted
    cdef public bint _ghost_hit

    def __cinit__(self, *args, **kwargs):
        self._map = {}
        self._small_root = _sentinel()
        self._main_root = _sentinel()
        self._max = 0
        self._cap = 0
        self._small_cap_o = self._main_cap_o = self._ghost_cap_o = 0
        self._small_w = self._main_w = 0
        self._ghost_d = {}
        self._ghost_pos = 0
        self._ghost_table = NULL
        self._refresh()

    # -- lookups: revalidated after the key's Python code ---------------------------

    @cython.final
    cdef inline PyObject* _find(self, object key) except? NULL:
        # The node for `key` in the current dict (borrowed), or NULL. The lookup
        # runs the key's __hash__/__eq__ (Python code, and with it other threads);
        # if that cleared the cache, the result came from the discarded dict (held
        # here, so it is still alive) and is looked up again in the current one.
        # The caller runs no Python code before it is done with the node.
        cdef dict d = self._map
        cdef PyObject* found = PyDict_GetItemWithError(d, key)
        if d is self._map:
            return found
        return self._find_again(key)

    cdef PyObject* _find_again(self, object key) except? NULL:
        return find_again(self, _s3fifo_map, key)

    cdef bint _has(self, object key) except -1:
        return has_key(self, _s3fifo_map, key)

    cdef int _refresh(self) except -1:
        cls = type(self)
        self._flags_type = _type_of(self)
        self._inline_evict = (
            cls.popitem is _cache_popitem and cls.__delitem__ is S3FIFOCore.__delitem__
        )
        self._plain_missing = cls.__missing__ is _cache_missing
        return 0

    def __init__(self, maxsize, getsizeof=None, *, small_ratio=0.1, ghost_ratio=0.9):
        # The pure S3FIFOCache.__init__, transcribed.
        self._clear()  # called again on a live cache: it starts empty, as the pure one
        _cache_init(self, maxsize, getsizeof)
        small_ratio = fraction("small_ratio", small_ratio)
        ghost_ratio = non_negative_number("ghost_ratio", ghost_ratio)
        if self._max == math.inf:  # unbounded: nothing is ever evicted
            self._small_cap = self._main_cap = self._ghost_cap = self._max
        else:
            self._small_cap = int(self._max * small_ratio)
            self._main_cap = self._max - self._small_cap
            self._ghost_cap = int(self._max * ghost_ratio)
        self._has_evicted = False
        self._ghost_hit = False

    # -- the pure class's attributes --------------------------------------------------

    @property
    def _maxsize(self):
        return self._max

    @_maxsize.setter
    def _maxsize(self, value):
        self._cap = _capacity(value)
        self._max = value

    @property
    def _small_cap(self):
        return self._small_cap_o

    @_small_cap.setter
    def _small_cap(self, value):
        self._small_c = _capacity(value)
        self._small_cap_o = value

    @property
    def _main_cap(self):
        return self._main_cap_o

    @_main_cap.setter
    def _main_cap(self, value):
        self._main_c = _capacity(value)
        self._main_cap_o = value

    @property
    def _ghost_cap(self):
        return self._ghost_cap_o

    @_ghost_cap.setter
    def _ghost_cap(self, value):
        self._ghost_c = _capacity(value)
        self._ghost_cap_o = value

    @property
    def _ghost(self):
        """The ghost's keys, oldest first: a snapshot, as the pure `OrderedDict` reads."""
        return OrderedDict.fromkeys(list(self._ghost_d))

    @_ghost.setter
    def _ghost(self, value):
        if not isinstance(value, OrderedDict):
            raise ArgumentTypeError(f"_ghost must be an OrderedDict, got {type(value).__name__}")
        ghost = dict.fromkeys(list(value))
        old = self._ghost_d
        self._ghost_d = ghost
        self._ghost_pos = 0
        self._ghost_table = NULL
        old = None  # released with the ghost consistent

    @property
    def _small_used(self):
        return self._small_n if self._sizes is None else self._small_w

    @_small_used.setter
    def _small_used(self, value):
        if self._sizes is None:
            self._small_n = value
        else:
            self._small_w = value

    @property
    def _main_used(self):
        return self._main_n if self._sizes is None else self._main_w

    @_main_used.setter
    def _main_used(self, value):
        if self._sizes is None:
            self._main_n = value
        else:
            self._main_w = value

    # -- the policy -------------------------------------------------------------------

    cdef inline bint _main_over(self) except -1:
        if self._sizes is None:
            return self._main_n > self._main_c
        return self._main_w > self._main_cap_o

    cdef _Entry _pick(self):
        # The pure _victim up to its ghost write: returns the victim, linked and in
        # the dict, and leaves a small-queue victim's key to _remember.
        self._has_evicted = True
        cdef _Entry small = self._small_root
        cdef _Entry main = self._main_root
        cdef _Entry node
        cdef object size
        while True:
            if self._main_over() or small.next == <PyObject*>small:
                while main.next != <PyObject*>main:
                    node = <_Entry>main.next
                    if node.freq < 1:
                        return node
                    _cut(node)
                    _push(main, node, _MAIN)
                    node.freq = (node.freq if node.freq < 3 else 3) - 1
                if small.next == <PyObject*>small:
                    raise KeyError(f"{type(self).__name__} is empty")
            while small.next != <PyObject*>small:
                node = <_Entry>small.next
                if node.freq >= 2:
                    if self._sizes is not None:
                        size = self._sizes.get(node.key, 0)  # may run Python code
                        if small.next != <PyObject*>node:
                            continue  # the queue changed meanwhile: look again
                        self._small_w -= size
                        self._main_w += size
                    _cut(node)
                    _push(main, node, _MAIN)
                    self._small_n -= 1
                    self._main_n += 1
                    node.freq = 0
                    continue
                return node

    cdef int _remember(self, object key) except -1:
        if self._ghost_c <= 0:
            return 0
        # One lookup: a key already there stays where it is (the pure class returns
        # early); a new one goes in at the newest end, then the oldest go while the
        # ghost is over its size (never the new key: it is the newest of two or more).
        cdef dict ghost = self._ghost_d  # held: the key's __hash__/__eq__ runs in the call
        _setdefault(ghost, key, None)
        if ghost is not self._ghost_d:
            return 0  # cleared meanwhile: the key went with the old ghost
        if _dict_table(ghost) != self._ghost_table:
            # Resized by this insert (compacted, order kept): read from the start.
            self._ghost_table = _dict_table(ghost)
            self._ghost_pos = 0
        while PyDict_Size(self._ghost_d) > self._ghost_c:
            if not self._forget_oldest():
                break
        return 0

    cdef bint _forget_oldest(self) except -1:
        # The ghost's oldest key out (OrderedDict.popitem(last=False)); false if empty.
        cdef dict ghost = self._ghost_d
        cdef Py_ssize_t pos = self._ghost_pos
        cdef PyObject* k
        cdef PyObject* v
        if _dict_table(ghost) != self._ghost_table:
            pos = 0
            self._ghost_table = _dict_table(ghost)
        if not _dict_next(<PyObject*>ghost, &pos, &k, &v):
            self._ghost_pos = 0
            return False
        self._ghost_pos = pos - 1  # its index: deleted below, skipped from then on
        key = <object>k
        PyDict_DelItem(ghost, key)  # may run the key's __eq__: the ghost is consistent
        return True

    cdef int _unlink(self, _Entry node, object size) except -1:
        # Out of its queue (if still linked); `size` is its weight with getsizeof.
        cdef int queue = node.queue
        if queue == _UNLINKED:
            return 0
        _cut(node)
        if queue == _SMALL:
            self._small_n -= 1
            if size is not None:
                self._small_w -= size
        else:
            self._main_n -= 1
            if size is not None:
                self._main_w -= size
        return 0

    cdef int _insert_node(self, object key, object value) except -1:
        cdef bint sized = self._sizes is not None
        cdef object size = None
        cdef bint to_main = False
        if sized:
            size = self._size_of(value)  # Python code: before the dict operation
            to_main = (
                self._ghost_hit
                or size >= self._small_cap_o
                or (not self._has_evicted and self._small_w >= self._small_cap_o)
            )
        cdef _Entry node
        cdef PyObject* found
        cdef dict d
        cdef int attempt
        # Made again if the key's __hash__/__eq__ cleared the cache meanwhile (the
        # node then went into the discarded dict, unlinked); dropped if twice.
        for attempt in range(2):
            node = _Entry.__new__(_Entry)
            node.key = key
            node.value = value
            node.freq = 0
            node.queue = _UNLINKED
            d = self._map
            found = _setdefault(d, key, node)
            if d is self._map:
                break
            # Cleared meanwhile: the node went into the discarded dict. Emptied here,
            # where no node is held, so that releasing it later runs no Python code.
            PyDict_Clear(d)
        else:
            self._ghost_hit = False
            return 0
        cdef object old
        if found != <PyObject*>node:  # the key was written meanwhile: an update
            self._ghost_hit = False
            old = (<_Entry>found).value
            (<_Entry>found).value = value
            if (<_Entry>found).freq < 3:
                (<_Entry>found).freq += 1
            return 0
        self._inserted += 1
        if not sized:
            to_main = (
                self._ghost_hit
                or 1 >= self._small_c
                or (not self._has_evicted and self._small_n >= self._small_c)
            )
        self._ghost_hit = False
        if to_main:
            _push(self._main_root, node, _MAIN)
            self._main_n += 1
            if sized:
                self._main_w += size
        else:
            _push(self._small_root, node, _SMALL)
            self._small_n += 1
            if sized:
                self._small_w += size
        return 0

    # -- the hot paths -------------------------------------------------------------

    def get(self, key, default=None):
        """Return the value for `key` (counting a hit), or `default`. Runtime: O(1)."""
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            return default
        if (<_Entry>found).freq < 3:
            (<_Entry>found).freq += 1
        self._hits += 1
        return (<_Entry>found).value

    def __getitem__(self, key):
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            if self._plain_missing:
                raise KeyError(key)
            return self.__missing__(key)
        if (<_Entry>found).freq < 3:
            (<_Entry>found).freq += 1
        self._hits += 1
        return (<_Entry>found).value

    def __setitem__(self, key, value):
        cdef PyObject* found
        cdef dict ghost
        if self._sizes is not None:
            if self._has(key) != 1:
                ghost = self._ghost_d
                if key in ghost and self._size_of(value) > self._max:
                    # A write refused for its size takes nothing from the ghost.
                    raise ValueError("value too large")
                # libCacheSim consults the ghost on the lookup, before it evicts.
                self._ghost_hit = ghost.pop(key, _MISSING) is not _MISSING
            _cache_setitem(self, key, value)
            return
        if _type_of(self) != self._flags_type:
            self._refresh()
        found = self._find(key)
        cdef object old  # released at return, once the links are consistent
        cdef _Entry node
        cdef object victim = None
        cdef dict d
        if found is not NULL:
            old = (<_Entry>found).value
            (<_Entry>found).value = value
            if (<_Entry>found).freq < 3:
                (<_Entry>found).freq += 1
            return
        cdef size_t inserted = self._inserted
        # Whether the key is in the ghost (one lookup for a miss).
        ghost = self._ghost_d  # held: the key's __eq__ runs in the lookup
        self._ghost_hit = (
            PyDict_Contains(ghost, key) == 1
            and ghost.pop(key, _MISSING) is not _MISSING
        )
        if PyDict_Size(self._map) >= self._cap:
            while (
                self._inline_evict and PyDict_Size(self._map) >= self._cap
                and (
                    self._small_root.next != <PyObject*>self._small_root
                    or self._main_root.next != <PyObject*>self._main_root
                )
            ):
                node = self._pick()
                if node.queue == _SMALL:
                    self._remember(node.key)  # Python code: the cache is consistent
                d = self._map
                victim = d.pop(node.key, None)
                if victim is not None:
                    self._unlink(<_Entry>victim, None)
                    self._evictions += 1
                    victim = None  # consistent again: its __del__ may run now
            node = None  # the last victim's __del__ may run now, before the insert
            # Python code that ran meanwhile (a key's __eq__, a victim's __del__) may
            # have written this key: the write is then an update. Nothing inserted
            # since the lookup above, nothing to look up again.
            found = self._find(key) if self._inserted != inserted else NULL
            if found is not NULL:
                old = (<_Entry>found).value
                (<_Entry>found).value = value
                if (<_Entry>found).freq < 3:
                    (<_Entry>found).freq += 1
                return
            if not self._inline_evict or PyDict_Size(self._map) >= self._cap:
                self._make_room()  # hooked evictions, or nothing left to evict (maxsize 0)
        self._insert_node(key, value)

    def __delitem__(self, key):
        if self._sizes is not None:
            _cache_delitem(self, key)
            return
        self._remove(key)

    def __contains__(self, key):
        return self._has(key) == 1

    def __len__(self):
        return PyDict_Size(self._map)

    def __iter__(self):
        # The dict's order is the pure class's `_data` order (queue moves never re-insert).
        # Over a snapshot, as the pure class: a key added is not visited, one removed skipped.
        for key in PyDict_Keys(self._map):
            if self._has(key):  # runs the key's __eq__: the dict is held meanwhile
                yield key

    # -- the hooks the pure Cache methods call --------------------------------------

    def _touch(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        if (<_Entry>found).freq < 3:
            (<_Entry>found).freq += 1
        return (<_Entry>found).value

    def _peek(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        return (<_Entry>found).value

    def _update(self, key, value):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return False
        cdef _Entry node = <_Entry>found
        sizes = self._sizes
        if sizes is not None:
            diff = self._size_of(value) - sizes[key]
            if node.queue == _SMALL:
                self._small_w += diff
            elif node.queue == _MAIN:
                self._main_w += diff
        old = node.value
        node.value = value
        if node.freq < 3:
            node.freq += 1
        return True

    def _insert(self, key, value):
        self._insert_node(key, value)

    def _remove(self, key):
        size = None if self._sizes is None else self._sizes.get(key, 0)
        cdef dict d = self._map
        cdef _Entry node = d.pop(key)
        self._unlink(node, size)
        return node.value

    def _victim(self):
        cdef _Entry node = self._pick()
        if node.queue == _SMALL:
            self._remember(node.key)
        return node.key

    def _clear(self):
        cdef dict old = self._map
        self._reset_rings()
        self._map = {}
        self._small_w = self._main_w = 0
        self._has_evicted = False
        cdef dict ghost = self._ghost_d
        self._ghost_d = {}
        self._ghost_pos = 0
        self._ghost_table = NULL
        # Consistent and empty: keys' and values' __del__ may run from here on.
        ghost.clear()
        old.clear()

    cdef void _reset_rings(self) noexcept:
        if self._small_root is not None:
            _empty_ring(self._small_root)
        if self._main_root is not None:
            _empty_ring(self._main_root)
        self._small_n = self._main_n = 0

    # -- state: the pure S3FIFOCache's __dict__ ------------------------------------------

    cdef object _queue(self, _Entry root):
        # Read in C first, then build the OrderedDict.
        return OrderedDict.fromkeys([(<_Entry>node).key for node in self._queue_nodes(root)])

    @property
    def _small(self):
        """The small queue's keys, oldest first: a snapshot, as the pure `OrderedDict` reads."""
        return self._queue(self._small_root)

    @property
    def _main(self):
        """The main queue's keys, oldest first: a snapshot, as the pure `OrderedDict` reads."""
        return self._queue(self._main_root)

    def __getstate__(self):
        """The pure class's state: `_data` of `[value, freq, queue]`, the queues as `OrderedDict`s.

        One consistent snapshot, as `LFUCache`'s: the dict's items and the
        two queues' nodes, taken again if they disagree; a key the dict
        holds twice is kept once, so the state always loads.
        """
        cdef int attempt
        cdef list items, small_nodes, main_nodes
        for attempt in range(_ATTEMPTS):
            items = list((<dict>self._map).items())
            small_nodes = self._queue_nodes(self._small_root)
            main_nodes = self._queue_nodes(self._main_root)
            if {id(node) for _, node in items} == {id(node) for node in small_nodes + main_nodes}:
                break
        else:
            raise RuntimeError(_changed(self, "__getstate__"))
        state = dict(self.__dict__)
        # From here on only the snapshot is read: keys' __hash__/__eq__ may run.
        kept = {}
        for key, entry in items:
            kept.setdefault(key, entry)
        cdef _Entry node
        data = {}
        for key, entry in kept.items():
            node = <_Entry>entry
            data[key] = [node.value, node.freq, node.queue]
        small = OrderedDict()
        for entry in small_nodes:
            if kept.get((<_Entry>entry).key) is entry:
                small[(<_Entry>entry).key] = None
        main = OrderedDict()
        for entry in main_nodes:
            if kept.get((<_Entry>entry).key) is entry:
                main[(<_Entry>entry).key] = None
        state["_data"] = data
        state["_small"] = small
        state["_main"] = main
        if self._sizes is None:
            state["_small_used"] = len(small)
            state["_main_used"] = len(main)
        else:
            state["_small_used"] = self._small_used
            state["_main_used"] = self._main_used
        for name in _S3_FIELDS:
            state[name] = getattr(self, name)
        return state

    cdef list _queue_nodes(self, _Entry root):
        # Into a list made beforehand (see LFUCore._snapshot); the walk runs no Python code.
        cdef PyObject* p
        cdef Py_ssize_t n, i
        cdef list nodes
        while True:
            n = 0
            p = root.next
            while p != <PyObject*>root:
                n += 1
                p = (<_Entry>p).next
            nodes = [None] * n
            i = 0
            p = root.next
            while p != <PyObject*>root and i < n:
                nodes[i] = <object>p
                i += 1
                p = (<_Entry>p).next
            if i == n and p == <PyObject*>root:
                return nodes

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_data")
        small = state.pop("_small")
        main = state.pop("_main")
        small_used = state.pop("_small_used", 0)
        main_used = state.pop("_main_used", 0)
        self._clear()
        for name in _S3_FIELDS:
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)
        # Built apart (a private dict no other code can reach), then linked with no
        # Python code between.
        mapping = {}
        cdef _Entry node
        for key, (value, freq, queue) in data.items():
            node = _Entry.__new__(_Entry)
            node.key = key
            node.value = value
            node.freq = freq
            node.queue = _UNLINKED
            mapping[key] = node
        order = [mapping[key] for key in small] + [mapping[key] for key in main]
        if len(order) != len(mapping) or len({id(n) for n in order}) != len(mapping):
            raise ConfigurationError("S3FIFOCache state: _small and _main do not hold every key once")
        cdef Py_ssize_t n_small = len(small)
        cdef Py_ssize_t i = 0
        self._reset_rings()  # anything linked meanwhile (re-entrantly) goes with the old dict
        for entry in order:
            node = <_Entry>entry
            if i < n_small:
                _push(self._small_root, node, _SMALL)
            else:
                _push(self._main_root, node, _MAIN)
            i += 1
        self._small_n = n_small
        self._main_n = len(order) - n_small
        self._small_w = small_used
        self._main_w = main_used
        self._map = mapping
        self._inserted += 1

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self),), self.__getstate__()


cdef _traverseproc _s3_traverse = NULL


cdef int _traverse_s3(PyObject* o, _visitproc visit, void* arg) noexcept:
    cdef int r = _s3_traverse(o, visit, arg)
    if r:
        return r
    cdef S3FIFOCore core = <S3FIFOCore>o
    if core._map is None:
        return 0
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* node
    while _dict_next(<PyObject*>core._map, &pos, &key, &node):
        r = visit(<PyObject*>(<_Entry>node).key, arg)
        if r:
            return r
        r = visit(<PyObject*>(<_Entry>node).value, arg)
        if r:
            return r
    return 0


cdef int _clear_s3(PyObject* o) noexcept:
    # As _clear_lfu: the rings are emptied, then the dict in place.
    cdef S3FIFOCore core = <S3FIFOCore>o
    core._reset_rings()
    if core._map is not None:
        PyDict_Clear(core._map)
    return 0


_s3_traverse = (<_TypeObject*>S3FIFOCore).tp_traverse
(<_TypeObject*>S3FIFOCore).tp_traverse = _traverse_s3
(<_TypeObject*>S3FIFOCore).tp_clear = _clear_s3


cdef int _check_layouts() except -1:
    # The ring helpers of _ccore read every S3-FIFO entry through its two leading fields.
    cdef _Entry entry = _Entry.__new__(_Entry)
    check_layout(entry, &entry.prev, &entry.next)
    return 0


_check_layouts()


# Each core's current dict, for the shared slow paths of _ccore.
cdef dict _lfu_map(object core):
    return (<LFUCore>core)._map


cdef dict _s3fifo_map(object core):
    return (<S3FIFOCore>core)._map
