"""A Redis server as one shard of a live resharding (needs redis-py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import BackendUnavailableError, ConfigurationError
from .shard_store import KeyAbsentError, MigrationState, ShardStore, StaleStateError

__all__ = ["RedisShardStore"]

# KEYS[1] the migration's state key, KEYS[2] the data key. ARGV[1] mode: 0 no
# checks, 1 source (serve only if present), 2 target; ARGV[2] the state the
# client routes by; ARGV[3] the command, ARGV[4..] its arguments after the key.
# One script, so the checks and the command are one atomic step on the server.
_EXECUTE = """
if ARGV[1] ~= '0' then
  local state = redis.call('GET', KEYS[1])
  if state ~= ARGV[2] then
    return redis.error_reply('SCALEKIT_STALE ' .. (state or ''))
  end
  if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('SCALEKIT_ABSENT')
  end
end
return redis.call(ARGV[3], KEYS[2], unpack(ARGV, 4))
"""


class RedisShardStore(ShardStore):
    """One standalone Redis server as a [ShardStore][scalekit.sharding.shard_store.ShardStore].

    Commands on moving keys run inside one Lua script that checks the
    migration's state (and, on a source, the key's presence) before running
    the command, atomically. Keys move with `MIGRATE host port "" db timeout
    REPLACE KEYS ...`: the source blocks while it restores the keys on the
    target and deletes them only once the target acknowledged, so no
    command runs on a key between its two copies. Not `COPY`: the source
    must stop holding the key in the same step. `REPLACE`: a target never
    serves a key its source holds, so a copy already on the target is a
    leftover of a `MIGRATE` that timed out after the restore, and must give
    way to the served copy.

    Args:
        client: a `redis.Redis` for this server (its own TLS, ACL and pool settings).
        address: `(host, port)` by which the *other* servers reach this one
            for `MIGRATE`; defaults to the client's own host and port.
        migrate_timeout_ms: `MIGRATE`'s timeout in milliseconds.
        state_prefix: the prefix of the key that records a migration's state.

    Raises:
        ConfigurationError: not a redis client, or a bad timeout.

    Thread-safety: as safe as the client (redis-py clients are).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        address: tuple[str, int] | None = None,
        migrate_timeout_ms: int = 5000,
        state_prefix: str = "scalekit:reshard:",
    ) -> None:
        if not isinstance(client, redis.Redis):
            raise ConfigurationError(f"client must be a redis.Redis, got {type(client).__name__}")
        if isinstance(migrate_timeout_ms, bool) or not isinstance(migrate_timeout_ms, int):
            raise ConfigurationError(
                f"migrate_timeout_ms must be a positive int, got {migrate_timeout_ms!r}"
            )
        if migrate_timeout_ms < 1:
            raise ConfigurationError(
                f"migrate_timeout_ms must be a positive int, got {migrate_timeout_ms!r}"
            )
        kwargs = client.connection_pool.connection_kwargs
        self.client = client
        self.address = address or (
            str(kwargs.get("host", "localhost")),
            int(kwargs.get("port", 6379)),
        )
        self.db = int(kwargs.get("db", 0) or 0)
        self._username = kwargs.get("username")
        self._password = kwargs.get("password")
        self._timeout_ms = migrate_timeout_ms
        self._prefix = state_prefix
        self._script = client.register_script(_EXECUTE)

    def _state_key(self, name: str) -> str:
        return self._prefix + name

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        mode = "0" if state is None else ("1" if source else "2")
        expected = "" if state is None else state.encode()
        try:
            return self._script(keys=[self._state_key(name), key], args=[mode, expected, *command])
        except ResponseError as exc:
            message = str(exc)
            if message.startswith("SCALEKIT_ABSENT"):
                raise KeyAbsentError(key) from None
            if message.startswith("SCALEKIT_STALE"):
                recorded = message[len("SCALEKIT_STALE") :].strip()
                raise StaleStateError(MigrationState.decode(recorded or None)) from None
            raise
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(f"redis {self.address} unreachable: {exc}") from exc

    def read_state(self, name: str) -> MigrationState | None:
        try:
            return MigrationState.decode(self.client.get(self._state_key(name)))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(f"redis {self.address} unreachable: {exc}") from exc

    def write_state(self, name: str, state: MigrationState | None) -> None:
        try:
            if state is None:
                self.client.delete(self._state_key(name))
            else:
                self.client.set(self._state_key(name), state.encode())
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(f"redis {self.address} unreachable: {exc}") from exc

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        try:
            cursor, keys = self.client.scan(cursor=cursor, count=count)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(f"redis {self.address} unreachable: {exc}") from exc
        prefix = self._prefix
        bprefix = prefix.encode()
        kept = [
            k
            for k in keys
            if not (k.startswith(bprefix) if isinstance(k, bytes) else k.startswith(prefix))
        ]
        return int(cursor), kept

    def move(self, keys: Sequence[Any], target: ShardStore) -> None:
        if not keys:
            return
        if not isinstance(target, RedisShardStore):
            raise ConfigurationError(
                "a RedisShardStore moves keys to another RedisShardStore, "
                f"got {type(target).__name__}"
            )
        host, port = target.address
        args: list[Any] = ["MIGRATE", host, port, "", target.db, self._timeout_ms, "REPLACE"]
        if target._password is not None:
            if target._username is not None:
                args += ["AUTH2", target._username, target._password]
            else:
                args += ["AUTH", target._password]
        args += ["KEYS", *keys]
        try:
            self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailableError(f"redis {self.address} unreachable: {exc}") from exc
        except ResponseError as exc:
            if "IOERR" in str(exc) or "timeout" in str(exc).lower():
                raise BackendUnavailableError(
                    f"MIGRATE from {self.address} to {target.address} failed: {exc}"
                ) from exc
            raise

    def __repr__(self) -> str:
        return f"RedisShardStore({self.address[0]}:{self.address[1]}/{self.db})"
