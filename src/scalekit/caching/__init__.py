"""Local caches: drop-in cachetools policies, modern policies and a memoizing decorator.

* :class:`LRUCache`, :class:`FIFOCache`, :class:`LFUCache`, :class:`RRCache`
  and :class:`TTLCache` are drop-in for the cachetools classes of the same
  names, faster, with :meth:`~Cache.stats`.
* :class:`SIEVECache`, :class:`S3FIFOCache` and :class:`TinyLFUCache` are
  modern policies with the same API and better hit ratios.

Every cache is a bounded :class:`~collections.abc.MutableMapping`; none is
thread-safe on its own. :func:`cached` memoizes a function in any of
them (or in a cachetools cache), with single-flight for threads and asyncio.
"""

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
