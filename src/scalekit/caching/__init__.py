"""Caches: local eviction policies, decorators and the Redis tier."""
