"""Local caches: drop-in cachetools policies, modern policies and a memoizing decorator.

* `LRUCache`, `FIFOCache`, `LFUCache`, `RRCache` and `TTLCache` are drop-in
  for the cachetools classes of the same names, faster, with `Cache.stats()`.
* `SIEVECache`, `S3FIFOCache` and `TinyLFUCache` are modern policies with the
  same API and better hit ratios.

Every cache is a bounded `collections.abc.MutableMapping`; none is
thread-safe on its own. `cached` memoizes a function in any of them (or in
a cachetools cache), with single-flight for threads and asyncio.

The Redis tier, `RedisCache` and `NearCache`, needs redis-py
(`pip install 'scalekit-primitives[redis]'`); it is imported only when first
used, so `import scalekit.caching` works with the core dependencies alone.
Without redis-py, looking either name up raises
[MissingDependencyError][scalekit.exceptions.MissingDependencyError] (an
`ImportError`) that names the extra. `__all__` lists the names that need no
optional driver, so `from scalekit.caching import *` never imports one;
`dir()` lists the Redis tier too, and `from scalekit.caching import
RedisCache` imports it.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .base import Cache, CacheStats
from .decorators import CacheInfo, cached, hashkey
from .fifo import FIFOCache
from .lfu import LFUCache
from .lru import LRUCache
from .rr import RRCache
from .s3fifo import S3FIFOCache
from .sieve import SIEVECache
from .tinylfu import TinyLFUCache
from .ttl import TTLCache

if TYPE_CHECKING:
    from .near_cache import NearCache as NearCache
    from .redis_cache import RedisCache as RedisCache

# Backends whose driver is optional: not in __all__, loaded on first lookup.
_LAZY = {"NearCache": ".near_cache", "RedisCache": ".redis_cache"}


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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "Cache",
    "CacheInfo",
    "CacheStats",
    "FIFOCache",
    "LFUCache",
    "LRUCache",
    "RRCache",
    "S3FIFOCache",
    "SIEVECache",
    "TTLCache",
    "TinyLFUCache",
    "cached",
    "hashkey",
]
