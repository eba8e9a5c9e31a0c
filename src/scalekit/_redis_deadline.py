"""Deadlines for Redis calls made through a user's client: a bound, not an estimate.

redis-py bounds each socket operation (`socket_timeout`), not a whole call:
a server that answers slowly in pieces, a slow script, or a retry policy
that keeps retrying (a `RedisCluster` also re-reads its slot map from
every node after a failure) can make one call last far longer than any
single timeout. A [RedisCache][scalekit.caching.redis_cache.RedisCache]
(its `call_timeout`) and the Redis locks and fenced store on a
`RedisCluster` (their `op_timeout`) therefore run each call under a
deadline, in three parts:

* every connection its call takes from a pool is noted (the pools of the
  client are watched: their `get_connection` notes the connection for the
  calling thread, and refuses another once the deadline is near). A
  connection that must (re)connect is noted as its connect begins, so the
  handshake redis-py runs inside `get_connection` (AUTH, CLIENT SETNAME,
  CLIENT SETINFO, SELECT, a health-check PING) is cut like any read;
* each such connection's retry policy is wrapped: under a deadline it
  starts another attempt only if the backoff sleep before it and a
  connect (which cannot be interrupted) fit in the time left, and
  otherwise behaves exactly as the original;
* a watchdog thread shuts down (`shutdown(SHUT_RDWR)`) the sockets of a
  call still running when its deadline is near, which ends a read blocked
  on a slow or trickling reply at once. redis-py then disconnects that
  connection, so the next call reconnects: nothing is left half-read.

Outside such a call (another user of the same client, a pub/sub
listener) the watched pools and wrapped retries behave as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    import redis
    from redis.retry import Retry
except ModuleNotFoundError as _exc:
    from ._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .exceptions import BackendUnavailableError

__all__ = ["DeadlineExceeded", "call_with_deadline", "note", "watch_cluster", "watch_pool"]

_TICK = 0.02  # seconds between the watchdog's checks
_CUT_AHEAD = 2 * _TICK  # sockets are cut this long before the deadline (at most half the call)


class DeadlineExceeded(BackendUnavailableError, redis.exceptions.RedisError):
    """A call ran out of its deadline (a cache's `call_timeout`, a lock's `op_timeout`).

    Raised inside redis-py (from a watched pool), where no retry policy
    catches it (it is no redis-py `ConnectionError` or `TimeoutError`).
    """


class _Call:
    __slots__ = ("connect", "conns", "cut", "cut_at", "deadline", "taken")

    def __init__(self, deadline: float, connect: float, timeout: float) -> None:
        self.deadline = deadline
        # Sockets are cut _CUT_AHEAD before the deadline, or half way for a call
        # shorter than twice that: a 0.05 s call cut 0.04 s early was cut at the
        # watchdog's first tick, in its handshake, whatever the server's speed.
        self.cut_at = deadline - min(_CUT_AHEAD, timeout / 2)
        self.connect = connect  # longest time a connect may take (it cannot be cut)
        self.conns: list[Any] = []  # taken from a pool and not yet released
        self.taken = 0
        self.cut = False

    def fits(self, pause: float) -> bool:
        """True if an attempt started after *pause* seconds could still connect before
        its sockets are cut (a read past the cut is ended by the watchdog)."""
        return time.monotonic() + pause + self.connect <= self.cut_at


# Calls in flight, by thread id (dict operations are atomic under the GIL).
_inflight: dict[int, _Call] = {}
_watchdog_lock = threading.Lock()
_watchdog: threading.Thread | None = None
# Held while a call's sockets are cut and while a connection leaves a call (released to
# its pool), so a connection another thread took from the pool meanwhile is never cut.
_cut_lock = threading.Lock()


def _after_fork() -> None:
    global _watchdog, _watchdog_lock, _cut_lock
    _watchdog = None  # threads do not survive a fork: the child starts its own
    _watchdog_lock = threading.Lock()
    _cut_lock = threading.Lock()
    _inflight.clear()


os.register_at_fork(after_in_child=_after_fork)


def _cut(call: _Call) -> None:
    with _cut_lock:
        call.cut = True
        for conn in call.conns:
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _watch() -> None:
    while True:
        time.sleep(_TICK)
        now = time.monotonic()
        for call in list(_inflight.values()):
            if now >= call.cut_at:
                _cut(call)  # again each tick: a socket opened after the first cut is cut too


def _start_watchdog() -> None:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = threading.Thread(
                target=_watch, name="scalekit-redis-deadlines", daemon=True
            )
            _watchdog.start()


class _DeadlineRetry(Retry):
    """A connection's retry policy, deadline-aware inside a call under a deadline.

    Shares the original's state (`__dict__`), so `get_retries()`,
    `update_supported_errors()` and the rest see and change the same policy.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: Retry) -> None:
        self.__dict__ = inner.__dict__
        self._inner = inner

    def call_with_retry(
        self,
        do: Callable[[], Any],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        call = _inflight.get(threading.get_ident())
        if call is None:
            return self._inner.call_with_retry(do, fail, is_retryable, with_failure_count)
        self._backoff.reset()  # type: ignore[no-untyped-call]
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if 0 <= self._retries < failures:
                    raise
                backoff = self._backoff.compute(failures)
                if call.cut or not call.fits(backoff):
                    raise  # no time left for another attempt
                if backoff > 0:
                    time.sleep(backoff)


def _watch_connection(conn: Any) -> Any:
    """Wrap *conn*'s retry policy, and note it in the calling deadline call when it connects.

    redis-py connects (and runs the handshake) inside `get_connection`, before
    the pool hands the connection out: noted only then, its handshake could
    not be cut.
    """
    retry = getattr(conn, "retry", None)
    if isinstance(retry, Retry) and not isinstance(retry, _DeadlineRetry):
        conn.retry = _DeadlineRetry(retry)
    attrs = getattr(conn, "__dict__", None)
    if attrs is None or "_scalekit_connect" in attrs:  # __slots__: noted when handed out
        return conn
    real = getattr(conn, "connect", None)
    if real is None:
        return conn

    def connect(*args: Any, **kwargs: Any) -> Any:
        if getattr(conn, "_sock", None) is None:  # about to connect: the handshake follows
            call = _inflight.get(threading.get_ident())
            if call is not None and conn not in call.conns:
                with _cut_lock:
                    call.conns.append(conn)
        return real(*args, **kwargs)

    attrs["_scalekit_connect"] = True
    conn.connect = connect
    return conn


def _noted(pool: Any, real: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    call = _inflight.get(threading.get_ident())
    if call is not None and (call.cut or (call.taken and not call.fits(0.0))):
        # The first connection of a call is always taken: call_timeout counts its attempt.
        raise DeadlineExceeded("the call's deadline was reached before another attempt could start")
    conn = _watch_connection(real(*args, **kwargs))
    if call is not None:
        call.taken += 1
        if conn not in call.conns:
            call.conns.append(conn)
    return conn


def _released(real: Callable[..., Any], conn: Any, *args: Any, **kwargs: Any) -> Any:
    call = _inflight.get(threading.get_ident())
    if call is not None and call.conns:
        with _cut_lock:
            if conn in call.conns:
                call.conns.remove(conn)
                if call.cut:  # its socket may be shut down: never pool it half-closed
                    with contextlib.suppress(Exception):
                        conn.disconnect()
    return real(conn, *args, **kwargs)


def watch_pool(pool: Any) -> None:
    """Note the connections a deadline call takes from and returns to *pool* (idempotent)."""
    current = pool.__dict__.get("get_connection")
    if getattr(current, "_scalekit_watch", False):
        return
    take = current if current is not None else pool.get_connection
    give = pool.__dict__.get("release", pool.release)
    give = getattr(give, "_scalekit_real", give)  # watched before: wrap the original once

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        return _noted(pool, take, *args, **kwargs)

    def release(conn: Any, *args: Any, **kwargs: Any) -> Any:
        return _released(give, conn, *args, **kwargs)

    get_connection._scalekit_watch = True  # type: ignore[attr-defined]
    release._scalekit_real = give  # type: ignore[attr-defined]
    make = getattr(pool, "make_connection", None)
    if make is not None:

        def make_connection(*args: Any, **kwargs: Any) -> Any:
            return _watch_connection(make(*args, **kwargs))

        pool.make_connection = make_connection
    # Connections the pool made before it was watched.
    for conn in list(getattr(pool, "_available_connections", ())):
        if conn is not None:  # a BlockingConnectionPool's queue holds None placeholders
            _watch_connection(conn)
    pool.release = release
    pool.get_connection = get_connection


def note(conn: Any) -> None:
    """Note *conn* in the calling thread's deadline call, so its socket is cut at the
    deadline (for a connection that comes from no watched pool)."""
    call = _inflight.get(threading.get_ident())
    if call is not None and conn not in call.conns:
        with _cut_lock:
            call.conns.append(conn)


def watch_cluster(cluster: Any) -> None:
    """Watch the pool of every node a `RedisCluster` call may use, the slot map's too.

    Nodes the client creates later (a slot map re-read after a failure) are
    watched as they are created.
    """
    manager = cluster.nodes_manager
    create = manager.__dict__.get("create_redis_node")
    if not getattr(create, "_scalekit_watch", False):
        real = manager.create_redis_node

        def create_redis_node(*args: Any, **kwargs: Any) -> Any:
            node = real(*args, **kwargs)
            pool = getattr(node, "connection_pool", None)
            if pool is not None:
                watch_pool(pool)
            return node

        create_redis_node._scalekit_watch = True  # type: ignore[attr-defined]
        manager.create_redis_node = create_redis_node
    for nodes in (manager.nodes_cache, manager.startup_nodes):
        for node in list(nodes.values()):
            if node.redis_connection is not None:
                watch_pool(node.redis_connection.connection_pool)


def call_with_deadline(
    timeout: float, connect: float, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Run *fn* with a deadline *timeout* seconds from now (`inf`: none).

    *connect* is the longest a connect may take (`socket_connect_timeout`);
    a retry that could not connect before the deadline is not started. On a cut or refused
    attempt the error redis-py raised (or `DeadlineExceeded`) propagates.
    """
    if timeout == float("inf"):
        return fn(*args, **kwargs)
    ident = threading.get_ident()
    if ident in _inflight:  # nested (a script's reload): the outer deadline holds
        return fn(*args, **kwargs)
    if _watchdog is None:
        _start_watchdog()
    _inflight[ident] = _Call(time.monotonic() + timeout, connect, timeout)
    try:
        return fn(*args, **kwargs)
    finally:
        del _inflight[ident]
