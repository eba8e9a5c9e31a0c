"""Every lock and fenced store refuses a non-client at construction, naming what it got.

Before, `RedisLock("notaclient", "x")` was accepted and the first `acquire()`
failed with a raw `AttributeError` from deep inside the driver calls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.exceptions import ArgumentTypeError
from scalekit.locking import (
    AsyncRedisLock,
    RedisLock,
    RedisReadWriteLock,
    RedisSemaphore,
    Redlock,
    ZooKeeperLock,
    ZooKeeperReadWriteLock,
    ZooKeeperSemaphore,
)
from scalekit.locking.fencing import RedisFencedStore, SQLFencedStore

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")

CONSTRUCTORS: dict[str, tuple[Callable[[Any], Any], str, str]] = {
    "RedisLock": (lambda c: RedisLock(c, "x"), "client", "redis.Redis"),
    "RedisSemaphore": (lambda c: RedisSemaphore(c, "x", 2), "client", "redis.Redis"),
    "RedisReadWriteLock": (lambda c: RedisReadWriteLock(c, "x"), "client", "redis.Redis"),
    "AsyncRedisLock": (lambda c: AsyncRedisLock(c, "x"), "client", "redis.asyncio.Redis"),
    "Redlock": (lambda c: Redlock([c], "x"), "clients[0]", "redis.Redis"),
    "ZooKeeperLock": (lambda c: ZooKeeperLock(c, "/x"), "client", "KazooClient"),
    "ZooKeeperSemaphore": (lambda c: ZooKeeperSemaphore(c, "/x", 2), "client", "KazooClient"),
    "ZooKeeperReadWriteLock": (lambda c: ZooKeeperReadWriteLock(c, "/x"), "client", "KazooClient"),
    "RedisFencedStore": (lambda c: RedisFencedStore(c), "client", "redis.Redis"),
    "SQLFencedStore": (lambda c: SQLFencedStore(c), "connection", "DB-API 2 connection"),
}


@pytest.mark.parametrize("kind", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("bad", ["notaclient", None, 42])
def test_a_non_client_is_refused_at_construction_naming_argument_value_and_type(
    kind: str, bad: Any
) -> None:
    make, argument, expected = CONSTRUCTORS[kind]
    with pytest.raises(ArgumentTypeError) as info:
        make(bad)
    message = str(info.value)
    assert message.startswith(f"{argument} must be ")
    assert expected in message
    assert f"got {type(bad).__name__}: {bad!r}" in message
    assert isinstance(info.value, TypeError)


def test_redlock_names_the_bad_entry_and_refuses_a_string_for_the_list() -> None:
    good = redis.Redis(port=1)
    with pytest.raises(ArgumentTypeError, match=r"clients\[1\] must be .*got str: 'nope'"):
        Redlock([good, "nope", good], "x")
    with pytest.raises(ArgumentTypeError, match=r"clients must be a list .*got str: 'abc'"):
        Redlock("abc", "x")  # type: ignore[arg-type]


def test_a_sync_lock_refuses_an_asyncio_client_and_the_async_lock_a_sync_one() -> None:
    async_client = redis_asyncio.Redis(port=1)
    with pytest.raises(ArgumentTypeError) as info:
        RedisLock(async_client, "x")
    assert str(info.value) == (
        "client must be a redis.Redis or redis.cluster.RedisCluster, "
        f"got Redis: {async_client!r}; an asyncio client: use AsyncRedisLock"
    )
    sync_client = redis.Redis(port=1)
    with pytest.raises(ArgumentTypeError) as info:
        AsyncRedisLock(sync_client, "x")
    assert str(info.value) == (
        "client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, "
        f"got Redis: {sync_client!r}; a synchronous client: use RedisLock"
    )
    with pytest.raises(ArgumentTypeError) as info:
        AsyncRedisLock("notaclient", "x")
    assert str(info.value) == (
        "client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, got str: 'notaclient'"
    )


def test_real_clients_are_still_accepted_without_a_server() -> None:
    """The checks look at the type only: constructing needs no connection."""
    RedisLock(redis.Redis(port=1), "x")
    Redlock([redis.Redis(port=1)] * 3, "x")
    AsyncRedisLock(redis_asyncio.Redis(port=1), "x")
    SQLFencedStore(sqlite3.connect(":memory:"))
    kazoo_client = pytest.importorskip("kazoo.client")
    ZooKeeperLock(kazoo_client.KazooClient(hosts="127.0.0.1:1"), "/x")
