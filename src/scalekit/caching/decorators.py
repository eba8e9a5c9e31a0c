"""``cached``: memoize a function in any cache, with single-flight for threads and asyncio."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Hashable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, TypeVar

from .base import MISSING, Cache

__all__ = ["CacheInfo", "cached", "hashkey"]

F = TypeVar("F", bound=Callable[..., Any])


class CacheInfo(NamedTuple):
    """What ``cache_info()`` returns, as :func:`functools.lru_cache` does."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


class _KwMark:
    """Separates positional from keyword arguments in a key (never equal to an argument)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwargs>"


_KWMARK = (_KwMark(),)


def hashkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """The default key: the positional arguments, then the sorted keyword arguments.

    Equal calls give equal keys, as ``cachetools.keys.hashkey``.
    """
    if kwargs:
        return args + _KWMARK + tuple(sorted(kwargs.items()))
    return args


class _Flight:
    """One in-progress call that concurrent callers of the same key wait for."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def cached(
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable] = hashkey,
    lock: AbstractContextManager[Any] | None = None,
    condition: AbstractContextManager[Any] | None = None,
    info: bool = False,
) -> Callable[[F], F]:
    """Memoize a function in *cache*; call-compatible with ``cachetools.cached``.

    Concurrent misses on one key call the function once (*single-flight*):
    the other callers wait and get that result; if it raises, they get the
    same exception and nothing is cached, so the next call tries again.
    ``async def`` functions are supported (one in-flight task per key).
    The wrapper has ``cache``, ``cache_key``, ``cache_lock``,
    ``cache_info()`` and ``cache_clear()``.

    :param cache: any mutable mapping (a scalekit or cachetools cache, a
        dict); ``None`` disables caching but keeps single-flight.
    :param key: builds the key from the call's arguments (default :func:`hashkey`).
    :param lock: a lock guarding *cache* when threads share it (like
        cachetools); the single-flight bookkeeping has its own lock.
    :param condition: accepted for cachetools compatibility, where it enables
        waiting for a pending call; single-flight is built in here, so it
        only serves as the lock when *lock* is not given.
    :param info: count hits and misses in the wrapper for ``cache_info()``
        (without it, ``cache_info()`` reports a scalekit cache's own stats).

    Thread-safety: safe if *lock* is given or the cache is used by one thread.
    Runtime complexity: one key computation and one cache lookup per hit.
    """

    if lock is None:
        lock = condition

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            return _async_wrapper(func, cache, key, lock, info)  # type: ignore[return-value]
        return _sync_wrapper(func, cache, key, lock, info)  # type: ignore[return-value]

    return decorator


class _Counters:
    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


def _attach(
    wrapper: Any,
    func: Callable[..., Any],
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable],
    lock: AbstractContextManager[Any] | None,
    counters: _Counters | None,
) -> None:
    functools.update_wrapper(wrapper, func)

    def cache_info() -> CacheInfo:
        hits = misses = 0
        if counters is not None:
            hits, misses = counters.hits, counters.misses
        elif isinstance(cache, Cache):
            stats = cache.stats()
            hits, misses = stats.hits, stats.misses
        maxsize = getattr(cache, "maxsize", None)
        currsize = getattr(cache, "currsize", len(cache) if cache is not None else 0)
        return CacheInfo(hits, misses, maxsize, currsize)

    def cache_clear() -> None:
        if cache is not None:
            if lock is None:
                cache.clear()
            else:
                with lock:
                    cache.clear()
        if counters is not None:
            counters.hits = counters.misses = 0

    wrapper.cache = cache
    wrapper.cache_key = key
    wrapper.cache_lock = lock
    wrapper.cache_info = cache_info
    wrapper.cache_clear = cache_clear


def _store(cache: MutableMapping[Any, Any], k: Any, value: Any, lock: Any) -> None:
    try:
        if lock is None:
            cache[k] = value
        else:
            with lock:
                cache[k] = value
    except ValueError:
        pass  # value too large: return it uncached, as cachetools does


def _fast_lookup(cache: Any) -> tuple[Callable[..., Any], Callable[[Any], None] | None] | None:
    """The raw lookup (and recency update) of an LRU or FIFO cache, if it is one unmodified."""
    from .fifo import FIFOCache
    from .lru import LRUCache

    cls = type(cache)
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
    flights: dict[Any, _Flight] = {}
    flights_lock = threading.Lock()
    counters = _Counters() if info else None
    lookup = cache.get if cache is not None else None
    default_key = key is hashkey
    # The leader re-checks the cache without counting a second miss.
    peek = cache.peek if isinstance(cache, Cache) else lookup

    def miss(k: Any, args: Any, kwargs: Any) -> Any:
        with flights_lock:
            flight = flights.get(k)
            leader = flight is None
            if flight is None:
                flight = flights[k] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            # Another caller may have filled the cache between our miss and the flight.
            value = MISSING
            if peek is not None:
                if lock is None:
                    value = peek(k, MISSING)
                else:
                    with lock:
                        value = peek(k, MISSING)
            if value is MISSING:
                value = func(*args, **kwargs)
                if cache is not None:
                    _store(cache, k, value, lock)
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with flights_lock:
                del flights[k]
            flight.done.set()

    fast = _fast_lookup(cache) if lock is None and counters is None else None
    if fast is not None and default_key:
        # The hit path of an LRU/FIFO cache, inlined: no method call per hit.
        dget, move = fast
        owner: Any = cache

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Any = args if not kwargs else args + _KWMARK + tuple(sorted(kwargs.items()))
            value = dget(k, MISSING)
            if value is not MISSING:
                if move is not None:
                    move(k)
                owner._hits += 1
                return value
            owner._misses += 1
            return miss(k, args, kwargs)

    elif lock is None and counters is None and lookup is not None:
        get = lookup

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Any
            if default_key:
                k = args if not kwargs else args + _KWMARK + tuple(sorted(kwargs.items()))
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

    _attach(wrapper, func, cache, key, lock, counters)
    return wrapper


def _async_wrapper(
    func: Callable[..., Any],
    cache: MutableMapping[Any, Any] | None,
    key: Callable[..., Hashable],
    lock: AbstractContextManager[Any] | None,
    info: bool,
) -> Callable[..., Any]:
    flights: dict[Any, asyncio.Future[Any]] = {}
    counters = _Counters() if info else None

    def lookup(k: Any) -> Any:
        if cache is None:
            return MISSING
        if lock is None:
            return cache.get(k, MISSING)
        with lock:
            return cache.get(k, MISSING)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        k = key(*args, **kwargs)
        value = lookup(k)
        if value is not MISSING:
            if counters is not None:
                counters.hits += 1
            return value
        if counters is not None:
            counters.misses += 1
        flight = flights.get(k)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        flights[k] = flight
        try:
            value = await func(*args, **kwargs)
        except BaseException as exc:
            del flights[k]
            if isinstance(exc, asyncio.CancelledError):
                flight.cancel()
            else:
                flight.set_exception(exc)
                flight.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        if cache is not None:
            _store(cache, k, value, lock)
        del flights[k]
        flight.set_result(value)
        return value

    _attach(wrapper, func, cache, key, lock, counters)
    return wrapper
