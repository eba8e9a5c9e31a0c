"""Sharding: hash, range and time routers with consistent placement and migration plans.

* `HashRouter` - jump, rendezvous, ketama, Maglev, Redis Cluster slots, modulo;
* `RangeRouter` - ordered key ranges with split, merge and load-based split hints;
* `TimeRouter` - calendar partitions (`orders_2026_11`) with retention;
* `MigratingRouter` and `Router.plan_to()` - resharding; live moves
  between Redis servers with `RedisShardStore` (needs redis-py, imported
  when first used).

The placement functions in `scalekit.sharding.placement` are public too.
"""

from typing import Any

from .base import MigrationPlan, Move, Router
from .hash_router import STRATEGIES, HashRouter
from .placement import (
    DEFAULT_MAGLEV_SIZE,
    SLOT_COUNT,
    KetamaRing,
    MaglevTable,
    Rendezvous,
    cluster_slot_ranges,
    jump_hash,
    key_slot,
)
from .range_router import RangeRouter
from .resharding import MigratingRouter, MigrationState, ShardStore
from .time_router import INTERVALS, Partition, Rollover, TimeRouter

__all__ = [
    "DEFAULT_MAGLEV_SIZE",
    "INTERVALS",
    "SLOT_COUNT",
    "STRATEGIES",
    "HashRouter",
    "KetamaRing",
    "MaglevTable",
    "MigratingRouter",
    "MigrationPlan",
    "MigrationState",
    "Move",
    "Partition",
    "RangeRouter",
    "RedisShardStore",
    "Rendezvous",
    "Rollover",
    "Router",
    "ShardStore",
    "TimeRouter",
    "cluster_slot_ranges",
    "jump_hash",
    "key_slot",
]


def __getattr__(name: str) -> Any:
    if name == "RedisShardStore":
        from .redis_store import RedisShardStore

        return RedisShardStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
