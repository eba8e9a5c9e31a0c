"""A local cache in front of a RedisCache, kept coherent by invalidations from every node.

NearCache opens one listener connection per Redis node (per primary on a
Cluster). On a server with client tracking (Redis >= 6) each listener runs
`CLIENT TRACKING ON REDIRECT <own id> BCAST PREFIX <namespace>:` and
subscribes to `__redis__:invalidate`, so the node itself reports every
change to a key of the namespace: writes through scalekit, and also a
direct `SET` or `DEL`, an expiry, an eviction or a `FLUSHDB`. Without
tracking a listener subscribes to the cache's channel, on which the scripts
of [RedisCache][scalekit.caching.redis_cache.RedisCache] publish each write
(writes that bypass scalekit are then not seen).

The staleness bound comes from heartbeats on the same connections: every
`max_staleness / 4` seconds each listener sends `PING` to its node. A node
answers in order and queues a key's invalidation before it acknowledges the
write, so when the answer to a ping sent at time *p* arrives, every write
that node acknowledged before *p* has been applied here. Local entries are
served only while every node's last answered ping was sent less than
`max_staleness` ago; after that, or when a listener's connection drops or
is re-established, the local layer is cleared and bypassed until that
listener has answered a ping again. A write acknowledged at time *t* is
therefore never served by another process's local layer after
`t + max_staleness`. Because each node reports its own keys, this holds on
a Cluster while a cluster-bus link is down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, NamedTuple

import redis
import redis.cluster

from .._validation import positive_number
from ..exceptions import ConfigurationError
from .redis_cache import RedisCache

__all__ = ["NearCache", "NearCacheStats"]

_log = logging.getLogger(__name__)
_MISS: Any = object()
_NEVER = float("-inf")
_TRACKING_CHANNEL = b"__redis__:invalidate"


class NearCacheStats(NamedTuple):
    """A snapshot of one [NearCache][scalekit.caching.near_cache.NearCache]'s counters.

    `local_hits` and `remote_reads` count reads; `clears` counts times the
    local layer was emptied (a listener lost or regained its node);
    `invalidations` counts invalidation messages received.
    """

    local_hits: int
    remote_reads: int
    clears: int
    invalidations: int


class NearCache:
    """A local cache (any `MutableMapping`) in front of a `RedisCache`.

    Example:
        >>> near = NearCache(LRUCache(10_000), RedisCache(client, namespace="goods"))
        ... # doctest: +SKIP

    Args:
        local: The local layer, e.g. `LRUCache(maxsize)`; NearCache guards it
            with its own lock, so it need not be thread-safe. It must not be
            shared with anything else.
        remote: A `RedisCache`. Without client tracking on the server it must
            be created with `notify=True` (the default).
        max_staleness: Seconds after a write is acknowledged by Redis within
            which this process stops serving the old value (see the module text).
        local_ttl: Seconds a local entry lives at most (default: the remote's ttl).
        connect_timeout: Seconds `__init__` waits for every listener; if one is
            not ready the cache still works, going to Redis until it is.
        clock: Monotonic clock in seconds.

    Raises:
        ConfigurationError: Bad arguments, or the Redis user may not run what
            the listeners need (`CLIENT ID`, `CLIENT TRACKING`, `SUBSCRIBE` to
            `__redis__:invalidate` or the cache's channel, `PING`).

    Thread-safe. A local hit costs O(1) plus the local layer's own cost; a
    miss costs one Redis round trip. Call `close` to stop the listeners.
    """

    def __init__(
        self,
        local: MutableMapping[str, Any],
        remote: RedisCache,
        *,
        max_staleness: float = 1.0,
        local_ttl: float | None = None,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(local, MutableMapping):
            raise ConfigurationError(f"local must be a MutableMapping, got {local!r}")
        if not isinstance(remote, RedisCache):
            raise ConfigurationError(f"remote must be a RedisCache, got {remote!r}")
        self._local = local
        self.remote = remote
        self.max_staleness = positive_number("max_staleness", max_staleness)
        self.local_ttl = (
            remote.ttl if local_ttl is None else positive_number("local_ttl", local_ttl)
        )
        timeout = positive_number("connect_timeout", connect_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._trusted_until = _NEVER  # local entries usable while clock() < this
        self._seq = 0  # counts invalidation events seen by this process
        self._inflight: dict[str, int] = {}  # key -> remote reads in progress
        self._dirty: dict[str, int] = {}  # key -> seq of its last invalidation while in flight
        self._cleared_at = 0  # seq of the last full clear
        self._local_hits = self._remote_reads = self._clears = self._messages = 0
        self._stop = threading.Event()
        self._synced = threading.Condition()
        self._listeners = [_Listener(self, pool, name) for pool, name in self._nodes()]
        for listener in self._listeners:
            listener.start()
        deadline = time.monotonic() + timeout
        for listener in self._listeners:
            listener.ready.wait(max(0.0, deadline - time.monotonic()))
        denied = [lst for lst in self._listeners if lst.denied is not None]
        if denied:
            self.close()
            raise ConfigurationError(_permission_message(denied[0], remote.channel))
        if not remote.notifies and any(lst.tracking is False for lst in self._listeners):
            self.close()
            raise ConfigurationError(
                "remote must be created with notify=True on a Redis without client tracking "
                "(Redis < 6), so writes publish invalidations; got notify=False"
            )

    def _nodes(self) -> list[tuple[Any, str]]:
        client = self.remote.client
        if isinstance(client, redis.cluster.RedisCluster):
            return [
                (node.redis_connection.connection_pool, node.name)
                for node in client.get_primaries()  # type: ignore[no-untyped-call]
            ]
        kwargs = client.connection_pool.connection_kwargs
        return [(client.connection_pool, f"{kwargs.get('host')}:{kwargs.get('port')}")]

    # -- reads -------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key* from the local layer, else from Redis, else *default*.

        Runtime complexity: O(1) on a local hit; one Redis round trip otherwise.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return value
        seq = self._begin(key)
        value = _MISS
        try:
            value = self.remote.get(key, _MISS)
        finally:
            self._end(key, seq, value)
        return default if value is _MISS else value

    def get_or_load(self, key: str, loader: Callable[[], Any], *, ttl: float | None = None) -> Any:
        """Like `RedisCache.get_or_load`, with the local layer in front.

        A value served stale (`stale_ttl`) or loaded while Redis was down is
        returned but not kept locally.

        Runtime complexity: O(1) on a local hit, else that of `RedisCache.get_or_load`.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return value
        seq = self._begin(key)
        keep: Any = _MISS
        try:
            value, fresh = self.remote._get_or_load(key, loader, ttl)
            if fresh and value is not None:
                keep = value
        finally:
            self._end(key, seq, keep)
        return value

    def _local_get(self, key: str) -> Any:
        now = self._clock()
        if now >= self._trusted_until:
            return _MISS
        with self._lock:
            entry = self._local.get(key, _MISS)
            if entry is _MISS or entry[1] <= now:
                return _MISS
            self._local_hits += 1
        return entry[0]

    def _begin(self, key: str) -> int:
        with self._lock:
            self._remote_reads += 1
            self._inflight[key] = self._inflight.get(key, 0) + 1
            return self._seq

    def _end(self, key: str, seq: int, value: Any) -> None:
        """Fill the local layer unless *key* was invalidated while it was being read."""
        with self._lock:
            left = self._inflight[key] - 1
            stale = self._dirty.get(key, -1) > seq or self._cleared_at > seq
            if left:
                self._inflight[key] = left
            else:
                del self._inflight[key]
                self._dirty.pop(key, None)
            if value is _MISS or stale or self._clock() >= self._trusted_until:
                return
            # A value too large for the local layer is simply served from Redis.
            with contextlib.suppress(ValueError):
                self._local[key] = (value, self._clock() + self.local_ttl)

    # -- writes ------------------------------------------------------------
    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Write through to Redis; every process's local copy is invalidated.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        self._drop(key)
        self.remote.set(key, value, ttl)
        self._drop(key)

    def delete(self, key: str) -> bool:
        """Delete from Redis and invalidate every local copy; True if Redis held a value.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        self._drop(key)
        try:
            return self.remote.delete(key)
        finally:
            self._drop(key)

    def invalidate(self, key: str) -> None:
        """Invalidate *key* in Redis and in every process's local layer."""
        self.delete(key)

    def _drop(self, key: str) -> None:
        with self._lock:
            self._seq += 1
            if key in self._inflight:
                self._dirty[key] = self._seq
            self._local.pop(key, None)

    def clear_local(self) -> None:
        """Empty the local layer (Redis is untouched)."""
        with self._lock:
            self._seq += 1
            self._cleared_at = self._seq
            self._clears += 1
            self._local.clear()

    def stats(self) -> NearCacheStats:
        """A snapshot of the counters. Runtime complexity: O(1)."""
        with self._lock:
            return NearCacheStats(
                self._local_hits, self._remote_reads, self._clears, self._messages
            )

    # -- the listeners -----------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the local layer is trusted (every node's heartbeat answered)."""
        return self._clock() < self._trusted_until

    @property
    def tracking(self) -> bool:
        """True if every node reports key changes itself (client tracking), so writes
        that bypass scalekit are seen too; False while a node is unknown or lacks it."""
        return all(listener.tracking is True for listener in self._listeners)

    @property
    def state(self) -> str:
        """`"trusted"`, `"permission denied"` (logged; the local layer is bypassed) or
        `"untrusted"` (connecting, or a node's heartbeat is late)."""
        if self.connected:
            return "trusted"
        if any(listener.denied is not None for listener in self._listeners):
            return "permission denied"
        return "untrusted"

    def sync(self, timeout: float) -> bool:
        """Wait until every write Redis acknowledged before this call has been applied here.

        Returns True once every node has answered a heartbeat sent after the
        call began (so its invalidations are in), False after *timeout* seconds.
        """
        start = self._clock()
        with self._synced:
            return self._synced.wait_for(
                lambda: self._trusted_until - self.max_staleness > start, timeout
            )

    def _refresh_trust(self) -> None:
        with self._lock:
            self._trusted_until = min(lst.trusted_until for lst in self._listeners)
        with self._synced:
            self._synced.notify_all()

    def _distrust(self, listener: _Listener) -> None:
        listener.trusted_until = _NEVER
        self._refresh_trust()
        self.clear_local()

    def _invalidated(self, data: Any) -> None:
        with self._lock:
            self._messages += 1
        if data is None:  # FLUSHDB / FLUSHALL
            self.clear_local()
            return
        if isinstance(data, bytes):  # the cache's channel: the user key itself
            self._drop(data.decode())
            return
        prefix = f"{self.remote.namespace}:{{".encode()
        for name in data:
            # Only value keys matter: `ns:{k}`; `:ver` and `:lease` keys change with them.
            if name.startswith(prefix) and name.endswith(b"}"):
                self._drop(name[len(prefix) : -1].decode(errors="replace"))

    def close(self) -> None:
        """Stop the listener threads and empty the local layer."""
        self._stop.set()
        for listener in self._listeners:
            listener.join(self.max_staleness + 5)
        self._trusted_until = _NEVER
        self.clear_local()

    def __enter__(self) -> NearCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NearCache(remote={self.remote!r}, state={self.state!r})"


def _permission_message(listener: _Listener, channel: str) -> str:
    return (
        f"NearCache cannot listen for invalidations on Redis node {listener.node}: "
        f"{listener.step} was refused ({listener.denied}). The Redis user needs the "
        "commands CLIENT ID, CLIENT TRACKING, SUBSCRIBE and PING and the channel "
        "'__redis__:invalidate' (or, on a server "
        f"without client tracking, the channel {channel!r}), "
        f"e.g. ACL SETUSER <user> +client|id +client|tracking +subscribe +ping "
        f"&__redis__:invalidate &{channel}"
    )


class _Listener(threading.Thread):
    """One node's invalidation connection and heartbeat."""

    def __init__(self, near: NearCache, pool: Any, name: str) -> None:
        super().__init__(name=f"NearCache-{near.remote.namespace}-{name}", daemon=True)
        self.near = near
        self.pool = pool
        self.node = name
        self.trusted_until = _NEVER
        self.tracking: bool | None = None
        self.denied: Exception | None = None
        self.step = ""  # the command being set up, named if it is refused
        self.ready = threading.Event()  # first heartbeat answered, or permission denied

    def run(self) -> None:
        near = self.near
        backoff = 0.05
        while not near._stop.is_set():
            conn = None
            try:
                conn = self.pool.get_connection()
                self._session(conn)
                backoff = 0.05
            except redis.exceptions.NoPermissionError as exc:
                if self.denied is None:
                    _log.error("%s", _permission_message(self._denied(exc), near.remote.channel))
                near._distrust(self)
                self.ready.set()
                near._stop.wait(max(backoff, 1.0))
            except Exception:  # any failure: distrust the local layer and reconnect
                near._distrust(self)
                near._stop.wait(backoff)
                backoff = min(backoff * 2, near.max_staleness)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken link
                        conn.disconnect()
                        self.pool.release(conn)
        near._distrust(self)

    def _denied(self, exc: Exception) -> _Listener:
        self.denied = exc
        return self

    def _command(self, conn: Any, *args: Any) -> Any:
        self.step = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in args)
        conn.send_command(*args, check_health=False)
        return conn.read_response(push_request=True)

    def _session(self, conn: Any) -> None:
        """Set up tracking and subscriptions on *conn*, then serve it until it fails."""
        near = self.near
        prefix = f"{near.remote.namespace}:"
        resp3 = str(getattr(conn, "protocol", 2)) == "3"
        if resp3:
            # RESP3: the node pushes `invalidate` messages on this very connection.
            conn._parser.set_invalidation_push_handler(lambda push: [b"invalidate", push[1]])
            tracking: tuple[Any, ...] = ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", prefix)
        else:
            # RESP2: invalidations are redirected to a pub/sub channel on this connection.
            client_id = self._command(conn, "CLIENT", "ID")
            tracking = (
                "CLIENT",
                "TRACKING",
                "ON",
                "REDIRECT",
                client_id,
                "BCAST",
                "PREFIX",
                prefix,
            )
        try:
            self._command(conn, *tracking)
            self.tracking = True
        except redis.exceptions.NoPermissionError:
            raise
        except redis.exceptions.ResponseError:
            self.tracking = False  # Redis < 6: only writes through scalekit are seen
        if not self.tracking:
            self._command(conn, "SUBSCRIBE", near.remote.channel)
        elif not resp3:
            self._command(conn, "SUBSCRIBE", _TRACKING_CHANNEL)
        self.denied = None
        # Messages may have been lost while not subscribed: nothing local can be trusted.
        near.clear_local()
        interval = near.max_staleness / 4
        # (payload, send time) of unanswered pings, oldest first. Each ping carries a
        # sequence number, so an answer that skips one shows that bytes of this stream
        # were lost (and invalidations with them): the session is then rebuilt.
        pending: list[tuple[bytes, float]] = []
        sent = 0
        next_ping = near._clock()
        while not near._stop.is_set():
            now = near._clock()
            if now >= next_ping:
                sent += 1
                pending.append((b"%d" % sent, now))
                conn.send_command("PING", pending[-1][0], check_health=False)
                next_ping = now + interval
            trusted = self.trusted_until
            if trusted != _NEVER and now >= trusted:
                near._distrust(self)  # no recent ping answered: invalidations may be missing
            if pending and now - pending[0][1] > 2 * near.max_staleness:
                raise ConnectionError("heartbeat unanswered: the connection looks dead")
            wake = min(next_ping, trusted) if trusted != _NEVER else next_ping
            if not conn.can_read(timeout=max(0.0, min(interval, wake - now))):
                continue
            message = conn.read_response(push_request=True)
            if isinstance(message, list) and message[0] == b"message":
                near._invalidated(message[2])
            elif isinstance(message, list) and message[0] == b"invalidate":
                near._invalidated(message[1])
            else:  # a heartbeat answer: [b"pong", payload] (RESP2 subscribed) or payload
                payload = message[1] if isinstance(message, list) else message
                if not pending or payload != pending[0][0]:
                    raise ConnectionError(f"heartbeat answers out of order: got {payload!r}")
                self.trusted_until = pending.pop(0)[1] + near.max_staleness
                near._refresh_trust()
                self.ready.set()
