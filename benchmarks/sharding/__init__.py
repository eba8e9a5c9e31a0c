"""Sharding benchmarks: lookup speed against uhashring, balance and keys moved on resharding."""
