"""Type checks of the clients a lock or fenced store is given, made at construction.

Duck-typed on what the lock calls, so a `RedisCluster`, a kazoo client
subclass or any DB-API 2 connection passes, while a string, `None` or a
client of the wrong flavour (asyncio for a threaded lock) is refused at
once with `ArgumentTypeError` instead of a raw `AttributeError` at the
first acquire.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..exceptions import ArgumentTypeError, ConfigurationError

__all__ = [
    "check_async_redis",
    "check_dbapi",
    "check_hash_tag",
    "check_kazoo",
    "check_redis",
    "check_redis_list",
]

_KAZOO_METHODS = (
    "create_async",
    "get_children_async",
    "exists_async",
    "delete_async",
    "add_listener",
)


def _got(value: Any) -> str:
    return f"got {type(value).__name__}: {value!r}"


def _is_async(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def check_redis(name: str, client: Any) -> Any:
    """Return *client* if it is a synchronous redis-py client, else raise `ArgumentTypeError`."""
    if not callable(getattr(client, "execute_command", None)):
        raise ArgumentTypeError(
            f"{name} must be a redis.Redis or redis.cluster.RedisCluster, {_got(client)}"
        )
    if _is_async(client):
        raise ArgumentTypeError(
            f"{name} must be a redis.Redis or redis.cluster.RedisCluster, {_got(client)}; "
            "an asyncio client: use AsyncRedisLock"
        )
    return client


def check_async_redis(name: str, client: Any) -> Any:
    """Return *client* if it is a `redis.asyncio` client, else raise `ArgumentTypeError`."""
    if not _is_async(client):
        hint = (
            "; a synchronous client: use RedisLock"
            if callable(getattr(client, "execute_command", None))
            else ""
        )
        raise ArgumentTypeError(
            f"{name} must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, "
            f"{_got(client)}{hint}"
        )
    return client


def check_redis_list(name: str, clients: Any) -> Sequence[Any]:
    """Return *clients* if it is a list or tuple of synchronous redis-py clients."""
    if not isinstance(clients, Sequence) or isinstance(clients, (str, bytes)):
        raise ArgumentTypeError(
            f"{name} must be a list of redis.Redis clients, one per master, {_got(clients)}"
        )
    for i, client in enumerate(clients):
        check_redis(f"{name}[{i}]", client)
    return clients


def check_kazoo(name: str, client: Any) -> Any:
    """Return *client* if it is a `kazoo.client.KazooClient` (or quacks like one)."""
    if not all(callable(getattr(client, m, None)) for m in _KAZOO_METHODS):
        raise ArgumentTypeError(f"{name} must be a kazoo.client.KazooClient, {_got(client)}")
    return client


def check_dbapi(name: str, connection: Any) -> Any:
    """Return *connection* if it has a DB-API 2 connection's `cursor`, `commit`, `rollback`."""
    if not all(callable(getattr(connection, m, None)) for m in ("cursor", "commit", "rollback")):
        raise ArgumentTypeError(
            f"{name} must be a DB-API 2 connection (sqlite3, psycopg), {_got(connection)}"
        )
    return connection


def check_hash_tag(name: str, value: str, *, brace: bool = False) -> str:
    """*value*, if it can sit inside the `{...}` hash tag of Redis keys.

    A `}` would end the tag early (`"}x"` leaves it empty, so each key
    hashes whole and a Redis Cluster puts a lock's keys in different slots;
    a standalone Redis does not care, so the mistake would show only in
    production). With *brace*, a `{` is refused too (for a prefix written
    before the tag, where it would open a tag of its own).

    Raises:
        ConfigurationError: *value* contains `}` (or `{` with *brace*).
    """
    bad = "{}" if brace else "}"
    if any(c in value for c in bad):
        shown = " or ".join(repr(c) for c in bad)
        raise ConfigurationError(
            f"{name} must not contain {shown}, got {value!r}: the Redis keys carry it in a "
            "hash tag {...}, which must hold it whole for a Redis Cluster to keep them in "
            "one slot"
        )
    return value
