"""`functools.lru_cache`-style decorators over scalekit's caches (as `cachetools.func`).

Each decorator builds its own cache and is thread-safe, as
`functools.lru_cache` is: `@lru_cache`, `@lru_cache()` and
`@lru_cache(maxsize=None)` all work, `typed=True` keys `f(1)` and `f(1.0)`
apart (any `typed` is taken by its truth value and reported by
`cache_parameters()` as given, as `functools` does), and the wrapper has
`cache_info()`, `cache_clear()`, `cache_invalidate()` and
`cache_parameters()`.

```pycon
>>> @lru_cache(maxsize=32)
... def square(x):
...     return x * x
>>> square(3), square(3), square.cache_info()
(9, 9, CacheInfo(hits=1, misses=1, maxsize=32, currsize=1))
>>> square.cache_parameters()
{'maxsize': 32, 'typed': False}

```
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from .base import Cache
from .decorators import CachedFunction, CacheInfo, cached
from .fifo import FIFOCache
from .keys import hashkey, typedkey
from .lfu import LFUCache
from .lru import LRUCache
from .rr import RRCache
from .s3fifo import S3FIFOCache
from .sieve import SIEVECache
from .tinylfu import TinyLFUCache
from .ttl import TTLCache

__all__ = [
    "FuncCachedFunction",
    "FuncDecorator",
    "fifo_cache",
    "lfu_cache",
    "lru_cache",
    "rr_cache",
    "s3fifo_cache",
    "sieve_cache",
    "tinylfu_cache",
    "ttl_cache",
]

P = ParamSpec("P")
R = TypeVar("R")


class FuncCachedFunction(CachedFunction[P, R], Protocol):
    """A function decorated with `lru_cache` and its siblings: also `cache_parameters()`."""

    def cache_parameters(self) -> dict[str, Any]:
        """`{"maxsize": ..., "typed": ...}`, as `functools` reports them."""
        ...


class FuncDecorator(Protocol):
    """What `lru_cache(maxsize=...)` and its siblings return: it keeps the function's types.

    Generic per call, so one decorator object applied to `f(x: int) -> str`
    gives a [FuncCachedFunction][scalekit.caching.func.FuncCachedFunction]
    called with an `int` that returns a `str`.
    """

    def __call__(self, func: Callable[P, R], /) -> FuncCachedFunction[P, R]: ...


def _wrap(make: Callable[[Any], Cache[Any, Any]], maxsize: Any, typed: bool) -> Any:
    if callable(maxsize):  # @lru_cache without parentheses
        return _wrap(make, 128, typed)(maxsize)
    cache = make(math.inf if maxsize is None else maxsize)

    # Any typed is taken by its truth value, as functools and cachetools.func take it,
    # and cache_parameters() reports it as given, as they do.
    key = typedkey if typed else hashkey

    def decorator(func: Callable[P, R]) -> FuncCachedFunction[P, R]:
        # Reentrant, as functools needs: a key whose __eq__ calls the function.
        wrapper: Any = cached(cache, key=key, lock=threading.RLock(), info=True)(func)
        counted = wrapper.cache_info
        if maxsize is None:  # unbounded: reported as None, as functools does

            def cache_info() -> CacheInfo:
                info: CacheInfo = counted()
                return info._replace(maxsize=None)

            wrapper.cache_info = cache_info
        wrapper.cache_parameters = lambda: {"maxsize": maxsize, "typed": typed}
        return cast("FuncCachedFunction[P, R]", wrapper)

    return decorator


@overload
def lru_cache(maxsize: Callable[P, R], typed: bool = False) -> FuncCachedFunction[P, R]: ...
@overload
def lru_cache(maxsize: int | None = 128, typed: bool = False) -> FuncDecorator: ...
def lru_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize in an [LRUCache][scalekit.caching.LRUCache] of *maxsize* (`None`: unbounded)."""
    return _wrap(LRUCache, maxsize, typed)


@overload
def fifo_cache(maxsize: Callable[P, R], typed: bool = False) -> FuncCachedFunction[P, R]: ...
@overload
def fifo_cache(maxsize: int | None = 128, typed: bool = False) -> FuncDecorator: ...
def fifo_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize in a [FIFOCache][scalekit.caching.FIFOCache] of *maxsize* (`None`: unbounded)."""
    return _wrap(FIFOCache, maxsize, typed)


@overload
def lfu_cache(maxsize: Callable[P, R], typed: bool = False) -> FuncCachedFunction[P, R]: ...
@overload
def lfu_cache(maxsize: int | None = 128, typed: bool = False) -> FuncDecorator: ...
def lfu_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize in an [LFUCache][scalekit.caching.LFUCache] of *maxsize* (`None`: unbounded)."""
    return _wrap(LFUCache, maxsize, typed)


@overload
def rr_cache(
    maxsize: Callable[P, R],
    choice: Callable[[Sequence[Any]], Any] = random.choice,
    typed: bool = False,
) -> FuncCachedFunction[P, R]: ...
@overload
def rr_cache(
    maxsize: int | None = 128,
    choice: Callable[[Sequence[Any]], Any] = random.choice,
    typed: bool = False,
) -> FuncDecorator: ...
def rr_cache(
    maxsize: Any = 128,
    choice: Callable[[Sequence[Any]], Any] = random.choice,
    typed: bool = False,
) -> Any:
    """Memoize in an [RRCache][scalekit.caching.RRCache] of *maxsize* evicting by *choice*."""
    return _wrap(lambda n: RRCache(n, choice=choice), maxsize, typed)


@overload
def ttl_cache(
    maxsize: Callable[P, R],
    ttl: float = 600,
    timer: Callable[[], float] = time.monotonic,
    typed: bool = False,
) -> FuncCachedFunction[P, R]: ...
@overload
def ttl_cache(
    maxsize: int | None = 128,
    ttl: float = 600,
    timer: Callable[[], float] = time.monotonic,
    typed: bool = False,
) -> FuncDecorator: ...
def ttl_cache(
    maxsize: Any = 128,
    ttl: Any = 600,
    timer: Callable[[], Any] = time.monotonic,
    typed: bool = False,
) -> Any:
    """Memoize in a [TTLCache][scalekit.caching.TTLCache] of *maxsize* whose entries live *ttl*."""
    return _wrap(lambda n: TTLCache(n, ttl=ttl, timer=timer), maxsize, typed)


@overload
def sieve_cache(maxsize: Callable[P, R], typed: bool = False) -> FuncCachedFunction[P, R]: ...
@overload
def sieve_cache(maxsize: int | None = 128, typed: bool = False) -> FuncDecorator: ...
def sieve_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize in a [SIEVECache][scalekit.caching.SIEVECache] of *maxsize*."""
    return _wrap(SIEVECache, maxsize, typed)


@overload
def s3fifo_cache(maxsize: Callable[P, R], typed: bool = False) -> FuncCachedFunction[P, R]: ...
@overload
def s3fifo_cache(maxsize: int | None = 128, typed: bool = False) -> FuncDecorator: ...
def s3fifo_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Memoize in an [S3FIFOCache][scalekit.caching.S3FIFOCache] of *maxsize*."""
    return _wrap(S3FIFOCache, maxsize, typed)


@overload
def tinylfu_cache(
    maxsize: Callable[P, R], typed: bool = False, *, rng: random.Random | None = None
) -> FuncCachedFunction[P, R]: ...
@overload
def tinylfu_cache(
    maxsize: int | None = 128, typed: bool = False, *, rng: random.Random | None = None
) -> FuncDecorator: ...
def tinylfu_cache(
    maxsize: Any = 128, typed: bool = False, *, rng: random.Random | None = None
) -> Any:
    """Memoize in a [TinyLFUCache][scalekit.caching.TinyLFUCache] of *maxsize* (`None`: unbounded).

    An unbounded TinyLFU never evicts, so its admission filter never runs;
    its sketch grows with the entries, not with *maxsize*.

    Raises:
        ConfigurationError: if *maxsize* is neither `None` nor a valid cache size.
    """
    return _wrap(lambda n: TinyLFUCache(n, rng=rng), maxsize, typed)
