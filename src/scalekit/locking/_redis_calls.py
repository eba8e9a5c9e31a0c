"""Bounded-time Redis calls for the Redis locks (imports redis; only backends import this).

redis-py's defaults retry a failed connect three times with exponential
back-off and read without a timeout, which turns an unreachable server
into a wait of a minute or forever. The locks therefore run their scripts
on a private connection pool carrying the client's settings (host, TLS,
ACL, database, `max_connections`) with retries off, and every call
bounded by its own budget: the caller's `op_timeout`, or less when the
caller's own deadline is nearer. A `RedisCluster` client is called through
its own `execute_command` under the same budget, enforced as a deadline
(`scalekit._redis_deadline`): its retries and slot-map re-reads that
cannot fit are not started, and sockets still busy at the deadline are cut.

An acquire request also carries its deadline on the server's clock, so
that a request delivered after its caller gave up takes nothing (see
`LUA_GONE`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import (
        ClusterDownError,
        NoScriptError,
        OutOfMemoryError,
        ReadOnlyError,
        RedisClusterException,
        RedisError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .._redis_deadline import DeadlineExceeded, call_with_deadline, note, watch_cluster
from ..exceptions import BackendError, BackendUnavailableError

__all__ = [
    "LATE_SLACK",
    "LUA_GONE",
    "LUA_NEXT_TOKEN",
    "LUA_NOW_MS",
    "LUA_REFUSE_LATE",
    "RedisCalls",
    "Script",
    "ServerClock",
    "is_transient",
    "lua_purge",
]


# Lua pieces the lock scripts share. The server's clock, in milliseconds,
# so every client of a lock agrees on deadlines whatever its own clock says.
LUA_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end"""


# The next fencing token from the counter in KEYS[2]: the larger of the
# counter + 1 and the server's clock in microseconds. A counter that is
# missing (first use, evicted, a restart without persistence) or stale (a
# crash-restart that loaded an older RDB snapshot or AOF) thus resumes above
# every token issued before, as long as the server's clock did not go back:
# one server cannot issue more than one token per microsecond, so no token
# ever gets ahead of the clock reading of the grant that issued it.
LUA_NEXT_TOKEN = """
local function next_token()
  local token = redis.call('INCR', KEYS[2])
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if token < us then
    redis.call('SET', KEYS[2], string.format('%d', us))
    return us
  end
  return token
end"""


LATE_SLACK = 0.05
"""Seconds added to a request's deadline on the server (see `LUA_GONE`)."""

# How often the offset between this host's monotonic clock and a server's
# clock is measured again (one TIME round trip), so that a slow drift of
# the server's clock (NTP slewing) cannot make a request look late.
_RECALIBRATE = 30.0

# Every acquire request carries, as its last argument, its deadline on the
# server's clock (ms): the end of the caller's wait for its reply, plus
# LATE_SLACK. The acquire script refuses a request that runs after it (a
# `LATE` error reply, which only a live caller reads), so a request held up
# by the network (TCP delivers it once a partition heals, however long
# that took) takes nothing once its caller has stopped waiting. Between the
# caller giving up and that deadline, the attempt's clean-up leaves a
# marker: its owner token in the zset `KEYS[1]:gone` (in the lock's
# hash-tag slot), scored by the last deadline of the attempt's requests
# (the clean-up's own last argument), which the acquire script also
# refuses. Every clean-up drops the entries past their score before it adds
# its own, and the zset expires with its last entry, so the markers a burst of
# timed-out acquires leaves last no longer than their requests' deadlines
# (about `op_timeout`). Deadlines and markers are both read on the server's
# clock, so a wrong estimate of its offset can only refuse a request that
# was on time (the caller then measures the offset again and retries), never
# let a late one through. Owner tokens are random per attempt, so no live
# attempt is ever marked.
LUA_GONE = """
local gone_clock = nil
-- The server's clock (ms), read once per script run (a script runs atomically).
local function gone_now()
  if not gone_clock then
    local t = redis.call('TIME')
    gone_clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return gone_clock
end
local function gone_key() return KEYS[1] .. ':gone' end
-- A request that runs after its deadline (the last argument).
local function is_late() return gone_now() > tonumber(ARGV[#ARGV]) end
-- Drop the markers whose requests are all past their deadline (score < now: a
-- request at its deadline is still on time).
local function prune_gone(now) redis.call('ZREMRANGEBYSCORE', gone_key(), '-inf', '(' .. now) end
-- A request of an attempt whose clean-up ran (and whose marker has not run out).
local function is_gone(who)
  local until_ms = redis.call('ZSCORE', gone_key(), who)
  return until_ms ~= false and tonumber(until_ms) >= gone_now()
end
-- The clean-up: mark *who* gone until *until_ms* (default: the last argument), its
-- requests' last deadline. The zset lives while now <= its last score (Redis
-- expires a key once now > its time).
local function mark_gone(who, until_ms)
  local now, last = gone_now(), tonumber(until_ms or ARGV[#ARGV])
  prune_gone(now)
  if last >= now then
    redis.call('ZADD', gone_key(), 'GT', last, who)
    local top = redis.call('ZRANGE', gone_key(), -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', gone_key(), tonumber(top[2]))
  end
end"""

LATE_REPLY = "LATE"
"""The prefix of the error reply to a request that ran after its deadline."""

LUA_REFUSE_LATE = f"""
if is_late() then
  return redis.error_reply('{LATE_REPLY} request ran after its deadline on the server clock')
end"""


def lua_purge(leases: int, tokens: int) -> str:
    """A Lua `purge(now)` that drops the leases in `KEYS[leases]` (a zset
    scored by deadline) that ended by *now*, and their `KEYS[tokens]` entries."""
    return f"""
local function purge(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[{leases}], '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[{leases}], '-inf', now)
    redis.call('HDEL', KEYS[{tokens}], unpack(gone))
  end
end"""


# Error replies of a server that will serve again soon: a script running past
# busy-reply-threshold, a replica loading, a cluster slot moving or down; and
# of one that refuses writes until an operator acts: memory full under
# noeviction (OOM), a master demoted to a replica (READONLY), a failed
# background save with stop-writes-on-bgsave-error (MISCONF); and a client
# blocked in BLPOP when its master was made a replica (UNBLOCKED).
_TRANSIENT_REPLIES = (
    "BUSY",
    "LOADING",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "OOM",
    "READONLY",
    "MISCONF",
    "UNBLOCKED",
)


def is_transient(exc: BaseException) -> bool:
    """True for an error reply that says "not now" rather than "never".

    redis-py's cluster client raises `ClusterDownError` with its own text
    ("The cluster is down"), without the server's `CLUSTERDOWN` prefix, and
    redis-py drops the `OOM` and `READONLY` prefixes from its own classes'
    messages.
    """
    if isinstance(exc, ClusterDownError | OutOfMemoryError | ReadOnlyError):
        return True
    return str(exc).startswith(_TRANSIENT_REPLIES)


class Script:
    """A Lua script and its SHA1, run with EVALSHA and loaded on NOSCRIPT.

    The source starts with a `#!lua` shebang (Redis 7.0 or later), so the
    server reads the script's flags before running it: a script that may
    write is refused as a whole when memory is full under `noeviction`
    (`OOM`), before it runs. Without a shebang Redis refuses only a
    script's first write, and after a first write that needs no memory (a
    prune, an `LPOP`) lets every later one through, past the limit.
    *flags* relax that: `allow-oom` for a clean-up that adds (almost)
    nothing (a release, an extension), `no-writes` for a read.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str, flags: str = "") -> None:
        head = "#!lua flags=" + flags if flags else "#!lua"
        self.source = head + "\n" + source.lstrip("\n")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


# A script that reads the clock of the server holding KEYS[1] (a cluster routes it there).
TIME_SCRIPT = Script("return redis.call('TIME')", "no-writes")


class ServerClock:
    """The offset between this host's monotonic clock and one server's clock, in ms.

    Measured with a TIME request: the server's reading minus the local
    reading taken before the request went out. The server read its clock
    after that, so the offset is overestimated by at most the round trip,
    and a deadline converted with it lies on the server at or after the
    local one. Measured again after `_RECALIBRATE` seconds, or when a
    server refused a request as late that came back in time (its clock
    stepped forward).
    """

    __slots__ = ("measured", "offset_ms", "rtt_ms")

    def __init__(self) -> None:
        self.offset_ms = 0
        self.measured = float("-inf")
        # The measurement's round trip: the most the offset is overestimated by.
        self.rtt_ms = 0

    def stale(self) -> bool:
        return time.monotonic() - self.measured > _RECALIBRATE

    def note(self, sent: float, reply: Any) -> None:
        server_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000 + 1
        self.offset_ms = server_ms - int(sent * 1000)
        self.rtt_ms = int((time.monotonic() - sent) * 1000) + 1
        self.measured = sent

    def deadline_ms(self, end: float) -> int:
        """The server-clock deadline (ms) of a request whose caller waits until *end*."""
        return int((end + LATE_SLACK) * 1000) + 1 + self.offset_ms


_CLOCKS: weakref.WeakKeyDictionary[Any, ServerClock] = weakref.WeakKeyDictionary()
_CLOCKS_LOCK = threading.Lock()


def server_clock(client: Any) -> ServerClock:
    """The `ServerClock` of *client*'s server, shared by every lock on that client."""
    with _CLOCKS_LOCK:
        clock = _CLOCKS.get(client)
        if clock is None:
            clock = _CLOCKS[client] = ServerClock()
        return clock


class _Late(BackendUnavailableError):
    """The server refused a request as run after its deadline (caught by `RedisCalls.script`)."""


_ALL_POOLS: weakref.WeakSet[_Pool] = weakref.WeakSet()


class _Pool:
    """The lock's own connections to one server, built from the client's pool settings.

    Every setting of the client's pool is carried over (host, port, unix
    socket, database, TLS, username/password or credential provider,
    keep-alive, client name, protocol, and `max_connections`; with a
    `BlockingConnectionPool` also its cap on the wait for a free
    connection), except the socket timeouts and retries: each call sets its
    connection's timeouts from its own budget and is tried once, so no call
    outlasts it. A call waits for a free connection within its budget.

    Waiters listening on their wake lists (`listening=True`) hold a
    connection as long as they listen, so they may hold at most
    `max_connections - 1`: one connection is always left to the short
    calls (a holder's release or extend), which hold theirs for one round
    trip.

    Thread-safe. Cost: O(1) to take or give back a connection.
    """

    def __init__(self, source: Any) -> None:
        kwargs = dict(source.connection_kwargs)
        kwargs.update(
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            retry_on_timeout=False,
            decode_responses=False,
            health_check_interval=0,
        )
        self.connection_kwargs = kwargs
        self.connection_class = source.connection_class
        self.max_connections = int(getattr(source, "max_connections", 2**31) or 2**31)
        # A BlockingConnectionPool waits for a free connection (None: as long as it
        # takes, here capped by the call's budget); a plain pool does not.
        self.wait_for_free = float("inf")
        if isinstance(source, redis.BlockingConnectionPool) and source.timeout is not None:
            self.wait_for_free = float(source.timeout)
        self._cond = threading.Condition()
        self._free: list[Any] = []
        self._created = 0
        self._listening = 0
        _ALL_POOLS.add(self)

    def _forget(self) -> None:
        """After a fork: the sockets are the parent's; the child opens its own."""
        self._cond = threading.Condition()
        self._free = []
        self._created = 0
        self._listening = 0

    def take(self, budget: float, listening: bool = False) -> Any:
        """A connection, waiting at most *budget* (and the pool's own cap) for one to be free.

        With *listening*, only while fewer than `max_connections - 1` listen.
        """
        end = time.monotonic() + min(budget, self.wait_for_free)
        with self._cond:
            while True:
                if not listening or self._listening < self.max_connections - 1:
                    if self._free:
                        self._listening += listening
                        return self._free.pop()
                    if self._created < self.max_connections:
                        self._created += 1
                        self._listening += listening
                        break
                left = end - time.monotonic()
                if left <= 0:
                    raise _PoolExhausted("the lock's connection pool is exhausted")
                self._cond.wait(left)
        try:
            return self.connection_class(**self.connection_kwargs)
        except BaseException:
            with self._cond:
                self._created -= 1
                self._listening -= listening
                self._cond.notify_all()
            raise

    def give(self, conn: Any, listening: bool = False) -> None:
        with self._cond:
            self._free.append(conn)
            self._listening -= listening
            # Every waiter: a listener may not take what a short call can.
            self._cond.notify_all()


def _fresh(conn: Any, budget: float) -> None:
    """Connect *conn* within *budget*, replacing a pooled socket the server closed.

    A server killed and restarted on the same port leaves every pooled
    connection at end-of-file; reading that before sending costs no round
    trip, and a new connection is opened instead, so nothing is sent twice.
    The connect and redis-py's handshake after it (AUTH, CLIENT SETNAME,
    CLIENT SETINFO, SELECT: a round trip each, each read with the whole
    socket timeout) run under a deadline of *budget*: a socket still
    busy at it is cut (`scalekit._redis_deadline`).
    """
    if conn._sock is not None:
        try:
            stale = conn.can_read(timeout=0)
        except (RedisConnectionError, OSError):
            stale = True
        if not stale:
            return
        conn.disconnect()

    def connect() -> None:
        note(conn)
        conn.connect()

    call_with_deadline(budget, budget, connect)


# The least budget a request is sent with after a late refusal (one reply's time).
_MIN_BUDGET = 0.01

# redis-py's RedisCluster sleeps this long after a CLUSTERDOWN reply (not configurable).
_CLUSTER_DOWN_PAUSE = 0.25


def _chain_has(exc: BaseException, kind: type[BaseException]) -> bool:
    """True if *exc* or an exception in its context chain is a *kind*."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__context__
    return False


_REDIS_PY = os.path.dirname(os.path.abspath(redis.__file__)) + os.sep


def _torn_down(exc: BaseException) -> bool:
    """Whether *exc* is redis-py meeting a connection or client closed under the call.

    Another thread's `close()` of the client (or its pool's `disconnect()`)
    closes the socket buffer a read is using and unsets the client's nodes:
    redis-py then fails with a `ValueError` ("I/O operation on closed file")
    or an `AttributeError` (on the `None` left in place) from its own code,
    not a `RedisError`. Told apart from a bug of ours by where it was raised:
    in redis-py, not in scalekit.
    """
    if not isinstance(exc, (ValueError, AttributeError)):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_REDIS_PY)


def _first_failure(exc: BaseException) -> str:
    """The failure that started *exc*'s chain (a cluster's CLUSTERDOWN before its slot-map
    re-read ran out of time), to name in the message; '' if *exc* is the first."""
    first = exc
    while first.__context__ is not None and first.__context__ is not first:
        first = first.__context__
    return "" if first is exc else f" (after: {first})"


class _PoolExhausted(BackendUnavailableError):
    """Every connection of the lock's pool is in use (caught and named by the caller)."""


_POOLS: weakref.WeakKeyDictionary[Any, _Pool] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    for pool in list(_ALL_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _private_pool(client: Any) -> _Pool:
    with _POOLS_LOCK:
        pool = _POOLS.get(client)
        if pool is None:
            pool = _POOLS[client] = _Pool(client.connection_pool)
        return pool


class RedisCalls:
    """Run commands and scripts on one Redis server, each within a bounded time.

    `client` is a `redis.Redis`; its pool's settings are carried over
    to a private pool (see `_Pool`). A client without a connection pool (a
    `RedisCluster`) is called through its own `execute_command` under a
    deadline of the call's budget (`scalekit._redis_deadline`).

    Thread-safe (the pool is). Cost: one round trip per call.
    """

    def __init__(self, client: Any, op_timeout: float) -> None:
        self.client = client
        self.op_timeout = op_timeout
        self._pool = _private_pool(client) if hasattr(client, "connection_pool") else None
        self._connect = float("inf")  # a cluster's longest connect (it cannot be cut)
        self._cluster_down: float | None = None  # when a cluster call last saw CLUSTERDOWN
        if self._pool is None:
            kw = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", {})
            connect = kw.get("socket_connect_timeout", kw.get("socket_timeout"))
            if connect is not None:
                self._connect = float(connect)

    def describe(self) -> str:
        pool = self._pool
        if pool is None:
            return repr(self.client)
        kw = pool.connection_kwargs
        return f"redis {kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}"

    def call(
        self, *args: Any, timeout: float | None = None, on_send: Callable[[], None] | None = None
    ) -> Any:
        """Send one command; return its reply within *timeout* (default `op_timeout`).

        The budget covers waiting for a pooled connection, connecting and
        the handshake, sending, and the reply. A pooled connection the
        server has closed (it restarted) is replaced by a fresh one before
        the command is sent, within the same budget. *on_send* is called
        right before the command goes out, after any connect: a clock
        reading there is no later than the server's execution.

        Raises:
            BackendUnavailableError: no connection or no reply in time, the
                lock's connection pool exhausted, or a transient error reply.
            BackendError: Redis answered with another error.
        """
        wait = self.op_timeout if timeout is None else max(timeout, 0.001)
        return self._call(args, wait, on_send)

    def listen(self, key: str, wait: float, timeout: float, share_wait: float) -> Any:
        """BLPOP *key* for *wait* seconds; the reply within *timeout* (as `call`).

        A listener holds its connection as long as it listens, so listeners
        may hold all but one of the pool's connections (see `_Pool`). When
        none is free for a listener within *share_wait* (at most *wait*),
        return None without sending, as if the BLPOP timed out: the caller
        polls instead of listening. The time spent waiting for the
        connection is taken off the BLPOP.
        """
        if self._pool is None:
            return self.call("BLPOP", key, f"{wait:.3f}", timeout=timeout)
        end = time.monotonic() + timeout
        started = time.monotonic()
        try:
            conn = self._pool.take(min(share_wait, wait), listening=True)
        except _PoolExhausted:
            return None
        waited = time.monotonic() - started
        if wait - waited < 0.01:
            self._pool.give(conn, listening=True)
            return None
        args = ("BLPOP", key, f"{wait - waited:.3f}")
        return self._call(args, max(end - time.monotonic(), 0.001), None, conn)

    def _call(
        self,
        args: tuple[Any, ...],
        wait: float,
        on_send: Callable[[], None] | None,
        taken: Any = None,
    ) -> Any:
        """`call` on *taken* (a listener's connection) or on one taken from the pool."""
        listening = taken is not None
        try:
            if self._pool is None:
                return self._cluster_call(args, wait, on_send)
            end = time.monotonic() + wait
            conn = self._pool.take(wait) if taken is None else taken
            try:
                # Bound the connect and handshake of a new connection by the budget too.
                conn.socket_timeout = wait
                conn.socket_connect_timeout = wait
                _fresh(conn, max(end - time.monotonic(), 0.001))
                if on_send is not None:
                    on_send()
                conn.send_command(*args)
                return conn.read_response(timeout=max(end - time.monotonic(), 0.001))
            except BaseException:
                conn.disconnect()
                raise
            finally:
                self._pool.give(conn, listening)
        except NoScriptError:
            raise
        except DeadlineExceeded as exc:
            raise BackendUnavailableError(
                f"{self.describe()} did not answer {args[0]!s} within {wait:.3g}s "
                f"(no time left for another attempt): {exc}"
            ) from exc
        except _PoolExhausted as exc:
            assert self._pool is not None
            raise BackendUnavailableError(
                f"{self.describe()}: the lock's connection pool is exhausted, all "
                f"{self._pool.max_connections} connections (max_connections of the client's "
                f"pool) are in use; {args[0]!s} was not sent"
            ) from exc
        except (RedisTimeoutError, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"{self.describe()} did not answer {args[0]!s} within {wait:.3g}s: {exc}"
            ) from exc
        except (RedisConnectionError, OSError) as exc:
            raise BackendUnavailableError(
                f"{self.describe()}: {args[0]!s} failed on the connection: {exc}"
            ) from exc
        except (ValueError, AttributeError) as exc:
            if not _torn_down(exc):
                raise
            raise BackendUnavailableError(
                f"{self.describe()}: {args[0]!s} failed: its connection or the client was "
                f"closed during the call (by another thread's close() or disconnect()): {exc!r}"
            ) from exc
        except RedisClusterException as exc:  # no node could give the slot map in time
            raise BackendUnavailableError(
                f"{self.describe()} could not serve {args[0]!s}: {exc}{_first_failure(exc)}"
            ) from exc
        except RedisError as exc:
            if str(exc).startswith(LATE_REPLY):
                raise _Late(f"{self.describe()} refused {args[0]!s} as late: {exc}") from exc
            if is_transient(exc):
                raise BackendUnavailableError(
                    f"{self.describe()} cannot serve {args[0]!s} now: {exc}"
                ) from exc
            raise BackendError(f"{self.describe()} failed {args[0]!s}: {exc}") from exc

    def _cluster_call(
        self, args: tuple[Any, ...], wait: float, on_send: Callable[[], None] | None
    ) -> Any:
        """`call` through a `RedisCluster` client, under a deadline of *wait*.

        redis-py sleeps `_CLUSTER_DOWN_PAUSE` after a CLUSTERDOWN reply,
        which no deadline can cut: while the cluster was down a moment ago,
        a call with less time left than that pause is not started.
        """
        down = self._cluster_down
        if down is not None and time.monotonic() - down < 1.0 and wait < _CLUSTER_DOWN_PAUSE:
            raise BackendUnavailableError(
                f"{self.describe()} cannot serve {args[0]!s} now: the cluster is down "
                f"(seen {time.monotonic() - down:.2f}s ago); not tried "
                f"with {wait:.3g}s left, less than the client's {_CLUSTER_DOWN_PAUSE}s pause "
                "after a CLUSTERDOWN reply"
            )
        watch_cluster(self.client)
        if on_send is not None:
            on_send()
        try:
            result = call_with_deadline(wait, self._connect, self.client.execute_command, *args)
        except Exception as exc:
            if _chain_has(exc, ClusterDownError):
                self._cluster_down = time.monotonic()
            raise
        self._cluster_down = None
        return result

    def script(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        timeout: float | None = None,
        on_send: Callable[[], None] | None = None,
        expires: Callable[[int], None] | None = None,
    ) -> Any:
        """Run *script* with EVALSHA, falling back to EVAL when the server lost it.

        *timeout* bounds both calls together; *on_send* is called before each
        of them goes out (see `call`), so its last call precedes the reply.
        With *expires* (an acquire), the request's deadline on the server's
        clock (ms; see `LUA_GONE`) is appended to *args* and passed to
        *expires* before the request goes out; the offset of that clock is
        measured first when it is not known (one more round trip, within
        *timeout*).
        """
        wait = self.op_timeout if timeout is None else max(timeout, 0.001)
        end = time.monotonic() + wait
        if expires is None:
            return self._script(script, keys, args, end, on_send)
        clock = server_clock(self.client)
        for last_try in (False, True):
            if clock.stale():
                self._measure(clock, keys, end)
            limit = clock.deadline_ms(end)
            expires(limit)
            try:
                return self._script(script, keys, [*args, limit], end, on_send)
            except _Late:
                # Back before its deadline by this host's clock, refused as late by the
                # server's: the server's clock stepped ahead. Measure it again.
                clock.measured = float("-inf")
                if last_try or end - time.monotonic() < 2 * _MIN_BUDGET:
                    raise
        raise AssertionError("unreachable")

    def _measure(self, clock: ServerClock, keys: list[str], end: float) -> None:
        sent = time.monotonic()
        reply = self._script(TIME_SCRIPT, keys[:1], [], end, None)
        clock.note(sent, reply)

    def _script(
        self,
        script: Script,
        keys: list[str],
        args: list[Any],
        end: float,
        on_send: Callable[[], None] | None,
    ) -> Any:
        try:
            return self.call(
                "EVALSHA",
                script.sha,
                len(keys),
                *keys,
                *args,
                timeout=max(end - time.monotonic(), 0.001),
                on_send=on_send,
            )
        except NoScriptError:
            left = max(end - time.monotonic(), 0.001)
            return self.call(
                "EVAL", script.source, len(keys), *keys, *args, timeout=left, on_send=on_send
            )
