"""Benchmarks of the Redis cache tier: ``python -m benchmarks.rediscache``."""
