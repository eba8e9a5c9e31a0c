"""Local caches: drop-in cachetools policies, modern policies and a memoizing decorator.

* :class:`LRUCache`, :class:`FIFOCache`, :class:`LFUCache`, :class:`RRCache`
  and :class:`TTLCache` are drop-in for the cachetools classes of the same
  names, faster, with :meth:`~Cache.stats`.
* :class:`SIEVECache`, :class:`S3FIFOCache` and :class:`TinyLFUCache` are
  modern policies with the same API and better hit ratios.

Every cache is a bounded :class:`~collections.abc.MutableMapping`; none is
thread-safe on its own. :func:`cached` memoizes a function in any of
them (or in a cachetools cache), with single-flight for threads and asyncio.

The Redis tier, :class:`RedisCache` and :class:`NearCache`, needs redis-py
(``pip install 'scalekit[redis]'``); it is imported only when first used,
so ``import scalekit.caching`` works with the core dependencies alone.
"""

from typing import TYPE_CHECKING, Any

from .base import Cache, CacheStats
from .decorators import CachedFunction, CacheInfo, ReentrantCallError, cached, hashkey
from .fifo import FIFOCache
from .func import (
    fifo_cache,
    lfu_cache,
    lru_cache,
    rr_cache,
    s3fifo_cache,
    sieve_cache,
    tinylfu_cache,
    ttl_cache,
)
from .keys import methodkey, typedkey, typedmethodkey
from .lfu import LFUCache
from .lru import LRUCache
from .methods import cachedmethod
from .rr import RRCache
from .s3fifo import S3FIFOCache
from .sieve import SIEVECache
from .tinylfu import TinyLFUCache
from .tlru import TLRUCache
from .ttl import TTLCache

if TYPE_CHECKING:
    from .near_cache import NearCache
    from .redis_cache import RedisCache

_LAZY = {"NearCache": ".near_cache", "RedisCache": ".redis_cache"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Cache",
    "CacheInfo",
    "CacheStats",
    "CachedFunction",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "NearCache",
    "RRCache",
    "RedisCache",
    "ReentrantCallError",
    "S3FIFOCache",
    "SIEVECache",
    "TLRUCache",
    "TTLCache",
    "TinyLFUCache",
    "cached",
    "cachedmethod",
    "fifo_cache",
    "hashkey",
    "lfu_cache",
    "lru_cache",
    "methodkey",
    "rr_cache",
    "s3fifo_cache",
    "sieve_cache",
    "tinylfu_cache",
    "ttl_cache",
    "typedkey",
    "typedmethodkey",
]


def _register_with_cachetools() -> None:
    # cachetools' decorators ask isinstance(cache, cachetools.Cache) before
    # reporting maxsize and currsize (cached(info=True)); scalekit's caches
    # have both. Only when cachetools is installed: it is not a dependency.
    try:
        import cachetools
    except ImportError:
        return
    cachetools.Cache.register(Cache)  # type: ignore[type-abstract]


_register_with_cachetools()
