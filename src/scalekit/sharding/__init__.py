"""Sharding: hash, range and time routers with consistent placement and migration plans."""

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

__all__ = [
    "DEFAULT_MAGLEV_SIZE",
    "SLOT_COUNT",
    "KetamaRing",
    "MaglevTable",
    "Rendezvous",
    "cluster_slot_ranges",
    "jump_hash",
    "key_slot",
]
