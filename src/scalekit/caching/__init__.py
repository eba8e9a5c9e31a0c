"""Local caches: drop-in cachetools policies, modern policies and a memoizing decorator.

* `LRUCache`, `FIFOCache`, `LFUCache`, `RRCache` and `TTLCache` are drop-in
  for the cachetools classes of the same names, faster, with `Cache.stats()`.
* `SIEVECache`, `S3FIFOCache` and `TinyLFUCache` are modern policies with the
  same API and better hit ratios.

Every cache is a bounded `collections.abc.MutableMapping`; none is
thread-safe on its own. `cached` memoizes a function in any of them (or in
a cachetools cache), with single-flight for threads and asyncio.

The Redis tier, `RedisCache` and `NearCache` (and their `stats()` snapshots
`RedisCacheStats` and `NearCacheStats`), needs redis-py
(`pip install 'scalekit-primitives[redis]'`); it is imported only when first
used, so `import scalekit.caching` works with the core dependencies alone.
Without redis-py, `from scalekit.caching import RedisCache` raises
[MissingDependencyError][scalekit.exceptions.MissingDependencyError] (an
`ImportError`) that names the extra, and an attribute lookup such as
`scalekit.caching.RedisCache` raises
[MissingBackendError][scalekit.exceptions.MissingBackendError] (an
`AttributeError`, so `hasattr` and `help()` pass over it) with the same
message. `__all__` lists the names that need no
optional driver, so `from scalekit.caching import *` never imports one;
`dir()` lists the Redis tier too, and `from scalekit.caching import
RedisCache` imports it.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
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
    from .near_cache import NearCache as NearCache
    from .near_cache import NearCacheStats as NearCacheStats
    from .redis_cache import RedisCache as RedisCache
    from .redis_cache import RedisCacheStats as RedisCacheStats

# Backends whose driver is optional: not in __all__, loaded on first lookup.
_LAZY = {
    "NearCache": ".near_cache",
    "NearCacheStats": ".near_cache",
    "RedisCache": ".redis_cache",
    "RedisCacheStats": ".redis_cache",
}


def _register_with_cachetools() -> None:
    # cachetools' decorators ask isinstance(cache, cachetools.Cache) before
    # reporting maxsize and currsize (cached(info=True)); scalekit's caches
    # have both, so they are registered as virtual subclasses of it. This only
    # adds scalekit's classes to that ABC's registry (no method of cachetools
    # changes, nothing is inherited). It happens only when a real cachetools is
    # importable: it is not a dependency, and a module named `cachetools` that
    # is a stand-in (one re-exporting scalekit.caching, still being imported
    # when this runs), a stub without `Cache`, or one whose `Cache` is no ABC
    # is left alone instead of breaking this import.
    try:
        import cachetools
    except ImportError:
        return
    base = getattr(cachetools, "Cache", None)
    register = getattr(base, "register", None)
    if base is None or base is Cache or not isinstance(base, type) or not callable(register):
        return
    try:
        register(Cache)
    except Exception:  # a foreign class's register must not break this import
        return


_register_with_cachetools()


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "Cache",
    "CacheInfo",
    "CacheStats",
    "CachedFunction",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "RRCache",
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
