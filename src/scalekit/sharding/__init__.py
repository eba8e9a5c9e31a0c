"""Sharding: hash, range and time routers with consistent placement and migration plans.

* `HashRouter` - jump, rendezvous, ketama, Maglev, Redis Cluster slots, modulo;
* `RangeRouter` - ordered key ranges with split, merge and load-based split hints;
* `TimeRouter` - calendar partitions (`orders_2026_11`) with retention;
* `MigratingRouter` and `Router.plan_to()` - resharding; live moves
  between Redis servers with `RedisShardStore` (needs redis-py, imported
  when first used) and between SQLite databases with `SQLiteShardStore`.

The placement functions in `scalekit.sharding.placement` are public too.
"""

from .._lazy import lazy_exports
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
from .sqlite_store import SQLiteShardStore
from .time_router import INTERVALS, Partition, Rollover, TimeRouter

__all__ = [  # noqa: RUF022 - plain sorted(), as every scalekit __all__
    "DEFAULT_MAGLEV_SIZE",
    "HashRouter",
    "INTERVALS",
    "KetamaRing",
    "MaglevTable",
    "MigratingRouter",
    "MigrationPlan",
    "MigrationState",
    "Move",
    "Partition",
    "RangeRouter",
    "Rendezvous",
    "Rollover",
    "Router",
    "SLOT_COUNT",
    "SQLiteShardStore",
    "STRATEGIES",
    "ShardStore",
    "TimeRouter",
    "cluster_slot_ranges",
    "jump_hash",
    "key_slot",
]


# Backends whose driver is optional: imported on first use, named in dir().
__getattr__, __dir__ = lazy_exports(__name__, {"RedisShardStore": ".redis_store"}, globals())
