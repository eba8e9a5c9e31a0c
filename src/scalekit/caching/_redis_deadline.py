"""The cache tier's call deadlines: the shared mechanism of `scalekit._redis_deadline`."""

from __future__ import annotations

from .._redis_deadline import DeadlineExceeded, call_with_deadline, watch_cluster, watch_pool

__all__ = ["DeadlineExceeded", "call_with_deadline", "watch_cluster", "watch_pool"]
