"""Bounded-time Redis calls for the Redis locks (imports redis; only backends import this).

redis-py's defaults retry a failed connect three times with exponential
back-off and read without a timeout, which turns an unreachable server
into a wait of a minute or forever. The locks therefore run their scripts
on a private connection pool cloned from the caller's client (same host,
TLS, ACL, database) with retries off and every read bounded by the
caller's ``op_timeout``.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..exceptions import BackendError, BackendUnavailableError

__all__ = ["LUA_NOW_MS", "RedisCalls", "Script", "is_transient", "lua_purge"]


# Lua pieces the lock scripts share. The server's clock, in milliseconds,
# so every client of a lock agrees on deadlines whatever its own clock says.
LUA_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end"""


def lua_purge(leases: int, tokens: int) -> str:
    """A Lua ``purge(now)`` that drops the leases in ``KEYS[leases]`` (a zset
    scored by deadline) that ended by *now*, and their ``KEYS[tokens]`` entries."""
    return f"""
local function purge(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[{leases}], '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[{leases}], '-inf', now)
    redis.call('HDEL', KEYS[{tokens}], unpack(gone))
  end
end"""


# Error replies of a server that will serve again soon: a script running past
# busy-reply-threshold, a replica loading, a cluster slot moving or down.
_TRANSIENT_REPLIES = ("BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN")


def is_transient(exc: BaseException) -> bool:
    """True for an error reply that says "not now" rather than "never"."""
    return str(exc).startswith(_TRANSIENT_REPLIES)


class Script:
    """A Lua script and its SHA1, run with EVALSHA and loaded on NOSCRIPT."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_POOLS: weakref.WeakKeyDictionary[Any, tuple[float, redis.ConnectionPool]] = (
    weakref.WeakKeyDictionary()
)
_POOLS_LOCK = threading.Lock()


def _private_pool(client: Any, op_timeout: float) -> redis.ConnectionPool:
    with _POOLS_LOCK:
        cached = _POOLS.get(client)
        if cached is not None and cached[0] == op_timeout:
            return cached[1]
        source = client.connection_pool
        kwargs = dict(source.connection_kwargs)
        kwargs.update(
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            retry_on_timeout=False,
            decode_responses=False,
            health_check_interval=0,
        )
        pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        _POOLS[client] = (op_timeout, pool)
        return pool


class RedisCalls:
    """Run commands and scripts on one Redis server, each within a bounded time.

    ``client`` is a ``redis.Redis``; its pool's settings are copied into a
    private pool with retries off. A client without a connection pool (a
    ``RedisCluster``) is called through its own ``execute_command``, and its
    own timeouts bound the wait.

    Thread-safe (the pool is). Cost: one round trip per call.
    """

    def __init__(self, client: Any, op_timeout: float) -> None:
        self.client = client
        self.op_timeout = op_timeout
        self._pool = (
            _private_pool(client, op_timeout) if hasattr(client, "connection_pool") else None
        )

    def describe(self) -> str:
        pool = self._pool
        if pool is None:
            return repr(self.client)
        kw = pool.connection_kwargs
        return f"redis {kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}"

    def call(self, *args: Any, timeout: float | None = None) -> Any:
        """Send one command; wait at most *timeout* (default ``op_timeout``) for the reply.

        :raises BackendUnavailableError: no connection or no reply in time.
        :raises BackendError: Redis answered with an error.
        """
        wait = self.op_timeout if timeout is None else timeout
        try:
            if self._pool is None:
                return self.client.execute_command(*args)
            conn = self._pool.get_connection()
            try:
                conn.send_command(*args)  # type: ignore[no-untyped-call]
                if timeout is None:  # the pool's socket timeout is op_timeout already
                    return conn.read_response()
                return conn.read_response(timeout=wait)
            except BaseException:
                conn.disconnect()  # type: ignore[no-untyped-call]
                raise
            finally:
                self._pool.release(conn)
        except NoScriptError:
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BackendUnavailableError(
                f"{self.describe()} did not answer {args[0]!s} within {wait}s: {exc}"
            ) from exc
        except RedisError as exc:
            if is_transient(exc):
                raise BackendUnavailableError(
                    f"{self.describe()} cannot serve {args[0]!s} now: {exc}"
                ) from exc
            raise BackendError(f"{self.describe()} failed {args[0]!s}: {exc}") from exc

    def script(
        self, script: Script, keys: list[str], args: list[Any], timeout: float | None = None
    ) -> Any:
        """Run *script* with EVALSHA, falling back to EVAL when the server lost it."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args, timeout=timeout)
        except NoScriptError:
            return self.call("EVAL", script.source, len(keys), *keys, *args, timeout=timeout)
