"""A Redis server as one shard of a live resharding (needs redis-py)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from typing import Any

try:
    import redis
    import redis.utils
    from redis.exceptions import (
        AskError,
        ClusterCrossSlotError,
        ClusterDownError,
        NoScriptError,
        ResponseError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from ..exceptions import ArgumentTypeError, BackendUnavailableError, ConfigurationError
from .shard_store import (
    KeyAbsentError,
    KeyInDoubtError,
    MigrationState,
    ShardStore,
    StaleStateError,
)

__all__ = ["RedisShardStore"]

# Every script below is one atomic step on its server. Records live under the
# store's reserved prefix P: P"state:"name (the state), P"doubt:"name (a hash:
# key -> "<token> <deadline ms or 0>", the keys whose move is in doubt) and
# P"stage:"name":"token":"key (a key's copy while it moves).

# KEYS[1] state, KEYS[2] doubt, KEYS[3] the data key. ARGV[1] mode: 0 no checks,
# 1 source (serve only if present), 2 target; ARGV[2] the state the client routes
# by; ARGV[3] the client's protocol (2 or 3: the reply keeps its RESP3 type);
# ARGV[4] the command, ARGV[5..] its arguments after the key.
_EXECUTE = """
if ARGV[1] ~= '0' then
  local state = redis.call('GET', KEYS[1])
  if state ~= ARGV[2] then
    return redis.error_reply('SCALEKIT_STALE ' .. (state or ''))
  end
  if redis.call('HEXISTS', KEYS[2], KEYS[3]) == 1 then
    return redis.error_reply('SCALEKIT_DOUBT')
  end
  if ARGV[1] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
    return redis.error_reply('SCALEKIT_ABSENT')
  end
end
if ARGV[3] == '3' then redis.setresp(3) end
return redis.call(ARGV[4], KEYS[3], unpack(ARGV, 5))
"""

# On the source, before MIGRATE: KEYS[1] doubt, KEYS[2..] keys; ARGV[1] the stage
# prefix of this move (P"stage:"name":"token":"), ARGV[2] the token, ARGV[3] the
# state key and ARGV[4] the state the mover acted on ('' for no check: a move
# under another recorded state is refused, whole, before anything). Each present
# key not already in doubt is renamed to its stage name and recorded in doubt
# with its absolute deadline (so a copy restored late cannot outlive it).
_BEGIN = """
if redis.replicate_commands then redis.replicate_commands() end
if ARGV[4] ~= '' then
  local state = redis.call('GET', ARGV[3])
  if state ~= ARGV[4] then
    return redis.error_reply('SCALEKIT_STALE ' .. (state or ''))
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 2, #KEYS do
  local k = KEYS[i]
  if redis.call('HEXISTS', KEYS[1], k) == 0 and redis.call('EXISTS', k) == 1 then
    local ttl = redis.call('PTTL', k)
    local at = 0
    if ttl > 0 then at = now + ttl end
    redis.call('RENAME', k, ARGV[1] .. k)
    redis.call('HSET', KEYS[1], k, ARGV[2] .. ' ' .. at)
    n = n + 1
  end
end
return n
"""

# On the source, settling keys in doubt: KEYS[1] doubt, KEYS[2..] keys; ARGV[1]
# P"stage:"name":". Per key: "n" (not in doubt), "c" (the source still held its
# copy: the move is cancelled, the key is back under its name), "x" (its copy
# expired on the source) or "m <token> <deadline>" (MIGRATE took it: the target
# must promote its copy; the record stays until then).
_SETTLE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local rec = redis.call('HGET', KEYS[1], k)
  if not rec then
    out[#out + 1] = 'n'
  else
    local token, at = string.match(rec, '^(%S+) (%d+)$')
    local stage = ARGV[1] .. token .. ':' .. k
    if redis.call('EXISTS', stage) == 1 then
      redis.call('RENAME', stage, k)
      redis.call('HDEL', KEYS[1], k)
      out[#out + 1] = 'c'
    elseif tonumber(at) > 0 and now + 2 >= tonumber(at) then  -- ms rounding of the deadline
      redis.call('HDEL', KEYS[1], k)
      out[#out + 1] = 'x'
    else
      out[#out + 1] = 'm ' .. rec
    end
  end
end
return out
"""

# On the target: KEYS[1..] keys; ARGV[1] P"stage:"name":", ARGV[1 + i] the
# record of KEYS[i]. A staged copy becomes the key, with the recorded deadline.
_PROMOTE = """
for i = 1, #KEYS do
  local k = KEYS[i]
  local token, at = string.match(ARGV[i + 1], '^(%S+) (%d+)$')
  local stage = ARGV[1] .. token .. ':' .. k
  if redis.call('EXISTS', stage) == 1 then
    redis.call('RENAME', stage, k)
    if tonumber(at) > 0 then redis.call('PEXPIREAT', k, at) end
  end
end
return #KEYS
"""

# On the source, once promoted: KEYS[1] doubt, KEYS[2..] keys, ARGV[i - 1] the
# record KEYS[i] had; a record that changed since is left alone.
_CLEAR = """
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[1], KEYS[i]) == ARGV[i - 1] then
    redis.call('HDEL', KEYS[1], KEYS[i])
  end
end
return 0
"""


# Commands that block (inside a script they would not, and a blocked server
# serves nobody), or that touch keys besides the first one (which may live on
# another store, or be moving): refused, whatever key they name.
_BLOCKING = frozenset(
    [
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "XREAD",
        "XREADGROUP",
        "WAIT",
        "WAITAOF",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "MONITOR",
    ]
)
_MULTI_KEY = frozenset(
    [
        "MSET",
        "MSETNX",
        "RENAME",
        "RENAMENX",
        "COPY",
        "SMOVE",
        "LMOVE",
        "RPOPLPUSH",
        "SDIFFSTORE",
        "SINTERSTORE",
        "SUNIONSTORE",
        "ZUNIONSTORE",
        "ZINTERSTORE",
        "ZDIFFSTORE",
        "ZRANGESTORE",
        "PFMERGE",
        "BITOP",
        "GEOSEARCHSTORE",
        "ZUNION",
        "ZINTER",
        "ZDIFF",
        "SINTERCARD",
        "LMPOP",
        "ZMPOP",
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "KEYS",
        "SCAN",
        "FLUSHALL",
        "FLUSHDB",
        "SWAPDB",
        "SELECT",
        "MIGRATE",
        "MOVE",
    ]
)
# Multi-key only when given more than one key (their other arguments are keys).
_KEY_LISTS = frozenset(
    ["DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "PFCOUNT", "SINTER", "SUNION", "SDIFF"]
)
# Multi-key with one of these options (it names a key to store into or read from).
_KEY_OPTIONS = {
    "SORT": frozenset({"STORE", "BY", "GET"}),
    "SORT_RO": frozenset({"BY", "GET"}),
    "GEORADIUS": frozenset({"STORE", "STOREDIST"}),
    "GEORADIUSBYMEMBER": frozenset({"STORE", "STOREDIST"}),
}


def _word(arg: Any) -> str:
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg).decode("latin-1").upper()
    return str(arg).upper()


def check_one_key_command(command: Sequence[Any]) -> None:
    """Refuse a command a shard store cannot run on one key alone.

    Raises:
        ArgumentTypeError: the command's name is not a str or bytes.
        ConfigurationError: *command* blocks, or touches keys besides the one
            it is routed by (see the lists in docs/sharding.md).
    """
    if not isinstance(command[0], (str, bytes, bytearray)):
        raise ArgumentTypeError(
            f"command name must be a str or bytes such as 'GET', got "
            f"{type(command[0]).__name__}: {command[0]!r}"
        )
    name = _word(command[0])
    if name in _BLOCKING:
        raise ConfigurationError(
            f"command {name} blocks; a resharding store runs one-key commands atomically "
            "and cannot block (use its non-blocking form, e.g. LPOP for BLPOP)"
        )
    options = _KEY_OPTIONS.get(name, frozenset())
    if (
        name in _MULTI_KEY
        or (name in _KEY_LISTS and len(command) > 1)
        or any(_word(arg) in options for arg in command[1:])
    ):
        raise ConfigurationError(
            f"command {name} with arguments {list(command[1:])!r} touches keys besides the "
            "routed one, which may live on another store; send one command per key"
        )


# What a server says, from inside the script, about a command it will not run
# at all (as opposed to an error of the data, such as WRONGTYPE).
_REFUSALS = (
    ("Unknown Redis command", "unknown Redis command {name!r}; check its spelling"),
    (
        "Wrong number of args",
        "command {name} with arguments {args!r} has the wrong number of arguments",
    ),
    ("not allowed from script", "command {name} cannot run inside a script"),
)


def _cluster_node(exc: ResponseError, address: tuple[str, int]) -> ConfigurationError | None:
    """A `MOVED`, `ASK`, `CROSSSLOT` or `CLUSTERDOWN` reply: the server is a cluster node."""
    if isinstance(exc, (AskError, ClusterCrossSlotError, ClusterDownError)) or str(exc).startswith(
        ("MOVED", "ASK", "CROSSSLOT", "CLUSTERDOWN")
    ):
        return ConfigurationError(
            f"redis {address} is a Redis Cluster node ({type(exc).__name__}: {exc}); a "
            "Redis Cluster moves its slots itself (redis-cli --cluster reshard), and "
            "RedisShardStore moves keys between standalone servers"
        )
    return None


def _refusal(message: str, command: Sequence[Any]) -> ConfigurationError | None:
    for marker, text in _REFUSALS:
        if marker in message:
            name = _word(command[0])
            return ConfigurationError(text.format(name=name, args=list(command[1:])))
    return None


class RedisShardStore(ShardStore):
    """One standalone Redis server as a [ShardStore][scalekit.sharding.shard_store.ShardStore].

    Commands on moving keys run inside one Lua script that checks the
    migration's state, whether the key's move is in doubt and (on a source)
    whether the key is present before running the command, atomically.

    A key moves in three steps, each atomic on one server:

    1. On the source, in one `MULTI`: a script renames the key to a *stage*
       name unique to this move (under the reserved prefix) and records the
       key as *in doubt*, then `MIGRATE ... KEYS <stage names>` hands the
       staged copies over. The source deletes a copy only once the target
       acknowledged it, so after a timeout the source still holds it.
    2. On the target, the staged copy is renamed to the key.
    3. On the source, the doubt record is cleared.

    Any command on a key in doubt first *settles* it on the source: if the
    source still holds the staged copy, the move is cancelled (the copy gets
    its name back there); otherwise `MIGRATE` took it and the target's staged
    copy is promoted. A copy that a timed-out `MIGRATE` leaves on the target
    keeps its stage name, which nothing ever serves or promotes once the move
    is cancelled, so it cannot come back as the key (a later `DEL`, `SET`,
    `APPEND` or `INCR` sees exactly the acknowledged state). Such leftovers
    are deleted by `complete()` and `forget()`.

    Keys starting with *state_prefix* are reserved for these records: a
    command on one is a `ConfigurationError`, and the mover never moves them.
    A key's time to live is recorded as an absolute deadline (the source's
    clock) and set on the promoted copy.

    Args:
        client: a `redis.Redis` for this server (its own TLS, ACL and pool settings);
            its `socket_timeout` must exceed *migrate_timeout_ms*. Its `retry=`
            setting applies to the migration's records, never to routed
            commands: each is sent once, and a lost reply is a
            `BackendUnavailableError` saying that it may or may not have run.
        address: `(host, port)` by which the *other* servers reach this one
            for `MIGRATE`; defaults to the client's own host and port.
        migrate_timeout_ms: `MIGRATE`'s timeout in milliseconds.
        state_prefix: the reserved prefix of the migration's records.

    Raises:
        ConfigurationError: not a redis client, a bad timeout or an empty prefix.

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
        if type(client).__name__ == "RedisCluster":
            raise ConfigurationError(
                "client is a RedisCluster: a Redis Cluster moves its slots itself "
                "(redis-cli --cluster reshard, or CLUSTER SETSLOT and MIGRATE); "
                "RedisShardStore moves keys between standalone servers"
            )
        if not isinstance(client, redis.Redis):
            raise ConfigurationError(f"client must be a redis.Redis, got {type(client).__name__}")
        if (
            isinstance(migrate_timeout_ms, bool)
            or not isinstance(migrate_timeout_ms, int)
            or migrate_timeout_ms < 1
        ):
            raise ConfigurationError(
                f"migrate_timeout_ms must be a positive int, got {migrate_timeout_ms!r}"
            )
        if not isinstance(state_prefix, str) or not state_prefix:
            raise ConfigurationError(f"state_prefix must be a non-empty str, got {state_prefix!r}")
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
        self._bprefix = state_prefix.encode()
        self._encoder = client.connection_pool.get_encoder()
        protocol = getattr(client.connection_pool, "get_protocol", lambda: None)()
        default = getattr(redis.utils, "DEFAULT_RESP_VERSION", 2)  # redis-py 8 speaks RESP3
        self._resp = "3" if str(protocol or kwargs.get("protocol") or default) == "3" else "2"
        self._script = client.register_script(_EXECUTE)
        self._settle = client.register_script(_SETTLE)
        self._promote = client.register_script(_PROMOTE)
        self._clear = client.register_script(_CLEAR)
        self._scan_lock = threading.Lock()
        self._scan_runs: dict[int, str] = {}  # cursor returned -> run_id of its server

    # -- names -----------------------------------------------------------------------

    def _record_key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    def _stage_prefix(self, name: str, token: str = "") -> bytes:
        head = self._record_key("stage", name).encode() + b":"
        return head + token.encode() + b":" if token else head

    def _staged(self, name: str, token: str, keys: Sequence[Any]) -> list[bytes]:
        head = self._stage_prefix(name, token)
        return [head + self._encoder.encode(k) for k in keys]  # type: ignore[no-untyped-call]

    def reserved(self, key: Any) -> bool:
        """True if *key* starts with the reserved prefix of the migration records."""
        if isinstance(key, (bytes, bytearray, memoryview)):
            return bytes(key).startswith(self._bprefix)
        return isinstance(key, str) and key.startswith(self._prefix)

    def _unavailable(self, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(f"redis {self.address} unreachable: {exc}")

    # -- commands --------------------------------------------------------------------

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        check_one_key_command(command)
        if self.reserved(key):
            raise ConfigurationError(
                f"key {key!r} starts with {self._prefix!r}, the prefix reserved for the "
                "migration records; rename the key or give the stores another state_prefix"
            )
        mode = "0" if state is None else ("1" if source else "2")
        expected = "" if state is None else state.encode()
        keys = [self._record_key("state", name), self._record_key("doubt", name), key]
        try:
            reply = self._run_once(key, command, keys, [mode, expected, self._resp, *command])
        except ResponseError as exc:
            message = str(exc)
            if message.startswith("SCALEKIT_ABSENT"):
                raise KeyAbsentError(key) from None
            if message.startswith("SCALEKIT_DOUBT"):
                raise KeyInDoubtError(key) from None
            if message.startswith("SCALEKIT_STALE"):
                recorded = message[len("SCALEKIT_STALE") :].strip()
                raise StaleStateError(MigrationState.decode(recorded or None)) from None
            refused = _refusal(message, command) or _cluster_node(exc, self.address)
            if refused is not None:
                raise refused from None
            raise
        # The script hands back the raw reply; give it the shape redis-py's
        # execute_command(name, key, *args) gives the same command.
        callback = self.client.response_callbacks.get(_word(command[0]))  # type: ignore[no-untyped-call]
        return reply if callback is None else callback(reply)

    def _run_once(self, key: Any, command: Sequence[Any], keys: list[Any], args: list[Any]) -> Any:
        """Run the command script on one pooled connection, sending it at most once.

        The client's retry policy is bypassed on purpose: redis-py sends a
        command again when its reply is lost (a restart, a dropped
        connection, a socket timeout), which runs `INCR` or `APPEND` twice.
        A command is sent again only after a `NOSCRIPT` reply, which says
        it did not run.
        """
        pool = self.client.connection_pool
        try:
            conn = pool.get_connection()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        try:
            for attempt in range(2):
                try:
                    conn.send_command(  # type: ignore[no-untyped-call]
                        "EVALSHA", self._script.sha, len(keys), *keys, *args
                    )
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    conn.disconnect()  # type: ignore[no-untyped-call]
                    raise self._unavailable(exc) from exc  # the command did not leave
                try:
                    return conn.read_response()
                except NoScriptError:
                    if attempt:
                        raise
                    # A restarted server has an empty script cache; nothing ran.
                    try:
                        self._script.sha = self.client.script_load(_EXECUTE)
                    except (RedisConnectionError, RedisTimeoutError) as exc:
                        raise self._unavailable(exc) from exc
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    conn.disconnect()  # type: ignore[no-untyped-call]
                    raise BackendUnavailableError(
                        f"redis {self.address}: the reply to {_word(command[0])} on key "
                        f"{key!r} was lost ({exc}); the command may or may not have run, "
                        "and is not sent again (a second INCR or APPEND would be applied "
                        "twice): read the key to learn its state"
                    ) from exc
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            pool.release(conn)

    # -- records ---------------------------------------------------------------------

    def read_state(self, name: str) -> MigrationState | None:
        try:
            return MigrationState.decode(self.client.get(self._record_key("state", name)))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refused = _cluster_node(exc, self.address)
            if refused is not None:
                raise refused from None
            raise ConfigurationError(
                f"{self._record_key('state', name)!r} on {self.address} is not a migration "
                f"record ({exc}); keys under {self._prefix!r} are reserved"
            ) from None

    def write_state(self, name: str, state: MigrationState | None) -> None:
        try:
            if state is None:
                self.client.delete(self._record_key("state", name))
            else:
                self.client.set(self._record_key("state", name), state.encode())
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        except ResponseError as exc:
            refused = _cluster_node(exc, self.address)
            if refused is not None:
                raise refused from None
            raise

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        """One `SCAN` step; a cursor of an earlier server incarnation restarts the scan.

        A restarted server has a new hash table, so a cursor it returned
        before the restart would skip keys. Each step reads the server's
        `run_id` on the same connection as its `SCAN` (a restart drops the
        connection, so both replies come from one incarnation); a step whose
        cursor was returned by another incarnation scans again from 0 and
        returns that first step instead.
        """
        with self._scan_lock:
            began = self._scan_runs.pop(cursor, None) if cursor else None
        try:
            while True:
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.execute_command("INFO", "server")  # type: ignore[no-untyped-call]
                    pipe.scan(cursor=cursor, count=count)
                    info, (next_cursor, keys) = pipe.execute()
                run_id = str(info.get("run_id", ""))
                if cursor and began != run_id:
                    cursor = 0  # the cursor belongs to another incarnation (or is unknown)
                    continue
                break
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        next_cursor = int(next_cursor)
        if next_cursor:
            with self._scan_lock:
                self._scan_runs[next_cursor] = run_id
        return next_cursor, [k for k in keys if not self.reserved(k)]

    def in_doubt(self, name: str) -> list[Any]:
        try:
            return list(self.client.hkeys(self._record_key("doubt", name)))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc

    # -- moving ----------------------------------------------------------------------

    def move(
        self,
        keys: Sequence[Any],
        target: ShardStore,
        *,
        name: str,
        state: MigrationState | None = None,
    ) -> int:
        keys = list(dict.fromkeys(keys))  # SCAN may return a key twice; MIGRATE it once
        if not keys:
            return 0
        if not isinstance(target, RedisShardStore):
            raise ConfigurationError(
                "a RedisShardStore moves keys to another RedisShardStore, "
                f"got {type(target).__name__}"
            )
        token = uuid.uuid4().hex
        host, port = target.address
        migrate: list[Any] = ["MIGRATE", host, port, "", target.db, self._timeout_ms]
        if target._password is not None:
            if target._username is not None:
                migrate += ["AUTH2", target._username, target._password]
            else:
                migrate += ["AUTH", target._password]
        migrate += ["KEYS", *self._staged(name, token, keys)]
        doubt = self._record_key("doubt", name)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                head = self._stage_prefix(name, token)
                expected = "" if state is None else state.encode()
                state_key = self._record_key("state", name)
                pipe.eval(_BEGIN, 1 + len(keys), doubt, *keys, head, token, state_key, expected)
                pipe.execute_command(*migrate)  # type: ignore[no-untyped-call]
                begun, migrated = pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        if isinstance(begun, Exception):
            if str(begun).startswith("SCALEKIT_STALE"):
                # Refused before anything was staged: the MIGRATE found no key.
                recorded = str(begun)[len("SCALEKIT_STALE") :].strip()
                raise StaleStateError(MigrationState.decode(recorded or None)) from None
            raise begun
        if isinstance(migrated, Exception):
            # The outcome is unknown to us; the keys stay in doubt on this store
            # and whoever touches one next settles it.
            raise BackendUnavailableError(
                f"MIGRATE from {self.address} to {target.address} failed: {migrated}"
            )
        return self.resolve(name, keys, target).count("m")

    def resolve(self, name: str, keys: Sequence[Any], target: ShardStore) -> list[str]:
        if not keys:
            return []
        if not isinstance(target, RedisShardStore):
            raise ConfigurationError(
                f"a RedisShardStore settles moves to a RedisShardStore, got {type(target).__name__}"
            )
        doubt = self._record_key("doubt", name)
        head = self._stage_prefix(name)
        try:
            replies = self._settle(keys=[doubt, *keys], args=[head])
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        outcome: list[str] = []
        moved: list[Any] = []
        records: list[Any] = []
        for key, reply in zip(keys, replies, strict=True):
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            outcome.append(text[0])
            if text[0] == "m":
                moved.append(key)
                records.append(text[2:])
        if moved:
            try:
                target._promote(keys=moved, args=[head, *records])
                self._clear(keys=[doubt, *moved], args=records)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise self._unavailable(exc) from exc
        return outcome

    def sweep(self, name: str) -> int:
        head = self._stage_prefix(name)
        pattern = re.sub(rb"([*?\\[\]\\])", rb"\\\1", head) + b"*"
        removed = 0
        try:
            for stale in self.client.scan_iter(match=pattern, count=500):
                removed += int(self.client.delete(stale))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise self._unavailable(exc) from exc
        return removed

    def __repr__(self) -> str:
        return f"RedisShardStore({self.address[0]}:{self.address[1]}/{self.db})"
