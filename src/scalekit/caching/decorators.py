"""`cached`: memoize a function in any cache, with single-flight for threads and asyncio."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Generic, NamedTuple, ParamSpec, Protocol, TypeVar, cast

from .._validation import flag
from ..exceptions import ArgumentTypeError, ConfigurationError, ReentrantCallError
from ..observability import _emit
from ._await_graph import waits_for
from ._single_flight import own_copy as _own_copy
from ._single_flight import reset_in_forked_child
from ._speedups import compiled_hit
from .base import MISSING, Cache
from .keys import _MARK, hashkey

__all__ = ["CacheInfo", "CachedFunction", "ReentrantCallError", "cached", "hashkey"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class CacheInfo(NamedTuple):
    """What `cache_info()` returns, as `functools.lru_cache` does."""

    hits: int
    misses: int
    maxsize: Any
    currsize: Any


class CachedFunction(Protocol[P, R]):
    """The type of a function decorated with [cached][scalekit.caching.cached].

    It is called as the function is and carries the cache's attributes, so
    `f.cache_info()`, `f.cache_clear()` and `f.cache_invalidate(...)` type-check.
    """

    cache: MutableMapping[Any, Any] | None
    cache_key: Callable[..., Hashable]
    cache_lock: AbstractContextManager[Any] | None
    cache_condition: AbstractContextManager[Any] | None
    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def cache_info(self) -> CacheInfo:
        """Hits, misses, maxsize and currsize."""
        ...

    def cache_clear(self) -> None:
        """Empty the cache and reset the statistics."""
        ...

    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the entry of a call with these arguments; stop its call in progress storing.

        Returns:
            Whether the cache held an entry for the key.
        """
        ...


# -- single-flight -----------------------------------------------------------------


class Call:
    """One caller's computation of a key: `stale` once the key was invalidated meanwhile.

    A call stores its result only while it is not stale (see `store`). `cache`
    is the cache it stores in, for a `cachedmethod`, whose instances may share one.
    """

    __slots__ = ("cache", "stale")

    def __init__(self, cache: Any = None) -> None:
        self.stale = False
        self.cache = cache


class _Flight:
    """One in-progress call that concurrent callers of the same key wait for."""

    __slots__ = ("abandoned", "call", "done", "error", "owner", "value")

    def __init__(self, owner: int, call: Call | None) -> None:
        self.done = threading.Event()
        self.owner = owner  # the thread computing the value
        self.call = call  # the leader's computation, made stale by invalidate()
        self.value: Any = None
        self.error: BaseException | None = None
        # The leader left with a BaseException that is no Exception (KeyboardInterrupt,
        # SystemExit): the waiters start over, one of them leading a new call.
        self.abandoned = False


#: The waits-for graph of every `cached` function's threads: the flight each
#: thread is blocked on. A follower about to wait walks leader -> the flight
#: that leader waits for -> its leader ...; reaching itself means the wait
#: would never end. Read and written under _WAITS_LOCK only.
_WAITS_LOCK = threading.Lock()
_WAITING: dict[int, _Flight] = {}


def _reset_waits_in_child() -> None:
    global _WAITS_LOCK
    _WAITS_LOCK = threading.Lock()
    _WAITING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_waits_in_child)


def _waits_for(flight: _Flight | None, me: int) -> bool:
    """Whether *flight*'s leader is *me* or (transitively) waits for a flight *me* leads."""
    seen: set[int] = set()
    while flight is not None and not flight.done.is_set() and id(flight) not in seen:
        if flight.owner == me:
            return True
        seen.add(id(flight))
        flight = _WAITING.get(flight.owner)
    return False


def _cycle_error(name: str, k: Any, direct: bool) -> ReentrantCallError:
    if direct:
        return ReentrantCallError(
            f"{name} called itself with the same key {k!r} while computing it"
        )
    return ReentrantCallError(
        f"{name} asked for key {k!r}, whose call in progress waits (through other cached "
        "calls in progress) for the call this caller is computing: waiting would never end"
    )


def _awaited_error(name: str, k: Any) -> ReentrantCallError:
    return ReentrantCallError(
        f"{name} asked for key {k!r}, whose call in progress is waiting for this caller "
        "(it awaits it, or awaits what awaits it: tasks, gather, wait_for, shield, "
        "asyncio.wait, a TaskGroup, other cached calls): waiting would never end"
    )


class _Hashed:
    """A key of the calls in progress, hashed once, outside the table's lock."""

    __slots__ = ("hash", "key")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.hash = hash(key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self.key == other.key if isinstance(other, _Hashed) else NotImplemented


class SyncFlights:
    """The calls in progress, by key: the first caller computes, the others wait for it.

    A follower that would wait for its own call, directly or through a chain
    of calls in progress in other threads (thread 1 computes `f("a")` and
    waits for `f("b")`, which thread 2 computes and which asks for
    `f("a")`), raises `ReentrantCallError` instead. A leader that raises an
    `Exception` gives each follower its own copy; a leader interrupted by any
    other `BaseException` (`KeyboardInterrupt`, `SystemExit`) re-raises it in
    its own thread only, and one of the followers computes the value instead.

    A key is hashed outside the lock, so its `__hash__` may call the cached
    function; a call made by a key's `__eq__` while `run` compares it runs
    without single-flight, as it would without a cache.

    A child forked while other threads are inside `run` starts with no call
    in progress and a fresh lock: those threads do not exist in the child.
    """

    __slots__ = ("__weakref__", "_lock", "_looking", "_table", "generation")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: dict[Any, _Flight] = {}
        #: The threads hashing or comparing a key under `_lock`, whose key calls back in.
        self._looking: set[int] = set()
        #: How many times `forget()` ran: a call started under an older one does not store.
        self.generation = 0
        reset_in_forked_child(self)

    def after_fork(self) -> None:
        """Forget the calls in progress (called in a forked child)."""
        for flight in self._table.values():
            # The forking thread may be a leader: it sets this event, nobody waits on it.
            flight.done = threading.Event()
        self._lock = threading.Lock()
        self._looking = set()
        self._table = {}

    def forget(self) -> None:
        """Let the next caller of every key start a new call (`cache_clear()`).

        The calls in progress go on, and their current followers keep waiting for
        them, but they no longer store their results (see `generation`).
        """
        with self._lock:
            self._table = {}
            self.generation += 1

    def invalidate(self, k: Any) -> None:
        """Let the next caller of *k* start a new call; the one in progress stores nothing.

        Its current followers keep waiting for it and get its value.
        """
        me = threading.get_ident()
        hashed = _Hashed(k)
        with self._lock:
            self._looking.add(me)
            try:
                flight = self._table.pop(hashed, None)
            finally:
                self._looking.discard(me)
        if flight is not None and flight.call is not None:
            flight.call.stale = True

    def invalidate_matching(self, match: Callable[[Any, Call | None], bool]) -> None:
        """`invalidate` every key whose call in progress `match(key, call)` accepts."""
        me = threading.get_ident()
        with self._lock:
            self._looking.add(me)
            try:
                table = self._table
                found = [(h, f) for h, f in table.items() if match(h.key, f.call)]
                for hashed, _ in found:
                    del table[hashed]
            finally:
                self._looking.discard(me)
        for _, flight in found:
            if flight.call is not None:
                flight.call.stale = True

    def run(self, k: Any, compute: Callable[[], Any], name: str, call: Call | None = None) -> Any:
        """Return `compute()`, computed once for all concurrent callers of *k*.

        *call* is this caller's computation: the flight's if this caller leads it.

        Raises:
            ReentrantCallError: if waiting for the call of *k* in progress
                would wait for this thread's own call.
        """
        me = threading.get_ident()
        if me in self._looking:
            # Called from a key's own __eq__ while this thread holds the lock.
            return compute()
        hashed = _Hashed(k)  # the key's __hash__ runs here, not under the lock
        while True:
            with self._lock:
                self._looking.add(me)
                try:
                    table = self._table
                    flight = table.get(hashed)
                    if flight is None:
                        flight = table[hashed] = _Flight(me, call)
                        break
                finally:
                    self._looking.discard(me)
            with _WAITS_LOCK:
                if _waits_for(flight, me):
                    raise _cycle_error(name, k, flight.owner == me)
                _WAITING[me] = flight
            try:
                flight.done.wait()
            finally:
                with _WAITS_LOCK:
                    _WAITING.pop(me, None)
            if flight.abandoned:
                continue
            error = flight.error
            if error is not None:
                raise _own_copy(error)
            return flight.value
        try:
            flight.value = value = compute()
            return value
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            with self._lock:
                self._looking.add(me)
                try:
                    # Absent after cache_clear(), or in a child forked during the call.
                    if table.get(hashed) is flight:
                        del table[hashed]
                finally:
                    self._looking.discard(me)
            flight.done.set()


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Marks the exception retrieved: a call whose callers were all cancelled
    # must not log "Task exception was never retrieved".
    if not task.cancelled():
        task.exception()


#: The flight tasks whose computations started the current task (a task inherits
#: its creator's context): those the current task watches while it waits for them.
_COMPUTING: contextvars.ContextVar[frozenset[asyncio.Task[Any]]] = contextvars.ContextVar(
    "scalekit_caching_computing", default=frozenset()
)

#: How often, in seconds of the loop's clock, a caller waiting for a call that
#: started it checks whether that call now waits for it (docs/caching.md's bound).
_WATCH_PERIOD = 0.1

#: What `_watch` returns when the call it waits for has come to wait for the caller.
_DEADLOCK: Any = object()


class _AsyncFlight:
    """One call in progress in its own task, and how many callers await it."""

    __slots__ = ("call", "dropped", "task", "waiters")

    task: asyncio.Task[Any]  # set right after the flight is made: the task needs the flight

    def __init__(self, call: Call | None) -> None:
        self.call = call  # the leader's computation, made stale by invalidate()
        self.waiters = 0
        # The flight machinery cancelled the task (its last caller left): a caller
        # that sees it ended cancelled starts over.
        self.dropped = False


class _LoopTable:
    """One event loop's calls in progress, made under one `forget()` generation."""

    __slots__ = ("flights", "generation")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.flights: dict[Any, _AsyncFlight] = {}


class AsyncFlights:
    """Per event loop, the calls in progress by key, each running in its own task.

    Every caller awaits the task through `asyncio.shield`, so cancelling one
    caller (the first included) cancels neither the call nor the others; when
    the last caller leaves (cancelled, or timed out by `asyncio.wait_for`)
    the call is cancelled. A call whose task ends cancelled although no caller
    was: if its task was cancelled by a request (`Task.cancel()`: its last
    caller leaving, or code outside the call), its callers start over, each at
    most once for a request from outside; if the function itself let a
    `CancelledError` out (it awaited something another task cancelled, or
    raised one), that is the call's outcome, raised in every caller, as it
    would be without the cache. A caller raises `ReentrantCallError` instead
    of waiting when waiting would never end: the call it would wait for is
    its own, or that call waits for it (see `_await_graph.waits_for`: it
    awaits the caller, or awaits what awaits it, through tasks, `gather`,
    `wait_for`, `shield`, `asyncio.wait`, a `TaskGroup` or other calls in
    progress; task 1 computes `f("a")` and awaits `f("b")`, whose task asks
    for `f("a")`). A caller started by the call (a task inheriting its
    context) may be awaited by it later: while it waits it checks again every
    `_WATCH_PERIOD` seconds, and raises once the call waits for it. One the
    call never awaits (fire-and-forget) waits and gets the call's outcome.

    Each loop's table is read and written by that loop's thread only:
    `forget()`, from any thread, only counts a new generation, and a loop
    starts a new table when it next sees one. Loops may be created and
    collected in other threads meanwhile.
    """

    __slots__ = ("_tables", "generation")

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTable] = (
            weakref.WeakKeyDictionary()
        )
        #: How many times `forget()` ran: a call started under an older one does not store.
        self.generation = 0

    def forget(self) -> None:
        """Let the next caller of every key start a new call (`cache_clear()`).

        The calls in progress go on, and their current callers keep awaiting
        them, but they no longer store their results (see `generation`).
        Safe from any thread: no loop's table is touched here.
        """
        self.generation += 1

    def _loop_tables(self) -> list[_LoopTable]:
        while True:
            try:
                return list(self._tables.values())
            except RuntimeError:  # another thread's loop made its table meanwhile
                continue

    def invalidate(self, k: Any) -> None:
        """Let *k*'s next caller, in every loop, start a new call; those in progress store nothing.

        Safe from any thread: a flight leaves its loop's table in one dict
        operation, and the loop's own code re-checks the table after each
        of its own.
        """
        for entry in self._loop_tables():
            flight = entry.flights.pop(k, None)
            if flight is not None and flight.call is not None:
                flight.call.stale = True

    def invalidate_matching(self, match: Callable[[Any, Call | None], bool]) -> None:
        """`invalidate` every key whose call in progress `match(key, call)` accepts."""
        for entry in self._loop_tables():
            flights = entry.flights
            for k, flight in list(flights.items()):
                if match(k, flight.call):
                    if flights.get(k) is flight:
                        flights.pop(k, None)
                    if flight.call is not None:
                        flight.call.stale = True

    def _table(self, loop: asyncio.AbstractEventLoop) -> dict[Any, _AsyncFlight]:
        # Only this loop's thread reads or replaces its entry; a lookup or insert
        # of a WeakKeyDictionary is safe while other threads add or drop loops.
        generation = self.generation
        entry = self._tables.get(loop)
        if entry is None or entry.generation != generation:
            entry = self._tables[loop] = _LoopTable(generation)
        return entry.flights

    async def run(
        self, k: Any, compute: Callable[[], Any], name: str, call: Call | None = None
    ) -> Any:
        """Await `compute()` (a coroutine function), run once for all concurrent callers of *k*.

        *call* is this caller's computation: the flight's if this caller leads it.

        Raises:
            ReentrantCallError: if the call of *k* in progress is this task,
                or waits for it (at once, or, for a task that call started,
                within `_WATCH_PERIOD` of its starting to).
        """
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        retried = False
        while True:
            table = self._table(loop)
            flight = table.get(k)
            leader = flight is None
            watch = False
            if flight is None:
                flight = table[k] = _AsyncFlight(call)
                task = flight.task = loop.create_task(self._body(table, k, flight, compute))
                task.add_done_callback(_retrieve)
            else:
                task = flight.task
                if me is not None:
                    if task is me:
                        raise _cycle_error(name, k, True) from None
                    if waits_for(task, me):
                        raise _awaited_error(name, k) from None
                    # A task the call started may be awaited by it later.
                    watch = task in _COMPUTING.get()
            flight.waiters += 1
            deadlock = False
            try:
                if not watch:
                    return await asyncio.shield(task)
                value = await _watch(task, me)
                if value is not _DEADLOCK:
                    return value
                deadlock = True
            except asyncio.CancelledError:
                if not task.cancelled() or (me is not None and _cancelling(me)):
                    raise
                if not flight.dropped:
                    # Not cancelled by the flight machinery: by a request from outside
                    # the call (start over once), or by the function itself (its outcome).
                    if retried or not _cancel_requested(task):
                        raise
                    retried = True
                # The call was cancelled, not this caller: start over.
            except BaseException as exc:
                if leader:
                    raise
                if isinstance(exc, Exception):
                    raise _own_copy(exc)  # noqa: B904 (chained to exc as __cause__)
                # KeyboardInterrupt or SystemExit in the call: it is the leader's.
            finally:
                flight.waiters -= 1
                if not flight.waiters and not task.done():
                    # Nobody awaits the call any more: do not let it hold the key.
                    flight.dropped = True
                    task.cancel()
                    if table.get(k) is flight:
                        table.pop(k, None)
            if deadlock:
                raise _awaited_error(name, k)

    @staticmethod
    async def _body(
        table: dict[Any, _AsyncFlight],
        k: Any,
        flight: _AsyncFlight,
        compute: Callable[[], Any],
    ) -> Any:
        # The task runs in its own copy of the context: this marks it and its children only.
        _COMPUTING.set(_COMPUTING.get() | {flight.task})
        try:
            return await compute()
        finally:
            # Whatever happens (the call raising, storing raising), the flight ends,
            # unless its callers leaving ended it already. The table is this loop's
            # (a cache_clear() meanwhile replaced it, never emptied it).
            if table.get(k) is flight:
                table.pop(k, None)


def _cancel_requested(task: asyncio.Task[Any]) -> bool:
    """Whether *task* was cancelled by a `cancel()` request (not assumed before Python 3.11)."""
    cancelling = getattr(task, "cancelling", None)
    return False if cancelling is None else bool(cancelling())


def _cancelling(task: asyncio.Task[Any]) -> bool:
    """Whether *task* itself was asked to stop (always assumed before Python 3.11)."""
    cancelling = getattr(task, "cancelling", None)
    return True if cancelling is None else bool(cancelling())


async def _watch(task: asyncio.Task[Any], me: asyncio.Task[Any] | None) -> Any:
    """The outcome of flight *task*, or `_DEADLOCK` once *task* waits for *me*.

    Checked every `_WATCH_PERIOD` seconds of the loop's clock while the call
    runs: a task the call started may be awaited by it at any time.
    """
    outer = asyncio.shield(task)
    try:
        while True:
            await asyncio.wait((outer,), timeout=_WATCH_PERIOD)
            if outer.done():
                return outer.result()
            if waits_for(task, me):
                return _DEADLOCK
    finally:
        outer.cancel()  # detaches it from the call (nothing if it is done)


# -- clears of a cache, whichever wrapper made them -----------------------------------


class Epoch:
    """How many times `cache_clear()` of any wrapper over one cache object ran.

    A call reads it when it starts and stores its result only if it is
    unchanged, so a clear through one `cached` function (or `cachedmethod`)
    stops the pre-clear stores of every other one sharing the cache.
    """

    __slots__ = ("clears",)

    def __init__(self) -> None:
        self.clears = 0


class WeakIdentityMap(Generic[T]):
    """A value per live object, found by identity (never by `__eq__` or `__hash__`).

    An entry goes when its object is collected: the weak reference's
    callback, which may run in any thread at any allocation, only notes the
    id; the next insertion prunes under the lock. Objects that cannot be
    weakly referenced (a `dict`) get no value.
    """

    __slots__ = ("_collected", "_entries", "_lock")

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], T]] = {}
        self._lock = threading.Lock()
        self._collected: list[int] = []

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, obj: Any, make: Callable[[], T]) -> T | None:
        """*obj*'s value, made by `make()` on first use; `None` if *obj* has no weak reference."""
        found = self._entries.get(id(obj))
        if found is not None and found[0]() is obj:
            return found[1]
        with self._lock:
            entries = self._entries
            while self._collected:
                dead = self._collected.pop()
                entry = entries.get(dead)
                if entry is not None and entry[0]() is None:
                    del entries[dead]
            found = entries.get(id(obj))
            if found is not None and found[0]() is obj:
                return found[1]
            try:
                ref = weakref.ref(obj, functools.partial(_note, self._collected, id(obj)))
            except TypeError:
                return None
            value = make()
            entries[id(obj)] = (ref, value)
            return value


def _note(collected: list[int], ident: int, _: weakref.ref[Any]) -> None:
    collected.append(ident)


#: The clear count of every cache a wrapper has used, by identity.
_EPOCHS: WeakIdentityMap[Epoch] = WeakIdentityMap()


def epoch_of(cache: Any) -> Epoch | None:
    """The `Epoch` of *cache*, by identity; `None` if it cannot be weakly referenced (a `dict`)."""
    return _EPOCHS.get(cache, Epoch)


# -- the decorator -------------------------------------------------------------------


def cached(
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable] = hashkey,
    lock: AbstractContextManager[Any] | None = None,
    condition: AbstractContextManager[Any] | None = None,
    info: bool = False,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Memoize a function in *cache*; call-compatible with `cachetools.cached`.

    Concurrent misses on one key call the function once (*single-flight*):
    the other callers wait and get that result; if it raises, each waiter
    raises its own copy of the exception (chained to the original as
    `__cause__`) and nothing is cached, so the next call tries again. A call
    that re-enters itself with the same key raises
    [ReentrantCallError][scalekit.caching.ReentrantCallError] (a
    `RecursionError`) instead of waiting for itself.

    `async def` functions are supported: per event loop, one task per key
    runs the call and stores its result; every caller awaits it through
    `asyncio.shield`, so cancelling a caller (the first one too) cancels
    neither the call nor the other callers.

    The cache is read as cachetools' `cached` reads it: with `get` for a
    dict or a scalekit cache whose reads are its own, and with `cache[key]`
    (`KeyError` meaning absent) for anything else, so a subclass's own
    `__getitem__` or `__missing__` runs on every lookup and a mapping needs
    only `[]` and `[]=`.

    The wrapper has `cache`, `cache_key`, `cache_lock`, `cache_condition`,
    `cache_info()`, `cache_clear()` (which also resets the statistics, as
    `functools` does) and `cache_invalidate(*args, **kwargs)`, which removes
    one key's entry and keeps a call of that key in progress from storing
    its (possibly stale) value, a direct `cache.pop(key)` being unprotected,
    as in cachetools; see [CachedFunction][scalekit.caching.CachedFunction].

    Decorating a method this way keys on `self` and so keeps every instance
    alive as long as its entries; use
    [cachedmethod][scalekit.caching.cachedmethod] for per-instance caches.

    Args:
        cache: any mutable mapping (a scalekit or cachetools cache, a dict,
            any object with `[]` and `[]=`); `None` disables caching but
            keeps single-flight.
        key: builds the key from the call's arguments (default `hashkey`).
        lock: a lock guarding *cache* when threads share it (like cachetools);
            the single-flight bookkeeping has its own lock.
        condition: accepted for cachetools compatibility, where it enables
            waiting for a pending call; single-flight is built in here, so it
            only serves as the lock when *lock* is not given. It is the
            wrapper's `cache_condition`, as in cachetools.
        info: count hits and misses in the wrapper for `cache_info()`
            (without it, `cache_info()` reports a scalekit cache's own stats;
            a cache that keeps none, such as a dict, `None` or a cachetools
            cache, is counted in the wrapper whatever *info* is).

    Returns:
        The decorator.

    Raises:
        ArgumentTypeError: when decorating, if *cache* is neither `None` nor
            a mapping with `[]` and `[]=`, *key* is not callable, *lock*
            or *condition* is neither `None` nor a context manager, or *info*
            is not a bool.

    Thread-safety: safe if *lock* is given or the cache is used by one thread.

    Runtime complexity: one key computation and one cache lookup per hit.
    """

    if cache is not None and not is_mapping(cache):
        raise ArgumentTypeError(
            "cache must be a mutable mapping (a cache or a dict, with [] and []=) or None, "
            f"got {type(cache).__name__}: {cache!r}; expected for example LRUCache(maxsize=128)"
        )
    check_callable("key", key, "a function of the call's arguments, such as hashkey")
    check_lock("lock", lock)
    check_lock("condition", condition)
    info = flag("info", info)
    if lock is None:
        lock = condition

    def decorator(func: Callable[P, R]) -> CachedFunction[P, R]:
        if inspect.iscoroutinefunction(func):
            wrapper = _async_wrapper(func, cache, key, lock, info)
        else:
            wrapper = _sync_wrapper(func, cache, key, lock, info)
        wrapper.cache_condition = condition  # type: ignore[attr-defined]
        return cast("CachedFunction[P, R]", wrapper)

    return decorator


def is_mapping(cache: Any) -> bool:
    """Whether *cache* can be read and written as cachetools' `cached` does (`[]`, `[]=`)."""
    cls = type(cache)
    return callable(getattr(cls, "__getitem__", None)) and callable(
        getattr(cls, "__setitem__", None)
    )


def check_callable(name: str, value: Any, expected: str) -> None:
    """Refuse a non-callable decorator argument *name*.

    Raises:
        ArgumentTypeError: naming *name*, the value and what was *expected*.
    """
    if not callable(value):
        raise ArgumentTypeError(
            f"{name} must be callable, got {type(value).__name__}: {value!r}; expected {expected}"
        )


def check_lock(name: str, value: Any) -> None:
    """Refuse a *name* (`lock` or `condition`) that is neither `None` nor a context manager.

    Raises:
        ArgumentTypeError: naming *name*, the value and what was expected.
    """
    if value is not None and not (
        callable(getattr(type(value), "__enter__", None))
        and callable(getattr(type(value), "__exit__", None))
    ):
        raise ArgumentTypeError(
            f"{name} must be None or a context manager, got {type(value).__name__}: {value!r}; "
            "expected for example threading.Lock()"
            + (" or threading.Condition()" if name == "condition" else "")
        )


def reader(cache: Any) -> Callable[[Any, Any], Any] | None:
    """*cache*'s lookup as `read(key, default)`.

    `get` for a dict and for a scalekit cache whose reads are its own; for
    anything else (a subclass overriding `__getitem__` or `__missing__`, a
    cachetools cache, a mapping without `get`) `cache[key]` with `KeyError`
    meaning absent, exactly as cachetools' `cached` reads.
    """
    if cache is None:
        return None
    if type(cache) is dict or (isinstance(cache, Cache) and cache._plain_reads):
        return cache.get

    def read(k: Any, default: Any) -> Any:
        try:
            return cache[k]
        except KeyError:
            return default

    return read


class Counters:
    """Hits and misses counted by a wrapper (`info=True`, or a cache that keeps no statistics)."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


def counts_itself(cache: Any) -> bool:
    """Whether *cache* keeps hit and miss statistics of its own (a scalekit cache does)."""
    return isinstance(cache, Cache)


def make_info(cache: Any, counters: Counters | None) -> CacheInfo:
    """`cache_info()` of *cache*: the wrapper's counters, else a scalekit cache's stats."""
    hits = misses = 0
    if counters is not None:
        hits, misses = counters.hits, counters.misses
    elif isinstance(cache, Cache):
        stats = cache.stats()
        hits, misses = stats.hits, stats.misses
    maxsize = getattr(cache, "maxsize", None)
    currsize = getattr(cache, "currsize", len(cache) if cache is not None else 0)
    return CacheInfo(hits, misses, maxsize, currsize)


def clear(cache: Any, lock: Any, counters: Counters | None, flights: Any = None) -> None:
    """`cache_clear()`: empty *cache*, reset the statistics, as `functools` does.

    With *flights* (a `SyncFlights` or `AsyncFlights`), the calls in progress
    are forgotten too: the next caller of a key starts a new call instead of
    waiting for one that may hang.
    """
    try:
        if flights is not None:
            flights.forget()
        if cache is not None:
            epoch = epoch_of(cache)
            if epoch is not None:
                epoch.clears += 1
    finally:
        # Emptied and reset even if forgetting failed.
        if cache is not None:
            if lock is None:
                cache.clear()
            else:
                with lock:
                    cache.clear()
            if isinstance(cache, Cache):
                cache.reset_stats()
        if counters is not None:
            counters.hits = counters.misses = 0


def discard(cache: Any, k: Any, lock: Any) -> bool:
    """Remove *k* from *cache* under *lock*; whether it was there (`pop`, else `del`)."""
    if cache is None:
        return False
    if lock is None:
        return _discard(cache, k)
    with lock:
        return _discard(cache, k)


#: `pop`'s default in `_discard`: not MISSING, which scalekit's `pop` takes for "no default".
_ABSENT: Any = object()


def _discard(cache: Any, k: Any) -> bool:
    pop = getattr(cache, "pop", None)
    if pop is not None:
        return pop(k, _ABSENT) is not _ABSENT
    try:
        del cache[k]
    except KeyError:
        return False
    return True


def invalidate(cache: Any, k: Any, lock: Any, flights: Any) -> bool:
    """`cache_invalidate()`: stop the store of the call of *k* in progress, then remove *k*.

    In that order, so that the call cannot store between the two: it checks
    that it is not stale under *lock*, as the removal runs.
    """
    flights.invalidate(k)
    return discard(cache, k, lock)


def _attach(
    wrapper: Any,
    func: Callable[..., Any],
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable],
    lock: AbstractContextManager[Any] | None,
    counters: Counters | None,
    flights: Any = None,
) -> None:
    functools.update_wrapper(wrapper, func)
    if not hasattr(func, "__qualname__"):
        # A callable without one (a functools.partial): the wrapper gets its
        # type's, so that the compiled wrapper copies by reference as a
        # function does (its __reduce__ names it by __qualname__).
        wrapper.__qualname__ = type(func).__qualname__
    wrapper.cache = cache
    wrapper.cache_key = key
    wrapper.cache_lock = lock
    wrapper.cache_info = lambda: make_info(cache, counters)
    wrapper.cache_clear = lambda: clear(cache, lock, counters, flights)

    def cache_invalidate(*args: Any, **kwargs: Any) -> bool:
        """Remove the entry of a call with these arguments; stop its call in progress storing.

        A call of the key in progress returns its value to the callers it has
        but does not store it, and a caller arriving after this starts a new
        call instead of waiting for it.

        Returns:
            Whether the cache held an entry for the key.
        """
        return invalidate(cache, key(*args, **kwargs), lock, flights)

    wrapper.cache_invalidate = cache_invalidate


def store(
    cache: MutableMapping[Any, Any],
    k: Any,
    value: Any,
    lock: Any,
    flights: Any = None,
    generation: int = 0,
    epoch: Epoch | None = None,
    clears: int = 0,
    call: Call | None = None,
) -> None:
    """`cache[k] = value` under *lock*; a value too large stays uncached, as in cachetools.

    With *flights*, a call that started under an older *generation* (a
    `cache_clear()` of this wrapper ran since) stores nothing: its value may
    predate the clear, and a call started after it may have stored a fresher
    one. The same with *epoch*, the cache's, when it counts more than
    *clears* (a `cache_clear()` of any wrapper over the cache ran since),
    and with *call* once it is stale (`cache_invalidate()` of *k* ran since).

    Raises:
        ConfigurationError: the cache refused the value for a reason other
            than its size (a `getsizeof` result that is negative, NaN, a bool
            or not a number): it is raised, not taken for "value too large",
            which would silently turn the cache off.
    """
    try:
        if lock is None:
            if (
                (flights is None or flights.generation == generation)
                and (epoch is None or epoch.clears == clears)
                and (call is None or not call.stale)
            ):
                cache[k] = value
        else:
            with lock:
                if (
                    (flights is None or flights.generation == generation)
                    and (epoch is None or epoch.clears == clears)
                    and (call is None or not call.stale)
                ):
                    cache[k] = value
    except ConfigurationError:
        raise
    except ValueError:
        pass


def recheck(cache: Any, lookup: Any) -> Any:
    """How the leader of a flight looks for a value stored since its miss (or `None`)."""
    if isinstance(cache, Cache):
        return cache.peek if cache._plain_reads else None
    return lookup


def _fast_lookup(cache: Any) -> tuple[Callable[..., Any], Callable[[Any], None] | None] | None:
    """The raw lookup (and recency update) of an LRU or FIFO cache, if it is one unmodified."""
    from .fifo import FIFOCache
    from .lru import LRUCache

    cls = type(cache)
    if not isinstance(cache, Cache) or not cache._plain_reads:
        return None
    if not isinstance(getattr(cache, "_data", None), OrderedDict):
        return None  # a compiled twin: see _speedups.compiled_hit
    if isinstance(cache, LRUCache) and cls.get is LRUCache.get:
        return cache._data.get, cache._data.move_to_end
    if isinstance(cache, FIFOCache) and cls.get is FIFOCache.get:
        return cache._data.get, None
    return None


def _sync_wrapper(
    func: Callable[..., Any],
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable],
    lock: AbstractContextManager[Any] | None,
    info: bool,
) -> Callable[..., Any]:
    flights = SyncFlights()
    name = getattr(func, "__qualname__", repr(func))
    # A cache without statistics of its own (a dict, None, a cachetools cache) is
    # counted here: cache_info() never reports zeros for hits it did not count.
    counters = Counters() if info or not counts_itself(cache) else None
    lookup = reader(cache)
    default_key = key is hashkey
    # The leader re-checks the cache without counting a second miss; a cache
    # read through its own __getitem__ is read once per call, as cachetools does.
    peek = recheck(cache, lookup)
    epoch = None if cache is None else epoch_of(cache)

    def miss(k: Any, args: Any, kwargs: Any) -> Any:
        call = Call()

        def compute() -> Any:
            generation = flights.generation
            clears = 0 if epoch is None else epoch.clears
            # Another caller may have filled the cache between our miss and the flight.
            value = MISSING
            if peek is not None:
                if lock is None:
                    value = peek(k, MISSING)
                else:
                    with lock:
                        value = peek(k, MISSING)
            if value is MISSING:
                on = _emit.on
                value = _emit.load(cache, func, args, kwargs) if on else func(*args, **kwargs)
                if cache is not None:
                    store(cache, k, value, lock, flights, generation, epoch, clears, call)
            return value

        if _emit.on:
            return _emit.flight(cache, lambda lead: flights.run(k, lead, name, call), compute)
        return flights.run(k, compute, name, call)

    compiled = None
    if lock is None and counters is None and default_key:
        compiled = compiled_hit(cache, miss)
    fast = _fast_lookup(cache) if lock is None and counters is None else None
    if compiled is not None:
        wrapper = compiled
    elif fast is not None and default_key:
        # The hit path of an LRU/FIFO cache, inlined: no method call per hit,
        # one wrapper per policy so that the hit path tests nothing it need not.
        dget, move = fast
        owner: Any = cache
        missing = MISSING
        mark = _MARK

        if move is not None:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                k: Any = args if not kwargs else args + mark + tuple(sorted(kwargs.items()))
                value = dget(k, missing)
                if value is not missing:
                    move(k)
                    owner._hits += 1
                    return value
                owner._misses += 1
                return miss(k, args, kwargs)

        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                k: Any = args if not kwargs else args + mark + tuple(sorted(kwargs.items()))
                value = dget(k, missing)
                if value is not missing:
                    owner._hits += 1
                    return value
                owner._misses += 1
                return miss(k, args, kwargs)

    elif lock is None and lookup is not None and counters is not None:
        # A dict or a cachetools cache, counted here: the same inlined key, one
        # counter more per call.
        read = lookup
        tally = counters

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Any
            if default_key:
                k = args if not kwargs else args + _MARK + tuple(sorted(kwargs.items()))
            else:
                k = key(*args, **kwargs)
            value = read(k, MISSING)
            if value is not MISSING:
                tally.hits += 1
                return value
            tally.misses += 1
            return miss(k, args, kwargs)

    elif lock is None and counters is None and lookup is not None:
        get = lookup

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Any
            if default_key:
                k = args if not kwargs else args + _MARK + tuple(sorted(kwargs.items()))
            else:
                k = key(*args, **kwargs)
            value = get(k, MISSING)
            if value is not MISSING:
                return value
            return miss(k, args, kwargs)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            value = MISSING
            if lookup is not None:
                if lock is None:
                    value = lookup(k, MISSING)
                else:
                    with lock:
                        value = lookup(k, MISSING)
            if value is not MISSING:
                if counters is not None:
                    counters.hits += 1
                return value
            if counters is not None:
                counters.misses += 1
            return miss(k, args, kwargs)

    _attach(wrapper, func, cache, key, lock, counters, flights)
    return wrapper


def _async_wrapper(
    func: Callable[..., Any],
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable],
    lock: AbstractContextManager[Any] | None,
    info: bool,
) -> Callable[..., Any]:
    flights = AsyncFlights()
    name = getattr(func, "__qualname__", repr(func))
    counters = Counters() if info or not counts_itself(cache) else None

    read = reader(cache)
    epoch = None if cache is None else epoch_of(cache)

    def lookup(k: Any) -> Any:
        if read is None:
            return MISSING
        if lock is None:
            return read(k, MISSING)
        with lock:
            return read(k, MISSING)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        k = key(*args, **kwargs)
        value = lookup(k)
        if value is not MISSING:
            if counters is not None:
                counters.hits += 1
            return value
        if counters is not None:
            counters.misses += 1

        generation = flights.generation  # before the call's task starts
        clears = 0 if epoch is None else epoch.clears
        call = Call()

        async def compute() -> Any:
            if _emit.on:
                value = await _emit.load_async(cache, func, args, kwargs)
            else:
                value = await func(*args, **kwargs)
            if cache is not None:
                store(cache, k, value, lock, flights, generation, epoch, clears, call)
            return value

        if _emit.on:
            return await _emit.flight_async(
                cache, lambda lead: flights.run(k, lead, name, call), compute
            )
        return await flights.run(k, compute, name, call)

    _attach(wrapper, func, cache, key, lock, counters, flights)
    return wrapper
