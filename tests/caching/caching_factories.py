"""Every cache class as a factory, shared by the caching tests (adding a policy is one line)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from scalekit.caching import (
    Cache,
    FIFOCache,
    LFUCache,
    LRUCache,
    RRCache,
    S3FIFOCache,
    SIEVECache,
    TinyLFUCache,
    TTLCache,
)
from scalekit.testing import FakeClock

Factory = Callable[..., Cache[Any, Any]]

# Adding a policy to the conformance suite is one line here.
FACTORIES: dict[str, Factory] = {
    "LRU": LRUCache,
    "FIFO": FIFOCache,
    "LFU": LFUCache,
    "RR": lambda maxsize, **kw: RRCache(maxsize, rng=random.Random(7), **kw),
    "TTL": lambda maxsize, **kw: TTLCache(maxsize, ttl=60, timer=FakeClock(), **kw),
    "SIEVE": SIEVECache,
    "S3FIFO": S3FIFOCache,
    "TinyLFU": lambda maxsize, **kw: TinyLFUCache(maxsize, rng=random.Random(7), **kw),
}

# Admission policies may decline to keep a new entry (see TinyLFUCache).
ADMISSION_POLICIES = {"TinyLFU"}
