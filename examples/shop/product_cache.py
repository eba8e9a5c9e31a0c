"""The product cache the shop needs, and a versioned local one for a single process."""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol


class ProductCache(Protocol):
    """What the shop needs of a cache: scalekit's ``NearCache`` and ``RedisCache`` fit.

    ``get_or_load`` runs the loader on a miss and writes its value back only
    if no ``invalidate`` of the key happened since the lookup (a versioned
    write), so a slow loader never overwrites a newer value.
    """

    def get_or_load(self, key: str, loader: Callable[[], Any]) -> Any: ...

    def invalidate(self, key: str) -> None: ...


class LocalCache:
    """A scalekit local cache (e.g. ``TinyLFUCache``) as a ProductCache, for one process.

    scalekit's local caches, like cachetools', leave locking to the caller.
    Each key has a version, bumped by ``invalidate``; a load writes its value
    back only if the version it started with is still current.
    """

    def __init__(self, cache: MutableMapping[str, Any]) -> None:
        self.cache = cache
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: str, loader: Callable[[], Any]) -> Any:
        with self._lock:
            value = self.cache.get(key)
            version = self._versions.get(key, 0)
        if value is not None:
            return value
        value = loader()
        with self._lock:
            if value is not None and self._versions.get(key, 0) == version:
                self.cache[key] = value
        return value

    def invalidate(self, key: str) -> None:
        with self._lock:
            self.cache.pop(key, None)
            self._versions[key] = self._versions.get(key, 0) + 1
