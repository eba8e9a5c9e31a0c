"""Fenced stores: storage that refuses a lock holder whose lease was lost.

A lease is a promise that expires, and a holder can be paused past it (a
GC pause, a `SIGSTOP`, a swapped-out VM) and resume believing it still
holds the lock. Only the storage can stop it, and only if it checks the
fencing token on **both** halves of a read-modify-write: a store that
checks only writes still loses an update when the stale holder writes
*before* the new holder does (A reads, pauses; B reads; A writes, its
token is still the newest the store saw; B writes over it).

So every operation here takes the lease (or its token):

* `read(key, lease)` **claims** the token for the key: the store records
  it as the highest seen and refuses a lower one, so from then on no older
  holder can write the key;
* `write(key, value, lease)` and `incr(key, amount, lease)` refuse a token
  below the highest seen for the key.

A refusal raises [StaleTokenError][scalekit.exceptions.StaleTokenError].
The rule for equal tokens: a `Lease` carries a random `owner`, which the
store records with the claim, so the same lease may read and write a key
any number of times while a *different* holder that somehow got the same
token (a lock server that lost its counter) is refused. A bare `int` token
has no owner: a read must then be the first with that token (`fence <
token`), and a write needs `fence <= token`.

Two implementations: [RedisFencedStore][scalekit.locking.fencing.RedisFencedStore]
(one Lua script per call; value and fence share a hash tag, so it works on
a Redis Cluster) and [SQLFencedStore][scalekit.locking.fencing.SQLFencedStore]
(a fence column in a table, for SQLite and PostgreSQL over any DB-API
connection).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from .._validation import positive_number
from ..exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    LockNotOwnedError,
    StaleTokenError,
)
from ._clients import check_dbapi, check_hash_tag, check_redis
from .base import _foreign
from .lease import Lease

if TYPE_CHECKING:
    from ._redis_calls import RedisCalls, Script

__all__ = ["RedisFencedStore", "SQLFencedStore"]

Token = Lease | int
"""What the stores accept as proof: a `Lease` (recommended) or its bare `int` token."""


# Every store keeps tokens and values as signed 64-bit integers (a SQL BIGINT, Redis's
# INCRBY range), so all of them accept exactly the same ones.
_INT64_MIN, _INT64_LIMIT = -(2**63), 2**63


def _token(token: Token, key: str = "") -> tuple[int, str]:
    """The fencing token and the owner recorded with a claim ('' for a bare int).

    A lease this process knows was released or lost is refused, and so is
    one acquired before this process was forked: the parent still holds
    it, and two writers with one token and one owner are one holder to the
    store.
    """
    if isinstance(token, Lease):
        # What this process knows of the lease is checked first, locally. A forked
        # child never owned its parent's lease (whatever the child's copy of it
        # says, lost or not); a write after the lease's `with` block, or after its
        # `on_lost`, is a write outside the critical section even when no newer
        # holder has fenced yet.
        if _foreign(token):
            raise LockNotOwnedError(
                f"lease {token.token} of {token.name!r} was acquired by the parent of this "
                "forked process; a fenced store accepts it only from the parent",
                token.name,
            )
        if token._released:
            raise LockNotOwnedError(
                f"lease {token.token} of {token.name!r} was released; a fenced store "
                "accepts only a held lease (acquire a new one)",
                token.name,
            )
        if token.lost.is_set():
            raise StaleTokenError(
                f"lease {token.token} of {token.name!r} was lost (its ttl passed or its "
                f"session ended); the store refused it for key {key!r} before sending "
                "anything: start over with a new lease",
                key,
                token.token,
                0,
            )
        number, owner = token.token, str(token.owner)
    else:
        number, owner = token, ""
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number < _INT64_LIMIT:
        raise ConfigurationError(
            "token must be a Lease or a positive integer fencing token below 2**63 (what "
            f"every fenced store keeps exactly), got {number!r}"
        )
    return int(number), owner


def _int64(name: str, value: Any) -> int:
    """*value*, if it is an integer every fenced store keeps exactly."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (_INT64_MIN <= value < _INT64_LIMIT)
    ):
        raise ConfigurationError(
            f"{name} must be an integer from -2**63 to 2**63 - 1 (what every fenced store "
            f"keeps exactly), got {value!r}"
        )
    return value


def _stale(key: str, token: int, fence: int) -> StaleTokenError:
    return StaleTokenError(
        f"fencing token {token} for key {key!r} is stale: the store has seen token {fence}; "
        "the lease was lost and a newer holder took over",
        key,
        token,
        fence,
    )


# The record of a change ends with this many hex digits of its digest.
_DIGEST = 16


def _record(number: int, owner: str, op: Any, change: str) -> str:
    """The record a change leaves with the fence: token, holder, operation id, digest.

    Without an *op*, a random one: such a change is never taken for a
    replay. The digest (of the change's kind and argument, *change*) tells a
    replay (same record) from another change that reuses the op id (same
    record but for the last `_DIGEST` characters).
    """
    if op is None:
        op = "~" + os.urandom(12).hex()
    elif not isinstance(op, str) or not op:
        raise ConfigurationError(f"op must be a non-empty string or None, got {op!r}")
    digest = hashlib.blake2b(change.encode(), digest_size=_DIGEST // 2).hexdigest()
    return f"{number}/{owner}/{op}#{digest}"


def _bounds(amount: int) -> tuple[int, int]:
    """The values an increment by *amount* may start from and stay in the signed 64-bit range."""
    if amount >= 0:
        return _INT64_MIN, _INT64_LIMIT - 1 - amount
    return _INT64_MIN - amount, _INT64_LIMIT - 1


def _overflow(key: str, current: Any, amount: int) -> ConfigurationError:
    return ConfigurationError(
        f"incr of {key!r} by {amount} would leave the signed 64-bit range (what every "
        f"fenced store keeps exactly): its value is {int(current)}; nothing was changed"
    )


def _reused(key: str, op: Any) -> ConfigurationError:
    return ConfigurationError(
        f"op {op!r} on key {key!r} was already used by this lease for another change "
        "(a different value or amount); an op id names one intended change, the same on "
        "every try of it; nothing was changed"
    )


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"key must be a non-empty string, got {key!r}")
    return key


# -- Redis ------------------------------------------------------------------------------

# Tokens are compared as decimal strings, exactly, whatever their size (a
# ZooKeeper czxid or a microsecond clock reading does not fit a Lua double
# exactly). KEYS[1] value, KEYS[2] fence hash {t = token, h = holder};
# ARGV[1] token, ARGV[2] holder ('' for a bare token). `admit(strict)` says
# whether the caller may go on; `strict` is true for a claim by a bare token.
_LUA_ADMIT = """
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local fence = redis.call('HGET', KEYS[2], 't') or '0'
local function admit(claim)
  if lt(ARGV[1], fence) then return false end
  if ARGV[1] == fence then
    local holder = redis.call('HGET', KEYS[2], 'h') or ''
    if holder ~= ARGV[2] then return false end
    if claim and ARGV[2] == '' then return false end
  end
  redis.call('HSET', KEYS[2], 't', ARGV[1], 'h', ARGV[2])
  return true
end
"""

# ARGV[4] of a change: its record, `<token>/<holder>/<operation id>`, kept in the
# fence hash ('o') by the last change. A change whose record is already there
# was applied (its reply was lost): it is not applied again, and since no
# change came after it, the key's value is its result.
_LUA_REPLAY = f"""
local last = redis.call('HGET', KEYS[2], 'o')
local function replayed() return last == ARGV[4] end
local function applied() redis.call('HSET', KEYS[2], 'o', ARGV[4]) end
local cut = #ARGV[4] - {_DIGEST}
local function reused()
  return last and last ~= ARGV[4] and last:sub(1, cut) == ARGV[4]:sub(1, cut)
end
"""

_READ = (
    _LUA_ADMIT
    + """
if not admit(true) then return {0, fence} end
return {1, redis.call('GET', KEYS[1])}
"""
)

# ARGV[3]: the value.
_WRITE = (
    _LUA_ADMIT
    + _LUA_REPLAY
    + """
if reused() then return {3, false} end
if not admit(false) then return {0, fence} end
if replayed() then return {1, false} end
redis.call('SET', KEYS[1], ARGV[3])
applied()
return {1, false}
"""
)

# ARGV[3]: the amount; ARGV[5], ARGV[6]: the lowest and highest value it may be
# added to without leaving the signed 64-bit range. The type and the range are
# checked first: Redis does not undo a script's writes when a later command of
# it fails.
_INCR = (
    _LUA_ADMIT
    + _LUA_REPLAY
    + """
local current = redis.call('GET', KEYS[1])
if current and not string.match(current, '^%-?%d+$') then
  return redis.error_reply('ERR value of ' .. KEYS[1] .. ' is not an integer')
end
if reused() then return {3, false} end
local function slt(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if na then return lt(b:sub(2), a:sub(2)) end
  return lt(a, b)
end
local now = current or '0'
if not replayed() and (slt(now, ARGV[5]) or slt(ARGV[6], now)) then return {2, now} end
if not admit(false) then return {0, fence} end
if replayed() then return {1, redis.call('GET', KEYS[1])} end
-- INCRBY's integer reply would reach Lua as a double, inexact past 2**53: the
-- new value goes back as the string GET returns.
redis.call('INCRBY', KEYS[1], ARGV[3])
applied()
return {1, redis.call('GET', KEYS[1])}
"""
)


class RedisFencedStore:
    """Keys in Redis that only the newest lock holder may read-modify-write.

    Each key is stored as a string value `<namespace>{<key>}` beside a
    small hash `<namespace>{<key>}:fence` with the highest token seen and
    the owner of the lease that carried it. Both names share the hash tag
    `{<key>}`, so on a Redis Cluster they live in one slot and one script
    checks and writes them atomically. The fence keys never expire: run
    the server with a `noeviction` or `volatile-*` maxmemory policy and
    with persistence (AOF), or a restart forgets the fences and a stale
    holder is accepted again.

    Args:
        client: a `redis.Redis` or `redis.cluster.RedisCluster` you
            configured. A `redis.Redis` is used through a private pool
            with retries off, so every call is bounded by `op_timeout`;
            a cluster client is bounded by its own timeouts.
        namespace: the prefix of every key the store writes.
        op_timeout: the most one call may take before
            `BackendUnavailableError`.

    Raises:
        ConfigurationError: an empty `namespace`, or `op_timeout` <= 0.
        ArgumentTypeError: `client` is not a synchronous redis-py client.

    Example:
        ```python
        store = RedisFencedStore(redis_client)
        with lock.acquire(timeout=5) as lease:
            stock = int(store.read("stock:42", lease) or 0)
            store.write("stock:42", stock - 1, lease)
        ```

    Thread-safe. Cost: one round trip (one short Lua script) per call.
    """

    def __init__(
        self, client: Any, *, namespace: str = "scalekit:fenced:", op_timeout: float = 2.0
    ) -> None:
        try:
            from ._redis_calls import RedisCalls, Script
        except ModuleNotFoundError as exc:
            from .._lazy import missing_driver

            raise missing_driver("scalekit.locking.RedisFencedStore", exc) from exc

        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"namespace must be a non-empty string, got {namespace!r}")
        check_hash_tag("namespace", namespace, namespace + "{key}")
        self.namespace = namespace
        self.op_timeout = positive_number("op_timeout", op_timeout)
        self._calls: RedisCalls = RedisCalls(check_redis("client", client), self.op_timeout)
        self._read: Script = Script(_READ)
        self._write: Script = Script(_WRITE)
        self._incr: Script = Script(_INCR)

    def keys(self, key: str) -> tuple[str, str]:
        """The Redis keys of *key*: its value and its fence hash (one hash tag)."""
        base = f"{self.namespace}{{{_key(key)}}}"
        check_hash_tag("key", key, base)
        return base, base + ":fence"

    def _run(self, script: Script, key: str, token: Token, *extra: Any, op: Any = None) -> Any:
        number, owner = _token(token, key)
        granted, value = self._calls.script(
            script, list(self.keys(key)), [str(number), owner, *extra]
        )
        if int(granted) == 2:
            raise _overflow(key, value, extra[0])
        if int(granted) == 3:
            raise _reused(key, op)
        if int(granted) != 1:
            raise _stale(key, number, int(value))
        return value

    def read(self, key: str, token: Token) -> bytes | None:
        """Claim *token* for *key* and return the key's value (None if unset).

        Raises:
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token (or the same token from another
                lease) was seen for *key*; nothing was read.
            BackendUnavailableError: Redis did not answer within `op_timeout`.
        """
        value = self._run(self._read, key, token)
        return None if value is None else bytes(value)

    def write(self, key: str, value: int, token: Token, *, op: str | None = None) -> None:
        """Set *key* to *value* unless a newer token was seen for it.

        Args:
            key: the key.
            value: the new value, a signed 64-bit integer.
            token: the lease (or its bare token).
            op: an operation id, the same on every try of one intended
                change (see `incr`).

        Raises:
            ConfigurationError: *value* is not an integer of the signed
                64-bit range, *token* is not a token below 2**63, or *op*
                is not a non-empty string (nothing was sent); or *op* was
                this lease's last change of *key* with another value
                (nothing was written).
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token was seen; nothing was written.
            BackendUnavailableError: Redis did not answer within `op_timeout`;
                the write may or may not have happened.
        """
        number = _token(token, key)
        value = _int64("value", value)
        record = _record(*number, op, f"write {value}")
        self._run(self._write, key, token, value, record, op=op)

    def incr(self, key: str, amount: int, token: Token, *, op: str | None = None) -> int:
        """Add *amount* to the integer at *key* (unset counts as 0); return the new value.

        Args:
            key: the key.
            amount: what to add, a signed 64-bit integer.
            token: the lease (or its bare token).
            op: an operation id (any non-empty string, e.g. a `uuid4()`
                made before the first try), the same on every try of one
                intended change. A call whose reply was lost raises
                `BackendUnavailableError` although Redis may have applied
                it; tried again with the same *op* and token it is not
                applied twice: it returns the first try's result. The store
                remembers the last change per key, so retry before making
                another change to the key. Without *op* a retry may apply
                the increment twice.

        Returns:
            The new value.

        Raises:
            ConfigurationError: *amount* out of the signed 64-bit range, or
                *op* not a non-empty string (nothing was sent); or the sum
                would leave that range, or *op* was this lease's last
                change of *key* with another value or amount (nothing
                changed, the fence included).
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token was seen; nothing changed.
            BackendError: the value at *key* is not an integer.
            BackendUnavailableError: Redis did not answer within `op_timeout`;
                the increment may or may not have happened (retry with the
                same *op*).
        """
        number = _token(token, key)
        amount = _int64("amount", amount)
        record = _record(*number, op, f"incr {amount}")
        low, high = _bounds(amount)
        return int(self._run(self._incr, key, token, amount, record, low, high, op=op))

    def fence(self, key: str) -> int:
        """The highest token the store has seen for *key* (0 if none). One round trip."""
        raw = self._calls.call("HGET", self.keys(key)[1], "t")
        return 0 if raw is None else int(raw)

    def get(self, key: str) -> bytes | None:
        """Read *key* without a token, for reports and checks, never for a read-modify-write."""
        raw = self._calls.call("GET", self.keys(key)[0])
        return None if raw is None else bytes(raw)


# -- SQL --------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAMSTYLE = {"sqlite": "?", "postgresql": "%s"}


def _identifier(name: str, value: Any, *, dotted: bool = False) -> str:
    parts = value.split(".") if isinstance(value, str) and dotted else [value]
    if not all(isinstance(p, str) and _IDENTIFIER.fullmatch(p) for p in parts) or len(parts) > 2:
        raise ConfigurationError(
            f"{name} must be a plain SQL identifier (letters, digits, underscores"
            f"{'; schema.table allowed' if dotted else ''}), got {value!r}"
        )
    return ".".join(f'"{p}"' for p in parts)


class SQLFencedStore:
    """The fenced read-modify-write pattern on a SQL table (SQLite or PostgreSQL).

    A row holds a key, its value, a `fence` column (the highest token seen)
    and a `holder` column (the owner of the lease that carried it). Every
    statement checks the fence in its own `WHERE` clause, so the check and
    the change are one atomic statement:

    * read: `UPDATE t SET fence = :token, holder = :owner WHERE key = :key
      AND (fence < :token OR (fence = :token AND holder = :owner AND holder
      <> '')) RETURNING value`: the claim. Strict for a bare token, so two
      holders with equal tokens cannot both pass;
    * write / incr: the same condition with `fence = :token AND holder =
      :owner` (a bare token may thus write after its own claim);
    * a key without a row is inserted by an `INSERT ... ON CONFLICT (key)
      DO UPDATE ... WHERE <the same condition>`, so a claim on a missing
      key fences too.

    `statements` holds the SQL text, to copy into code that cannot use this
    class. Point it at an existing table with the column arguments (its
    other columns need defaults for inserts of new keys); with
    `holder_column=None` the table needs no holder column and every token
    is treated as bare.

    Args:
        connection: a DB-API 2 connection (`sqlite3`, `psycopg`, `pg8000`).
        dialect: `"sqlite"` (qmark parameters) or `"postgresql"` (`%s`).
        table: the table, optionally `schema.table`.
        key_column: the column of the key (its primary key or unique).
        value_column: the column of the value (an integer for `incr`).
        fence_column: the column of the highest token seen (`BIGINT`,
            default 0).
        holder_column: the column of the claiming lease's owner (text,
            default `''`), or None.
        op_column: the column of the last change's record (text, default
            `''`: its token, holder and operation id, see `incr`), or None
            for a table without one (then `op=` is refused).
        commit: commit after each call (and roll back on an error). Pass
            False to run the calls inside your own transaction.

    Raises:
        ConfigurationError: an unknown `dialect`, or a table or column name
            that is not a plain identifier.
        ArgumentTypeError: `connection` is not a DB-API 2 connection.

    Not thread-safe (a DB-API connection is not): one store per
    connection. Time bounds are the connection's (set a
    `statement_timeout` on PostgreSQL, `timeout=` on SQLite). Cost: one
    statement per call; three for a key that has no row yet or a refused
    token (a read of the fence, then the insert or the conditional
    statement again), and one more to read the fence for the error.
    """

    def __init__(
        self,
        connection: Any,
        *,
        dialect: str = "sqlite",
        table: str = "scalekit_fenced",
        key_column: str = "key",
        value_column: str = "value",
        fence_column: str = "fence",
        holder_column: str | None = "holder",
        op_column: str | None = "op",
        commit: bool = True,
    ) -> None:
        if dialect not in _PARAMSTYLE:
            raise ConfigurationError(
                f"dialect must be one of {sorted(_PARAMSTYLE)}, got {dialect!r}"
            )
        self.connection = check_dbapi("connection", connection)
        self.dialect = dialect
        self.commit = bool(commit)
        self.statements = _statements(
            dialect,
            _identifier("table", table, dotted=True),
            _identifier("key_column", key_column),
            _identifier("value_column", value_column),
            _identifier("fence_column", fence_column),
            None if holder_column is None else _identifier("holder_column", holder_column),
            None if op_column is None else _identifier("op_column", op_column),
        )
        self._holders = holder_column is not None
        self._ops = op_column is not None
        self._op_column = op_column
        self._unavailable = _unavailable_errors(connection)
        self._table = table

    def create_table(self) -> None:
        """Create the table if it does not exist, and add the `op` column if it lacks one.

        A table made before the store recorded operation ids (key, value,
        fence and holder only) gets the column, `TEXT NOT NULL DEFAULT ''`,
        by an `ALTER TABLE`; its rows are kept.
        """
        self._execute("create", ())
        if self._ops:
            table = self.statements["create"].split()[5]
            columns = self._execute("columns", (), f"SELECT * FROM {table} LIMIT 0", True)
            if self._op_column not in columns:
                add = (
                    f"ALTER TABLE {table} ADD COLUMN \"{self._op_column}\" TEXT NOT NULL DEFAULT ''"
                )
                self._execute("column", (), add)
        self._commit("create")

    def _params(
        self, name: str, key: str, number: int, owner: str, value: Any, record: str = ""
    ) -> tuple[Any, ...]:
        """Parameters of statement *name*, in the order its placeholders appear."""
        ops = self._ops
        guard: tuple[Any, ...] = ()
        prefix = record[:-_DIGEST]
        if name in ("write", "incr"):
            guard = (prefix, prefix, record) if ops else ()
        if name in ("insert_write", "insert_incr"):
            guard = (prefix, prefix) if ops else ()
        if name.endswith("incr"):
            guard = (*guard, *((record,) if ops and name == "incr" else ()), *_bounds(value))
        if name.startswith("insert"):
            row: tuple[Any, ...] = (key, value, number)
            row = (*row, owner) if self._holders else row
            row = (*row, record) if ops else row  # a claim's new row: record ''
            return (*row, *guard)

        if name == "claim":
            head: tuple[Any, ...] = (number, owner) if self._holders else (number,)
        else:
            owned = (number, owner) if self._holders else (number,)
            head = (record, value, *owned, record) if ops else (value, *owned)
        check = (number, number, owner) if self._holders else (number,)
        return (*head, key, *check, *guard)

    def _execute(
        self, name: str, params: tuple[Any, ...], sql: str | None = None, names: bool = False
    ) -> Any:
        """One statement's first row (or, with *names*, its column names)."""
        try:
            cursor = self.connection.cursor()
            try:
                cursor.execute(self.statements[name] if sql is None else sql, params)
                if names:
                    return [d[0] for d in cursor.description or ()]
                row = cursor.fetchone() if cursor.description is not None else None
            finally:
                cursor.close()
        except self._unavailable as exc:
            raise BackendUnavailableError(
                f"{_DIALECT_NAMES[self.dialect]} did not run the fenced {name} on "
                f"table {self._table}: {exc}"
            ) from exc
        except Exception as exc:
            if _busy(exc):
                raise BackendUnavailableError(
                    f"{_DIALECT_NAMES[self.dialect]} did not run the fenced {name} on "
                    f"table {self._table} within the connection's timeout: {exc}"
                ) from exc
            if self._missing_op(exc):
                raise ConfigurationError(
                    f"table {self._table} has no column {self._op_column!r} (the op_column, "
                    "where each change records its operation id): call create_table() once "
                    "to add it, or pass op_column=None"
                ) from exc
            raise
        return row

    def _missing_op(self, exc: Exception) -> bool:
        """Whether *exc* is the driver's "no such column" for the op column."""
        if not self._ops:
            return False
        text = str(exc)
        if getattr(exc, "sqlstate", None) == "42703":  # PostgreSQL's undefined_column
            return str(self._op_column) in text
        return str(self._op_column) in text and (
            "no such column" in text or "has no column named" in text
        )

    def _fenced(self, op: str, key: str, token: Token, value: Any, change: Any = None) -> Any:
        key = _key(key)
        number, owner = _token(token, key)
        record = ""
        if op != "claim":
            if change is not None and not self._ops:
                raise ConfigurationError(
                    f"op={change!r} needs an operation id column; this store was made "
                    "with op_column=None"
                )
            record = _record(number, owner, change, f"{op} {value}")
        try:
            row = self._execute(op, self._params(op, key, number, owner, value, record))
            if row is None:
                existing = self._execute("fence", (key,))
                if existing is None:
                    insert = f"insert_{op}"
                    params = self._params(insert, key, number, owner, value, record)
                    row = self._execute(insert, params)
                else:
                    # Under READ COMMITTED the UPDATE may have run before another client's
                    # insert of the row committed, which this read now sees: decide again
                    # on that row (a row once committed stays), so the newest token is
                    # never refused.
                    row = self._execute(op, self._params(op, key, number, owner, value, record))
                if row is None:
                    self._refused(op, key, number, value, record, change)
        except BaseException:
            if self.commit:
                # A lost connection took the transaction with it.
                with contextlib.suppress(*self._unavailable):
                    self.connection.rollback()
            raise
        self._commit("commit")
        return row[0]

    def _refused(
        self, op: str, key: str, number: int, value: Any, record: str, change: Any
    ) -> None:
        """Raise why the change of *key* was refused: a reused op, an overflow, a stale token."""
        if op != "claim":
            last = self._execute("last", (key,))
            if last is not None:
                if self._ops and last[1] != record and last[1][:-_DIGEST] == record[:-_DIGEST]:
                    raise _reused(key, change)
                low, high = _bounds(value)
                if op == "incr" and last[1] != record and not low <= (last[0] or 0) <= high:
                    raise _overflow(key, last[0], value)
        current = self._execute("fence", (key,))
        raise _stale(key, number, 0 if current is None else int(current[0]))

    def _commit(self, what: str) -> None:
        """Commit (when the store commits); a lost connection: the change may or may not stand."""
        if not self.commit:
            return
        try:
            self.connection.commit()
        except self._unavailable as exc:
            raise BackendUnavailableError(
                f"{_DIALECT_NAMES[self.dialect]} did not confirm the {what} on table "
                f"{self._table}; it may or may not have happened: {exc}"
            ) from exc
        except Exception as exc:
            if not _busy(exc):
                raise
            raise BackendUnavailableError(
                f"{_DIALECT_NAMES[self.dialect]} did not commit the {what} on table "
                f"{self._table} within the connection's timeout: {exc}"
            ) from exc

    def read(self, key: str, token: Token) -> Any:
        """Claim *token* for *key* and return its value (None for a new key).

        Raises:
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token (or, for a bare token, the same
                one) was seen for *key*; nothing changed.
            BackendUnavailableError: the connection failed or a statement
                timed out (the driver's `OperationalError` or
                `InterfaceError`, kept as `__cause__`; on SQLite, its busy
                timeout: "database is locked"); open a new connection.
        """
        return self._fenced("claim", key, token, None)

    def write(self, key: str, value: int, token: Token, *, op: str | None = None) -> None:
        """Set *key* to *value* unless a newer token was seen for it.

        Args:
            key: the key.
            value: the new value, a signed 64-bit integer.
            token: the lease (or its bare token).
            op: an operation id, the same on every try of one intended
                change (see `incr`).

        Raises:
            ConfigurationError: *value* is not an integer of the signed
                64-bit range, *token* is not a token below 2**63, or *op* is
                not a non-empty string (or the store has no `op_column`);
                nothing was written. Also when *op* was this lease's last
                change of *key* with another value.
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token was seen; nothing was written.
            BackendUnavailableError: the connection failed (see `read`); the
                write may or may not have been committed.
        """
        self._fenced("write", key, token, _int64("value", value), op)

    def incr(self, key: str, amount: int, token: Token, *, op: str | None = None) -> int:
        """Add *amount* to the integer value of *key* (a missing or NULL value counts as 0).

        Args:
            key: the key.
            amount: what to add, a signed 64-bit integer.
            token: the lease (or its bare token).
            op: an operation id (any non-empty string, e.g. a `uuid4()`
                made before the first try), the same on every try of one
                intended change. A commit whose reply was lost raises
                `BackendUnavailableError` although the database may have
                committed it; tried again (on a new connection) with the
                same *op* and token, it is not applied twice: it returns
                the first try's result. The row remembers its last change
                only, so retry before making another change to the key.
                Without *op* a retry may apply the increment twice.

        Returns:
            The new value.

        Raises:
            ConfigurationError: *amount* out of the signed 64-bit range, or
                *op* not a non-empty string (or the store has no
                `op_column`): nothing was sent; or the sum would leave that
                range, or *op* was this lease's last change of *key* with
                another value or amount: nothing changed.
            LockNotOwnedError: *token* is a lease acquired before this
                process forked (the parent's); nothing was sent.
            StaleTokenError: a higher token was seen; nothing changed.
            BackendUnavailableError: the connection failed (see `read`); the
                increment may or may not have been committed (retry with
                the same *op*).
        """
        return int(self._fenced("incr", key, token, _int64("amount", amount), op))

    def fence(self, key: str) -> int:
        """The highest token seen for *key* (0 if it has no row)."""
        row = self._execute("fence", (_key(key),))
        self._commit("read")
        return 0 if row is None else int(row[0])

    def get(self, key: str) -> Any:
        """Read *key* without a token, for reports and checks, never for a read-modify-write."""
        row = self._execute("get", (_key(key),))
        self._commit("read")
        return None if row is None else row[0]


_DIALECT_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _busy(exc: BaseException) -> bool:
    """Whether *exc* is SQLite's busy timeout (another connection holds the lock)."""
    sqlite3 = sys.modules.get("sqlite3")
    return (
        sqlite3 is not None
        and isinstance(exc, sqlite3.OperationalError)
        and str(exc) in ("database is locked", "database table is locked")
    )


def _unavailable_errors(connection: Any) -> tuple[type[BaseException], ...]:
    """The driver's errors that mean "the database is not there", not "the SQL is wrong".

    A DB-API 2 module's `OperationalError` (connection lost, server shut
    down, statement timeout) and `InterfaceError` (connection closed).
    None for `sqlite3`: a local file has no connection to lose, and its
    `OperationalError` also means a missing table or bad SQL.
    """
    module = sys.modules.get(type(connection).__module__.split(".")[0])
    if module is None or module.__name__ == "sqlite3":
        return ()
    found = [getattr(module, n, None) for n in ("OperationalError", "InterfaceError")]
    return tuple(e for e in found if isinstance(e, type) and issubclass(e, BaseException))


def _statements(
    dialect: str,
    table: str,
    key: str,
    value: str,
    fence: str,
    holder: str | None,
    op: str | None = None,
) -> dict[str, str]:
    """The SQL text of every statement of an `SQLFencedStore`, by name.

    With an *op* column, a change records `<token>/<holder>/<operation id>`
    there, and a change whose record is already in the row (its reply was
    lost; see `SQLFencedStore.incr`) leaves the value as it is.
    """
    p = _PARAMSTYLE[dialect]
    text = "TEXT"
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    new_value = {"write": p, "incr": f"COALESCE({value}, 0) + {p}"}
    new_excluded = {
        "write": f"excluded.{value}",
        "incr": f"COALESCE(cur.{value}, 0) + excluded.{value}",
    }
    if op is not None:
        set_value = {
            k: f"{value} = CASE WHEN {op} = {p} THEN {value} ELSE {v} END"
            for k, v in new_value.items()
        }
        up_value = {
            k: f"{value} = CASE WHEN cur.{op} = excluded.{op} THEN cur.{value} ELSE {v} END"
            for k, v in new_excluded.items()
        }
        set_op, up_op, op_col, op_row = (
            f", {op} = {p}",
            f", {op} = excluded.{op}",
            f", {op}",
            f", {p}",
        )
        op_ddl = f", {op} {text} NOT NULL DEFAULT ''"
    else:
        set_value = {k: f"{value} = {v}" for k, v in new_value.items()}
        up_value = {k: f"{value} = {v}" for k, v in new_excluded.items()}
        set_op = up_op = op_col = op_row = op_ddl = ""
    if holder is None:
        claim_ok = f"{fence} < {p}"
        write_ok = f"{fence} <= {p}"
        set_claim = f"{fence} = {p}"
        set_owner = f"{fence} = {p}"
        columns = f"{key}, {value}, {fence}"
        row = f"{p}, {p}, {p}"
        up_claim = f"{fence} = excluded.{fence}"
        up_cond_claim = f"cur.{fence} < excluded.{fence}"
        up_cond_write = f"cur.{fence} <= excluded.{fence}"
        holder_ddl = ""
    else:
        claim_ok = f"({fence} < {p} OR ({fence} = {p} AND {holder} = {p} AND {holder} <> ''))"
        write_ok = f"({fence} < {p} OR ({fence} = {p} AND {holder} = {p}))"
        set_claim = f"{fence} = {p}, {holder} = {p}"
        set_owner = f"{fence} = {p}, {holder} = {p}"
        columns = f"{key}, {value}, {fence}, {holder}"
        row = f"{p}, {p}, {p}, {p}"
        up_claim = f"{fence} = excluded.{fence}, {holder} = excluded.{holder}"
        up_cond_claim = (
            f"cur.{fence} < excluded.{fence} OR (cur.{fence} = excluded.{fence}"
            f" AND cur.{holder} = excluded.{holder} AND cur.{holder} <> '')"
        )
        up_cond_write = (
            f"cur.{fence} < excluded.{fence} OR (cur.{fence} = excluded.{fence}"
            f" AND cur.{holder} = excluded.{holder})"
        )
        holder_ddl = f", {holder} {text} NOT NULL DEFAULT ''"
    # A change refused before anything is written: an op id this lease already used
    # for another change (the last record has the same prefix, `_record`), and an
    # increment that would leave the signed 64-bit range (SQLite would turn the
    # sum into a REAL): parameters prefix, prefix, record; record, low, high.
    if op is not None:
        same = f"substr({{c}}{op}, 1, length(CAST({p} AS {text}))) = {p}"
        guard_write = f" AND NOT ({same.format(c='')} AND {op} <> {p})"
        up_guard_write = f" AND NOT ({same.format(c='cur.')} AND cur.{op} <> excluded.{op})"
        guard_incr = f"{guard_write} AND ({op} = {p} OR COALESCE({value}, 0) BETWEEN {p} AND {p})"
        up_guard_incr = (
            f"{up_guard_write} AND (cur.{op} = excluded.{op}"
            f" OR COALESCE(cur.{value}, 0) BETWEEN {p} AND {p})"
        )
    else:
        guard_write = up_guard_write = ""
        guard_incr = f" AND COALESCE({value}, 0) BETWEEN {p} AND {p}"
        up_guard_incr = f" AND COALESCE(cur.{value}, 0) BETWEEN {p} AND {p}"
    set_write = f"{set_value['write']}, {set_owner}{set_op}"
    set_incr = f"{set_value['incr']}, {set_owner}{set_op}"
    up_write = f"{up_value['write']}, {up_claim}{up_op}"
    up_incr = f"{up_value['incr']}, {up_claim}{up_op}"
    insert = (
        f"INSERT INTO {table} AS cur ({columns}{op_col}) VALUES ({row}{op_row}) "
        f"ON CONFLICT ({key}) DO UPDATE"
    )
    update = f"UPDATE {table} SET"
    return {
        "create": (
            f"CREATE TABLE IF NOT EXISTS {table} ({key} {text} PRIMARY KEY, {value} {big}, "
            f"{fence} {big} NOT NULL DEFAULT 0{holder_ddl}{op_ddl})"
        ),
        "claim": f"{update} {set_claim} WHERE {key} = {p} AND {claim_ok} RETURNING {value}",
        "write": (
            f"{update} {set_write} WHERE {key} = {p} AND {write_ok}{guard_write} RETURNING {fence}"
        ),
        "incr": (
            f"{update} {set_incr} WHERE {key} = {p} AND {write_ok}{guard_incr} RETURNING {value}"
        ),
        "insert_claim": f"{insert} SET {up_claim} WHERE {up_cond_claim} RETURNING {value}",
        "insert_write": (
            f"{insert} SET {up_write} WHERE ({up_cond_write}){up_guard_write} RETURNING {fence}"
        ),
        "insert_incr": (
            f"{insert} SET {up_incr} WHERE ({up_cond_write}){up_guard_incr} RETURNING {value}"
        ),
        "fence": f"SELECT {fence} FROM {table} WHERE {key} = {p}",
        "last": f"SELECT {value}, {op or repr('')} FROM {table} WHERE {key} = {p}",
        "get": f"SELECT {value} FROM {table} WHERE {key} = {p}",
    }
