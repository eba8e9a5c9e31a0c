"""Redis locks refuse a duration their scripts cannot keep, before anything is sent.

Redis accepts a `PX` below 2**63 ms minus its clock and the scripts compute in
Lua doubles (exact to 2**53 ms): every Redis lock bounds `ttl`, `waiter_ttl`,
`claim_window`, `op_timeout` and `extend(ttl)` at 1e9 s and raises
`ConfigurationError` naming the argument and the value.
"""

from __future__ import annotations

from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError
from scalekit.locking import AsyncRedisLock, RedisLock, RedisSemaphore, Redlock

from .conftest import unique

HUGE = [1e30, 1e15, 1e9 + 1]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("argument", ["ttl", "waiter_ttl", "claim_window", "op_timeout"])
def test_redis_locks_refuse_a_duration_redis_cannot_keep(
    redis_client: Any, argument: str, value: float
) -> None:
    name = unique()
    with pytest.raises(ConfigurationError, match=rf"{argument} must be .* at most 1e\+09 .* got"):
        RedisLock(redis_client, name, **{argument: value})
    with pytest.raises(ConfigurationError, match=rf"{argument} must be .* at most 1e\+09"):
        RedisSemaphore(redis_client, name, 2, **{argument: value})
    async_client = pytest.importorskip("redis.asyncio").Redis()
    with pytest.raises(ConfigurationError, match=rf"{argument} must be .* at most 1e\+09"):
        AsyncRedisLock(async_client, name, **{argument: value})
    if argument == "ttl":
        with pytest.raises(ConfigurationError, match=r"ttl must be .* at most 1e\+09"):
            Redlock([redis_client], name, ttl=value)
    assert redis_client.keys(f"*{name}*") == []  # nothing was sent


def test_extend_refuses_a_ttl_redis_cannot_keep(redis_client: Any) -> None:
    lock = RedisLock(redis_client, unique(), ttl=5)
    assert RedisLock(redis_client, unique(), ttl=1e9).ttl == 1e9  # the bound itself is kept
    with lock.acquire(timeout=1) as lease:
        with pytest.raises(ConfigurationError, match=r"ttl must be .* at most 1e\+09 .* 1e\+30"):
            lease.extend(1e30)
        assert not lease.lost.is_set()
        lease.extend(5)  # still held and extendable
