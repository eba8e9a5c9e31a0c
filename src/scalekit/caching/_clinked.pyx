# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled core of `LRUCache` and `FIFOCache`, and of `cached`'s hit path over them.

`LinkedCore` is not used alone: `scalekit.caching._speedups.linked` makes
the public class `LRUCache(LinkedCore, pure LRUCache)` (and the same for
FIFO), so the core's methods come first and everything it does not define
(`pop`, `setdefault`, `peek`, `popitem`, `stats`, `__repr__`, the views,
`copy.copy`, weighted writes) is the pure `Cache` code, calling the
core's hooks. The pure classes stay the reference: same iteration order,
same statistics, same pickled state (a cache pickled with the extension
loads without it, and the other way round).

Storage: a dict maps each key to a node of a doubly linked list, oldest
first (a sentinel node closes the ring); a hit is one dict lookup and, for
LRU, four pointer moves. The node owns its key and value; its links are
borrowed pointers (the dict owns the nodes), so nodes form no reference
cycle among themselves and need no GC header: 48 bytes a node, less than
`OrderedDict`'s node plus its index array. The core's own GC traversal
visits every node's key and value instead, so a value that refers back to
its cache is still collected.
"""

cimport cython
from cpython.dict cimport PyDict_Clear, PyDict_GetItemWithError, PyDict_Keys, PyDict_Size
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport PyObject, Py_INCREF

from collections import OrderedDict

from ._ccore cimport (
    TypeObject as _TypeObject,
    capacity as _capacity,
    check_layout,
    find_again,
    has_key,
    dict_setdefault as _setdefault,
    ring_clear,
    ring_cut,
    ring_init,
    ring_push,
    ring_to_end,
    traverseproc as _traverseproc,
    ternaryfunc as _ternaryfunc,
    type_of as _type_of,
    visitproc as _visitproc,
)
from ..exceptions import InvalidStateError
from .base import MISSING, Cache
from .keys import _MARK

__all__ = ["CachedHit", "LinkedCore", "SieveCore"]

cdef object _MISSING = MISSING
cdef tuple _KWMARK = _MARK
cdef object _cache_init = Cache.__init__
cdef object _cache_setitem = Cache.__setitem__
cdef object _cache_delitem = Cache.__delitem__
cdef object _cache_missing = Cache.__missing__
cdef object _cache_popitem = Cache.popitem

# The fields of the core that the pure classes keep in their __dict__.
cdef tuple _FIELDS = ("_maxsize", "_sizes", "_hits", "_misses", "_evictions")


cdef extern from "Python.h":
    PyObject* _lookup "PyDict_GetItemWithError"(PyObject*, PyObject*) noexcept
    PyObject* _error "PyErr_Occurred"() noexcept
    void _incref "Py_INCREF"(PyObject*) noexcept
    Py_ssize_t _dict_len "PyDict_GET_SIZE"(PyObject*) noexcept


@cython.final
@cython.no_gc
@cython.auto_pickle(False)
cdef class _Node:
    # Borrowed: the core's dict owns every node; prev and next never outlive it.
    # `prev` is NULL while the node is not linked (no flag: a node stays 48 bytes).
    cdef PyObject* prev
    cdef PyObject* next
    cdef object key
    cdef object value


# Memory safety rule: a node is in the current dict exactly while it is linked.
# A dict operation may run Python code (a key's __hash__/__eq__, which may also
# let another thread in), so every one works on a dict held in a local (a clear
# meanwhile swaps `_map`, and would otherwise free the dict under the operation),
# and what it returns is checked afterwards, with no Python code between the
# check and the link change: an insert into a dict that is no longer `_map` (the
# cache was cleared meanwhile) is made again, or dropped; a removed node is
# unlinked only if still linked. Removed nodes and replaced values are held in
# locals and released only when the structure is consistent again. A node left
# in a discarded dict is never linked, and every link change tolerates one.


cdef inline void _unlink(_Node node) noexcept:
    ring_cut(<PyObject*>node)


cdef inline void _append(_Node root, _Node node) noexcept:
    ring_push(<PyObject*>root, <PyObject*>node)


cdef inline void _move_to_end(_Node root, _Node node) noexcept:
    ring_to_end(<PyObject*>root, <PyObject*>node)


@cython.auto_pickle(False)
cdef class LinkedCore:
    """Entries in a dict of linked nodes, oldest first; evicts the oldest.

    A class using it sets `_reorder`: true for LRU (a read moves the key to
    the newest end), false for FIFO. Writing a present key moves it to the
    newest end in both, as the pure `OrderedCache` does.
    """

    cdef dict _map
    cdef _Node _root
    cdef object _max
    cdef Py_ssize_t _cap
    cdef void* _flags_type  # the class the next three flags were read from
    cdef bint _reorder
    cdef bint _inline_evict
    cdef bint _plain_missing
    cdef public object _sizes
    cdef public Py_ssize_t _hits
    cdef public Py_ssize_t _misses
    cdef public Py_ssize_t _evictions

    def __cinit__(self, *args, **kwargs):
        self._map = {}
        cdef _Node root = _Node.__new__(_Node)
        ring_init(<PyObject*>root)
        root.key = _MISSING
        root.value = _MISSING
        self._root = root
        self._max = 0
        self._cap = 0
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
        return find_again(self, _linked_map, key)

    cdef bint _has(self, object key) except -1:
        return has_key(self, _linked_map, key)

    cdef int _refresh(self) except -1:
        # Per class, and read again when `__class__` is assigned (as the pure
        # classes read these on each call).
        cls = type(self)
        self._flags_type = _type_of(self)
        self._reorder = bool(getattr(cls, "_reorder", False))
        # A subclass overriding popitem or __delitem__ hooks evictions (as with
        # cachetools): then writes evict through popitem(), as the pure classes do.
        self._inline_evict = (
            cls.popitem is _cache_popitem and cls.__delitem__ is LinkedCore.__delitem__
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

    # -- the hot paths -------------------------------------------------------------

    def get(self, key, default=None):
        """Return the value for `key`, or `default`; counts a hit or a miss.

        Runtime complexity: O(1).
        """
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            return default
        cdef _Node node = <_Node>found
        if self._reorder:
            _move_to_end(self._root, node)
        self._hits += 1
        return node.value

    def __getitem__(self, key):
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            if self._plain_missing:
                raise KeyError(key)
            return self.__missing__(key)
        cdef _Node node = <_Node>found
        if self._reorder:
            _move_to_end(self._root, node)
        self._hits += 1
        return node.value

    def __setitem__(self, key, value):
        if self._sizes is not None:
            _cache_setitem(self, key, value)
            return
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        cdef _Node node
        cdef _Node root = self._root
        cdef object old  # released at return, once the links are consistent
        cdef object victim = None
        cdef dict d
        if found is not NULL:
            node = <_Node>found
            old = node.value
            node.value = value
            _move_to_end(root, node)
            return
        if PyDict_Size(self._map) >= self._cap:
            # A loop: unlocked threads racing past the size check are trimmed back here.
            while (
                self._inline_evict and PyDict_Size(self._map) >= self._cap
                and root.next != <PyObject*>root
            ):
                node = <_Node>root.next
                # The pop may run the key's __eq__ (and other threads): it
                # returns whichever node the dict held, unlinked at once.
                d = self._map
                victim = d.pop(node.key, None)
                if victim is not None:
                    _unlink(<_Node>victim)
                    self._evictions += 1
                    # Consistent again: the victim's __del__ may run now, before
                    # the insert (as the pure class releases it).
                    victim = None
            if not self._inline_evict or PyDict_Size(self._map) >= self._cap:
                self._make_room()  # hooked evictions, or nothing left to evict (maxsize 0)
            node = None  # the last victim's __del__ may run now, before the insert
        self._store(key, value)

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
        """The cached keys, oldest (next to evict) first, without touching the policy.

        Iterates over a snapshot, as the pure class does: a key written while
        iterating moves to the end without disturbing the loop, a key added is
        not visited and a key removed is skipped.
        """
        keys = self._keys()
        for key in keys:
            if self._has(key):  # runs the key's __eq__: the dict is held meanwhile
                yield key

    cdef list _keys(self):
        cdef list keys = []
        cdef _Node root = self._root
        cdef PyObject* p = root.next
        while p != <PyObject*>root:
            keys.append((<_Node>p).key)
            p = (<_Node>p).next
        return keys

    # -- the hooks the pure Cache methods call --------------------------------------

    def _touch(self, key):
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        if self._reorder:
            _move_to_end(self._root, <_Node>found)
        return (<_Node>found).value

    def _peek(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        return (<_Node>found).value

    def _update(self, key, value):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return False
        old = (<_Node>found).value
        (<_Node>found).value = value
        _move_to_end(self._root, <_Node>found)
        return True

    def _insert(self, key, value):
        self._store(key, value)

    cdef int _store(self, object key, object value) except -1:
        # An insert (or, if the key was written meanwhile, an update). The key's
        # __hash__/__eq__ may clear the cache during setdefault: the node then went
        # into the discarded dict, unlinked, so the write is made again in the new
        # one (once: a key clearing the cache at every hash loses its write).
        cdef _Node node
        cdef dict d
        cdef PyObject* found
        cdef object old  # released at return, once the links are consistent
        cdef int attempt
        for attempt in range(2):
            node = _Node.__new__(_Node)
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
            return 0
        if found == <PyObject*>node:
            _append(self._root, node)
        else:  # the key was written meanwhile (re-entrantly or by another thread)
            old = (<_Node>found).value
            (<_Node>found).value = value
            _move_to_end(self._root, <_Node>found)
        return 0

    def _remove(self, key):
        cdef dict d = self._map
        cdef _Node node = d.pop(key)
        _unlink(node)
        return node.value

    def _victim(self):
        cdef _Node root = self._root
        if root.next == <PyObject*>root:
            raise KeyError(f"{type(self).__name__} is empty")
        return (<_Node>root.next).key

    def _clear(self):
        cdef dict old = self._map
        ring_clear(<PyObject*>self._root)
        self._map = {}
        old.clear()  # values' __del__ run here, against an empty, consistent cache

    # -- state: the same as the pure OrderedCache's __dict__ ------------------------

    def __getstate__(self):
        """The pure class's state: its `__dict__`, with `_data` an `OrderedDict`, oldest first."""
        state = dict(self.__dict__)
        cdef _Node root = self._root
        cdef PyObject* p
        cdef Py_ssize_t n, i
        cdef object item
        while True:
            # The walk runs no Python code: it counts, then fills lists made
            # beforehand (whose allocation may run a collection, and so any
            # code; a walk that finds another length is made again). A key's
            # __hash__/__eq__ runs only on the copies, below.
            n = 0
            p = root.next
            while p != <PyObject*>root:
                n += 1
                p = (<_Node>p).next
            keys = PyList_New(n)
            values = PyList_New(n)
            i = 0
            p = root.next
            while p != <PyObject*>root and i < n:
                item = (<_Node>p).key
                Py_INCREF(item)
                PyList_SET_ITEM(keys, i, item)
                item = (<_Node>p).value
                Py_INCREF(item)
                PyList_SET_ITEM(values, i, item)
                i += 1
                p = (<_Node>p).next
            if i == n and p == <PyObject*>root:
                break
        item = None
        state["_data"] = OrderedDict(zip(keys, values))
        for name in _FIELDS:
            state[name] = getattr(self, name)
        return state

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_data")
        for name in _FIELDS:
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)
        self._clear()
        for key, value in data.items():
            self._insert(key, value)

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self),), self.__getstate__()


cdef _traverseproc _core_traverse = NULL


cdef int _traverse(PyObject* o, _visitproc visit, void* arg) noexcept:
    # The generated traversal (the dict, the sizes), then what the untracked
    # nodes hold: their references are the cache's, as far as the GC goes.
    cdef int r = _core_traverse(o, visit, arg)
    if r:
        return r
    cdef LinkedCore core = <LinkedCore>o
    cdef _Node root = core._root
    if root is None:
        return 0
    cdef PyObject* p = root.next
    while p != <PyObject*>root:
        r = visit(<PyObject*>(<_Node>p).key, arg)
        if r:
            return r
        r = visit(<PyObject*>(<_Node>p).value, arg)
        if r:
            return r
        p = (<_Node>p).next
    return 0


cdef int _clear_linked(PyObject* o) noexcept:
    # The GC breaking a cycle: the ring is emptied, then the dict in place, so
    # that no link points at a freed node. The other fields stay: what they hold
    # is cleared by the GC itself.
    cdef LinkedCore core = <LinkedCore>o
    if core._root is not None:
        ring_clear(<PyObject*>core._root)
    if core._map is not None:
        PyDict_Clear(core._map)
    return 0


_core_traverse = (<_TypeObject*>LinkedCore).tp_traverse
(<_TypeObject*>LinkedCore).tp_traverse = _traverse
(<_TypeObject*>LinkedCore).tp_clear = _clear_linked


@cython.auto_pickle(False)
cdef class CachedHit:
    """The hit path of `cached(LRUCache(...))` or `cached(FIFOCache(...))`, compiled.

    With `cached`'s default key (the positional arguments; keyword
    arguments as `hashkey` adds them), a hit is the key's dict lookup in the
    cache's core, the recency move and the cache's hit counter, all in C. A
    miss counts one in the cache and calls `miss(key, args, kwargs)`: the
    pure wrapper's single-flight call and store.
    """

    cdef LinkedCore _core
    cdef object _miss
    cdef dict __dict__

    def __init__(self, LinkedCore cache, miss):
        self._core = cache
        self._miss = miss

    def __call__(self, *args, **kwargs):
        cdef LinkedCore core = self._core
        if core is None:
            raise InvalidStateError("CachedHit is not initialised: cached() builds it")
        cdef object k = args
        if kwargs:
            k = args + _KWMARK + tuple(sorted(kwargs.items()))
        if _type_of(core) != core._flags_type:
            core._refresh()
        cdef PyObject* found = core._find(k)  # the key's __eq__ may clear the cache
        cdef _Node node
        if found is not NULL:
            node = <_Node>found
            if core._reorder:
                _move_to_end(core._root, node)
            core._hits += 1
            return node.value
        core._misses += 1
        return self._miss(k, args, kwargs)

    def __get__(self, obj, objtype):
        # A plain function binds to the instance it is read from; so does this.
        if obj is None:
            return self
        from types import MethodType

        return MethodType(self, obj)

    def __repr__(self):
        # As the pure wrapper, a function with the wrapped function's qualified name, reads.
        return f"<function {getattr(self, '__qualname__', '?')} at {id(self):#x}>"

    def __reduce__(self):
        # Pickled by reference, as the function it wraps would be.
        return self.__qualname__


cdef _ternaryfunc _cached_hit_call = NULL


cdef PyObject* _cached_hit_fast(PyObject* o, PyObject* args, PyObject* kwds) noexcept:
    # The hit without keyword arguments, in C from the call slot: the generated
    # wrapper would build a kwargs dict on every call. Everything else (keywords,
    # a miss, a class changed since the flags were read) goes to __call__.
    if kwds is not NULL and _dict_len(kwds) != 0:
        return _cached_hit_call(o, args, kwds)
    cdef LinkedCore core = (<CachedHit>o)._core
    if core is None or _type_of(core) != core._flags_type:
        return _cached_hit_call(o, args, kwds)
    # The dict and the node are held while used: the key's __eq__ runs inside the
    # lookup and may clear the cache, dropping the dict's last other reference.
    cdef dict d = core._map
    cdef PyObject* found = _lookup(<PyObject*>d, args)
    if found is NULL:
        if _error() is not NULL:
            return NULL
        return _cached_hit_call(o, args, kwds)
    if d is not core._map:  # cleared meanwhile: the node is from the discarded dict
        return _cached_hit_call(o, args, kwds)
    cdef _Node node = <_Node>found
    if core._reorder:
        _move_to_end(core._root, node)
    core._hits += 1
    cdef PyObject* value = <PyObject*>node.value
    _incref(value)
    return value


_cached_hit_call = (<_TypeObject*>CachedHit).tp_call
(<_TypeObject*>CachedHit).tp_call = _cached_hit_fast


# -- SIEVE ------------------------------------------------------------------------------


@cython.final
@cython.no_gc
@cython.auto_pickle(False)
cdef class _Mark:
    # A SIEVE node: as _Node, with the visited bit. Borrowed links, as there.
    cdef PyObject* prev
    cdef PyObject* next
    cdef object key
    cdef object value
    cdef bint visited


@cython.auto_pickle(False)
cdef class SieveCore:
    """The hot paths of `SIEVECache`: a dict of linked nodes, oldest first, and the hand.

    New entries go to the newest end and never move; a hit sets the visited
    bit; eviction sweeps the hand from where it stopped toward the newest
    end, clearing bits, and evicts the first clear entry (the pure
    `SIEVECache._victim`, transcribed).
    """

    cdef dict _map
    cdef _Mark _root
    cdef _Mark _hand_node  # None: the hand starts at the oldest entry
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
        cdef _Mark root = _Mark.__new__(_Mark)
        ring_init(<PyObject*>root)
        root.key = _MISSING
        root.value = _MISSING
        self._root = root
        self._hand_node = None
        self._max = 0
        self._cap = 0
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
        return find_again(self, _sieve_map, key)

    cdef bint _has(self, object key) except -1:
        return has_key(self, _sieve_map, key)

    cdef int _refresh(self) except -1:
        cls = type(self)
        self._flags_type = _type_of(self)
        self._inline_evict = (
            cls.popitem is _cache_popitem and cls.__delitem__ is SieveCore.__delitem__
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

    def get(self, key, default=None):
        """Return the value for `key` (marking it visited), or `default`.

        Runtime complexity: O(1).
        """
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            return default
        (<_Mark>found).visited = True
        self._hits += 1
        return (<_Mark>found).value

    def __getitem__(self, key):
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        if found is NULL:
            self._misses += 1
            if self._plain_missing:
                raise KeyError(key)
            return self.__missing__(key)
        (<_Mark>found).visited = True
        self._hits += 1
        return (<_Mark>found).value

    def __setitem__(self, key, value):
        if self._sizes is not None:
            _cache_setitem(self, key, value)
            return
        if _type_of(self) != self._flags_type:
            self._refresh()
        cdef PyObject* found = self._find(key)
        cdef object old  # released at return, once the links are consistent
        cdef object victim = None
        if found is not NULL:
            old = (<_Mark>found).value
            (<_Mark>found).value = value
            (<_Mark>found).visited = True
            return
        if PyDict_Size(self._map) >= self._cap:
            # A loop: unlocked threads racing past the size check are trimmed back here.
            while (
                self._inline_evict and PyDict_Size(self._map) >= self._cap
                and self._root.next != <PyObject*>self._root
            ):
                victim = self._take_node(self._sweep(), False)
                if victim is not None:
                    self._evictions += 1
                    victim = None  # consistent again: its __del__ may run before the insert
            if not self._inline_evict or PyDict_Size(self._map) >= self._cap:
                self._make_room()  # hooked evictions, or nothing left to evict (maxsize 0)
        self._insert(key, value)

    def __delitem__(self, key):
        if self._sizes is not None:
            _cache_delitem(self, key)
            return
        self._take(key)

    def __contains__(self, key):
        return self._has(key) == 1

    def __len__(self):
        return PyDict_Size(self._map)

    def __iter__(self):
        # The dict's own order is the queue's (nodes never move), as the pure class iterates,
        # over a snapshot as it does: a key added is not visited, one removed is skipped.
        for key in PyDict_Keys(self._map):
            if self._has(key):  # runs the key's __eq__: the dict is held meanwhile
                yield key

    cdef object _sweep(self):
        cdef _Mark root = self._root
        cdef _Mark node = self._hand_node
        if node is None or node.prev is NULL:
            node = <_Mark>root.next
        while node.visited:
            node.visited = False
            node = <_Mark>node.next
            if node is root:
                node = <_Mark>root.next
        # _take moves the hand one step toward the newest end, as Sieve_evict does.
        self._hand_node = node
        return node.key

    cdef object _take(self, object key):
        return (<_Mark>self._take_node(key, True)).value

    cdef object _take_node(self, object key, bint required):
        # The pop first (it may run Python code), then the links, with no Python
        # code between; the caller holds the node until it returns.
        cdef dict d = self._map  # held: the pop may run Python code that clears the cache
        cdef object popped = d.pop(key) if required else d.pop(key, None)
        if popped is None:
            return None
        cdef _Mark node = <_Mark>popped
        if node.prev is NULL:
            return node
        if node is self._hand_node:
            self._hand_node = None if node.next == <PyObject*>self._root else <_Mark>node.next
        ring_cut(<PyObject*>node)
        return node

    # -- the hooks the pure Cache methods call --------------------------------------

    def _touch(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        (<_Mark>found).visited = True
        return (<_Mark>found).value

    def _peek(self, key):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return _MISSING
        return (<_Mark>found).value

    def _update(self, key, value):
        cdef PyObject* found = self._find(key)
        if found is NULL:
            return False
        old = (<_Mark>found).value
        (<_Mark>found).value = value
        (<_Mark>found).visited = True
        return True

    def _insert(self, key, value):
        # As LinkedCore._store: made again if a clear swapped the dict meanwhile.
        cdef _Mark root = self._root
        cdef _Mark node
        cdef dict d
        cdef PyObject* found
        cdef int attempt
        for attempt in range(2):
            node = _Mark.__new__(_Mark)
            node.key = key
            node.value = value
            node.visited = False
            d = self._map
            found = _setdefault(d, key, node)
            if d is self._map:
                break
            # Cleared meanwhile: the node went into the discarded dict. Emptied here,
            # where no node is held, so that releasing it later runs no Python code.
            PyDict_Clear(d)
        else:
            return
        if found != <PyObject*>node:  # written meanwhile: an update
            old = (<_Mark>found).value
            (<_Mark>found).value = value
            (<_Mark>found).visited = True
            return
        ring_push(<PyObject*>root, <PyObject*>node)

    def _remove(self, key):
        return self._take(key)

    def _victim(self):
        return self._sweep()

    def _clear(self):
        cdef dict old = self._map
        ring_clear(<PyObject*>self._root)
        self._hand_node = None
        self._map = {}
        old.clear()  # values' __del__ run here, against an empty, consistent cache

    # -- state: the pure SIEVECache's __getstate__ shape ------------------------------

    def __getstate__(self):
        """The pure class's state: entries oldest first with their bits, and the hand's key."""
        state = dict(self.__dict__)
        cdef _Mark root = self._root
        cdef PyObject* p
        cdef Py_ssize_t n, i
        cdef object item
        while True:
            # As LinkedCore.__getstate__: a walk that runs no Python code, into
            # lists made beforehand, made again if the length changed meanwhile.
            n = 0
            p = root.next
            while p != <PyObject*>root:
                n += 1
                p = (<_Mark>p).next
            keys = PyList_New(n)
            values = PyList_New(n)
            bits = PyList_New(n)
            i = 0
            p = root.next
            while p != <PyObject*>root and i < n:
                item = (<_Mark>p).key
                Py_INCREF(item)
                PyList_SET_ITEM(keys, i, item)
                item = (<_Mark>p).value
                Py_INCREF(item)
                PyList_SET_ITEM(values, i, item)
                item = True if (<_Mark>p).visited else False
                Py_INCREF(item)
                PyList_SET_ITEM(bits, i, item)
                i += 1
                p = (<_Mark>p).next
            if i == n and p == <PyObject*>root:
                break
        item = None
        state["_entries"] = list(zip(keys, values, bits))
        state["_hand_key"] = None if self._hand_node is None else self._hand_node.key
        for name in _FIELDS:
            state[name] = getattr(self, name)
        return state

    def __setstate__(self, state):
        state = dict(state)
        entries = state.pop("_entries")
        hand_key = state.pop("_hand_key")
        for name in _FIELDS:
            if name in state:
                setattr(self, name, state.pop(name))
        self.__dict__.update(state)
        self._clear()
        cdef PyObject* found
        for key, value, visited in entries:
            self._insert(key, value)
            found = self._find(key)
            if found is not NULL:
                (<_Mark>found).visited = visited
        if hand_key is not None:
            found = self._find(hand_key)
            if found is not NULL and (<_Mark>found).prev is not NULL:
                self._hand_node = <_Mark>found

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self),), self.__getstate__()


cdef _traverseproc _sieve_traverse = NULL


cdef int _traverse_sieve(PyObject* o, _visitproc visit, void* arg) noexcept:
    cdef int r = _sieve_traverse(o, visit, arg)
    if r:
        return r
    cdef SieveCore core = <SieveCore>o
    cdef _Mark root = core._root
    if root is None:
        return 0
    cdef PyObject* p = root.next
    while p != <PyObject*>root:
        r = visit(<PyObject*>(<_Mark>p).key, arg)
        if r:
            return r
        r = visit(<PyObject*>(<_Mark>p).value, arg)
        if r:
            return r
        p = (<_Mark>p).next
    return 0


cdef int _clear_sieve(PyObject* o) noexcept:
    # As _clear_linked; the hand, a node, is dropped once the dict is empty.
    cdef SieveCore core = <SieveCore>o
    cdef object hand = core._hand_node
    if core._root is not None:
        ring_clear(<PyObject*>core._root)
    core._hand_node = None
    if core._map is not None:
        PyDict_Clear(core._map)
    hand = None
    return 0


_sieve_traverse = (<_TypeObject*>SieveCore).tp_traverse
(<_TypeObject*>SieveCore).tp_traverse = _traverse_sieve
(<_TypeObject*>SieveCore).tp_clear = _clear_sieve



cdef int _check_layouts() except -1:
    # The ring helpers of _ccore read every node through the same two leading fields.
    cdef _Node node = _Node.__new__(_Node)
    check_layout(node, &node.prev, &node.next)
    cdef _Mark mark = _Mark.__new__(_Mark)
    check_layout(mark, &mark.prev, &mark.next)
    return 0


_check_layouts()


# Each core's current dict, for the shared slow paths of _ccore.
cdef dict _linked_map(object core):
    return (<LinkedCore>core)._map


cdef dict _sieve_map(object core):
    return (<SieveCore>core)._map
