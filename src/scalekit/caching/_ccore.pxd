# cython: language_level=3
"""What the compiled cores share: the ring of linked nodes, the C API they use, their limits.

Every node class of the cores (`_Node`, `_Mark` in `_clinked`, `_Entry`
in `_cfreq`) declares `prev` and `next` as its first two fields and has
no methods, so each starts with the layout of `Links`: the ring helpers
below work on any of them. `check_layout` verifies this at import.

A node is linked while its `prev` is not NULL; the links are borrowed
pointers (the cache's dict owns the nodes), and a sentinel node closes
each ring (empty: it points at itself).
"""

from cpython.dict cimport PyDict_Contains, PyDict_GetItemWithError
from cpython.ref cimport PyObject


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    ctypedef int (*visitproc)(PyObject*, void*) noexcept
    ctypedef int (*traverseproc)(PyObject*, visitproc, void*) noexcept
    ctypedef int (*inquiry)(PyObject*) noexcept
    ctypedef PyObject* (*ternaryfunc)(PyObject*, PyObject*, PyObject*) noexcept
    ctypedef struct TypeObject "PyTypeObject":
        traverseproc tp_traverse
        inquiry tp_clear
        ternaryfunc tp_call
    void* type_of "Py_TYPE"(object)
    # Borrowed result; never replaces a present value, so never frees a linked node.
    PyObject* dict_setdefault "PyDict_SetDefault"(object, object, object) except NULL
    int dict_next "PyDict_Next"(PyObject*, Py_ssize_t*, PyObject**, PyObject**) noexcept


ctypedef struct Links:
    # The head of every node object: PyObject_HEAD, then the two links.
    Py_ssize_t ob_refcnt
    void* ob_type
    PyObject* prev
    PyObject* next


# How many times a lookup is made again when the cache was cleared under it
# (by the key's own __hash__/__eq__, or another thread) before it gives up.
cdef enum:
    ATTEMPTS = 4


cdef inline str changed(object cache, str during):
    return (
        f"{type(cache).__name__} changed during {during}: it was cleared each time "
        f"the key's __hash__/__eq__ ran (re-entrant key, or unlocked threads)"
    )


# Reads a core's current dict (each core's `_map`).
ctypedef dict (*MapOf)(object)


cdef inline PyObject* find_again(object core, MapOf map_of, object key) except? NULL:
    # The slow path of a core's lookup whose dict a clear discarded meanwhile (the
    # key's __hash__/__eq__ ran Python code, or let another thread in): made again
    # in the current dict; the node found is borrowed from it, valid until Python
    # code runs.
    cdef dict d
    cdef PyObject* found
    cdef int attempt
    for attempt in range(ATTEMPTS):
        d = map_of(core)
        found = PyDict_GetItemWithError(d, key)
        if d is map_of(core):
            return found
    raise RuntimeError(changed(core, "a lookup"))


cdef inline bint has_key(object core, MapOf map_of, object key) except -1:
    # `key in` the core's current dict, held while the key is compared.
    cdef dict d
    cdef int attempt
    cdef int r
    for attempt in range(ATTEMPTS):
        d = map_of(core)
        r = PyDict_Contains(d, key)
        if d is map_of(core):
            return r
    raise RuntimeError(changed(core, "a lookup"))


cdef inline Py_ssize_t capacity(object maxsize) except? -1:
    # A size limit as a C count: math.inf (or more than memory holds) is unbounded.
    if maxsize > PY_SSIZE_T_MAX:
        return PY_SSIZE_T_MAX
    if maxsize < 0:
        return 0
    return <Py_ssize_t>maxsize


cdef inline Links* links(PyObject* node) noexcept:
    return <Links*>node


cdef inline void ring_init(PyObject* root) noexcept:
    links(root).prev = root
    links(root).next = root


cdef inline bint ring_empty(PyObject* root) noexcept:
    return links(root).next == root


cdef inline void ring_push(PyObject* root, PyObject* node) noexcept:
    # At the newest end, just before the sentinel.
    cdef PyObject* last = links(root).prev
    links(node).prev = last
    links(node).next = root
    links(last).next = node
    links(root).prev = node


cdef inline void ring_cut(PyObject* node) noexcept:
    # Out of its ring, if linked.
    cdef Links* n = links(node)
    if n.prev is NULL:
        return
    links(n.prev).next = n.next
    links(n.next).prev = n.prev
    n.prev = NULL
    n.next = NULL


cdef inline void ring_to_end(PyObject* root, PyObject* node) noexcept:
    # To the newest end, if linked and not there already.
    if links(root).prev == node or links(node).prev is NULL:
        return
    ring_cut(node)
    ring_push(root, node)


cdef inline void ring_clear(PyObject* root) noexcept:
    # Unlinks every node (no Python code: the dict still owns them).
    cdef PyObject* p = links(root).next
    cdef PyObject* q
    while p != root:
        q = links(p).next
        links(p).prev = NULL
        links(p).next = NULL
        p = q
    ring_init(root)


cdef inline int check_layout(object node, PyObject** prev, PyObject** next) except -1:
    # `prev` and `next` are the addresses of `node`'s own fields.
    cdef Links* n = links(<PyObject*>node)
    if <void*>prev != <void*>&n.prev or <void*>next != <void*>&n.next:
        raise ImportError(f"{type(node).__name__}: links are not the first fields")
    return 0
