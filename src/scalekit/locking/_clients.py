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

from .._validation import positive_number
from ..exceptions import ArgumentTypeError, ConfigurationError

# The longest duration a Redis lock accepts (about 31.7 years): Redis takes a
# `PX` below 2**63 ms minus its clock, and the scripts do their arithmetic in
# Lua doubles, exact up to 2**53 ms; a billion seconds keeps both far away.
REDIS_MAX_SECONDS = 1e9


def redis_seconds(name: str, value: Any) -> float:
    """*value* as a float, if it is a duration every Redis lock script keeps exactly.

    Raises:
        ArgumentTypeError: for a non-number.
        ConfigurationError: for zero, a negative or non-finite number, or
            more than `REDIS_MAX_SECONDS`.
    """
    seconds = positive_number(name, value)
    if seconds > REDIS_MAX_SECONDS:
        raise ConfigurationError(
            f"{name} must be a positive number of seconds of at most {REDIS_MAX_SECONDS:g} "
            f"(about 31 years; what a Redis lock stores exactly), got {value!r}"
        )
    return seconds


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


def check_hash_tag(name: str, value: str, key: str) -> str:
    """*value* (argument *name*), if the Redis key *key* built from it has a non-empty hash tag.

    Redis Cluster hashes only the part between the first `{` of a key and
    the first `}` after it, when that part is not empty. A lock's keys (and
    a fenced key's value and fence) are one base key plus suffixes, so they
    share that tag and one slot, unless the tag is empty: then each key
    hashes whole and lands in a slot of its own. A standalone Redis does
    not care, so the mistake would show only on a cluster, as a failure of
    every script; it is refused here instead. It happens when the name
    begins with `}` (or a prefix ends with `{` and the name begins with `}`,
    or a prefix holds `{}`).

    Raises:
        ConfigurationError: *key*'s hash tag is empty.
    """
    start = key.find("{")
    if start >= 0 and key.startswith("}", start + 1):
        raise ConfigurationError(
            f"{name} {value!r} gives its Redis keys an empty hash tag ({key!r}: the first "
            "'{' is followed at once by '}'), so a Redis Cluster would put them in different "
            "slots; a name must not begin with '}'"
        )
    return value
